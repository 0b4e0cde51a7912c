import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { hashObject, openObject } from '#catalog/objectStore.ts'
import { tableDataKey } from '#core/backupKeys.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { exportTableToS3 } from '#engines/clickhouse/exportTable.ts'
import { nativeRowCounter } from '#engines/clickhouse/nativeRowCounter.ts'

const { s3 } = inject('servers')
const bucket = s3.bucket
const suffix = randomBytes(3).toString('hex')
const dir = mkdtempSync(join(tmpdir(), 'lsb-chdb-export-'))
const db = `lsb_export_${suffix}`
const backupId = '20261125T144226.123Z'

/** Every column layout the Native counter has to skip, several blocks of them. */
const WIDE = `CREATE TABLE ${db}.wide (
  id UInt64, i128 Int128, u256 UInt256, f32 Float32, b Bool, d32 Date32, dt DateTime('UTC'),
  dt64 DateTime64(6, 'UTC'), dec Decimal(38, 10), ndec Nullable(Decimal(9, 2)), uuid UUID, ip6 IPv6,
  e16 Enum16('a' = 1, 'b, c' = 1000), fs FixedString(5), s String, lc LowCardinality(String),
  lcn LowCardinality(Nullable(String)), arr Array(Nullable(String)), arr_lc Array(LowCardinality(String)),
  nested_arr Array(Array(UInt32)), tup Tuple(a String, \`b c\` Array(UInt8)), m Map(String, Array(String)),
  mlc Map(LowCardinality(String), UInt64), pt Point, ring Ring, saf SimpleAggregateFunction(sum, UInt64),
  n Nested(x String, y UInt8)
) ENGINE = MergeTree PARTITION BY id % 4 ORDER BY id`

const FILL = `INSERT INTO ${db}.wide SELECT
  number, number * 1000000000000, number, number / 3, number % 2, toDate32('2000-01-01') + number % 9000,
  toDateTime('2020-01-01 00:00:00', 'UTC') + number, now64(6), number / 7, if(number % 3 = 0, NULL, number / 9),
  generateUUIDv4(), toIPv6('::1'), if(number % 2 = 0, 'a', 'b, c'), toFixedString(toString(number % 99999), 5),
  repeat('x', number % 300), toString(number % 20000), if(number % 5 = 0, NULL, toString(number % 50)),
  [toString(number), NULL], [toString(number % 3), toString(number % 10000)], [range(number % 3), [1]],
  (toString(number), [1, 2]), map(toString(number % 10), [toString(number)]), map('k', number),
  (number, 1.5), [(0., 0.), (1., 1.)], number, [toString(number)], [number % 256]
FROM numbers(70000)`

describe('Function: exportTableToS3', () => {
  let conn: ClickHouseConnection

  beforeAll(async () => {
    conn = await connectClickHouse(`chdb://${dir}?database=${db}`)
    await conn.command(`CREATE DATABASE ${db}`)
    await conn.command(WIDE)
    await conn.command(FILL, undefined, { max_block_size: 30000 })
    await conn.command(
      `CREATE TABLE ${db}.states (k String, u AggregateFunction(uniq, UInt64)) ENGINE = AggregatingMergeTree ORDER BY k`,
    )
    await conn.command(
      `INSERT INTO ${db}.states SELECT toString(number % 10), uniqState(number) FROM numbers(1000) GROUP BY 1`,
    )
  })

  afterAll(async () => {
    await conn.command(`DROP DATABASE IF EXISTS ${db}`)
    await conn.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('stores a table as gzip Native, its sha256 and its exact row count, for every column layout', async () => {
    // Prepare
    const key = tableDataKey(`export-${suffix}`, backupId, 'wide', 'all')
    const item = { table: 'wide', part: 'all', partitions: null, rows: 0, bytes: 0 }
    // Act
    const stored = await exportTableToS3(conn, { item, bucket, key, gzipLevel: 1 })
    // Assess
    expect(stored).toMatchObject({ key, table: 'wide', part: 'all', rows: 70000, compression: 'gzip' })
    expect(await hashObject(bucket, key)).toEqual({ bytes: stored.bytes, sha256: stored.sha256 })
    // the stored bytes are a Native stream the counter reads to the same count
    const counter = nativeRowCounter()
    await pipeline(
      await openObject(bucket, key),
      createGunzip(),
      counter.stream,
      new Writable({ write: (_c, _e, cb) => cb() }),
    )
    expect(counter.rows()).toBe(70000)
    // and they load back into the same table definition unchanged, MATERIALIZED-free columns and all
    await conn.command(`CREATE TABLE ${db}.wide_copy AS ${db}.wide`)
    const body = (await openObject(bucket, key)).pipe(createGunzip())
    await conn.insertNative(`\`${db}\`.\`wide_copy\``, body)
    const hash = async (t: string) =>
      conn.query(`SELECT count() AS n, groupBitXor(cityHash64(toString(tuple(*)))) AS h FROM ${db}.${t}`)
    expect(await hash('wide_copy')).toEqual(await hash('wide'))
  })

  it('exports one partition only', async () => {
    const key = tableDataKey(`export-${suffix}`, backupId, 'wide', 'partition-2')
    const item = { table: 'wide', part: 'partition-2', partitions: ['2'], rows: 0, bytes: 0 }
    const stored = await exportTableToS3(conn, { item, bucket, key, gzipLevel: 6 })
    expect(stored.rows).toBe(17500)
  })

  it('records no row count (null) for a column layout the counter cannot skip', async () => {
    const key = tableDataKey(`export-${suffix}`, backupId, 'states', 'all')
    const item = { table: 'states', part: 'all', partitions: null, rows: 0, bytes: 0 }
    const stored = await exportTableToS3(conn, { item, bucket, key, gzipLevel: 1 })
    expect(stored.rows).toBeNull()
    expect(stored.bytes).toBeGreaterThan(0)
  })

  it('fails on a table that does not exist, storing nothing', async () => {
    const key = tableDataKey(`export-${suffix}`, backupId, 'nope', 'all')
    const item = { table: 'nope', part: 'all', partitions: null, rows: 0, bytes: 0 }
    await expect(exportTableToS3(conn, { item, bucket, key, gzipLevel: 1 })).rejects.toThrow(/does not exist/)
    await expect(hashObject(bucket, key)).rejects.toThrow()
  })
})
