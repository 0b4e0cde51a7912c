/**
 * One way to talk to ClickHouse for both engines the project runs against: a server over
 * HTTP(S) through @clickhouse/client, and chdb (ClickHouse in-process) through the same client
 * with chdb's Connection. Where chdb's Connection would buffer a whole result or turn a binary
 * body into text, its own escape hatches are used: a streaming cursor for exports and a FIFO
 * read by `INSERT … FROM INFILE` for imports.
 */
import { spawn } from 'node:child_process'
import { constants, createWriteStream } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { Readable } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { type ClickHouseClient, ClickHouseLogLevel, createClient } from '@clickhouse/client'
import type { ChdbConnection } from 'chdb/connection'
import { ClickHouseError, ConfigError } from '#core/errors.ts'
import { redact, registerSecret } from '#core/redact.ts'
import { bindQueryParams, quoteString } from './sql.ts'

export interface ClickHouseConnection {
  kind: 'http' | 'chdb'
  /** From the URL path (http) or `?database=` (chdb); default `langsight`. */
  database: string
  serverVersion(): Promise<string>
  /** Runs a query and returns its rows (JSONEachRow); `{name:Type}` placeholders bound from `params`. */
  query<T>(sql: string, params?: Record<string, unknown>): Promise<T[]>
  /** Runs a statement; `settings` apply to this statement only (HTTP) or to the session (chdb). */
  command(
    sql: string,
    params?: Record<string, unknown>,
    settings?: Record<string, string | number>,
  ): Promise<void>
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
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
/** Lambda's maximum run time: the abort signal, not a socket timer, ends long transfers. */
const REQUEST_TIMEOUT_MS = 15 * 60 * 1000

/** A ClickHouseError with a message fit for logs (no password), keeping ClickHouse's error code. */
export function clickHouseFailure(what: string, error: unknown): ClickHouseError {
  if (error instanceof ClickHouseError) return error
  const message = error instanceof Error ? error.message : String(error)
  const failure = new ClickHouseError(redact(`${what}: ${message}`), { cause: error })
  const code = (error as { code?: unknown }).code
  if (code !== undefined) Object.assign(failure, { code: String(code) })
  return failure
}

function databaseFrom(value: string | null | undefined, url: string): string {
  const database = value ? decodeURIComponent(value) : DEFAULT_DATABASE
  if (!DATABASE_NAME.test(database)) {
    throw new ConfigError(
      `ClickHouse URL ${redact(url)}: database ${JSON.stringify(database)} is not a plain name`,
    )
  }
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

interface Capabilities {
  version: string
  /** Server-side `{name:Type}` binding (absent before 19.x). */
  queryParams: boolean
  insertSettings: Record<string, 0 | 1>
}

/** What the engine supports that the adapter needs to know about, probed once. */
function probeCapabilities(client: ClickHouseClient, kind: 'http' | 'chdb'): () => Promise<Capabilities> {
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
      ])
      const insertSettings: Record<string, 0 | 1> = {}
      if (settings.has('insert_allow_materialized_columns'))
        insertSettings.insert_allow_materialized_columns = 1
      // Newer servers collapse rows of a block on insert into Replacing/Summing/… tables: not for a restore.
      if (settings.has('optimize_on_insert')) insertSettings.optimize_on_insert = 0
      return { version, queryParams, insertSettings }
    })()
    probed.catch(() => {
      probed = undefined
    })
    return probed
  }
}

/** Runs the work it is given one at a time, in order. */
function mutex(): <T>(work: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve()
  return (work) => {
    const run = tail.then(work, work)
    tail = run.catch(() => {})
    return run
  }
}

async function runText<T>(
  capabilities: () => Promise<Capabilities>,
  sql: string,
  params: Record<string, unknown> | undefined,
  run: (query: string, queryParams: Record<string, unknown> | undefined) => Promise<T>,
): Promise<T> {
  const { queryParams } = await capabilities()
  return queryParams ? run(sql, params) : run(bindQueryParams(sql, params), undefined)
}

