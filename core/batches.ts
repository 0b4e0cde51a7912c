import type { Settings } from './config.ts'
import type { Manifest } from './manifest.ts'

/**
 * Work cut into batches, one Map item each: the Map's length stays bounded (and with it the
 * execution's history and payloads) however many tables, partitions or objects there are.
 */

/**
 * Consecutive items grouped into at most `maxBatches` batches of about `minBatchBytes` each (the
 * last may be smaller) — smaller when that gives fewer than `parallelism` batches, so small
 * backups still use every Map slot — order kept. Empty input gives no batch.
 */
export function batchItems<T extends { bytes: number }>(
  items: T[],
  opts: { maxBatches: number; minBatchBytes: number; parallelism?: number },
): T[][] {
  const total = items.reduce((sum, i) => sum + i.bytes, 0)
  const spread = Math.min(opts.minBatchBytes, Math.ceil(total / (opts.parallelism ?? 1)))
  let target = Math.max(spread, Math.ceil(total / opts.maxBatches), 1)
  for (;;) {
    const batches: T[][] = []
    let batch: T[] = []
    let bytes = 0
    for (const item of items) {
      // closed before an item that would take it past the target: a big table last in the order
      // gets a batch of its own instead of joining (and serialising) the small ones before it
      if (batch.length > 0 && bytes + item.bytes > target) {
        batches.push(batch)
        batch = []
        bytes = 0
      }
      batch.push(item)
      bytes += item.bytes
    }
    if (batch.length > 0) batches.push(batch)
    if (batches.length <= opts.maxBatches) return batches
    target = Math.ceil(target * 1.5)
  }
}

/** A manifest's objects in batches: cut the same way by ResolveBackup and by every VerifyBatch. */
export function verifyBatches(manifest: Manifest, s: Settings) {
  return batchItems(manifest.objects, {
    maxBatches: s.LSB_CLICKHOUSE_MAX_BATCHES,
    minBatchBytes: s.LSB_CLICKHOUSE_SPLIT_BYTES,
    parallelism: s.LSB_MAP_CONCURRENCY,
  })
}
