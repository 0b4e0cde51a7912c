import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { verifyObjectChecksum } from '#catalog/objectStore.ts'
import { tableDataKey } from '#core/backupKeys.ts'
import { loadSettings } from '#core/config.ts'
import { reserveMs } from '#core/deadline.ts'
import { logger } from '#core/logger.ts'
import type { StoredObject } from '#core/manifest.ts'
import { backupIdSchema, batchCursorSchema } from '#core/payloads.ts'
import { exportTableToS3 } from '#engines/clickhouse/exportTable.ts'
import { exportThroughS3, serverS3FromSettings } from '#engines/clickhouse/s3Transfer.ts'
import { type ClickHouseContext, clickhouseConnection } from '#functions/middleware/clickhouseConnection.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  backupId: backupIdSchema,
  batch: z.number().int().nonnegative(),
  cursor: batchCursorSchema.nullable().default(null),
})

/**
 * One Map item of ExportTables: the export items of one batch, in order, from the cursor on. Each
 * object is stored and read back (its sha256 compared on the streaming path, computed on the
 * server-side path) before the next starts. Near the step's deadline it returns `done: false` with
 * a cursor — naming the server-side statement it leaves running, if any — and the state machine
 * calls it again: no item, however big, has to fit one invocation on the server-side path.
 */
export async function run(
  { backupId, batch, cursor }: z.output<typeof input>,
  { signal, deadlineMs, clickhouse }: StateContext & ClickHouseContext,
) {
  const startedMs = Date.now()
  const untilMs = deadlineMs - reserveMs(deadlineMs, startedMs)
  logger.appendKeys({ engine: 'clickhouse', backupId, batch })
  const store = backupStore()
  const plan = await store.readPlan(backupId)
  const items = plan.batches[batch]
  if (!items)
    throw new RangeError(
      `batch ${batch} is not in the plan of backup ${backupId} (${plan.batches.length} batches)`,
    )
  const stored: StoredObject[] = await store.readBatchResult(backupId, batch)
  // A retried call (same input) goes on after what its failed attempt stored and verified.
  let next = Math.max(cursor?.next ?? 0, stored.length)
  if (stored.length !== next) {
    throw new RangeError(
      `batch ${batch} of backup ${backupId}: ${stored.length} objects recorded, cursor at item ${next}`,
    )
  }
  const target = plan.transfer === 'server' ? await serverS3FromSettings() : undefined
  const settings = loadSettings()
  const gzipLevel = settings.LSB_CLICKHOUSE_GZIP_LEVEL
  const fingerprint = settings.LSB_CLICKHOUSE_FINGERPRINT
  let queryId = cursor?.queryId ?? null
  const progress = () => ({
    batch,
    done: next >= items.length,
    cursor: { next, queryId, restarts: 0 },
    objects: stored.length,
    items: items.length,
    bytes: stored.reduce((sum, o) => sum + o.bytes, 0),
  })
  try {
    for (; next < items.length; next++) {
      const item = items[next]!
      // a streaming item is not started without time to finish it; a server-side one is followed
      if (Date.now() >= untilMs) return progress()
      logger.appendKeys({ table: item.table, part: item.part })
      if (target) {
        const key = tableDataKey(store.prefix, backupId, item.table, item.part, 'zstd')
        const step = await exportThroughS3(clickhouse, {
          item,
          bucket: store.bucket,
          key,
          target,
          queryId,
          untilMs,
          signal,
          fingerprint,
        })
        if (step.state === 'running') {
          queryId = step.queryId
          logger.info('export still running on the server; followed by the next invocation', { queryId })
          return progress()
        }
        stored.push(step.result)
      } else {
        const key = tableDataKey(store.prefix, backupId, item.table, item.part)
        const object = await exportTableToS3(clickhouse, {
          item,
          bucket: store.bucket,
          key,
          gzipLevel,
          signal,
          fingerprint,
        })
        // what S3 holds, read back, must be what was hashed on the way in
        await verifyObjectChecksum(store.bucket, key, object, signal)
        stored.push(object)
      }
      queryId = null
      logger.info('table exported', { rows: stored.at(-1)!.rows, bytes: stored.at(-1)!.bytes })
    }
    return progress()
  } finally {
    await store.writeBatchResult(backupId, batch, stored)
  }
}

export const handler = stateHandler('ExportBatch', input, run, clickhouseConnection())
