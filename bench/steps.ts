/**
 * The memory of one step as Lambda would run it: each data-moving handler alone in a child
 * process (bench/runStep.ts), on the biggest unit of work of a backup that exists — the Postgres
 * dump, the biggest ClickHouse object exported, re-hashed and restored, the Postgres restore.
 * Restores go to scratch databases that are dropped afterwards; the live ones are not touched.
 */
import { join } from 'node:path'
import { backupIdFor } from '#core/backupKeys.ts'
import type { Manifest } from '#core/manifest.ts'
import { restoreNames } from '#core/names.ts'
import { type Measurement, measure } from './measure.ts'

const runStep = join(import.meta.dirname, 'runStep.ts')

export interface StepMeasurement extends Measurement {
  /** What the step moved, for the reader: the object and its size. */
  what: string
}

const SCRATCH = 'lsb_bench_step'

/** Runs the data-moving handlers one by one, each in its own process, and measures each. */
export async function measureSteps(opts: {
  /** The environment of the backup's own runs (its LSB_PREFIX): steps that read use it. */
  env: NodeJS.ProcessEnv
  /** A prefix of its own for the steps that write, so that the backup is left as it was. */
  scratchPrefix: string
  postgres: Manifest
  clickhouse: Manifest
  /** Drops a ClickHouse database (chdb: opened only while no step runs, one process at a time). */
  dropClickHouseDatabase: (name: string) => Promise<void>
  dropPostgresDatabase: (name: string) => Promise<void>
  timeoutMs: number
  /** Every export and load batch, each in a process of its own; else only batch 0 of each. */
  allBatches?: boolean
}): Promise<StepMeasurement[]> {
  /** A step's result: the last line of its stdout (the handler's own log lines come before it). */
  const resultOf = <T>(m: { stdout: string }): T => JSON.parse(m.stdout.trim().split('\n').at(-1)!) as T
  const step = async (fn: string, input: unknown, what: string, writes = false): Promise<StepMeasurement> => {
    const m = await measure(process.execPath, ['--import', 'tsx', runStep, fn, JSON.stringify(input)], {
      label: fn,
      env: writes ? { ...opts.env, LSB_PREFIX: opts.scratchPrefix } : opts.env,
      timeoutMs: opts.timeoutMs,
    })
    return { ...m, what }
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`
  const dump = opts.postgres.objects[0]!
  const results: StepMeasurement[] = []
  const fresh = () => {
    // a backup of its own (PlanBackup derives the id from the start time the same way)
    const startedAt = new Date().toISOString()
    return { backupId: backupIdFor(startedAt), startedAt }
  }
  results.push(await step('snapshotPostgres', fresh(), `pg_dump → ${mib(dump.bytes)}`, true))
  const listed = fresh()
  const planned = resultOf<{ batches: number[]; transfer: string }>(
    await step('listClickHouseTables', listed, 'plan', true),
  )
  // every batch when asked (the biggest item's batch is not known before), else batch 0
  const exportBatches = opts.allBatches ? planned.batches.length : 1
  for (let batch = 0; batch < exportBatches; batch++) {
    const exported = await step('exportBatch', { backupId: listed.backupId, batch, cursor: null }, '', true)
    const out = resultOf<{ bytes: number; items: number; done?: boolean }>(exported)
    results.push({
      ...exported,
      what: `batch ${batch} of ${planned.batches.length} (${planned.transfer}): ${out.items} item(s) → ${mib(out.bytes)}${out.done === false ? ' (not done: more invocations needed)' : ''}`,
    })
  }
  const biggest = [...opts.clickhouse.objects].sort((a, b) => b.bytes - a.bytes)[0]!
  results.push(
    await step(
      'verifyObject',
      { key: biggest.key, sha256: biggest.sha256, bytes: biggest.bytes },
      `${biggest.table} ${biggest.part ?? 'all'}, ${mib(biggest.bytes)}`,
    ),
  )
  const prepared = resultOf<{ targetDatabase: string; batches: number }>(
    await step(
      'prepareClickHouseRestore',
      { backupId: opts.clickhouse.backupId, targetDatabase: SCRATCH },
      'staging tables',
    ),
  )
  try {
    for (let batch = 0; batch < (opts.allBatches ? prepared.batches : 1); batch++) {
      results.push(
        await step(
          'loadClickHouseBatch',
          {
            backupId: opts.clickhouse.backupId,
            targetDatabase: prepared.targetDatabase,
            batches: prepared.batches,
            batch,
            cursor: null,
          },
          `batch ${batch} of ${prepared.batches}`,
        ),
      )
    }
  } finally {
    await opts.dropClickHouseDatabase(restoreNames(SCRATCH).staging)
  }
  try {
    results.push(
      await step(
        'loadPostgres',
        { backupId: opts.postgres.backupId, targetDatabase: SCRATCH },
        `${mib(dump.bytes)} → pg_restore`,
      ),
    )
  } finally {
    await opts.dropPostgresDatabase(`${SCRATCH}__lsb_restoring`)
    await opts.dropPostgresDatabase(SCRATCH)
    await opts.dropPostgresDatabase(`${SCRATCH}__lsb_previous`)
  }
  return results
}
