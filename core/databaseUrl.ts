import { ConfigError } from './errors.ts'

/** The database name in a connection URL's path (`postgres://…/langsight` → `langsight`). */
export function databaseOf(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''))
  if (!name) throw new ConfigError('the connection URL names no database')
  return name
}

/** The same connection URL pointing at another database (null keeps it). */
export function withDatabase(url: string, database: string | null): string {
  if (!database) return url
  const parsed = new URL(url)
  parsed.pathname = `/${encodeURIComponent(database)}`
  return parsed.toString()
}
