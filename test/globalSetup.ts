import type { TestProject } from 'vitest/node'
import { startClickHouseServer, startPostgres, startS3 } from '#devtools/servers.ts'

/** Starts the real servers once for the whole run; each test file makes its own databases and prefixes. */
export default async function setup(project: TestProject) {
  const [pg, ch, s3] = await Promise.all([startPostgres(), startClickHouseServer(), startS3()])
  project.provide('servers', {
    postgres: { port: pg.port, password: pg.password, binDir: pg.binDir, dataDir: pg.dataDir },
    clickhouse: { port: ch.port, password: ch.password, version: ch.version },
    s3: { endpoint: s3.endpoint, bucket: s3.bucket, directory: s3.directory },
  })
  return async () => {
    await Promise.all([pg.stop(), ch.stop(), s3.stop()])
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    servers: {
      postgres: { port: number; password: string; binDir: string; dataDir: string }
      clickhouse: { port: number; password: string; version: string }
      s3: { endpoint: string; bucket: string; directory: string }
    }
  }
}
