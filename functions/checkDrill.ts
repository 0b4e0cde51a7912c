import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { type TableCheck, writeDrillRecord } from '#catalog/drillRecords.ts'
import { requireSecret } from '#core/config.ts'
import {
  compareFingerprints,
  expectedFingerprints,
  type TableFingerprint,
  type TimedFingerprint,
} from '#core/fingerprint.ts'
import { logger } from '#core/logger.ts'
import { recordDrill } from '#core/metrics.ts'
import { restoreNames } from '#core/names.ts'
import { backupIdSchema, databaseNameSchema, engineSchema, executionFields } from '#core/payloads.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { storedColumnTypes } from '#engines/clickhouse/describeDatabase.ts'
import { fingerprintOf } from '#engines/clickhouse/fingerprint.ts'
import { qualifiedName } from '#engines/clickhouse/sql.ts'
import { fingerprintDatabase } from '#engines/postgres/fingerprint.ts'
import { parsePostgresUrl, withDatabase } from '#engines/postgres/postgresUrl.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  drillId: backupIdSchema,
  engine: engineSchema,
  backupId: backupIdSchema,
  /** The drill's scratch database; the load is in its working database (`__lsb_restoring`, `__lsb_restore`). */
  database: databaseNameSchema,
  ...executionFields,
})

/** Every table of the Postgres copy the drill loaded (`<scratch>__lsb_restoring`), each timed. */
async function postgresTables(database: string, mode: 'full' | 'rows', ctx: StateContext) {
  const url = await requireSecret('LSB_POSTGRES_URL')
  return fingerprintDatabase(withDatabase(parsePostgresUrl(url), restoreNames(database).restoring), mode, ctx)
}

/** Each table the backup recorded, read in the drill's ClickHouse staging database, each timed. */
async function clickhouseTables(
  database: string,
  expected: TableFingerprint[],
  mode: 'full' | 'rows',
): Promise<TimedFingerprint[]> {
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  const { staging } = restoreNames(database)
  try {
    const out = []
    for (const { table } of expected) {
      const started = performance.now()
      const columns = await storedColumnTypes(conn, staging, table)
      if (columns.length === 0) continue // not restored: compareFingerprints reports it missing
      const read = await fingerprintOf(conn, {
        source: qualifiedName(staging, table),
        columns,
        mode,
        what: `fingerprint of ${staging}.${table}`,
      })
      out.push({ table, ...read, seconds: (performance.now() - started) / 1000 })
    }
    return out
  } finally {
    await conn.close()
  }
}

/**
 * One engine of a drill: the restored copy's fingerprints compared with the ones the backup
 * recorded, and the outcome stored beside the backup. A mismatch is recorded and returned, not
 * thrown: FinishDrill drops the scratch databases first and then fails the execution.
 */
export async function run(
  { drillId, engine, backupId, database, startedAt, executionId }: z.output<typeof input>,
  ctx: StateContext,
) {
  logger.appendKeys({ engine, backupId, drillId })
  const store = backupStore()
  const manifest = await store.readManifest(engine, backupId)
  const expected = expectedFingerprints(manifest)
  const mode = expected?.some((t) => t.hash !== null) ? 'full' : 'rows'
  // a backup that recorded no fingerprints proves only that it loads
  const actual =
    expected === null
      ? []
      : engine === 'postgres'
        ? await postgresTables(database, mode, ctx)
        : await clickhouseTables(database, expected, mode)
  const seconds = new Map(actual.map((t) => [t.table, t.seconds]))
  const tables: TableCheck[] = compareFingerprints(expected ?? [], actual).map((c) => ({
    ...c,
    seconds: seconds.get(c.table) ?? 0,
  }))
  const mismatched = tables.filter((t) => !t.match)
  const finishedAt = new Date()
  const key = await writeDrillRecord(store, {
    drillId,
    engine,
    backupId,
    executionId,
    database,
    passed: mismatched.length === 0,
    fingerprints: expected === null ? 'none' : mode,
    startedAt,
    finishedAt: finishedAt.toISOString(),
    seconds: (finishedAt.getTime() - Date.parse(startedAt)) / 1000,
    tables,
  })
  recordDrill(engine, {
    succeeded: mismatched.length === 0,
    mismatchedTables: mismatched.length,
    durationSeconds: (finishedAt.getTime() - Date.parse(startedAt)) / 1000,
  })
  logger.info('drill compared', { tables: tables.length, mismatched: mismatched.map((t) => t.table), key })
  return {
    engine,
    backupId,
    passed: mismatched.length === 0,
    tables: tables.length,
    rows: tables.reduce((sum, t) => sum + (t.rows ?? 0), 0),
    // names only, and few: the state stays small whatever the table count
    mismatched: mismatched.slice(0, 20).map((t) => describeMismatch(t)),
    mismatchedCount: mismatched.length,
    recordKey: key,
  }
}

function describeMismatch(t: TableCheck): string {
  if (t.rows === null) return `${t.table}: missing from the restored copy`
  if (t.expectedRows === null) return `${t.table}: not in the backup's fingerprints`
  if (t.rows !== t.expectedRows) return `${t.table}: ${t.rows} rows restored, ${t.expectedRows} backed up`
  return `${t.table}: same ${t.rows} rows, different content`
}

export const handler = stateHandler('CheckFingerprints', input, run)
