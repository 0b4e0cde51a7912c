/**
 * A statement that may outlive the invocation that started it (a server-side export of a big
 * table): started with its own query id, awaited until the step's deadline, then left running
 * and followed by the next invocation, which the state machine loops into. The server does the
 * work either way; nothing here holds bytes.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { ClickHouseConnection } from './connection.ts'

/** Statements of this process still running, by query id: a warm container (or the local runner) awaits its own. */
const inFlight = new Map<string, Promise<void>>()
/** How statements of this process ended after their invocation had moved on: the next one reports it. */
const failures = new Map<string, unknown>()

export type Followed = 'finished' | 'running' | 'gone'

/** Resolves `'timeout'` at `untilMs`, or with the promise's outcome before. */
async function until<T>(promise: Promise<T>, untilMs: number): Promise<T | 'timeout'> {
  const wait = Math.max(0, untilMs - Date.now())
  const timer = new AbortController()
  try {
    return await Promise.race([promise, sleep(wait, 'timeout' as const, { signal: timer.signal })])
  } finally {
    timer.abort()
  }
}

/**
 * Starts `sql` as `queryId` (unless `started`, when an earlier invocation did) and waits for it
 * until `untilMs`:
 * - `finished`: it ended in this process without error (an error is thrown as it is);
 * - `running`: still running at the deadline, in this process or on the server;
 * - `gone`: started elsewhere and no longer running: whether it succeeded is for the caller to
 *   check from what it should have written.
 */
export async function followStatement(
  conn: ClickHouseConnection,
  opts: {
    sql: string
    queryId: string
    started: boolean
    settings?: Record<string, string | number>
    untilMs: number
  },
): Promise<Followed> {
  let running = inFlight.get(opts.queryId)
  if (!running && !opts.started) {
    // settings in the statement itself: they hold for it alone on every transport (chdb's
    // per-call settings would stay on its session)
    const settings = Object.entries(opts.settings ?? {}).map(([k, v]) => `${k} = ${v}`)
    const sql = settings.length ? `${opts.sql} SETTINGS ${settings.join(', ')}` : opts.sql
    running = conn.command(sql, undefined, undefined, { queryId: opts.queryId, longRunning: true })
    inFlight.set(opts.queryId, running)
    running.then(
      () => inFlight.delete(opts.queryId),
      (error: unknown) => {
        inFlight.delete(opts.queryId)
        failures.set(opts.queryId, error)
      },
    )
  }
  const failed = failures.get(opts.queryId)
  if (failed !== undefined) {
    failures.delete(opts.queryId)
    throw failed
  }
  if (running) {
    const outcome = await until(running, opts.untilMs)
    if (outcome === 'timeout') return 'running'
    failures.delete(opts.queryId)
    return 'finished'
  }
  while (Date.now() < opts.untilMs) {
    if (!(await conn.isRunning(opts.queryId))) return 'gone'
    await sleep(Math.min(2000, Math.max(0, opts.untilMs - Date.now())))
  }
  return 'running'
}
