/**
 * Content fingerprints: what a drill compares a restored database with. A table's fingerprint is
 * its row count and, when computed in full, the sum modulo 2^64 of a 64-bit hash of each row —
 * independent of row order and of how the rows were split into objects (the sums of the parts
 * add up to the sum of the whole).
 */
import { z } from 'zod'

/** A sum of 64-bit row hashes, as decimal text (JSON numbers lose precision past 2^53). */
export const rowHashSchema = z.string().regex(/^\d{1,20}$/, 'must be an unsigned 64-bit decimal')

export const tableFingerprintSchema = z.object({
  /** `schema.table` for Postgres, the table's name for ClickHouse. */
  table: z.string().min(1).max(600),
  rows: z.number().int().nonnegative(),
  /** null: only the rows were counted (the fingerprint setting was `rows`, or the types cannot be hashed). */
  hash: rowHashSchema.nullable(),
})
export type TableFingerprint = z.output<typeof tableFingerprintSchema>
/** A table's fingerprint and how long reading it took (what a fingerprint costs, per table). */
export type TimedFingerprint = TableFingerprint & { seconds: number }

const MOD = 2n ** 64n

/** a + b modulo 2^64, the way ClickHouse's sum(UInt64) wraps. */
export function addRowHashes(a: string, b: string): string {
  return ((BigInt(a) + BigInt(b)) % MOD).toString()
}

/** Any integer (Postgres sums bigints as numeric, negative included) brought into 0 … 2^64-1. */
export function normalizeRowHash(value: string): string {
  return (((BigInt(value) % MOD) + MOD) % MOD).toString()
}

/**
 * What a manifest says each table held, or null when the backup recorded no fingerprints
 * (Postgres before this version or with LSB_POSTGRES_FINGERPRINT=off). ClickHouse objects carry
 * their own rows and hash; a table's are the sums of its objects'.
 */
export function expectedFingerprints(manifest: {
  engine: string
  objects: { table: string | null; rows: number | null; fingerprint?: string }[]
  fingerprints?: TableFingerprint[]
}): TableFingerprint[] | null {
  if (manifest.engine === 'postgres') return manifest.fingerprints ?? null
  const byTable = new Map<string, TableFingerprint>()
  for (const o of manifest.objects) {
    if (o.table === null || o.rows === null) continue
    const hash = o.fingerprint ?? null
    const seen = byTable.get(o.table)
    byTable.set(
      o.table,
      seen
        ? {
            table: o.table,
            rows: seen.rows + o.rows,
            hash: seen.hash !== null && hash !== null ? addRowHashes(seen.hash, hash) : null,
          }
        : { table: o.table, rows: o.rows, hash },
    )
  }
  return [...byTable.values()]
}

export interface TableComparison {
  table: string
  expectedRows: number | null
  rows: number | null
  /** rows: counts compared; full: counts and row hashes. */
  compared: 'rows' | 'full'
  match: boolean
}

/**
 * Compares what a restored database holds with what the backup recorded, table by table. A
 * table the backup recorded and the restore lacks, or the other way round, is a mismatch.
 */
export function compareFingerprints(
  expected: TableFingerprint[],
  actual: TableFingerprint[],
): TableComparison[] {
  const found = new Map(actual.map((t) => [t.table, t]))
  const out: TableComparison[] = expected.map((e) => {
    const a = found.get(e.table)
    found.delete(e.table)
    if (!a) return { table: e.table, expectedRows: e.rows, rows: null, compared: 'rows', match: false }
    const full = e.hash !== null && a.hash !== null
    return {
      table: e.table,
      expectedRows: e.rows,
      rows: a.rows,
      compared: full ? 'full' : 'rows',
      match: a.rows === e.rows && (!full || a.hash === e.hash),
    }
  })
  for (const a of found.values()) {
    out.push({ table: a.table, expectedRows: null, rows: a.rows, compared: 'rows', match: false })
  }
  return out.sort((x, y) => x.table.localeCompare(y.table))
}
