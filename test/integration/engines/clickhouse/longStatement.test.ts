import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { followStatement } from '#engines/clickhouse/longStatement.ts'
import { newQueryId } from '#engines/clickhouse/s3Transfer.ts'
import { clickhouseServerUrl } from '../../../support/env.ts'

const db = `lsb_long_${Date.now()}`
let admin: ClickHouseConnection

beforeAll(async () => {
  admin = await connectClickHouse(clickhouseServerUrl('default'))
  await admin.command(`CREATE DATABASE ${db}`)
  await admin.command(`CREATE TABLE ${db}.t (n UInt64, s String) ENGINE = MergeTree ORDER BY n`)
})

afterAll(async () => {
  await admin?.command(`DROP DATABASE IF EXISTS ${db}`)
  await admin?.close()
})

describe('Function: followStatement (clickhouse-server 18.16 over HTTP)', () => {
  it('leaves a statement running on the server when its invocation ends, and a later connection follows it to the end', async () => {
    // Prepare: an INSERT … SELECT that takes a few seconds on this server
    const sql = `INSERT INTO ${db}.t SELECT number, toString(cityHash64(number)) FROM system.numbers LIMIT 30000000`
    const queryId = newQueryId()
    const first = await connectClickHouse(clickhouseServerUrl(db))
    // Act: the first "invocation" stops waiting almost at once and closes its connection
    const started = await followStatement(first, { sql, queryId, started: false, untilMs: Date.now() + 200 })
    await first.close()
    const runningAfterClose = await admin.isRunning(queryId)
    const second = await connectClickHouse(clickhouseServerUrl(db))
    const followed = await followStatement(second, {
      sql: '',
      queryId,
      started: true,
      untilMs: Date.now() + 120_000,
    })
    await second.close()
    // Assess: the server kept it running and finished it; the follower saw it go
    expect(started).toBe('running')
    expect(runningAfterClose).toBe(true)
    expect(['finished', 'gone']).toContain(followed)
    const [row] = await admin.query<{ n: string }>(`SELECT toString(count()) AS n FROM ${db}.t`)
    expect(row!.n).toBe('30000000')
  }, 180_000)

  it('reports a statement that ended with an error in this process to the invocation that follows it', async () => {
    // Prepare: a statement the server refuses only once it runs (division by zero, per row)
    const queryId = newQueryId()
    const sql = `INSERT INTO ${db}.t SELECT number, toString(intDiv(1, number - 5000000)) FROM system.numbers LIMIT 10000000`
    // Act
    const started = await followStatement(admin, { sql, queryId, started: false, untilMs: Date.now() })
    const followed = followStatement(admin, {
      sql: '',
      queryId,
      started: true,
      untilMs: Date.now() + 120_000,
    })
    // Assess
    expect(started).toBe('running')
    await expect(followed).rejects.toThrow(/Division by zero/i)
  }, 180_000)
})
