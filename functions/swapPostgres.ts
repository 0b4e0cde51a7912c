import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { urlForDatabase } from '#engines/postgres/postgresUrl.ts'
import { swapInRestoredPostgres } from '#engines/postgres/swapInRestoredPostgres.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, targetDatabase: databaseNameSchema.nullable() })

/** Swaps the database LoadPostgres loaded (from this very dump) in place of the target. */
export async function run({ backupId, targetDatabase }: z.output<typeof input>) {
  logger.appendKeys({ engine: 'postgres', backupId })
  const store = backupStore()
  const dump = (await store.readManifest('postgres', backupId)).objects[0]!
  const result = await swapInRestoredPostgres({
    url: urlForDatabase(await requireSecret('LSB_POSTGRES_URL'), targetDatabase),
    bucket: store.bucket,
    key: dump.key,
  })
  logger.info('postgres swapped in', { ...result })
  return result
}

export const handler = stateHandler('SwapPostgres', input, run)
