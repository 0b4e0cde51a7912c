import { z } from 'zod'
import { tableDataKey } from '#core/backupKeys.ts'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import type { StoredObject } from '#core/manifest.ts'
import { backupIdSchema, exportItemSchema } from '#core/payloads.ts'
import { connectClickHouse } from '#engines/clickhouse/connection.ts'
import { exportTableToS3 } from '#engines/clickhouse/exportTable.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, item: exportItemSchema })

/** One Map item of ExportTables: a table (or one part of a big table) as Native, gzip, to S3. */
export async function run(
  { backupId, item }: z.output<typeof input>,
  { signal }: StateContext,
): Promise<StoredObject> {
  const settings = loadSettings()
  logger.appendKeys({ engine: 'clickhouse', backupId, table: item.table, part: item.part })
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  try {
    return await exportTableToS3(conn, {
      item,
      bucket: settings.LSB_BUCKET,
      key: tableDataKey(settings.LSB_PREFIX, backupId, item.table, item.part),
      gzipLevel: settings.LSB_CLICKHOUSE_GZIP_LEVEL,
      signal,
    })
  } finally {
    await conn.close()
  }
}

export const handler = stateHandler('ExportTable', input, run)
