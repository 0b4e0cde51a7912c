import { z } from 'zod'
import { type BackupStore, backupStore } from '#catalog/backupStore.ts'
import { loadSettings } from '#core/config.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { logger } from '#core/logger.ts'
import { MANIFEST_FORMAT_VERSION, type Manifest, type StoredObject } from '#core/manifest.ts'
import { recordBackup } from '#core/metrics.ts'
import { backupIdSchema, type EngineBackup, engineBackupSchema, executionFields } from '#core/payloads.ts'
import { TOOL_VERSION } from '#core/toolVersion.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

/** What a branch of the Parallel gives for an engine the input did not ask for. */
const skipped = z.strictObject({ skipped: z.literal(true) }).transform(() => null)

const input = z.object({
  /** SnapshotPostgres's result, or skipped. */
  postgres: z.union([skipped, engineBackupSchema]),
  /** ListClickHouseTables's result (its objects are in S3, batch by batch), or skipped. */
  clickhouse: z.union([
    skipped,
    z.object({ backupId: backupIdSchema, batches: z.array(z.number().int().nonnegative()) }),
  ]),
  executionId: executionFields.executionId,
})

/** A ClickHouse backup from its plan and every batch's objects; a batch that is not complete is an error. */
async function clickhouseBackup(store: BackupStore, backupId: string): Promise<EngineBackup> {
  const plan = await store.readPlan(backupId)
  const objects = []
  for (const [i, items] of plan.batches.entries()) {
    const stored = await store.readBatchResult(backupId, i)
    if (stored.length !== items.length) {
      throw new RangeError(
        `batch ${i} of ClickHouse backup ${backupId} stored ${stored.length} of ${items.length} objects`,
      )
    }
    objects.push(...stored)
  }
  return {
    engine: 'clickhouse',
    backupId,
    startedAt: plan.startedAt,
    source: plan.source,
    objects,
    tables: plan.tables,
  }
}

const totalBytes = (objects: StoredObject[]) => objects.reduce((sum, o) => sum + o.bytes, 0)

/** Rows per table, from the objects that hold them (a big table is several objects). */
function tableRows(objects: StoredObject[]): { table: string; rows: number }[] {
  const rows = new Map<string, number>()
  for (const o of objects)
    if (o.table !== null && o.rows !== null) rows.set(o.table, (rows.get(o.table) ?? 0) + o.rows)
  return [...rows].map(([table, n]) => ({ table, rows: n }))
}

/** The warning for a backup much smaller than the previous one of its engine, if it is. */
function sizeDropWarning(committed: Manifest, bytes: number, previous: Manifest | undefined, ratio: number) {
  if (!previous || ratio === 0) return undefined
  const before = totalBytes(previous.objects)
  if (before === 0 || bytes >= ratio * before) return undefined
  return (
    `${committed.engine} backup ${committed.backupId} is ${Math.round((100 * bytes) / before)}% of the previous one ` +
    `(${humanBytes(bytes)} against ${humanBytes(before)} in ${previous.backupId}) — was data lost?`
  )
}

/**
 * Writes each engine's manifest.json, last: only now does the backup exist. Each committed backup
 * is compared with the previous one of its engine (a warning when it is below LSB_SIZE_DROP_RATIO of
 * it) and its metrics are recorded.
 */
export async function run({ postgres, clickhouse, executionId }: z.output<typeof input>) {
  const store = backupStore()
  const ratio = loadSettings().LSB_SIZE_DROP_RATIO
  const backups = [postgres, clickhouse && (await clickhouseBackup(store, clickhouse.backupId))]
  const committed = []
  for (const backup of backups) {
    if (!backup) continue
    const manifest: Manifest = {
      formatVersion: MANIFEST_FORMAT_VERSION,
      backupId: backup.backupId,
      engine: backup.engine,
      prefix: store.prefix,
      startedAt: backup.startedAt,
      finishedAt: new Date().toISOString(),
      toolVersion: TOOL_VERSION,
      source: backup.source,
      executionId,
      objects: backup.objects,
      tables: backup.tables,
      ...(backup.fingerprints ? { fingerprints: backup.fingerprints } : {}),
    }
    const previous = await store.previous(backup.engine, backup.backupId)
    const key = await store.writeManifest(manifest)
    const rows = backup.objects.every((o) => o.rows === null)
      ? null
      : backup.objects.reduce((sum, o) => sum + (o.rows ?? 0), 0)
    const bytes = totalBytes(backup.objects)
    const warning = sizeDropWarning(manifest, bytes, previous, ratio)
    logger.info('backup committed', { engine: backup.engine, backupId: backup.backupId, key, bytes })
    if (warning) logger.warn(warning, { engine: backup.engine, backupId: backup.backupId })
    recordBackup({
      engine: backup.engine,
      bytes,
      rows,
      objects: backup.objects.length,
      startedAt: backup.startedAt,
      committedAt: new Date(manifest.finishedAt),
      previousBytes: previous && totalBytes(previous.objects),
      tables: backup.engine === 'clickhouse' ? tableRows(backup.objects) : undefined,
    })
    committed.push({
      engine: backup.engine,
      backupId: backup.backupId,
      manifestKey: key,
      bytes,
      rows,
      objects: backup.objects.length,
      // per backup, so that $.committed keeps its shape for Notify and the execution's output
      warnings: warning ? [warning] : [],
    })
  }
  return committed
}

export const handler = stateHandler('CommitManifest', input, run)
