import { describe, expect, it } from 'vitest'
import { batchItems } from '#core/batches.ts'
import { exportItemsFor } from '#engines/clickhouse/batches.ts'

const partitions = (n: number, bytes: number) =>
  Array.from({ length: n }, (_, i) => ({ id: String(20100101 + i), rows: 10, bytes }))

describe('Function: exportItemsFor', () => {
  it('keeps a table at or below the split size whole', () => {
    // Act
    const items = exportItemsFor('t', { rows: 50_000, bytes: 100, partitions: partitions(5000, 1) }, 100)
    // Assess
    expect(items).toEqual([{ table: 't', part: 'all', partitions: null, rows: 50_000, bytes: 100 }])
  })

  it('groups 5,000 tiny partitions into runs of about the split size, each partition once', () => {
    // Act
    const items = exportItemsFor(
      't',
      { rows: 50_000, bytes: 5000 * 40, partitions: partitions(5000, 40) },
      4000,
    )
    // Assess
    expect(items).toHaveLength(50)
    expect(items.every((i) => i.bytes <= 4000 && i.part.startsWith('partitions-'))).toBe(true)
    const ids = items.flatMap((i) => i.partitions ?? [])
    expect(new Set(ids).size).toBe(5000)
    expect(items.reduce((n, i) => n + i.rows, 0)).toBe(50_000)
  })

  it('cuts a table just past the split size into as many runs as the Map runs at once', () => {
    // Act
    const items = exportItemsFor('t', { rows: 80, bytes: 8 * 100, partitions: partitions(8, 100) }, 700, 4)
    // Assess
    expect(items.map((i) => i.partitions?.length)).toEqual([2, 2, 2, 2])
  })

  it('gives a partition bigger than the split size an item of its own, named after it', () => {
    // Act
    const items = exportItemsFor(
      't',
      { rows: 30, bytes: 1200, partitions: [{ id: 'a', rows: 10, bytes: 1000 }, ...partitions(2, 100)] },
      500,
    )
    // Assess
    expect(items.map((i) => i.part)).toEqual(['partition-a', 'partitions-1'])
  })
})

describe('Function: batchItems', () => {
  it('never makes more batches than allowed, whatever the item count, and keeps order', () => {
    // Prepare
    const items = Array.from({ length: 100_000 }, (_, i) => ({ i, bytes: 1 + (i % 7) }))
    // Act
    const batches = batchItems(items, { maxBatches: 200, minBatchBytes: 1 })
    // Assess
    expect(batches.length).toBeLessThanOrEqual(200)
    expect(batches.flat().map((x) => x.i)).toEqual(items.map((x) => x.i))
  })

  it('puts small tables together until a batch reaches the minimum size', () => {
    // Act
    const batches = batchItems(
      [10, 10, 10, 90, 5].map((bytes) => ({ bytes })),
      { maxBatches: 100, minBatchBytes: 30 },
    )
    // Assess
    expect(batches.map((b) => b.map((x) => x.bytes))).toEqual([[10, 10, 10], [90], [5]])
  })

  it('gives a big last item a batch of its own, so it runs beside the small ones', () => {
    // Act
    const batches = batchItems(
      [1, 1, 1, 1, 96].map((bytes) => ({ bytes })),
      { maxBatches: 100, minBatchBytes: 1000, parallelism: 4 },
    )
    // Assess
    expect(batches.map((b) => b.map((x) => x.bytes))).toEqual([[1, 1, 1, 1], [96]])
  })

  it('makes no batch of nothing', () => {
    expect(batchItems([], { maxBatches: 10, minBatchBytes: 1 })).toEqual([])
  })
})
