import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { loadSettings } from '#core/config.ts'
import { reserveMs } from '#core/deadline.ts'
import { ClickHouseError } from '#core/errors.ts'
import { logger } from '#core/logger.ts'
import { restoreNames } from '#core/names.ts'
import { backupIdSchema, batchCursorSchema, databaseNameSchema } from '#core/payloads.ts'
import { restoreClickHouseObject } from '#engines/clickhouse/restore/load.ts'
import { restoreBatches } from '#engines/clickhouse/restore/plan.ts'
import { chooseTransfer, loadThroughS3, serverS3FromSettings } from '#engines/clickhouse/s3Transfer.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  backupId: backupIdSchema,
  targetDatabase: databaseNameSchema,
  batch: z.number().int().nonnegative(),
  batches: z.number().int().positive(),
  cursor: batchCursorSchema.nullable().default(null),
})

/** Restarts of one object whose server-side statement was lost between invocations. */
const MAX_RESTARTS = 2

/**
 * One Map item of RestoreClickHouse: the objects of one batch (the batches are cut from the
 * manifest exactly as PrepareClickHouse cut them), each loaded into its staging table — by the
 * server from S3 where it can, else streamed — sha256 and rows checked. Near the deadline it
 * returns `done: false` with a cursor and is called again.
 */
export async function run(
  { backupId, targetDatabase, batch, batches, cursor }: z.output<typeof input>,
  { signal, deadlineMs, clickhouse }: StateContext & ClickHouseContext,
) {
  const untilMs = deadlineMs - reserveMs(deadlineMs, Date.now())
  logger.appendKeys({ engine: 'clickhouse', backupId, batch })
  const store = backupStore()
  const settings = loadSettings()
  const planned = restoreBatches(await store.readManifest('clickhouse', backupId), settings)
  if (planned.length !== batches) {
    throw new RangeError(
      `backup ${backupId} cuts into ${planned.length} restore batches here, ${batches} when the restore was prepared: keep LSB_CLICKHOUSE_SPLIT_BYTES and LSB_CLICKHOUSE_MAX_BATCHES the same for every function`,
    )
  }
  const items = planned[batch]!
  const { staging } = restoreNames(targetDatabase)
  const transfer = await chooseTransfer(clickhouse, settings.LSB_CLICKHOUSE_TRANSFER)
  const target = transfer === 'server' ? await serverS3FromSettings() : undefined
  let next = cursor?.next ?? 0
  let queryId = cursor?.queryId ?? null
  let restarts = cursor?.restarts ?? 0
  const progress = () => ({
    batch,
    done: next >= items.length,
    cursor: { next, queryId, restarts },
    items: items.length,
  })
  for (; next < items.length; next++) {
    if (Date.now() >= untilMs) return progress()
    const item = items[next]!
    logger.appendKeys({ table: item.table })
    if (target) {
      const step = await loadThroughS3(clickhouse, {
        item,
        stagingDatabase: staging,
        bucket: store.bucket,
        target,
        queryId,
        untilMs,
        signal,
      })
      if (step.state === 'running') {
        queryId = step.queryId
        return progress()
      }
      if (step.state === 'lost') {
        if (++restarts > MAX_RESTARTS) {
          throw new ClickHouseError(
            `restore of ${item.table} from ${item.key}: its load was lost ${restarts} times`,
          )
        }
        queryId = null
        next-- // the same item again, from the start
        continue
      }
    } else {
      await restoreClickHouseObject(clickhouse, { targetDatabase, item, bucket: store.bucket, signal })
    }
    queryId = null
    restarts = 0
  }
  return progress()
}

export const handler = stateHandler('LoadClickHouseBatch', input, run, clickhouseConnection())
