import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, databaseNameSchema } from '#core/payloads.ts'
import { commitClickHouseRestore } from '#engines/clickhouse/restore/commit.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, targetDatabase: databaseNameSchema })

/** Checks row counts against the manifest, swaps the staging tables in, recreates views and MVs. */
export async function run(
  { backupId, targetDatabase }: z.output<typeof input>,
  { clickhouse }: ClickHouseContext,
) {
  logger.appendKeys({ engine: 'clickhouse', backupId })
  const manifest = await backupStore().readManifest('clickhouse', backupId)
  const result = await commitClickHouseRestore(clickhouse, { manifest, targetDatabase })
  logger.info('clickhouse restored', { tables: result.tables.length })
  return { targetDatabase, ...result }
}

export const handler = stateHandler('CommitClickHouse', input, run, clickhouseConnection())
