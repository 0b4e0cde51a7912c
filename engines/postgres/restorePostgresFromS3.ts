import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { openObject } from '#catalog/objectStore.ts'
import { stallLimitMs } from '#core/deadline.ts'
import { isNetworkError, PgRestoreError, StallError, TransientError } from '#core/errors.ts'
import { type RestoreNames, restoreNames } from '#core/names.ts'
import { redact } from '#core/redact.ts'
import {
  APPLICATION_NAME,
  connectPostgres,
  describePgError,
  quoteIdent,
  serverInfo,
} from './connectPostgres.ts'
import { type PgToolVersion, pgToolVersion, spawnPgTool, toolEnv } from './pgTool.ts'
import { type PostgresTarget, parsePostgresUrl, toolConnectionArgs, withDatabase } from './postgresUrl.ts'
import { progressMeter } from './progressMeter.ts'

export interface RestoreOptions {
  url: string
  bucket: string
  key: string
  binDir?: string
  /** Fired before the Lambda timeout: kills pg_restore; the live database is left as it was. */
  signal?: AbortSignal
  /** Bytes read from S3 so far, every few MiB and once at the end. */
  onProgress?: (bytes: number) => void
}

export interface RestoreResult {
  database: string
  /** The kept copy of the database the restore replaced, or null if there was none. */
  previousDatabase: string | null
  /** Tables (ordinary and partitioned) in the restored database, outside the system schemas. */
  tables: number
}

/** What a replacement keeps of the live database: its encoding, locale and, when we may, its owner. */
interface LiveDatabase {
  encoding: string
  collate: string
  ctype: string
  provider: string
  /** ICU or builtin locale; the catalog column was renamed in PostgreSQL 17, hence the jsonb. */
  locale: string | null
  owner: string
  canOwn: boolean
}

/** How often the swap is tried when a client reconnects to the live database between terminate and rename. */
const SWAP_ATTEMPTS = 3

/**
 * Streams s3://bucket/key into pg_restore and swaps the result in place of the URL's database.
 * The dump is restored into a fresh `<db>__lsb_restoring` (a leftover from a failed attempt is
 * dropped first); only when pg_restore exits 0 are the other sessions of `<db>` terminated and, in
 * one transaction, `<db>` renamed to `<db>__lsb_previous` (an older one is dropped) and the
 * restored database renamed to `<db>`. On any failure the restoring database is dropped, the live
 * one is untouched, and PgRestoreError carries pg_restore's (redacted) stderr.
 */
export async function restorePostgresFromS3(options: RestoreOptions): Promise<RestoreResult> {
  const target = parsePostgresUrl(options.url)
  const names = restoreNames(target.database)
  const source = `s3://${options.bucket}/${options.key}`
  const tool = await pgToolVersion('pg_restore', options.binDir)
  const admin = await connectPostgres(withDatabase(target, 'postgres'))
  const run = async (what: string, sql: string, params: unknown[] = []) => {
    try {
      return await admin.query(sql, params)
    } catch (error) {
      throw new PgRestoreError(
        `restore of ${source} into ${target.location}: cannot ${what}: ${describePgError(error)}`,
        { cause: error },
      )
    }
  }
  try {
    const { serverMajor } = await serverInfo(admin, 'postgres')
    const drop = (name: string) =>
      serverMajor >= 13
        ? run(`drop database ${name}`, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)
        : terminateSessions(run, name).then(() =>
            run(`drop database ${name}`, `DROP DATABASE IF EXISTS ${quoteIdent(name)}`),
          )
    const live = await describeLiveDatabase(run, names.live)
    await drop(names.restoring)
    await run(`create database ${names.restoring}`, createDatabaseSql(admin, names.restoring, live))
    try {
      const restoring = withDatabase(target, names.restoring)
      await streamIntoPgRestore(tool, restoring, source, options, run)
      const tables = await countTables(restoring)
      if (live) await drop(names.previous)
      await swapIn(run, names, live !== undefined)
      return { database: names.live, previousDatabase: live ? names.previous : null, tables }
    } catch (error) {
      // a session of the restoring database may still be closing: a few tries, then the next
      // restore drops it first anyway
      for (let attempt = 0; attempt < 3; attempt++) {
        if (
          await drop(names.restoring).then(
            () => true,
            () => false,
          )
        )
          break
        await sleep(250)
      }
      throw error
    }
  } finally {
    await admin.end().catch(() => {})
  }
}

