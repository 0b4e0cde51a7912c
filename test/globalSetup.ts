import type { TestProject } from 'vitest/node'
import { builtPostgres17, startClickHouseServer, startPostgres, startS3 } from '../devtools/servers.ts'

/** Starts the real servers once for the whole run; each test file makes its own databases and prefixes. */
export default async function setup(project: TestProject) {
  // scripts/setup.sh builds it once (cached); without it only the tests that need 17 fail, saying so
  const pg17 = builtPostgres17()
  const [pg, postgres17, ch, s3] = await Promise.all([
    startPostgres(),
    pg17 ? startPostgres({ binDir: pg17.serverBinDir }) : undefined,
    startClickHouseServer(),
    startS3(),
  ])
  project.provide('servers', {
    postgres: { port: pg.port, password: pg.password, binDir: pg.binDir, dataDir: pg.dataDir },
    postgres17: postgres17
      ? { port: postgres17.port, password: postgres17.password, binDir: postgres17.binDir }
      : null,
    pgLayerBinDir: pg17?.layerBinDir ?? null,
    clickhouse: { port: ch.port, password: ch.password, version: ch.version },
    s3: { endpoint: s3.endpoint, bucket: s3.bucket, directory: s3.directory },
  })
  return async () => {
    await Promise.all([pg.stop(), postgres17?.stop(), ch.stop(), s3.stop()])
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    servers: {
      postgres: { port: number; password: string; binDir: string; dataDir: string }
      /** PostgreSQL 17 compiled by scripts/build-postgres.sh. */
      postgres17: { port: number; password: string; binDir: string } | null
      /** The pg tools layer's bin/ (pg_dump, pg_restore and psql 17), run as Lambda runs them. */
      pgLayerBinDir: string | null
      clickhouse: { port: number; password: string; version: string }
      s3: { endpoint: string; bucket: string; directory: string }
    }
  }
}
