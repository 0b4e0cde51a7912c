import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { hashObject } from '#catalog/objectStore.ts'
import { tableDataKey } from '#core/backupKeys.ts'
import { ChecksumMismatchError } from '#core/errors.ts'
import { restoreNames } from '#core/names.ts'
import type { RestoreItem } from '#core/payloads.ts'
import { redact } from '#core/redact.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import {
  chooseTransfer,
  exportThroughS3,
  loadThroughS3,
  type ServerS3,
} from '#engines/clickhouse/s3Transfer.ts'

const { s3, clickhouse } = inject('servers')
const bucket = s3.bucket
const suffix = randomBytes(3).toString('hex')
const dir = mkdtempSync(join(tmpdir(), 'lsb-chdb-s3-'))
const db = `lsb_s3_${suffix}`
const { staging } = restoreNames(db)
const backupId = '20261204T120000.000Z'
const target: ServerS3 = {
  bucketUrl: `${s3.endpoint}/${bucket}`,
  auth: { kind: 'keys', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
}
const far = () => Date.now() + 120_000
const DAYS = 5000

describe('Function: exportThroughS3 / loadThroughS3 (chdb)', () => {
  let conn: ClickHouseConnection

  beforeAll(async () => {
    conn = await connectClickHouse(`chdb://${dir}?database=${db}`)
    await conn.command(`CREATE DATABASE ${db}`)
    await conn.command(`CREATE DATABASE ${staging}`)
    const ddl = (name: string) =>
      `CREATE TABLE ${name} (d Date, id UInt64, s String, m UInt64 MATERIALIZED id * 2)
       ENGINE = MergeTree PARTITION BY d ORDER BY id`
    await conn.command(ddl(`${db}.daily`))
    await conn.command(ddl(`${staging}.daily`))
    await conn.command(
      `INSERT INTO ${db}.daily SELECT toDate('2010-01-01') + number % ${DAYS}, number, toString(number) FROM numbers(20000)
       SETTINGS max_partitions_per_insert_block = 0`,
    )
  }, 120_000)

  afterAll(async () => {
    await conn?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('chooses the server-side path where the s3 table function exists, streaming on 18.16', async () => {
    // Act / Assess
    expect(await chooseTransfer(conn, 'auto')).toBe('server')
    expect(await chooseTransfer(conn, 'stream')).toBe('stream')
    const old = await connectClickHouse(
      `http://default:${clickhouse.password}@127.0.0.1:${clickhouse.port}/default`,
    )
    try {
      expect(await chooseTransfer(old, 'auto')).toBe('stream')
      await expect(chooseTransfer(old, 'server')).rejects.toThrow(
        /LSB_CLICKHOUSE_TRANSFER=server.*no s3 table function/,
      )
    } finally {
      await old.close()
    }
  })

  it('exports a 5,000-partition table as one zstd object and loads it back whole, without changing server defaults', async () => {
    // Prepare
    const key = tableDataKey(`s3t-${suffix}`, backupId, 'daily', 'all', 'zstd')
    const item = { table: 'daily', part: 'all', partitions: null, rows: 20000, bytes: 0 }
    // Act
    const exported = await exportThroughS3(conn, { item, bucket, key, target, queryId: null, untilMs: far() })
    if (exported.state !== 'done') throw new Error('export did not finish')
    const stored = exported.result
    const restoreItem: RestoreItem = {
      table: 'daily',
      stagingTable: 'daily',
      key,
      sha256: stored.sha256,
      bytes: stored.bytes,
      rows: stored.rows,
      compression: 'zstd',
      partitions: null,
    }
    const loaded = await loadThroughS3(conn, {
      item: restoreItem,
      stagingDatabase: staging,
      bucket,
      target,
      queryId: null,
      untilMs: far(),
    })
    // Assess
    expect(stored).toMatchObject({ rows: 20000, compression: 'zstd', key })
    expect(await hashObject(bucket, key)).toEqual({ sha256: stored.sha256, bytes: stored.bytes })
    expect(loaded).toEqual({ state: 'done', result: { rows: 20000 } })
    const [same] = await conn.query<{ a: string; b: string; p: string }>(
      `SELECT (SELECT toString(sum(cityHash64(d, id, s, m))) FROM ${db}.daily) AS a,
              (SELECT toString(sum(cityHash64(d, id, s, m))) FROM ${staging}.daily) AS b,
              (SELECT toString(uniqExact(_partition_id)) FROM ${staging}.daily) AS p`,
    )
    expect(same!.b).toBe(same!.a)
    expect(same!.p).toBe(String(DAYS))
    const [limit] = await conn.query<{ v: string }>(
      "SELECT value AS v FROM system.settings WHERE name = 'max_partitions_per_insert_block'",
    )
    expect(Number(limit!.v)).toBeGreaterThan(0)

    // a second load of the same object (a retry) replaces what the first loaded
    const again = await loadThroughS3(conn, {
      item: restoreItem,
      stagingDatabase: staging,
      bucket,
      target,
      queryId: null,
      untilMs: far(),
    })
    expect(again).toEqual({ state: 'done', result: { rows: 20000 } })

    // a changed byte is refused before the server reads anything
    const bad = { ...restoreItem, sha256: '0'.repeat(64) }
    await expect(
      loadThroughS3(conn, {
        item: bad,
        stagingDatabase: staging,
        bucket,
        target,
        queryId: null,
        untilMs: far(),
      }),
    ).rejects.toBeInstanceOf(ChecksumMismatchError)
  }, 120_000)

  it('leaves a statement running at the deadline and finishes it when followed by its query id', async () => {
    // Prepare
    await conn.command(`CREATE TABLE ${db}.big (id UInt64, s String) ENGINE = MergeTree ORDER BY id`)
    await conn.command(
      `INSERT INTO ${db}.big SELECT number, repeat(toString(number), 20) FROM numbers(3000000)`,
    )
    const key = tableDataKey(`s3t-${suffix}`, backupId, 'big', 'all', 'zstd')
    const item = { table: 'big', part: 'all', partitions: null, rows: 0, bytes: 0 }
    // Act: a deadline that has already passed
    const first = await exportThroughS3(conn, {
      item,
      bucket,
      key,
      target,
      queryId: null,
      untilMs: Date.now(),
    })
    if (first.state !== 'running') throw new Error(`expected running, got ${first.state}`)
    const second = await exportThroughS3(conn, {
      item,
      bucket,
      key,
      target,
      queryId: first.queryId,
      untilMs: far(),
    })
    // Assess
    expect(second.state).toBe('done')
    if (second.state === 'done') expect(second.result.rows).toBe(3_000_000)
  }, 120_000)

  it('keeps passed credentials out of its errors', async () => {
    // Prepare
    const secret = `lsb-secret-${randomBytes(6).toString('hex')}`
    const wrong: ServerS3 = {
      bucketUrl: `${s3.endpoint}/lsb-no-such-bucket`,
      auth: { kind: 'keys', accessKeyId: 'S3RVER', secretAccessKey: secret, sessionToken: `${secret}-token` },
    }
    const key = tableDataKey(`s3t-${suffix}`, backupId, 'daily', 'denied', 'zstd')
    // Act
    const error = await exportThroughS3(conn, {
      item: { table: 'daily', part: 'denied', partitions: null, rows: 0, bytes: 0 },
      bucket,
      key,
      target: wrong,
      queryId: null,
      untilMs: far(),
    }).catch((e: Error) => e)
    // Assess
    expect(error).toBeInstanceOf(Error)
    const text = `${(error as Error).message} ${(error as Error).stack} ${redact(JSON.stringify(error))}`
    expect(text).not.toContain(secret)
  }, 60_000)
})
