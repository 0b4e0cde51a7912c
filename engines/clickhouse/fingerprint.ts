import { TransientError } from '#core/errors.ts'
import type { TableFingerprint } from '#core/fingerprint.ts'
import { logger } from '#core/logger.ts'
import { type ClickHouseConnection, clickHouseFailure } from './connection.ts'
import type { Column } from './describeDatabase.ts'
import { bindQueryParams, quoteIdentifier } from './sql.ts'

export type FingerprintMode = 'full' | 'rows' | 'off'

const NULLABLE = /^Nullable\((.*)\)$/s

/**
 * cityHash64's arguments for one row. cityHash64(NULL) is NULL, and sum() skips NULLs, so a
 * Nullable column goes in as (isNull(c), assumeNotNull(c)): NULL and the type's default then hash
 * apart. The same expression gives the same hash on ClickHouse 18.16 and 26.
 */
export function rowHashArguments(columns: Column[]): string {
  return columns
    .map(({ name, type }) => {
      const c = quoteIdentifier(name)
      return NULLABLE.test(type) ? `isNull(${c}), assumeNotNull(${c})` : c
    })
    .join(', ')
}

/**
 * Rows and, with `full`, the sum of cityHash64 of every row of `source` (a table, or an s3()
 * object of one), read by the server. Types a server cannot hash (18.16: arrays of Nullable,
 * aggregate states) leave the hash null — the rows are still compared — with a warning.
 */
export async function fingerprintOf(
  conn: ClickHouseConnection,
  opts: {
    /** What is read: `db.table`, or `s3(…)`. */
    source: string
    columns: Column[]
    mode: 'full' | 'rows'
    /** ` WHERE …` with its params, or ''. */
    where?: string
    params?: Record<string, unknown>
    what: string
  },
): Promise<Omit<TableFingerprint, 'table'>> {
  const from = `FROM ${opts.source}${opts.where ?? ''}`
  const run = async (select: string) => {
    const [row] = await conn.query<{ n: string | number; h?: string }>(
      bindQueryParams(`SELECT ${select} ${from}`, opts.params ?? {}),
    )
    return { rows: Number(row?.n ?? 0), hash: row?.h ?? null }
  }
  if (opts.mode === 'full') {
    try {
      return await run(`count() AS n, toString(sum(cityHash64(${rowHashArguments(opts.columns)}))) AS h`)
    } catch (error) {
      if (error instanceof TransientError) throw error
      logger.warn('rows counted without a hash: the server cannot hash these types', {
        what: opts.what,
        error: clickHouseFailure(opts.what, error).message,
      })
    }
  }
  return run('count() AS n').catch((error: unknown) => {
    throw clickHouseFailure(`${opts.what}: counting rows`, error)
  })
}
