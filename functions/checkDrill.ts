import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { type TableCheck, writeDrillRecord } from '#catalog/drillRecords.ts'
import { requireSecret } from '#core/config.ts'
import { compareFingerprints, expectedFingerprints, type TableFingerprint } from '#core/fingerprint.ts'
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

/** Reads each table's fingerprint where the drill loaded it, timing each table. */
type Measure = (
  expected: TableFingerprint[],
  full: boolean,
) => Promise<(TableFingerprint & { seconds: number })[]>

async function withPostgres<T>(database: string, ctx: StateContext, use: (m: Measure) => Promise<T>) {
  const target = withDatabase(
    parsePostgresUrl(await requireSecret('LSB_POSTGRES_URL')),
    restoreNames(database).restoring,
  )
  return use(async (_expected, full) => {
    const started = Date.now()
    const read = await fingerprintDatabase(target, full ? 'full' : 'rows', ctx)
    // one read for the whole database: its time is shared out evenly
    const seconds = (Date.now() - started) / 1000 / Math.max(1, read.length)
    return read.map((t) => ({ ...t, seconds }))
  })
}

async function withClickHouse<T>(database: string, use: (m: Measure) => Promise<T>) {
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  const { staging } = restoreNames(database)
  try {
    return await use(async (expected, full) => {
      const out = []
      for (const { table } of expected) {
        const started = Date.now()
        const columns = await storedColumnTypes(conn, staging, table)
        if (columns.length === 0) continue // not restored: compareFingerprints reports it missing
        const read = await fingerprintOf(conn, {
          source: qualifiedName(staging, table),
          columns,
          mode: full ? 'full' : 'rows',
          what: `fingerprint of ${staging}.${table}`,
        })
        out.push({ table, ...read, seconds: (Date.now() - started) / 1000 })
      }
      return out
    })
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
  const full = expected?.some((t) => t.hash !== null) ?? false
  const measure = async (m: Measure) => (expected ? m(expected, full) : [])
  const actual =
    engine === 'postgres'
      ? await withPostgres(database, ctx, measure)
      : await withClickHouse(database, measure)
  const seconds = new Map(actual.map((t) => [t.table, t.seconds]))
  const tables: TableCheck[] = compareFingerprints(expected ?? [], expected ? actual : []).map((c) => ({
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
    fingerprints: expected === null ? 'none' : full ? 'full' : 'rows',
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
