import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { progressReporter } from '#core/progress.ts'
import { urlForDatabase } from '#engines/postgres/postgresUrl.ts'
import { restorePostgresFromS3 } from '#engines/postgres/restorePostgresFromS3.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, targetDatabase: databaseNameSchema.nullable() })

/** pg_restore into a fresh database, swapped in place of the target only once it succeeded. */
export async function run({ backupId, targetDatabase }: z.output<typeof input>, { signal }: StateContext) {
  const s = loadSettings()
  logger.appendKeys({ engine: 'postgres', backupId })
  const store = backupStore()
  const manifest = await store.readManifest('postgres', backupId)
  const dump = manifest.objects[0]!
  const url = urlForDatabase(await requireSecret('LSB_POSTGRES_URL'), targetDatabase)
  const result = await restorePostgresFromS3({
    url,
    bucket: store.bucket,
    key: dump.key,
    binDir: s.LSB_PG_BIN_DIR,
    signal,
    onProgress: progressReporter('RestorePostgres', 'pg_restore', dump.bytes),
  })
  logger.info('postgres restored', { ...result })
  return result
}

export const handler = stateHandler('RestorePostgres', input, run)
