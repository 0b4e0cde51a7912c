import { z } from 'zod'
import { type BackupStore, backupStore } from '#catalog/backupStore.ts'
import { logger } from '#core/logger.ts'
import { MANIFEST_FORMAT_VERSION, type Manifest } from '#core/manifest.ts'
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

/** Writes each engine's manifest.json, last: only now does the backup exist. */
export async function run({ postgres, clickhouse, executionId }: z.output<typeof input>) {
  const store = backupStore()
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
    }
    const key = await store.writeManifest(manifest)
    const rows = backup.objects.every((o) => o.rows === null)
      ? null
      : backup.objects.reduce((sum, o) => sum + (o.rows ?? 0), 0)
    const bytes = backup.objects.reduce((sum, o) => sum + o.bytes, 0)
    logger.info('backup committed', { engine: backup.engine, backupId: backup.backupId, key, bytes })
    committed.push({
      engine: backup.engine,
      backupId: backup.backupId,
      manifestKey: key,
      bytes,
      rows,
      objects: backup.objects.length,
    })
  }
  return committed
}

export const handler = stateHandler('CommitManifest', input, run)
