import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { logger } from '#core/logger.ts'
import { databaseNameSchema, restoreItemSchema } from '#core/payloads.ts'
import { restoreClickHouseObject } from '#engines/clickhouse/restore/load.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ targetDatabase: databaseNameSchema, item: restoreItemSchema })

/** One Map item of RestoreClickHouse: one stored object streamed into its staging table. */
export async function run(
  { targetDatabase, item }: z.output<typeof input>,
  { signal, clickhouse }: StateContext & ClickHouseContext,
) {
  logger.appendKeys({ engine: 'clickhouse', table: item.table })
  const { bucket } = backupStore()
  return restoreClickHouseObject(clickhouse, { targetDatabase, item, bucket, signal })
}

export const handler = stateHandler('RestoreClickHouseObject', input, run, clickhouseConnection())
