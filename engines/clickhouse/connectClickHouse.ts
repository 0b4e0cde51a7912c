import { ConfigError } from '#core/errors.ts'
import { redact, registerSecret } from '#core/redact.ts'
import type { ClickHouseConnection } from './connection.ts'
import { connectHttp } from './http.ts'

/**
 * Connects to `http(s)://user:pass@host:port/database` or `chdb:///absolute/dir?database=langsight`
 * and checks the server answers. The password is registered with the redactor: no error, log
 * line or return value carries it.
 */
export async function connectClickHouse(url: string): Promise<ClickHouseConnection> {
  registerSecret(url)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    // the URL parser's own error quotes the whole input, password included
    throw new ConfigError(`ClickHouse URL ${redact(url)} is not a URL`)
  }
  if (parsed.password) registerSecret(decodeURIComponent(parsed.password))
  if (parsed.protocol === 'http:' || parsed.protocol === 'https:') return connectHttp(url, parsed)
  // chdb is a native module used locally only: loaded on demand so Lambda bundles never need it.
  if (parsed.protocol === 'chdb:') return (await import('./chdb.ts')).connectChdb(url, parsed)
  throw new ConfigError(`ClickHouse URL ${redact(url)}: expected http(s):// or chdb:///`)
}
