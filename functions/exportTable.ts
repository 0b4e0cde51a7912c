import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { tableDataKey } from '#core/backupKeys.ts'
import { loadSettings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import type { StoredObject } from '#core/manifest.ts'
import { backupIdSchema, exportItemSchema } from '#core/payloads.ts'
import { exportTableToS3 } from '#engines/clickhouse/exportTable.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, item: exportItemSchema })

/** One Map item of ExportTables: a table (or one part of a big table) as Native, gzip, to S3. */
export async function run(
  { backupId, item }: z.output<typeof input>,
  { signal, clickhouse }: StateContext & ClickHouseContext,
): Promise<StoredObject> {
  logger.appendKeys({ engine: 'clickhouse', backupId, table: item.table, part: item.part })
  const store = backupStore()
  return exportTableToS3(clickhouse, {
    item,
    bucket: store.bucket,
    key: tableDataKey(store.prefix, backupId, item.table, item.part),
    gzipLevel: loadSettings().LSB_CLICKHOUSE_GZIP_LEVEL,
    signal,
  })
}

export const handler = stateHandler('ExportTable', input, run, clickhouseConnection())