type Run = (what: string, sql: string, params?: unknown[]) => Promise<pg.QueryResult>

async function describeLiveDatabase(run: Run, name: string): Promise<LiveDatabase | undefined> {
  const { rows } = await run(
    `read database ${name}`,
    `SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS "collate", d.datctype AS ctype,
            coalesce(j->>'datlocprovider', 'c') AS provider, coalesce(j->>'datlocale', j->>'daticulocale') AS locale,
            pg_get_userbyid(d.datdba) AS owner, pg_has_role(current_user, d.datdba, 'MEMBER') AS "canOwn"
       FROM pg_database d, to_jsonb(d) j WHERE d.datname = $1`,
    [name],
  )
  return rows[0] as LiveDatabase | undefined
}

/** From template0 (nothing of template1's to collide with the dump), with the live database's locale. */
function createDatabaseSql(admin: pg.Client, name: string, live: LiveDatabase | undefined): string {
  const parts = [`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`]
  if (live) {
    const lit = (v: string) => admin.escapeLiteral(v)
    parts.push(`ENCODING ${lit(live.encoding)} LC_COLLATE ${lit(live.collate)} LC_CTYPE ${lit(live.ctype)}`)
    if (live.provider === 'i' && live.locale) parts.push(`LOCALE_PROVIDER icu ICU_LOCALE ${lit(live.locale)}`)
    if (live.provider === 'b' && live.locale)
      parts.push(`LOCALE_PROVIDER builtin BUILTIN_LOCALE ${lit(live.locale)}`)
    if (live.canOwn) parts.push(`OWNER ${admin.escapeIdentifier(live.owner)}`)
  }
  return parts.join(' ')
}

/**
 * Ends the other sessions of a database that we may end (a superuser: all; otherwise non-superuser
 * sessions of our roles, or any with pg_signal_backend) and returns how many others remain.
 */
