/**
 * The benchmark's data: devtools/sampleData.ts's deterministic LangSight-like tables at a chosen
 * scale — Postgres config tables (users, projects, API keys, alert and SLO config), ClickHouse
 * trace tables (tool-call spans and agent sessions over 14 monthly partitions, health history by
 * month, schema snapshots, a daily-cost materialized view) in 18.16's syntax. Same scale, same
 * bytes. Scale 1 is about 10 MB on disk (3 MB Postgres beyond an empty database, 7 MB ClickHouse).
 */
import pg from 'pg'
import { type ClickHouseFlavor, seedClickHouse, seedPostgres } from '#devtools/sampleData.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'

export interface DataSizes {
  postgresBytes: number
  clickhouseBytes: number
  /** Per ClickHouse table: rows, bytes on disk, partitions. */
  clickhouseTables: { table: string; rows: number; bytes: number; partitions: number }[]
}

/** Creates `database` on both servers and fills it; `pgScale` defaults to `scale`. */
export async function generateBenchData(opts: {
  postgresAdminUrl: string
  postgresUrl: string
  clickhouse: ClickHouseConnection
  database: string
  scale: number
  pgScale?: number
  /** 18.16's syntax (default), or the current one (chdb and recent servers only). */
  flavor?: ClickHouseFlavor
}): Promise<void> {
  const admin = new pg.Client({ connectionString: opts.postgresAdminUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${opts.database}`)
  } finally {
    await admin.end()
  }
  await Promise.all([
    seedPostgres(opts.postgresUrl, opts.pgScale ?? opts.scale),
    seedClickHouse(opts.clickhouse, opts.database, { scale: opts.scale, flavor: opts.flavor ?? 'legacy' }),
  ])
  // Merges settle the parts the way a long-lived server would have them before a backup.
  const tables = await opts.clickhouse.query<{ name: string }>(
    `SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree'`,
    { db: opts.database },
  )
  for (const { name } of tables) {
    await opts.clickhouse.command(`OPTIMIZE TABLE \`${opts.database}\`.\`${name}\` FINAL`).catch(() => {})
  }
}

/** Bytes on disk: the Postgres database and the active parts of every ClickHouse table. */
export async function dataSizes(opts: {
  postgresUrl: string
  clickhouse: ClickHouseConnection
  database: string
}): Promise<DataSizes> {
  const client = new pg.Client({ connectionString: opts.postgresUrl })
  await client.connect()
  let postgresBytes: number
  try {
    const r = await client.query<{ s: string }>('SELECT pg_database_size(current_database()) AS s')
    postgresBytes = Number(r.rows[0]!.s)
  } finally {
    await client.end()
  }
  const rows = await opts.clickhouse.query<{
    table: string
    rows: string
    bytes: string
    partitions: string
  }>(
    `SELECT table, sum(rows) AS rows, sum(bytes) AS bytes, uniqExact(partition) AS partitions
     FROM system.parts WHERE database = {db:String} AND active GROUP BY table ORDER BY table`,
    { db: opts.database },
  )
  const clickhouseTables = rows.map((r) => ({
    table: r.table,
    rows: Number(r.rows),
    bytes: Number(r.bytes),
    partitions: Number(r.partitions),
  }))
  return {
    postgresBytes,
    clickhouseBytes: clickhouseTables.reduce((s, t) => s + t.bytes, 0),
    clickhouseTables,
  }
}
