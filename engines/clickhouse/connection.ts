/**
 * How the adapter talks to ClickHouse, whichever engine is behind it: the interface, and what
 * both transports share (errors, the database of a URL, the capabilities probe). The transports
 * are `http.ts` (a server, through @clickhouse/client) and `chdb.ts` (ClickHouse in-process);
 * `connectClickHouse.ts` picks one from the URL.
 */
import type { Readable } from 'node:stream'
import type { ClickHouseClient } from '@clickhouse/client'
import { ClickHouseError } from '#core/errors.ts'
import { assertConfiguredDatabase } from '#core/names.ts'
import { redact } from '#core/redact.ts'
import { bindQueryParams, quoteString } from './sql.ts'

export interface ClickHouseConnection {
  kind: 'http' | 'chdb'
  /** From the URL path (http) or `?database=` (chdb); default `langsight`. */
  database: string
  serverVersion(): Promise<string>
  /** Runs a query and returns its rows (JSONEachRow); `{name:Type}` placeholders bound from `params`. */
  query<T>(sql: string, params?: Record<string, unknown>): Promise<T[]>
  /**
   * Runs a statement; `settings` apply to this statement only (HTTP) or to the session (chdb).
   * `longRunning` statements have no request timeout (a server-side export runs for as long as
   * the table takes; it is followed by query id, see longStatement.ts).
   */
  command(
    sql: string,
    params?: Record<string, unknown>,
    settings?: Record<string, string | number>,
    options?: { queryId?: string; longRunning?: boolean },
  ): Promise<void>
  /** Settings every restore insert runs with (see probeCapabilities). */
  insertSettings(): Promise<Record<string, 0 | 1>>
  /** Whether a statement with this query id is running on the server. */
  isRunning(queryId: string): Promise<boolean>
  /** Streams the result of a SELECT (without a FORMAT clause) in Native format. Consume it or destroy it. */
  exportNative(sql: string, params?: Record<string, unknown>, signal?: AbortSignal): Promise<Readable>
  /**
   * Streams a Native body into `qualifiedTable` (already quoted, see `qualifiedName`). MATERIALIZED
   * columns in the body are written as they are, and blocks are not collapsed on insert, so the
   * table receives exactly the rows of the body.
   */
  insertNative(qualifiedTable: string, source: Readable, signal?: AbortSignal): Promise<void>
  close(): Promise<void>
}

export const DEFAULT_DATABASE = 'langsight'
/** A ClickHouseError with a message fit for logs (no password), keeping ClickHouse's error code. */
export function clickHouseFailure(what: string, error: unknown): ClickHouseError {
  if (error instanceof ClickHouseError) return error
  const message = error instanceof Error ? error.message : String(error)
  const failure = new ClickHouseError(redact(`${what}: ${message}`), { cause: error })
  const code = (error as { code?: unknown }).code
  if (code !== undefined) Object.assign(failure, { code: String(code) })
  return failure
}

/** The database a ClickHouse URL names, checked like every database name (`core/names.ts`). */
export function databaseFrom(value: string | null | undefined, url: string): string {
  const database = value ? decodeURIComponent(value) : DEFAULT_DATABASE
  assertConfiguredDatabase(database, `ClickHouse URL ${redact(url)}`)
  return database
}

/** Settings that exist only on newer servers, asked for once per connection. */
async function knownSettings(client: ClickHouseClient, names: string[]): Promise<Set<string>> {
  const result = await client.query({
    query: `SELECT name FROM system.settings WHERE name IN (${names.map(quoteString).join(', ')})`,
    format: 'JSONEachRow',
  })
  return new Set((await result.json<{ name: string }>()).map((r) => r.name))
}

export interface Capabilities {
  version: string
  /** Server-side `{name:Type}` binding (absent before 19.x). */
  queryParams: boolean
  insertSettings: Record<string, 0 | 1>
}

/** What the engine supports that the adapter needs to know about, probed once. */
export function probeCapabilities(
  client: ClickHouseClient,
  kind: 'http' | 'chdb',
): () => Promise<Capabilities> {
  let probed: Promise<Capabilities> | undefined
  return () => {
    probed ??= (async () => {
      const rows = await (
        await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })
      ).json<{
        v: string
      }>()
      const version = rows[0]?.v ?? 'unknown'
      let queryParams = true
      if (kind === 'http' && Number(version.split('.')[0]) < 20) {
        queryParams = await client
          .query({ query: 'SELECT {p:UInt8} AS p', format: 'JSONEachRow', query_params: { p: 1 } })
          .then(
            (r) => r.json().then(() => true),
            () => false,
          )
      }
      const settings = await knownSettings(client, [
        'optimize_on_insert',
        'insert_allow_materialized_columns',
        'max_partitions_per_insert_block',
      ])
      const insertSettings: Record<string, 0 | 1> = {}
      if (settings.has('insert_allow_materialized_columns'))
        insertSettings.insert_allow_materialized_columns = 1
      // Newer servers collapse rows of a block on insert into Replacing/Summing/… tables: not for a restore.
      if (settings.has('optimize_on_insert')) insertSettings.optimize_on_insert = 0
      // A restore loads a table whatever its partitioning (a year of daily partitions in one
      // object), for this statement only: the server's default stays for everyone else.
      if (settings.has('max_partitions_per_insert_block')) insertSettings.max_partitions_per_insert_block = 0
      return { version, queryParams, insertSettings }
    })()
    probed.catch(() => {
      probed = undefined
    })
    return probed
  }
}

/** Binds `{name:Type}` parameters on the client where the server cannot (before 19.x). */
export async function runText<T>(
  capabilities: () => Promise<Capabilities>,
  sql: string,
  params: Record<string, unknown> | undefined,
  run: (query: string, queryParams: Record<string, unknown> | undefined) => Promise<T>,
): Promise<T> {
  const { queryParams } = await capabilities()
  return queryParams ? run(sql, params) : run(bindQueryParams(sql, params), undefined)
}
