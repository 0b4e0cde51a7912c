import { z } from 'zod'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { databaseNameSchema } from '#core/payloads.ts'
import { connectClickHouse } from '#engines/clickhouse/connection.ts'
import { restoreClickHouseObject } from '#engines/clickhouse/restore.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  stagingDatabase: z.string().min(1),
  item: z.object({
    table: z.string().min(1),
    stagingTable: z.string().min(1),
    key: z.string().min(1),
    sha256: z.string(),
    bytes: z.number().int().nonnegative(),
    rows: z.number().int().nonnegative().nullable(),
    compression: z.enum(['none', 'gzip']),
    partitionId: z.string().nullable().optional(),
  }),
})

/** One Map item of RestoreClickHouse: one stored object streamed into its staging table. */
export async function run({ stagingDatabase, item }: z.output<typeof input>, { signal }: StateContext) {
  const s = loadSettings()
  databaseNameSchema.parse(stagingDatabase.replace(/__lsb_restore$/, ''))
  logger.appendKeys({ engine: 'clickhouse', table: item.table })
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  try {
    return await restoreClickHouseObject(conn, { stagingDatabase, item, bucket: s.LSB_BUCKET, signal })
  } finally {
    await conn.close()
  }
}

export const handler = stateHandler('RestoreClickHouseObject', input, run)
