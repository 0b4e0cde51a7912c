import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { ClickHouseError } from '#core/errors.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { listClickHouseTables } from '#engines/clickhouse/listTables.ts'

const { clickhouse } = inject('servers')
const db = `lsb_list_${randomBytes(3).toString('hex')}`
const all = { include: [], exclude: [], splitBytes: 1 << 30 }

describe('Function: listClickHouseTables', () => {
  let conn: ClickHouseConnection

  beforeAll(async () => {
    conn = await connectClickHouse(
      `http://default:${encodeURIComponent(clickhouse.password)}@127.0.0.1:${clickhouse.port}/${db}`,
    )
    for (const sql of [
      `CREATE DATABASE ${db}`,
      `CREATE TABLE ${db}.spans (ts DateTime, kind String, cost Float64) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY ts`,
      `CREATE TABLE ${db}.cost (kind String, cost Float64) ENGINE = SummingMergeTree ORDER BY kind`,
      `CREATE VIEW ${db}.z_recent AS SELECT * FROM ${db}.spans WHERE ts > now() - 86400`,
      `CREATE VIEW ${db}.a_expensive AS SELECT * FROM ${db}.z_recent WHERE cost > 1`,
      `CREATE MATERIALIZED VIEW ${db}.cost_mv TO ${db}.cost AS SELECT kind, sum(cost) AS cost FROM ${db}.spans GROUP BY kind`,
      `CREATE MATERIALIZED VIEW ${db}.per_month ENGINE = SummingMergeTree ORDER BY m AS SELECT toStartOfMonth(ts) AS m, count() AS n FROM ${db}.spans GROUP BY m`,
      `CREATE TABLE ${db}.empty (id UInt64) ENGINE = MergeTree ORDER BY id`,
      `INSERT INTO ${db}.spans SELECT toDateTime('2025-01-01 00:00:00') + number * 86400 * 10, 'llm', number FROM numbers(60)`,
    ]) {
      await conn.command(sql)
    }
  })

  afterAll(async () => {
    await conn.command(`DROP DATABASE IF EXISTS ${db}`)
    await conn.close()
  })

  it('orders views after what they read, and brings an MV inner table along with its view', async () => {
    // Act
    const listing = await listClickHouseTables(conn, all)
    // Assess
    expect(listing.serverVersion).toBe(clickhouse.version)
    expect(listing.database).toBe(db)
    const names = listing.tables.map((t) => t.name)
    expect(names.slice(0, 4).sort()).toEqual(['.inner.per_month', 'cost', 'empty', 'spans'])
    expect(names.indexOf('a_expensive')).toBeGreaterThan(names.indexOf('z_recent'))
    const byName = Object.fromEntries(listing.tables.map((t) => [t.name, t]))
    expect(byName.per_month).toMatchObject({
      kind: 'materialized_view',
      target: '.inner.per_month',
      dependsOn: ['.inner.per_month', 'spans'],
      rows: 0,
    })
    expect(byName.cost_mv).toMatchObject({ target: 'cost', dependsOn: ['cost', 'spans'] })
    expect(byName.spans).toMatchObject({ kind: 'table', rows: 60, dependsOn: [] })
    expect(byName['.inner.per_month']!.rows).toBeGreaterThan(0)
    expect(listing.items.map((i) => `${i.table}/${i.part}`).sort()).toEqual(
      ['.inner.per_month/all', 'cost/all', 'empty/all', 'spans/all'].sort(),
    )
  })

  it('splits a table bigger than splitBytes into one item per partition', async () => {
    const listing = await listClickHouseTables(conn, { ...all, splitBytes: 1 })
    const spans = listing.items.filter((i) => i.table === 'spans')
    expect(spans.length).toBe(20)
    expect(
      spans.every((i) => i.part === `partition-${i.partitions?.[0]}` && i.partitions?.length === 1),
    ).toBe(true)
    expect(spans.reduce((n, i) => n + i.rows, 0)).toBe(60)
    // one partition: nothing to split
    expect(listing.items.filter((i) => i.table === 'cost')).toEqual([
      expect.objectContaining({ part: 'all', partitions: null }),
    ])
    expect(listing.items.find((i) => i.table === 'empty')).toMatchObject({ rows: 0, part: 'all' })
  })

  it('refuses filters that keep a view but leave out what it reads or writes', async () => {
    const failure = listClickHouseTables(conn, { ...all, exclude: ['cost'] })
    await expect(failure).rejects.toBeInstanceOf(ClickHouseError)
    await expect(failure).rejects.toThrow(/cost_mv depends on cost.*include cost or exclude cost_mv/)
    await expect(listClickHouseTables(conn, { ...all, include: ['a_*'] })).rejects.toThrow(
      /a_expensive depends on z_recent/,
    )
  })

  it('applies include and exclude globs', async () => {
    const listing = await listClickHouseTables(conn, { ...all, include: ['s*', 'e*'], exclude: ['*ty'] })
    expect(listing.tables.map((t) => t.name)).toEqual(['spans'])
  })

  it('refuses a table the restore could not recreate unless it is excluded', async () => {
    await conn.command(`CREATE TABLE ${db}.outbound (x String) ENGINE = URL('http://127.0.0.1:1/x', CSV)`)
    try {
      await expect(listClickHouseTables(conn, all)).rejects.toThrow(
        /outbound cannot be backed up.*exclude it/,
      )
      const listing = await listClickHouseTables(conn, { ...all, exclude: ['outbound'] })
      expect(listing.tables.map((t) => t.name)).not.toContain('outbound')
    } finally {
      await conn.command(`DROP TABLE ${db}.outbound`)
    }
  })
})
