import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { inject } from 'vitest'
import { resetConfig } from '#core/config.ts'

/** A Postgres URL for a database on the shared test cluster. */
export function postgresUrl(database: string): string {
  const { port, password } = inject('servers').postgres
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`
}

/** A ClickHouse 18.16 URL for a database on the shared test server. */
export function clickhouseServerUrl(database: string): string {
  const { port, password } = inject('servers').clickhouse
  return `http://default:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`
}

/** Creates a fresh database on the shared cluster and returns its URL. */
export async function createPostgresDatabase(prefix: string): Promise<{ name: string; url: string }> {
  const name = `${prefix}_${randomUUID().slice(0, 8)}`
  const admin = new pg.Client({ connectionString: postgresUrl('postgres') })
  await admin.connect()
  await admin.query(`CREATE DATABASE "${name}"`)
  await admin.end()
  return { name, url: postgresUrl(name) }
}

/** A unique key prefix so that test files sharing the bucket never see each other's backups. */
export function uniquePrefix(name: string): string {
  return `t-${name}-${randomUUID().slice(0, 8)}`
}

/** Sets environment variables for a test and resets cached configuration. */
export function useEnv(values: Record<string, string | undefined>): void {
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  resetConfig()
}
