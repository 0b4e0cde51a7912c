import pg from 'pg'
import { ConfigError, TransientError } from '#core/errors.ts'
import { assertConfiguredDatabase } from '#core/names.ts'
import { redact } from '#core/redact.ts'
import { clientConfig, type PostgresTarget, parsePostgresUrl } from './postgresUrl.ts'

/** `application_name` of our sessions: visible in pg_stat_activity, and how a restore skips its own. */
export const APPLICATION_NAME = 'langsight-backup'

/** SQLSTATEs that mean the configuration is wrong (retrying will not help). */
const CONFIG_STATES = new Set(['28000', '28P01', '3D000', '42501'])

/**
 * A connected node-postgres client. A failure names the server and database and says whether it
 * is worth retrying: bad credentials or an unknown database are a ConfigError, anything else a
 * TransientError (unreachable, refused, shut down).
 */
export async function connectPostgres(target: PostgresTarget): Promise<pg.Client> {
  const attempt = async (withoutSsl: boolean) => {
    const client = new pg.Client(clientConfig(target, APPLICATION_NAME, withoutSsl))
    // A connection that drops later surfaces as a query error; without a listener it would crash the process.
    client.on('error', () => {})
    try {
      await client.connect()
      return client
    } catch (error) {
      await client.end().catch(() => {})
      throw error
    }
  }
  try {
    try {
      return await attempt(false)
    } catch (error) {
      // libpq's sslmode=prefer (also its default) falls back to a plain connection.
      const prefer = (target.params.sslmode ?? 'prefer') === 'prefer'
      if (prefer && /does not support SSL/i.test(String((error as Error).message))) return await attempt(true)
      throw error
    }
  } catch (error) {
    const code = (error as { code?: string }).code
    const message = `cannot connect to PostgreSQL at ${target.location} as ${target.user}: ${describePgError(error)}`
    if (code && CONFIG_STATES.has(code)) throw new ConfigError(message, { cause: error })
    throw new TransientError(message, { cause: error })
  }
}

/** An error's message with its SQLSTATE or errno code, redacted. */
export function describePgError(error: unknown): string {
  const { message, code } = error as { message?: string; code?: string }
  return redact(`${message ?? String(error)}${code ? ` (${code})` : ''}`)
}

export interface PostgresInfo {
  serverVersion: string
  serverMajor: number
  database: string
}

/** Server version of an open client. */
export async function serverInfo(client: pg.Client, database: string): Promise<PostgresInfo> {
  const { rows } = await client.query<{ version: string; num: string }>(
    "SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num",
  )
  const num = Number(rows[0]!.num)
  // Since PostgreSQL 10 the major is the first component (150018 → 15); before, the first two (90624 → 9).
  return { serverVersion: rows[0]!.version, serverMajor: Math.floor(num / 10000), database }
}

/** Connects with `pg` and returns the server version and the database name of the URL. */
export async function inspectPostgres(url: string): Promise<PostgresInfo> {
  const target = parsePostgresUrl(url)
  const client = await connectPostgres(target)
  try {
    return await serverInfo(client, target.database)
  } catch (error) {
    throw new TransientError(
      `cannot read the server version of ${target.location}: ${describePgError(error)}`,
      {
        cause: error,
      },
    )
  } finally {
    await client.end().catch(() => {})
  }
}

/** A database name as an SQL identifier; the name is checked first, so quoting it is enough. */
export function quoteIdent(name: string): string {
  assertConfiguredDatabase(name, 'SQL identifier')
  return `"${name}"`
}