async function terminateSessions(run: Run, name: string): Promise<number> {
  const { rows } = await run(
    `disconnect the sessions of ${name}`,
    `WITH s AS (
       SELECT a.pid, me.rolsuper OR (NOT coalesce(r.rolsuper, false) AND (pg_has_role(me.oid, a.usesysid, 'MEMBER')
              OR pg_has_role(me.oid, 'pg_signal_backend', 'MEMBER'))) AS may
         FROM pg_stat_activity a JOIN pg_roles me ON me.rolname = current_user LEFT JOIN pg_roles r ON r.oid = a.usesysid
        WHERE a.datname = $1 AND a.pid <> pg_backend_pid())
     SELECT count(CASE WHEN may THEN pg_terminate_backend(pid) END)::int AS ended,
            count(*) FILTER (WHERE may IS NOT TRUE)::int AS kept
       FROM s`,
    [name],
  )
  return rows[0].kept
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
      // the admin connection's own trouble fails the swap later; the step's deadline bounds the rest
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

/** pg_restore reads the object from stdin as it streams from S3: nothing is staged. */
async function streamIntoPgRestore(
  tool: PgToolVersion,
  restoring: PostgresTarget,
  source: string,
  options: RestoreOptions,
  run: Run,
): Promise<void> {
  const { signal, onProgress } = options
  const args = [
    '--no-owner',
    '--no-privileges',
    '--exit-on-error',
    '--no-password',
    ...toolConnectionArgs(restoring),
  ]
  const restore = spawnPgTool(
    tool.path,
    args,
    toolEnv(restoring, `${APPLICATION_NAME} pg_restore`, tool.path),
    {
      stdin: true,
    },
  )
  const failure = (what: string, cause?: unknown) =>
    new PgRestoreError(
      `pg_restore of ${source} into ${restoring.location} ${what}; the live database is untouched`,
      { cause },
    )
  const onAbort = () => void restore.stop()
  signal?.addEventListener('abort', onAbort, { once: true })
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
    try {
      const body = await openObject(options.bucket, options.key, signal)
      await pipeline(body, progressMeter({ onProgress }), counter, restore.child.stdin!, { signal })
    } catch (error) {
      streamError = error
    }
    const exit = streamError === undefined ? await restore.closed : await restore.stop()
    if (signal?.aborted) throw failure(`aborted (${redact(String(signal.reason))})`, streamError)
    if (stalled) {
      throw new StallError(
        `pg_restore of ${source} into ${restoring.location}: no progress between pg_restore and the server ` +
          `for ${Math.round(stallLimitMs() / 1000)} s; the live database is untouched`,
      )
    }
    // pg_restore's own complaint explains a broken pipe better than the pipe does.
    if (restore.reportedFailure(exit)) {
      const described = restore.describe(exit)
      if (LINK_LOST.test(described)) {
        throw new TransientError(
          `pg_restore of ${source} into ${restoring.location} lost its connection, ${described}; the live database is untouched`,
        )
      }
      throw failure(`failed, ${described}`, streamError)
    }
    if (streamError !== undefined) {
      const { name, message } = streamError as Error
      const what = `pg_restore of ${source} into ${restoring.location} stopped: reading the dump failed: ${redact(`${name}: ${message}`)}; the live database is untouched`
      if (streamError instanceof StallError) throw new StallError(what, { cause: streamError })
      if (isNetworkError(streamError)) throw new TransientError(what, { cause: streamError })
      throw failure(`stopped: reading the dump failed: ${redact(`${name}: ${message}`)}`, streamError)
    }
    if (restore.failed(exit)) throw failure(`failed, ${restore.describe(exit)}`)
  } finally {
    stopWatching()
    signal?.removeEventListener('abort', onAbort)
  }
}

async function countTables(restoring: PostgresTarget): Promise<number> {
  const client = await connectPostgres(restoring)
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND s.nspname NOT IN ('pg_catalog', 'information_schema')`,
    )
    return rows[0]!.n
  } finally {
    await client.end().catch(() => {})
  }
}

/**
 * Terminates the live database's sessions, then renames live → previous and restoring → live in one
 * transaction, so a failure leaves the live database where it was. A client that reconnects in
 * between makes the rename fail (55006, after PostgreSQL's own 5 s wait); the swap is tried again.
 */
async function swapIn(run: Run, names: RestoreNames, liveExists: boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const kept = liveExists ? await terminateSessions(run, names.live) : 0
    try {
      await run('begin the swap', 'BEGIN')
      if (liveExists) {
        await run(
          `rename ${names.live} to ${names.previous}`,
          `ALTER DATABASE ${quoteIdent(names.live)} RENAME TO ${quoteIdent(names.previous)}`,
        )
      }
      await run(
        `rename ${names.restoring} to ${names.live}`,
        `ALTER DATABASE ${quoteIdent(names.restoring)} RENAME TO ${quoteIdent(names.live)}`,
      )
      await run('commit the swap', 'COMMIT')
      return
    } catch (error) {
      await run('roll back the swap', 'ROLLBACK').catch(() => {})
      const code = ((error as Error).cause as { code?: string } | undefined)?.code
      // Retrying helps against clients reconnecting in between, not against sessions we may not end.
      if (code !== '55006' || attempt >= SWAP_ATTEMPTS || kept > 0) {
        if (kept === 0) throw error
        throw new PgRestoreError(
          `${(error as Error).message}; ${kept} session(s) of ${names.live} belong to roles this user may not ` +
            'disconnect (stop those clients, or restore as their owner or a member of pg_signal_backend)',
          { cause: error },
        )
      }
    }
  }
}
