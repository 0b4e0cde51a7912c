import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { logger } from '#core/logger.ts'
import { MANIFEST_FORMAT_VERSION, type Manifest } from '#core/manifest.ts'
import { engineBackupSchema, executionFields } from '#core/payloads.ts'
import { TOOL_VERSION } from '#core/toolVersion.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  backups: z.array(engineBackupSchema.nullable()),
  executionId: executionFields.executionId,
})

/** Writes each engine's manifest.json, last: only now does the backup exist. */
export async function run({ backups, executionId }: z.output<typeof input>) {
  const store = backupStore()
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
