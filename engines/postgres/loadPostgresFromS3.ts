import { tmpdir } from 'node:os'
import type pg from 'pg'
import { loadSettings } from '#core/config.ts'
import { restoreNames } from '#core/names.ts'
import { openAdminSession, type Run } from './adminSession.ts'
import { connectPostgres, quoteIdent } from './connectPostgres.ts'
import { writeLoadMarker } from './loadMarker.ts'
import { pgToolVersion } from './pgTool.ts'
import { type PostgresTarget, parsePostgresUrl, withDatabase } from './postgresUrl.ts'
import { type PgRestoreSource, runPgRestore } from './runPgRestore.ts'
import { type StagedDump, stageDump } from './stageDump.ts'

export interface LoadOptions extends PgRestoreSource {
  /** The database to restore, `postgres://user:pass@host:port/<db>`: the load goes into `<db>__lsb_restoring`. */
  url: string
  binDir?: string
  /** pg_restore --jobs (default LSB_PG_RESTORE_JOBS); above 1 the dump is copied to `tempDir` first. */
  jobs?: number
  /** Where that copy goes (default LSB_PG_RESTORE_TEMP_DIR, else the OS temp dir: /tmp on Lambda). */
  tempDir?: string
}

export interface LoadResult {
  /** The database the load is meant to replace (it need not exist). */
  database: string
  /** Where the dump now is, complete and marked: `<db>__lsb_restoring`. */
  restoringDatabase: string
  /** Tables (ordinary and partitioned) in the loaded database, outside the system schemas. */
  tables: number
  /** How pg_restore read the dump: a local copy with `jobs` jobs, or streamed from S3 (and why). */
  pgRestore: { from: 'file'; jobs: number } | { from: 'stream'; reason: string }
}

/** What a replacement keeps of the live database: its encoding, locale and, when we may, its owner. */
interface LiveDatabase {
  encoding: string
  collate: string
  ctype: string
  provider: string
  /** ICU or builtin locale; the catalog column was renamed in PostgreSQL 17, hence the jsonb. */
  locale: string | null
  owner: string
  canOwn: boolean
}

/**
 * Restores s3://bucket/key into a fresh `<db>__lsb_restoring` (a leftover from an earlier attempt
 * is dropped first) created with the live database's encoding, locale and owner. With more than
 * one job the dump is copied to `tempDir` and read by `pg_restore --jobs` (the copy is removed
 * whatever happens); with one job, or when the copy would not fit, it is streamed into pg_restore's
 * stdin. When pg_restore exits 0 and the tables are counted, the database is marked complete (a COMMENT ON
 * DATABASE, engines/postgres/loadMarker.ts) and left in place for swapInRestoredPostgres(). On any
 * failure it is dropped and PgRestoreError carries pg_restore's (redacted) stderr. The live
 * database is never touched.
 */
export async function loadPostgresFromS3(options: LoadOptions): Promise<LoadResult> {
  const target = parsePostgresUrl(options.url)
  const names = restoreNames(target.database)
  const source = `s3://${options.bucket}/${options.key}`
  const tool = await pgToolVersion('pg_restore', options.binDir)
  const admin = await openAdminSession(target, `restore of ${source} into ${target.location}`)
  try {
    const live = await describeLiveDatabase(admin.run, names.live)
    await admin.drop(names.restoring)
    await admin.run(
      `create database ${names.restoring}`,
      createDatabaseSql(admin.client, names.restoring, live),
    )
    let staged: StagedDump | undefined
    try {
      const restoring = withDatabase(target, names.restoring)
      const settings = loadSettings()
      const copy = await stageDump({
        ...options,
        jobs: options.jobs ?? settings.LSB_PG_RESTORE_JOBS,
        tempDir: options.tempDir ?? settings.LSB_PG_RESTORE_TEMP_DIR ?? tmpdir(),
      })
      if (!('reason' in copy)) staged = copy
      await runPgRestore(tool, restoring, options, admin.run, staged)
      const tables = await countTables(restoring)
      await writeLoadMarker(admin, names.restoring, { source, tables, loadedAt: new Date().toISOString() })
      return {
        database: names.live,
        restoringDatabase: names.restoring,
        tables,
        pgRestore:
          'reason' in copy ? { from: 'stream', reason: copy.reason } : { from: 'file', jobs: copy.jobs },
      }
    } catch (error) {
      await admin.dropQuietly(names.restoring)
      throw error
    } finally {
      await staged?.remove()
    }
  } finally {
    await admin.end()
  }
}

async function describeLiveDatabase(run: Run, name: string): Promise<LiveDatabase | undefined> {
  const { rows } = await run(
    `read database ${name}`,
    `SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS "collate", d.datctype AS ctype,
            coalesce(j->>'datlocprovider', 'c') AS provider, coalesce(j->>'datlocale', j->>'daticulocale') AS locale,
            pg_get_userbyid(d.datdba) AS owner, pg_has_role(current_user, d.datdba, 'MEMBER') AS "canOwn"
       FROM pg_database d, to_jsonb(d) j WHERE d.datname = $1`,
    [name],
  )
  return rows[0] as LiveDatabase | undefined
}

/** From template0 (nothing of template1's to collide with the dump), with the live database's locale. */
function createDatabaseSql(admin: pg.Client, name: string, live: LiveDatabase | undefined): string {
  const parts = [`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`]
  if (live) {
    const lit = (v: string) => admin.escapeLiteral(v)
    parts.push(`ENCODING ${lit(live.encoding)} LC_COLLATE ${lit(live.collate)} LC_CTYPE ${lit(live.ctype)}`)
    if (live.provider === 'i' && live.locale) parts.push(`LOCALE_PROVIDER icu ICU_LOCALE ${lit(live.locale)}`)
    if (live.provider === 'b' && live.locale)
      parts.push(`LOCALE_PROVIDER builtin BUILTIN_LOCALE ${lit(live.locale)}`)
    if (live.canOwn) parts.push(`OWNER ${admin.escapeIdentifier(live.owner)}`)
  }
  return parts.join(' ')
}

async function countTables(restoring: PostgresTarget): Promise<number> {
  const client = await connectPostgres(restoring)
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND s.nspname NOT IN ('pg_catalog', 'information_schema')`,
    )
    return rows[0]!.n
  } finally {
    await client.end().catch(() => {})
  }
}
