import { z } from 'zod'
import { backupIdFor } from '#core/backupKeys.ts'
import { loadSettings, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { connectClickHouse } from '#engines/clickhouse/connection.ts'
import { listClickHouseTables } from '#engines/clickhouse/listTables.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ startedAt: z.iso.datetime() })

/** Discovers the tables to back up, in dependency order, and the export units (tables or parts). */
export async function run({ startedAt }: z.output<typeof input>) {
  const settings = loadSettings()
  const backupId = backupIdFor(startedAt)
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
  try {
    const listing = await listClickHouseTables(conn, {
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
  } finally {
    await conn.close()
  }
}

export const handler = stateHandler('ListClickHouseTables', input, run)
