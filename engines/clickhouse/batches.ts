/**
 * How a ClickHouse backup is cut into work: export items (a whole table, or a run of partitions
 * of a table bigger than the split size), batched by `core/batches.ts`. Runs of partitions keep
 * an object near the split size however small each partition is.
 */
import type { ExportItem } from '#core/payloads.ts'

export const WHOLE_TABLE_PART = 'all'
export const PARTITION_PART_PREFIX = 'partition-'
export const PARTITIONS_PART_PREFIX = 'partitions-'

export interface PartitionSize {
  id: string
  rows: number
  bytes: number
}

/**
 * One item for the table, or, when its active parts take more than `splitBytes` and it has more
 * than one partition, one item per run of consecutive partitions of at most `splitBytes`, and at
 * most 1/`parallelism` of the table (a partition bigger than that is an item by itself).
 */
export function exportItemsFor(
  table: string,
  size: { rows: number; bytes: number; partitions: PartitionSize[] },
  splitBytes: number,
  parallelism = 1,
): ExportItem[] {
  if (size.bytes <= splitBytes || size.partitions.length <= 1) {
    return [{ table, part: WHOLE_TABLE_PART, partitions: null, rows: size.rows, bytes: size.bytes }]
  }
  // smaller runs when the table alone would not fill the Map's slots: a table just past the split
  // size still goes out in parallel
  const target = Math.max(1, Math.min(splitBytes, Math.ceil(size.bytes / parallelism)))
  const runs: PartitionSize[][] = []
  let run: PartitionSize[] = []
  let runBytes = 0
  for (const p of size.partitions) {
    if (run.length > 0 && runBytes + p.bytes > target) {
      runs.push(run)
      run = []
      runBytes = 0
    }
    run.push(p)
    runBytes += p.bytes
  }
  if (run.length > 0) runs.push(run)
  return runs.map((r, i) => ({
    table,
    part: r.length === 1 ? `${PARTITION_PART_PREFIX}${r[0]!.id}` : `${PARTITIONS_PART_PREFIX}${i}`,
    partitions: r.map((p) => p.id),
    rows: r.reduce((sum, p) => sum + p.rows, 0),
    bytes: r.reduce((sum, p) => sum + p.bytes, 0),
  }))
}
