import { z } from 'zod'
import { readManifest } from '#catalog/backupStore.ts'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { connectClickHouse } from '#engines/clickhouse/connection.ts'
import { commitClickHouseRestore } from '#engines/clickhouse/restore.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  backupId: backupIdSchema,
  targetDatabase: databaseNameSchema,
  stagingDatabase: z.string().min(1),
})

/** Checks row counts against the manifest, swaps the staging tables in, recreates views and MVs. */
export async function run({ backupId, targetDatabase, stagingDatabase }: z.output<typeof input>) {
  const s = loadSettings()
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const manifest = await readManifest(s.LSB_BUCKET, s.LSB_PREFIX, 'clickhouse', backupId)
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  try {
    const result = await commitClickHouseRestore(conn, { manifest, targetDatabase, stagingDatabase })
    logger.info('clickhouse restored', { tables: result.tables.length })
    return { targetDatabase, ...result }
  } finally {
    await conn.close()
  }
}

export const handler = stateHandler('CommitClickHouse', input, run)
