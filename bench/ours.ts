/**
 * Our pipeline as an operator runs it: the CLI (`bin/langsight-backup.js … --local --json`) in a
 * child process, which executes the real backup or restore state machine with the real handlers.
 * Measured like the runbook's commands, plus the time of each state (from the CLI's progress
 * lines) and how many ClickHouse transfers the server saw at once (the Map's real parallelism).
 */
import { join } from 'node:path'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { type Measurement, measure } from './measure.ts'

/** This checkout; a variant may name another one (a before/after comparison on the same data). */
const thisCheckout = join(import.meta.dirname, '..')

export interface OursRun extends Measurement {
  /** Seconds per top-level state, in the order they ended. */
  states: [string, number][]
  /** Most `… FORMAT Native` queries the ClickHouse server ran at the same time. */
  maxParallelTransfers: number
}

/**
 * Seconds per state from the CLI's progress lines, `✓ ExportTables 8/8 batches · 1.2 GiB in 31.4 s`
 * (or `in 1:02` from a minute on), in the order they ended; Parallel branches' states included.
 */
export function stateTimes(stderr: string): [string, number][] {
  return [...stderr.matchAll(/^✓ (\S+).* in (?:(\d+):(\d\d)|([\d.]+) s)$/gm)].map((m): [string, number] => [
    m[1]!,
    m[4] !== undefined ? Number(m[4]) : Number(m[2]) * 60 + Number(m[3]),
  ])
}

/** Runs the CLI with `args` under `env`; throws on a non-zero exit or when `timeoutMs` passes. */
export async function runOurs(
  args: string[],
  opts: {
    env: NodeJS.ProcessEnv
    timeoutMs: number
    label: string
    /** Polled for parallel transfers; absent for chdb (the CLI's process holds the engine). */
    clickhouse?: ClickHouseConnection
    checkout?: string
  },
): Promise<OursRun> {
  let maxParallel = 0
  let polling = opts.clickhouse !== undefined
  const poll = (async () => {
    while (polling && opts.clickhouse) {
      const [row] = await opts.clickhouse
        .query<{ n: string }>(
          `SELECT count() AS n FROM system.processes WHERE query LIKE '%FORMAT Native%' AND query NOT LIKE '%system.processes%'`,
        )
        .catch(() => [{ n: '0' }])
      maxParallel = Math.max(maxParallel, Number(row?.n ?? 0))
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
  try {
    const cli = join(opts.checkout ?? thisCheckout, 'bin', 'langsight-backup.js')
    const run = await measure(process.execPath, [cli, ...args], {
      label: opts.label,
      env: opts.env,
      timeoutMs: opts.timeoutMs,
    })
    return { ...run, states: stateTimes(run.stderr), maxParallelTransfers: maxParallel }
  } finally {
    polling = false
    await poll
  }
}
