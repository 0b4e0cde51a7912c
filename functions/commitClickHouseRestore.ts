import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { checkClickHouseStaging, commitClickHouseRestore } from '#engines/clickhouse/restore/commit.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  backupId: backupIdSchema,
  targetDatabase: databaseNameSchema,
  /** `check`: only compare the staging tables with the manifest (CheckClickHouseStaging, before any swap). */
  mode: z.enum(['commit', 'check']).default('commit'),
})

/** Checks row counts against the manifest, swaps the staging tables in, recreates views and MVs. */
export async function run(
  { backupId, targetDatabase, mode }: z.output<typeof input>,
  { clickhouse }: ClickHouseContext,
) {
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const manifest = await backupStore().readManifest('clickhouse', backupId)
  if (mode === 'check') {
    const checked = await checkClickHouseStaging(clickhouse, { manifest, targetDatabase })
    logger.info('clickhouse staging checked', { tables: checked.tables.length })
    return { targetDatabase, ...checked }
  }
  const result = await commitClickHouseRestore(clickhouse, { manifest, targetDatabase })
  logger.info('clickhouse restored', { tables: result.tables.length })
  return { targetDatabase, ...result }
}

export const handler = stateHandler('CommitClickHouse', input, run, clickhouseConnection())
