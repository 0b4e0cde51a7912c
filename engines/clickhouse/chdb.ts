/**
 * chdb (ClickHouse in-process) through @clickhouse/client with chdb's Connection. Where chdb's
 * Connection would buffer a whole result or turn a binary body into text, its own escape hatches
 * are used: a streaming cursor for exports and a FIFO read by `INSERT … FROM INFILE` for imports.
 */
import { spawn } from 'node:child_process'
import { constants, createWriteStream } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ClickHouseLogLevel, createClient } from '@clickhouse/client'
import type { ChdbConnection } from 'chdb/connection'
import { ClickHouseError, ConfigError } from '#core/errors.ts'
import {
  type ClickHouseConnection,
  clickHouseFailure,
  databaseFrom,
  probeCapabilities,
} from './connection.ts'
import { bindQueryParams, quoteString } from './sql.ts'

/** Runs the work it is given one at a time, in order. */
function mutex(): <T>(work: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve()
  return (work) => {
    const run = tail.then(work, work)
    tail = run.catch(() => {})
    return run
  }
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

export async function connectChdb(url: string, parsed: URL): Promise<ClickHouseConnection> {
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
