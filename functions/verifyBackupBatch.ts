import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { verifyObjectChecksum } from '#catalog/objectStore.ts'
import { verifyBatches } from '#core/batches.ts'
import { loadSettings } from '#core/config.ts'
import { reserveMs } from '#core/deadline.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, batchCursorSchema, engineSchema } from '#core/payloads.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  engine: engineSchema,
  backupId: backupIdSchema,
  batch: z.number().int().nonnegative(),
  cursor: batchCursorSchema.nullable().default(null),
})

/**
 * One Map item of VerifyChecksums: re-reads each object of one batch of a backup and compares it
 * with the sha256 and size its manifest records, before the restore touches any database. Near the
 * step's deadline it returns `done: false` with a cursor and is called again.
 */
export async function run(
  { engine, backupId, batch, cursor }: z.output<typeof input>,
  { signal, deadlineMs }: StateContext,
) {
  const untilMs = deadlineMs - reserveMs(deadlineMs, Date.now())
  logger.appendKeys({ engine, backupId, batch })
  const store = backupStore()
  const manifest = await store.readManifest(engine, backupId)
  const objects = verifyBatches(manifest, loadSettings())[batch]
  if (!objects) throw new RangeError(`${engine} backup ${backupId} has no verify batch ${batch}`)
  let next = cursor?.next ?? 0
  for (; next < objects.length; next++) {
    if (Date.now() >= untilMs) break
    const object = objects[next]!
    await verifyObjectChecksum(store.bucket, object.key, object, signal)
  }
  return { engine, batch, done: next >= objects.length, cursor: { next, queryId: null, restarts: 0 } }
}

export const handler = stateHandler('VerifyBatch', input, run)
