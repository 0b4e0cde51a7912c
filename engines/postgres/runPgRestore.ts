import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { openObject } from '#catalog/objectStore.ts'
import { stallLimitMs } from '#core/deadline.ts'
import { isNetworkError, PgRestoreError, StallError, TransientError } from '#core/errors.ts'
import { redact } from '#core/redact.ts'
import type { Run } from './adminSession.ts'
import { APPLICATION_NAME } from './connectPostgres.ts'
import { type PgToolVersion, spawnPgTool, toolEnv } from './pgTool.ts'
import { type PostgresTarget, toolConnectionArgs } from './postgresUrl.ts'
import { progressMeter } from './progressMeter.ts'

/** The dump to read and how to report on it. */
export interface PgRestoreSource {
  bucket: string
  key: string
  /** Fired before the Lambda timeout: kills pg_restore. */
  signal?: AbortSignal
  /** Bytes read from S3 so far, every few MiB and once at the end. */
  onProgress?: (bytes: number) => void
}

/**
 * libpq's words for a connection that broke or could not be made for a network reason: pg_restore
 * exits 1 with one of them, and a new attempt may well work (refused credentials are not among them).
 */
const LINK_LOST =
  /server closed the connection unexpectedly|could not (?:receive|send) data (?:from|to) server|connection to server .*failed: (?:Connection refused|Connection reset|timeout expired|No route to host|Network is unreachable)|SSL SYSCALL error|no connection to the server/i

/**
 * Watches the connection between pg_restore and the server, which none of our bytes pass through:
 * when every session of the restoring database has been waiting for its client (a stalled link
 * either way: the server waits for data that the network holds, or pg_restore for an answer that
 * never comes) for the stall limit while pg_restore took no byte of the dump, `onStall` is called.
 * Work the server is doing (an index build, a lock wait) is not waiting for the client.
 */
function watchPgRestoreLink(run: Run, database: string, fed: () => number, onStall: () => void): () => void {
  const limitMs = stallLimitMs()
  const everyMs = Math.min(1000, Math.max(200, limitMs / 10))
  let since: number | undefined
  let fedSince = 0
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const tick = async () => {
    const bytes = fed()
    let waiting = false
    try {
      const { rows } = await run(
        `watch the sessions of ${database}`,
        `SELECT count(*)::int AS sessions, count(*) FILTER (WHERE wait_event_type = 'Client')::int AS waiting
           FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [database],
      )
      waiting = rows[0].sessions > 0 && rows[0].waiting === rows[0].sessions
    } catch {
      // the admin connection's own trouble fails the load's next statement; the step's deadline bounds the rest
    }
    if (stopped) return
    const now = performance.now()
    if (!waiting) since = undefined
    else if (since === undefined || bytes !== fedSince) [since, fedSince] = [now, bytes]
    else if (now - since >= limitMs) return onStall()
    timer = setTimeout(tick, everyMs)
  }
  timer = setTimeout(tick, everyMs)
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}

/** A local copy of the dump for `pg_restore --jobs` (custom format needs a seekable file for -j). */
export interface PgRestoreFile {
  path: string
  jobs: number
}

/**
 * The error for a dump that could not be read from S3 (or copied from it): a StallError or a
 * TransientError when another attempt may work, else a PgRestoreError. `what` says where.
 */
export function dumpReadFailure(what: string, error: unknown): Error {
  const { name, message } = error as Error
  const text = `${what}: reading the dump failed: ${redact(`${name}: ${message}`)}; the live database is untouched`
  if (error instanceof StallError) return new StallError(text, { cause: error })
  if (isNetworkError(error)) return new TransientError(text, { cause: error })
  return new PgRestoreError(text, { cause: error })
}

/**
 * pg_restore into `restoring`: from stdin as the object streams from S3 (nothing is staged), or,
 * given `file`, with `--jobs` from that local copy. `run` (an admin session) watches the link
 * between pg_restore and the server. A failure is a PgRestoreError with pg_restore's (redacted)
 * stderr, a StallError or a TransientError; the caller drops the database and removes the file.
 */
export async function runPgRestore(
  tool: PgToolVersion,
  restoring: PostgresTarget,
  options: PgRestoreSource,
  run: Run,
  file?: PgRestoreFile,
): Promise<void> {
  const source = `s3://${options.bucket}/${options.key}`
  const { signal, onProgress } = options
  const args = [
    '--no-owner',
    '--no-privileges',
    '--exit-on-error',
    '--no-password',
    ...(file ? [`--jobs=${file.jobs}`] : []),
    ...toolConnectionArgs(restoring),
    ...(file ? [file.path] : []),
  ]
  const restore = spawnPgTool(
    tool.path,
    args,
    toolEnv(restoring, `${APPLICATION_NAME} pg_restore`, tool.path),
    { stdin: !file },
  )
  const what = file
    ? `pg_restore --jobs=${file.jobs} of ${source} (copied to ${file.path}) into ${restoring.location}`
    : `pg_restore of ${source} into ${restoring.location}`
  const failure = (how: string, cause?: unknown) =>
    new PgRestoreError(`${what} ${how}; the live database is untouched`, { cause })
  const onAbort = () => void restore.stop()
  signal?.addEventListener('abort', onAbort, { once: true })
  if (signal?.aborted) onAbort()
  // pg_restore talks to the server itself: a stalled connection there would hold it forever
  let fed = 0
  let stalled = false
  const stopWatching = watchPgRestoreLink(
    run,
    restoring.database,
    () => fed,
    () => {
      stalled = true
      void restore.stop()
    },
  )
  const counter = new Transform({
    transform(chunk: Buffer, _e, callback) {
      fed += chunk.length
      callback(null, chunk)
    },
  })
  try {
    let streamError: unknown
    if (!file) {
      try {
        const body = await openObject(options.bucket, options.key, signal)
        await pipeline(body, progressMeter({ onProgress }), counter, restore.child.stdin!, { signal })
      } catch (error) {
        streamError = error
      }
    }
    const exit = streamError === undefined ? await restore.closed : await restore.stop()
    if (signal?.aborted) throw failure(`aborted (${redact(String(signal.reason))})`, streamError)
    if (stalled) {
      throw new StallError(
        `${what}: no progress between pg_restore and the server for ${Math.round(stallLimitMs() / 1000)} s; ` +
          'the live database is untouched',
      )
    }
    // pg_restore's own complaint explains a broken pipe better than the pipe does.
    if (restore.reportedFailure(exit)) {
      const described = restore.describe(exit)
      if (LINK_LOST.test(described)) {
        throw new TransientError(`${what} lost its connection, ${described}; the live database is untouched`)
      }
      throw failure(`failed, ${described}`, streamError)
    }
    if (streamError !== undefined) throw dumpReadFailure(`${what} stopped`, streamError)
    if (restore.failed(exit)) throw failure(`failed, ${restore.describe(exit)}`)
  } finally {
    stopWatching()
    signal?.removeEventListener('abort', onAbort)
  }
}
