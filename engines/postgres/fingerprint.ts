import pg from 'pg'
import { PgDumpError } from '#core/errors.ts'
import { normalizeRowHash, type TimedFingerprint } from '#core/fingerprint.ts'
import { connectPostgres, describePgError } from './connectPostgres.ts'
import type { PostgresTarget } from './postgresUrl.ts'

export type FingerprintMode = 'full' | 'rows'

/**
 * Every table pg_dump dumps the data of: ordinary tables and partitions outside the system
 * schemas, not temporary, not an extension's own.
 */
const TABLES = `
  SELECT n.nspname AS schema, c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'r' AND c.relpersistence <> 't'
     AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   ORDER BY 1, 2`

/**
 * A row's text depends on these settings (timestamptz on TimeZone, floats on extra_float_digits…):
 * the backup and the drill read with the same ones. row_security off: every row or an error, as pg_dump.
 */
const READ_SETTINGS = [
  "SET LOCAL TimeZone = 'UTC'",
  "SET LOCAL DateStyle = 'ISO, YMD'",
  "SET LOCAL IntervalStyle = 'postgres'",
  'SET LOCAL extra_float_digits = 1',
  "SET LOCAL bytea_output = 'hex'",
  'SET LOCAL row_security = off',
]

/**
 * Each table's rows and, with `full`, the sum of a 64-bit hash of each row's text
 * (`hashtextextended(row::text, 0)`: any column type has a text form; 2.4× faster than md5 on 2M
 * rows, bench/fingerprintCost.ts). `FROM ONLY`: a partition's rows are counted once, in the
 * partition. Runs inside the caller's transaction, so it reads whatever snapshot that has.
 */
export async function fingerprintTables(
  client: pg.Client,
  mode: FingerprintMode,
): Promise<TimedFingerprint[]> {
  const tables = await client.query<{ schema: string; name: string }>(TABLES)
  const out: TimedFingerprint[] = []
  for (const { schema, name } of tables.rows) {
    const started = performance.now()
    const qualified = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`
    const hash = mode === 'full' ? ', coalesce(sum(hashtextextended(t::text, 0)), 0)::text AS h' : ''
    const { rows } = await client.query<{ n: string; h?: string }>(
      `SELECT count(*)::text AS n${hash} FROM ONLY ${qualified} t`,
    )
    out.push({
      table: `${schema}.${name}`,
      rows: Number(rows[0]!.n),
      hash: rows[0]!.h === undefined ? null : normalizeRowHash(rows[0]!.h),
      seconds: (performance.now() - started) / 1000,
    })
  }
  return out
}

/** A transaction whose snapshot pg_dump can share (`pg_dump --snapshot=<id>`). */
export interface ExportedSnapshot {
  id: string
  /** The fingerprints of every table, read in that snapshot. */
  fingerprints(mode: FingerprintMode): Promise<TimedFingerprint[]>
  /** Ends the transaction (and any read of it still running); only once pg_dump has finished. */
  close(): Promise<void>
}

/**
 * Opens a REPEATABLE READ transaction on `target` and exports its snapshot. Its statements stop at
 * `deadlineMs` (statement_timeout), and `signal` ends the session.
 */
export async function exportSnapshot(
  target: PostgresTarget,
  opts: { deadlineMs: number; signal?: AbortSignal },
): Promise<ExportedSnapshot> {
  const client = await connectPostgres(target)
  const end = () => void client.end().catch(() => {})
  opts.signal?.addEventListener('abort', end, { once: true })
  const fail = (what: string, error: unknown) =>
    new PgDumpError(`${what} on ${target.location}: ${describePgError(error)}`, { cause: error })
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
    for (const sql of READ_SETTINGS) await client.query(sql)
    const timeoutMs = Math.max(1000, opts.deadlineMs - Date.now())
    await client.query(`SET LOCAL statement_timeout = ${Math.round(timeoutMs)}`)
    const { rows } = await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')
    return {
      id: rows[0]!.id,
      fingerprints: (mode) =>
        fingerprintTables(client, mode).catch((error: unknown) => {
          throw fail('reading table fingerprints', error)
        }),
      // read only: ending the session ends the transaction, and stops a read still running
      close: async () => {
        opts.signal?.removeEventListener('abort', end)
        await client.end().catch(() => {})
      },
    }
  } catch (error) {
    opts.signal?.removeEventListener('abort', end)
    await client.end().catch(() => {})
    throw fail('exporting a snapshot', error)
  }
}

/** The fingerprints of a database as it is now (a drill's restored copy), read like a backup's. */
export async function fingerprintDatabase(
  target: PostgresTarget,
  mode: FingerprintMode,
  opts: { deadlineMs: number; signal?: AbortSignal },
): Promise<TimedFingerprint[]> {
  const snapshot = await exportSnapshot(target, opts)
  try {
    return await snapshot.fingerprints(mode)
  } finally {
    await snapshot.close()
  }
}
