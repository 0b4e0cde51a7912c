/**
 * chdb (ClickHouse in-process) through @clickhouse/client with chdb's Connection. Where chdb's
 * Connection would buffer a whole result or turn a binary body into text, its own escape hatches
 * are used: a streaming cursor for exports and a FIFO read by `INSERT … FROM INFILE` for imports.
 *
 * chdb runs each statement on a thread of libuv's pool (4 threads by default), and an
 * `INSERT … FROM INFILE <fifo>` holds its thread until the body has been written to the end. The
 * body's writing must therefore never need that pool: the FIFO is opened without blocking and
 * written through the event loop (a net.Socket), and every statement of one chdb directory goes
 * through one queue for the whole process ({@link engineQueue}), so at most one pool thread ever
 * waits inside chdb. Without both, parallel restore items (each with a connection of its own)
 * filled the pool with inserts waiting for bodies whose writes, and gunzip, were queued behind
 * them: a hang at 0% CPU.
 */
import { spawn } from 'node:child_process'
import { constants, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { ClickHouseLogLevel, createClient } from '@clickhouse/client'
import type { ChdbConnection } from 'chdb/connection'
import { stallLimitMs } from '#core/deadline.ts'
import { ClickHouseError, ConfigError, StallError } from '#core/errors.ts'
import {
  type Capabilities,
  type ClickHouseConnection,
  clickHouseFailure,
  databaseFrom,
  probeCapabilities,
} from './connection.ts'
import { bindQueryParams, quoteString } from './sql.ts'

type Queue = <T>(work: () => Promise<T>) => Promise<T>

/** Runs the work it is given one at a time, in order. */
function mutex(): Queue {
  let tail: Promise<unknown> = Promise.resolve()
  return (work) => {
    const run = tail.then(work, work)
    tail = run.catch(() => {})
    return run
  }
}

const queues = new Map<string, Queue>()
const probes = new Map<string, () => Promise<Capabilities>>()

/**
 * The one queue of a chdb directory in this process, whichever connection asks: every statement
 * (and an export until its stream ends) runs alone.
 */
export function engineQueue(path: string): Queue {
  let queue = queues.get(path)
  if (!queue) {
    queue = mutex()
    queues.set(path, queue)
  }
  return queue
}

const FIFO_DIR_PREFIX = 'lsb-chdb-fifo-'

/** FIFO directories left by processes that died mid-insert (the name carries the pid): removed. */
function sweepDeadFifoDirs(): void {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(/^lsb-chdb-fifo-(\d+)-/.exec(name)?.[1])
    if (!pid || pid === process.pid) continue
    try {
      process.kill(pid, 0)
    } catch {
      rmSync(join(tmpdir(), name), { recursive: true, force: true })
    }
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
 * Resolves once a descriptor of this process other than ours refers to `fifo`: chdb runs in
 * this process, so its open() shows in /proc/self/fd. Gives up when the statement has settled
 * (it failed before opening) and after the stall limit.
 */
async function openedByChdb(
  fifo: string,
  statementSettled: () => boolean,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + stallLimitMs()
  for (;;) {
    let links = 0
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`) === fifo) links++
      } catch {
        // closed meanwhile
      }
    }
    if (links >= 2 || statementSettled()) return
    if (signal?.aborted) throw signal.reason
    if (Date.now() > deadline) throw new StallError(`chdb did not open ${fifo} within the stall limit`)
    await sleep(2)
  }
}

/**
 * Streams `source` into chdb through a FIFO read by `INSERT … FROM INFILE`: chdb parses the
 * Native body itself and nothing is staged on disk. Our end is opened read-write and
 * non-blocking (on Linux that returns at once, with or without a reader) and written through a
 * net.Socket, so neither the open nor any write waits on the thread pool chdb's insert holds.
 */
async function insertThroughFifo(
  conn: ChdbConnection,
  qualifiedTable: string,
  settings: Record<string, 0 | 1>,
  source: Readable,
  signal?: AbortSignal,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), `${FIFO_DIR_PREFIX}${process.pid}-`))
  const fifo = join(dir, 'body.native')
  try {
    await makeFifo(fifo)
    const settingsClause = Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join(', ')
    const sql = `INSERT INTO ${qualifiedTable} FROM INFILE ${quoteString(fifo)} ${settingsClause ? `SETTINGS ${settingsClause} ` : ''}FORMAT Native`
    // O_RDWR: our open never waits for a reader, and chdb's open for reading finds a writer.
    const writer = new Socket({
      fd: openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK),
      readable: false,
    })
    let settled = false
    const inserting = conn.chdb
      .queryAsync(sql, { format: 'CSV' })
      .catch((error: unknown) => {
        // we hold a read end too: without this, a body bigger than the pipe would wait forever
        writer.destroy()
        throw error
      })
      .finally(() => {
        settled = true
      })
    // Closing our end is chdb's end of input, but only once chdb has opened the FIFO: closed
    // before, the pipe's bytes are gone and chdb's open() would wait for a writer for good.
    const feeding = (async () => {
      await openedByChdb(fifo, () => settled, signal)
      await pipeline(source, writer, { signal })
    })().catch((error: unknown) => {
      writer.destroy()
      source.destroy()
      throw error
    })
    const [fed, inserted] = await Promise.allSettled([feeding, inserting])
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
  sweepDeadFifoDirs()
  // chdb is a native module used locally only: loaded on demand so Lambda bundles never need it.
  const { createChdbConnection } = await import('chdb/connection')
  const { drainPending } = await import('chdb')
  const conn = createChdbConnection({ path })
  const client = createClient({ connection: conn, log: { level: ClickHouseLogLevel.OFF } } as Parameters<
    typeof createClient
  >[0])
  const queue = engineQueue(path)
  // the probe's statements wait in the queue like any other
  // probed once per directory and process: a connection opened while a long statement holds the
  // engine (followed by a later invocation) must not wait behind it just to learn the version
  let capabilities = probes.get(path)
  if (!capabilities) {
    capabilities = probeCapabilities(
      { query: (params) => queue(() => client.query(params)) } as typeof client,
      'chdb',
    )
    probes.set(path, capabilities)
  }
  const where = `chdb ${path}`
  const connection: ClickHouseConnection = {
    kind: 'chdb',
    database,
    serverVersion: async () => (await capabilities()).version,
    insertSettings: async () => (await capabilities()).insertSettings,
    query: async <T>(sql: string, params?: Record<string, unknown>) => {
      try {
        return await queue(async () =>
          (await client.query({ query: sql, query_params: params, format: 'JSONEachRow' })).json<T>(),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    command: async (sql, params, settings, options) => {
      if (options?.longRunning) {
        // a session of its own, closed when the statement ends: it outlives this connection
        // (closed at the end of the invocation that started it; the next one follows it)
        const session = createChdbConnection({ path })
        const own = createClient({
          connection: session,
          log: { level: ClickHouseLogLevel.OFF },
        } as Parameters<typeof createClient>[0])
        try {
          await queue(() => own.command({ query: sql, query_params: params, clickhouse_settings: settings }))
          return
        } catch (error) {
          throw clickHouseFailure(where, error)
        } finally {
          await session.close()
        }
      }
      try {
        await queue(() =>
          client.command({
            query: sql,
            query_params: params,
            clickhouse_settings: settings,
            query_id: options?.queryId,
          }),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    exportNative: async (sql, params, signal) => {
      // The streaming cursor binds no parameters: values are rendered as quoted literals.
      const query = bindQueryParams(sql, params)
      // A cursor has a session of its own and holds the engine's queue until its stream ends or
      // is destroyed: consume or destroy the stream before the next statement on this engine.
      let release!: () => void
      const held = new Promise<void>((resolve) => {
        release = resolve
      })
      await new Promise<void>((entered) => {
        void queue(() => {
          entered()
          return held
        })
      })
      const session = createChdbConnection({ path })
      let cursor: ReturnType<ChdbConnection['chdb']['queryStream']>
      try {
        cursor = session.chdb.queryStream(query, { format: 'Native', signal })
      } catch (error) {
        await session.close()
        release()
        throw clickHouseFailure(where, error)
      }
      let closed: Promise<void> | undefined
      const cleanUp = () => {
        closed ??= (async () => {
          cursor.cancel()
          await session.close()
        })().finally(release)
        return closed
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
          await cleanUp()
        }
      }
      const stream = Readable.from(chunks(), { objectMode: false })
      // a stream destroyed before its first read never runs the generator's finally
      stream.once('close', () => void cleanUp())
      return stream
    },
    insertNative: async (qualifiedTable, source, signal) => {
      try {
        const { insertSettings } = await capabilities() // before the queue: the probe queues too
        await queue(() => insertThroughFifo(conn, qualifiedTable, insertSettings, source, signal))
      } catch (error) {
        source.destroy()
        throw clickHouseFailure(`${where}: insert into ${qualifiedTable}`, error)
      }
    },
    // in-process: a statement of this engine runs in this process or not at all (longStatement.ts
    // follows its own); one started by a process that is gone is gone with it
    isRunning: async () => false,
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
