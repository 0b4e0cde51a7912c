import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { drillRecordKeys, writeDrillRecord } from '#catalog/drillRecords.ts'
import { drillOfKey, type Engine } from '#core/backupKeys.ts'
import { requireSecret } from '#core/config.ts'
import { DrillMismatchError, UntrustedInputError } from '#core/errors.ts'
import { logger } from '#core/logger.ts'
import { recordDrill } from '#core/metrics.ts'
import { isDrillDatabase, restoreNames } from '#core/names.ts'
import { backupIdSchema, databaseNameSchema, engineSchema, executionFields } from '#core/payloads.ts'
import { redact } from '#core/redact.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { quoteIdentifier } from '#engines/clickhouse/sql.ts'
import { openAdminSession } from '#engines/postgres/adminSession.ts'
import { parsePostgresUrl } from '#engines/postgres/postgresUrl.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  drill: z.object({
    drillId: backupIdSchema,
    /** One per engine drilled: the backup and its scratch database. */
    engines: z.array(
      z.object({ engine: engineSchema, backupId: backupIdSchema, database: databaseNameSchema }),
    ),
  }),
  /** CheckFingerprints's results; absent on the failure path. */
  results: z
    .array(
      z.object({
        engine: engineSchema,
        backupId: backupIdSchema,
        passed: z.boolean(),
        mismatched: z.array(z.string()),
      }),
    )
    .optional(),
  /** On the failure path: where the drill failed and why. */
  failedState: z.string().optional(),
  failure: z.object({ Error: z.string().optional(), Cause: z.string().optional() }).optional(),
  ...executionFields,
})

/** A scratch database and its working copies; anything that is not a drill's name is refused. */
function scratchNames(database: string): string[] {
  if (!isDrillDatabase(database)) {
    throw new UntrustedInputError(
      `${JSON.stringify(database)} is not a drill's scratch database: not dropped`,
    )
  }
  const { live, restoring, staging, previous } = restoreNames(database)
  return [live, restoring, staging, previous]
}

async function dropPostgres(database: string): Promise<void> {
  const names = scratchNames(database)
  const admin = await openAdminSession(
    parsePostgresUrl(await requireSecret('LSB_POSTGRES_URL')),
    `drill ${database}`,
  )
  try {
    for (const name of names) await admin.drop(name)
  } finally {
    await admin.end()
  }
}

async function dropClickHouse(database: string): Promise<void> {
  const names = scratchNames(database)
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  try {
    for (const name of names) await conn.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(name)}`)
  } finally {
    await conn.close()
  }
}

/** Whether this drill already stored a record for the backup (CheckFingerprints got that far). */
async function recorded(engine: Engine, backupId: string, drillId: string): Promise<boolean> {
  const keys = await drillRecordKeys(backupStore(), engine, backupId)
  return keys.some((key) => drillOfKey(key)?.drillId === drillId)
}

/**
 * The end of every drill, passed or not: drops its scratch databases (only names a drill makes),
 * records a drill that failed before comparing, and then fails the execution on a mismatch,
 * naming each table.
 */
export async function run({
  drill,
  results,
  failedState,
  failure,
  startedAt,
  executionId,
}: z.output<typeof input>) {
  logger.appendKeys({ drillId: drill.drillId })
  for (const target of drill.engines) {
    const { engine } = target
    await (engine === 'postgres' ? dropPostgres(target.database) : dropClickHouse(target.database))
    logger.info('drill databases dropped', { engine, database: target.database })
    if (failure && !(await recorded(engine, target.backupId, drill.drillId))) {
      const finishedAt = new Date()
      const seconds = (finishedAt.getTime() - Date.parse(startedAt)) / 1000
      recordDrill(engine, { succeeded: false, mismatchedTables: 0, durationSeconds: seconds })
      await writeDrillRecord(backupStore(), {
        drillId: drill.drillId,
        engine,
        backupId: target.backupId,
        executionId,
        database: target.database,
        passed: false,
        fingerprints: 'none',
        startedAt,
        finishedAt: finishedAt.toISOString(),
        seconds,
        tables: [],
        failedState: failedState ?? 'unknown',
        error: redact(`${failure.Error ?? 'Error'}: ${failure.Cause ?? ''}`).slice(0, 2000),
      })
    }
  }
  const failed = (results ?? []).filter((r) => !r.passed)
  if (failed.length > 0) {
    throw new DrillMismatchError(
      failed
        .map(
          (r) => `${r.engine} backup ${r.backupId} does not restore as backed up: ${r.mismatched.join('; ')}`,
        )
        .join(' | '),
    )
  }
  return {
    drillId: drill.drillId,
    passed: failure === undefined,
    engines: drill.engines.map((e) => e.engine),
  }
}

export const handler = stateHandler('FinishDrill', input, run)