async function connectHttp(url: string, parsed: URL): Promise<ClickHouseConnection> {
  const database = databaseFrom(parsed.pathname.replace(/^\//, ''), url)
  const client = createClient({
    url: `${parsed.protocol}//${parsed.host}`,
    username: decodeURIComponent(parsed.username) || 'default',
    password: decodeURIComponent(parsed.password),
    // every statement names its database: the session stays on the server's default database,
    // so a database that does not exist yet (a restore target) is no error
    request_timeout: REQUEST_TIMEOUT_MS,
    // the client would log each failed query with its text; our errors say what failed, redacted
    log: { level: ClickHouseLogLevel.OFF },
  })
  const capabilities = probeCapabilities(client, 'http')
  const where = `ClickHouse ${redact(url)}`
  const connection: ClickHouseConnection = {
    kind: 'http',
    database,
    serverVersion: async () => (await capabilities()).version,
    query: async <T>(sql: string, params?: Record<string, unknown>) => {
      try {
        return await runText(capabilities, sql, params, async (query, query_params) =>
          (await client.query({ query, query_params, format: 'JSONEachRow' })).json<T>(),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    command: async (sql, params, settings) => {
      try {
        await runText(capabilities, sql, params, (query, query_params) =>
          client.command({ query, query_params, clickhouse_settings: settings }),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    exportNative: async (sql, params, signal) => {
      try {
        const result = await runText(capabilities, sql, params, (query, query_params) =>
          client.exec({ query: `${query}\nFORMAT Native`, query_params, abort_signal: signal }),
        )
        return result.stream
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    insertNative: async (qualifiedTable, source, signal) => {
      try {
        const { insertSettings } = await capabilities()
        const result = await client.exec({
          query: `INSERT INTO ${qualifiedTable} FORMAT Native`,
          values: source,
          clickhouse_settings: insertSettings,
          abort_signal: signal,
        })
        result.stream.resume()
        await finished(result.stream)
      } catch (error) {
        source.destroy()
        throw clickHouseFailure(`${where}: insert into ${qualifiedTable}`, error)
      }
    },
    close: () => client.close(),
  }
  await connection.serverVersion().catch((error) => {
    void client.close()
    throw clickHouseFailure(`${where} is not reachable`, error)
  })
  return connection
}

/** Runs `mkfifo <path>` (argv, no shell). */
function makeFifo(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('mkfifo', ['-m', '600', path], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new ClickHouseError(`mkfifo exited ${code}: ${stderr.trim()}`)),
    )
  })
}

/**
 * Streams `source` into chdb through a FIFO read by `INSERT … FROM INFILE`: chdb parses the
 * Native body itself and nothing is staged on disk. Opening a FIFO blocks until both ends are
 * open, so each side must be sure the other is never left waiting in open().
 */
async function insertThroughFifo(
  conn: ChdbConnection,
  qualifiedTable: string,
  settings: Record<string, 0 | 1>,
  source: Readable,
  signal?: AbortSignal,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lsb-chdb-fifo-'))
  const fifo = join(dir, 'body.native')
  try {
    await makeFifo(fifo)
    const settingsClause = Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join(', ')
    const sql = `INSERT INTO ${qualifiedTable} FROM INFILE ${quoteString(fifo)} ${settingsClause ? `SETTINGS ${settingsClause} ` : ''}FORMAT Native`
    let writerOpened = false
    const writer = createWriteStream(fifo)
    writer.once('open', () => {
      writerOpened = true
    })
    const feeding = pipeline(source, writer, { signal })
    const inserting = conn.chdb.queryAsync(sql, { format: 'CSV' })
    const [fed, inserted] = await Promise.allSettled([
      // A writer destroyed before its open() returned still opens, when chdb does, and then
      // closes: chdb reads an early end of input and is never left waiting for a writer.
      feeding,
      inserting.finally(async () => {
        // chdb never opened the FIFO (the statement failed first): release our writer's open()
        if (!writerOpened) await (await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK)).close()
      }),
    ])
    // when chdb gave up first, our broken pipe is a consequence: its reason is the one to report
    const pipeClosed = (e: unknown) =>
      ['EPIPE', 'ERR_STREAM_PREMATURE_CLOSE'].includes((e as { code?: string })?.code ?? '')
    if (fed.status === 'rejected' && !(inserted.status === 'rejected' && pipeClosed(fed.reason)))
      throw fed.reason
    if (inserted.status === 'rejected') throw inserted.reason
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function connectChdb(url: string, parsed: URL): Promise<ClickHouseConnection> {
  const path = decodeURIComponent(parsed.pathname)
  if (parsed.host || !isAbsolute(path) || path.split('/').includes('..')) {
    throw new ConfigError(`chdb URL ${url}: expected chdb:///absolute/directory`)
  }
  const database = databaseFrom(parsed.searchParams.get('database'), url)
  // chdb is a native module used locally only: loaded on demand so Lambda bundles never need it.
  const { createChdbConnection } = await import('chdb/connection')
  const { drainPending } = await import('chdb')
  const conn = createChdbConnection({ path })
  const client = createClient({ connection: conn, log: { level: ClickHouseLogLevel.OFF } } as Parameters<
    typeof createClient
  >[0])
  const capabilities = probeCapabilities(client, 'chdb')
  // one FIFO insert at a time: each holds a thread-pool thread while it waits for its body
  const oneInsert = mutex()
  const where = `chdb ${path}`
  const connection: ClickHouseConnection = {
    kind: 'chdb',
    database,
    serverVersion: async () => (await capabilities()).version,
    query: async <T>(sql: string, params?: Record<string, unknown>) => {
      try {
        return await (
          await client.query({ query: sql, query_params: params, format: 'JSONEachRow' })
        ).json<T>()
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    command: async (sql, params, settings) => {
      try {
        await client.command({ query: sql, query_params: params, clickhouse_settings: settings })
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    exportNative: async (sql, params, signal) => {
      // The streaming cursor binds no parameters: values are rendered as quoted literals.
      const query = bindQueryParams(sql, params)
      // A cursor gets a session of its own on the same directory: a session runs one statement
      // at a time, and an open cursor would otherwise block every other statement (an insert
      // reading this very stream would wait forever).
      const session = createChdbConnection({ path })
      let cursor: ReturnType<ChdbConnection['chdb']['queryStream']>
      try {
        cursor = session.chdb.queryStream(query, { format: 'Native', signal })
      } catch (error) {
        await session.close()
        throw clickHouseFailure(where, error)
      }
      const chunks = async function* () {
        try {
          for await (const chunk of cursor) {
            const raw = chunk.raw()
            yield Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
          }
        } catch (error) {
          throw clickHouseFailure(where, error)
        } finally {
          cursor.cancel()
          await session.close()
        }
      }
      return Readable.from(chunks(), { objectMode: false })
    },
    insertNative: (qualifiedTable, source, signal) =>
      oneInsert(async () => {
        try {
          const { insertSettings } = await capabilities()
          await insertThroughFifo(conn, qualifiedTable, insertSettings, source, signal)
        } catch (error) {
          source.destroy()
          throw clickHouseFailure(`${where}: insert into ${qualifiedTable}`, error)
        }
      }),
    close: async () => {
      await drainPending()
      await client.close()
    },
  }
  await connection.serverVersion().catch(async (error) => {
    await connection.close()
    throw clickHouseFailure(`${where} cannot be opened`, error)
  })
  return connection
}

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
  if (parsed.protocol === 'chdb:') return connectChdb(url, parsed)
  throw new ConfigError(`ClickHouse URL ${redact(url)}: expected http(s):// or chdb:///`)
}
