import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { loadSettings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { restoreBatches } from '#engines/clickhouse/restore/plan.ts'
import { prepareClickHouseRestore } from '#engines/clickhouse/restore/prepare.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, targetDatabase: databaseNameSchema.nullable() })

/** Validates the manifest's tables and DDL and creates the staging tables; the target is not touched. */
export async function run(
  { backupId, targetDatabase }: z.output<typeof input>,
  { clickhouse }: ClickHouseContext,
) {
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const manifest = await backupStore().readManifest('clickhouse', backupId)
  const target = targetDatabase ?? clickhouse.database
  await prepareClickHouseRestore(clickhouse, { manifest, targetDatabase: target })
  const batches = restoreBatches(manifest, loadSettings())
  return { backupId, targetDatabase: target, batches: batches.length, batchIndexes: batches.map((_, i) => i) }
}

export const handler = stateHandler('PrepareClickHouse', input, run, clickhouseConnection())
