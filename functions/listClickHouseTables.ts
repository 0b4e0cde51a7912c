import { z } from 'zod'
import { loadSettings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema } from '#core/payloads.ts'
import { listClickHouseTables } from '#engines/clickhouse/listTables.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, startedAt: z.iso.datetime() })

/** Discovers the tables to back up, in dependency order, and the export units (tables or parts). */
export async function run(
  { backupId, startedAt }: z.output<typeof input>,
  { clickhouse }: ClickHouseContext,
) {
  const settings = loadSettings()
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const listing = await listClickHouseTables(clickhouse, {
    include: settings.LSB_CLICKHOUSE_INCLUDE,
    exclude: settings.LSB_CLICKHOUSE_EXCLUDE,
    splitBytes: settings.LSB_CLICKHOUSE_SPLIT_BYTES,
  })
  logger.info('clickhouse tables listed', { tables: listing.tables.length, items: listing.items.length })
  return {
    engine: 'clickhouse' as const,
    backupId,
    startedAt,
    source: { serverVersion: listing.serverVersion, database: listing.database },
    tables: listing.tables,
    items: listing.items,
    objects: [],
  }
}

export const handler = stateHandler('ListClickHouseTables', input, run, clickhouseConnection())
