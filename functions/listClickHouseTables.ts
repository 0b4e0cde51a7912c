import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { batchItems } from '#core/batches.ts'
import { loadSettings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, type ClickHousePlan } from '#core/payloads.ts'
import { listClickHouseTables } from '#engines/clickhouse/listTables.ts'
import { chooseTransfer } from '#engines/clickhouse/s3Transfer.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, startedAt: z.iso.datetime() })

/**
 * Discovers the tables to back up, in dependency order, cuts them into export items and batches,
 * and stores that plan beside the backup: the state carries only its batch numbers, whatever the
 * table or partition count.
 */
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
    parallelism: settings.LSB_MAP_CONCURRENCY,
  })
  const plan: ClickHousePlan = {
    backupId,
    startedAt,
    source: { serverVersion: listing.serverVersion, database: listing.database },
    transfer: await chooseTransfer(clickhouse, settings.LSB_CLICKHOUSE_TRANSFER),
    tables: listing.tables,
    batches: batchItems(listing.items, {
      maxBatches: settings.LSB_CLICKHOUSE_MAX_BATCHES,
      minBatchBytes: settings.LSB_CLICKHOUSE_SPLIT_BYTES,
      parallelism: settings.LSB_MAP_CONCURRENCY,
    }),
  }
  await backupStore().writePlan(plan)
  logger.info('clickhouse tables listed', {
    tables: listing.tables.length,
    items: listing.items.length,
    batches: plan.batches.length,
    transfer: plan.transfer,
  })
  return {
    backupId,
    transfer: plan.transfer,
    items: listing.items.length,
    bytes: listing.items.reduce((sum, i) => sum + i.bytes, 0),
    batches: plan.batches.map((_, i) => i),
  }
}

export const handler = stateHandler('ListClickHouseTables', input, run, clickhouseConnection())
