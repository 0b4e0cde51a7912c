import { z } from 'zod'
import { readManifest } from '#catalog/backupStore.ts'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { connectClickHouse } from '#engines/clickhouse/connection.ts'
import { prepareClickHouseRestore } from '#engines/clickhouse/restore.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, targetDatabase: databaseNameSchema.nullable() })

/** Validates the manifest's tables and DDL and creates the staging tables; the target is not touched. */
export async function run({ backupId, targetDatabase }: z.output<typeof input>) {
  const s = loadSettings()
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const manifest = await readManifest(s.LSB_BUCKET, s.LSB_PREFIX, 'clickhouse', backupId)
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  try {
    const target = targetDatabase ?? conn.database
    const prepared = await prepareClickHouseRestore(conn, { manifest, targetDatabase: target })
    return { backupId, targetDatabase: target, ...prepared }
  } finally {
    await conn.close()
  }
}

export const handler = stateHandler('PrepareClickHouse', input, run)
