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
      batch.push(item)
      bytes += item.bytes
      if (bytes >= target) {
        batches.push(batch)
        batch = []
        bytes = 0
      }
    }
    if (batch.length > 0) batches.push(batch)
    if (batches.length <= opts.maxBatches) return batches
    target = Math.ceil(target * 1.5)
  }
}
