import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { progressReporter } from '#core/progress.ts'
import { loadPostgresFromS3 } from '#engines/postgres/loadPostgresFromS3.ts'
import { urlForDatabase } from '#engines/postgres/postgresUrl.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, targetDatabase: databaseNameSchema.nullable() })

/** pg_restore into `<db>__lsb_restoring`, marked complete at the end; the live database is not touched. */
export async function run({ backupId, targetDatabase }: z.output<typeof input>, { signal }: StateContext) {
  const s = loadSettings()
  logger.appendKeys({ engine: 'postgres', backupId })
  const store = backupStore()
  const dump = (await store.readManifest('postgres', backupId)).objects[0]!
  const result = await loadPostgresFromS3({
    url: urlForDatabase(await requireSecret('LSB_POSTGRES_URL'), targetDatabase),
    bucket: store.bucket,
    key: dump.key,
    binDir: s.LSB_PG_BIN_DIR,
    signal,
    onProgress: progressReporter('LoadPostgres', 'pg_restore', dump.bytes),
  })
  logger.info('postgres loaded', { ...result })
  return result
}

export const handler = stateHandler('LoadPostgres', input, run)
