import { readFileSync } from 'node:fs'
import type { ClientConfig } from 'pg'
import { stallLimitMs } from '#core/deadline.ts'
import { ConfigError } from '#core/errors.ts'
import { assertConfiguredDatabase } from '#core/names.ts'
import { registerSecret } from '#core/redact.ts'

/** The parts of a `postgres://user:password@host:port/database?sslmode=…` URL. */
export interface PostgresTarget {
  host: string
  port: number
  user: string
  password: string
  database: string
  /** Connection parameters from the query string, each one libpq understands. */
  params: Readonly<Record<string, string>>
  /** `host:port/database` — where, for error messages; never the password. */
  location: string
}

/** Query parameters accepted in the URL, and the libpq environment variable each one becomes for a child. */
export const LIBPQ_PARAMS: Readonly<Record<string, string>> = {
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  application_name: 'PGAPPNAME',
}
const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']

/**
 * Parses a PostgreSQL connection URL (`postgres:`, `postgresql:`, or SQLAlchemy's `postgresql+driver:`).
 * The password is registered with the redactor; errors never quote the URL.
 */
export function parsePostgresUrl(url: string): PostgresTarget {
  registerSecret(url)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new ConfigError('the PostgreSQL URL is not a URL (expected postgres://user:password@host:port/db)')
  }
  if (!/^postgres(ql)?(\+[a-z0-9]+)?:$/.test(parsed.protocol)) {
    throw new ConfigError(`the PostgreSQL URL has scheme ${parsed.protocol} (expected postgres:)`)
  }
  const host = parsed.hostname.replace(/^\[(.+)\]$/, '$1')
  const port = parsed.port ? Number(parsed.port) : 5432
  const database = decodeURIComponent(parsed.pathname.slice(1))
  const where = `${host || '?'}:${port}/${database || '?'}`
  if (!host) throw new ConfigError(`the PostgreSQL URL names no host (${where})`)
  if (!parsed.username) throw new ConfigError(`the PostgreSQL URL names no user (${where})`)
  if (!database) throw new ConfigError(`the PostgreSQL URL names no database (${where})`)
  assertConfiguredDatabase(database, `the PostgreSQL URL for ${where}`)
  const params: Record<string, string> = {}
  for (const [name, value] of parsed.searchParams) {
    if (!(name in LIBPQ_PARAMS)) {
      throw new ConfigError(
        `the PostgreSQL URL for ${where} has an unsupported parameter ${JSON.stringify(name)} ` +
          `(supported: ${Object.keys(LIBPQ_PARAMS).join(', ')})`,
      )
    }
    params[name] = value
  }
  if (params.sslmode !== undefined && !SSL_MODES.includes(params.sslmode)) {
    throw new ConfigError(`sslmode ${JSON.stringify(params.sslmode)} for ${where} is not one of ${SSL_MODES}`)
  }
  return {
    host,
    port,
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database,
    params,
    location: where,
  }
}

/** A connection URL pointed at another database (a restore target); null keeps it as it is. */
export function urlForDatabase(url: string, database: string | null): string {
  if (!database) return url
  const parsed = new URL(url)
  parsed.pathname = `/${encodeURIComponent(database)}`
  return parsed.toString()
}

/** The same server and credentials, another database (the `postgres` maintenance database, a restore target). */
export function withDatabase(target: PostgresTarget, database: string): PostgresTarget {
  return { ...target, database, location: `${target.host}:${target.port}/${database}` }
}

/**
 * Connection options for pg_dump / pg_restore. Every value is a separate `--name=value` argument
 * (no shell, nothing parsed as an option); the password is not among them.
 */
export function toolConnectionArgs(target: PostgresTarget): string[] {
  return [
    `--host=${target.host}`,
    `--port=${target.port}`,
    `--username=${target.user}`,
    `--dbname=${target.database}`,
  ]
}

/**
 * node-postgres options with libpq's meaning of sslmode (node-postgres alone treats `require` as
 * `verify-full`). libpq's default is `prefer`; `withoutSsl` is the second attempt that `prefer` allows.
 */
export function clientConfig(
  target: PostgresTarget,
  applicationName: string,
  withoutSsl = false,
): ClientConfig {
  const { sslmode = 'prefer', sslrootcert, sslcert, sslkey, connect_timeout } = target.params
  const read = (file: string | undefined) =>
    file && file !== 'system' ? readFileSync(file, 'utf8') : undefined
  let ssl: ClientConfig['ssl'] = false
  if (sslmode !== 'disable' && sslmode !== 'allow' && !(withoutSsl && sslmode === 'prefer')) {
    ssl = { ca: read(sslrootcert), cert: read(sslcert), key: read(sslkey) }
    if (sslmode === 'prefer' || sslmode === 'require') ssl.rejectUnauthorized = false
    if (sslmode === 'verify-ca') ssl.checkServerIdentity = () => undefined
  }
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl,
    application_name: target.params.application_name ?? applicationName,
    connectionTimeoutMillis: (connect_timeout ? Number(connect_timeout) : 15) * 1000,
    // our own statements are short (preflight, create, rename, terminate): none may wait forever
    query_timeout: stallLimitMs(),
    keepAlive: true,
  }
}
