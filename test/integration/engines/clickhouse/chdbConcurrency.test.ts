import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { createGunzip, gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'

/**
 * The pattern that hung restores into the embedded engine: more parallel inserts than libuv has
 * pool threads (4), each on a connection of its own, each fed from a gunzip stream (zlib runs on
 * that pool too) and big enough not to fit in a pipe. Before the fix, 4 of 5 such restores sat at
 * 0% CPU for good; here every round must finish within its deadline.
 */
const ROUNDS = 20
const PARALLEL = 8
const ROWS = 60_000

const dir = mkdtempSync(join(tmpdir(), 'lsb-chdb-'))
const url = `chdb://${dir}?database=lsb_concurrency`
let admin: ClickHouseConnection
let gzippedBody: Buffer

const fifoDirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith(`lsb-chdb-fifo-${process.pid}-`))

beforeAll(async () => {
  admin = await connectClickHouse(url)
  await admin.command('CREATE DATABASE lsb_concurrency')
  await admin.command(
    'CREATE TABLE lsb_concurrency.source (id UInt64, note String) ENGINE = MergeTree ORDER BY id',
  )
  await admin.command(
    `INSERT INTO lsb_concurrency.source SELECT number, repeat(toString(number), 3) FROM numbers(${ROWS})`,
  )
  const chunks: Buffer[] = []
  for await (const chunk of await admin.exportNative('SELECT id, note FROM lsb_concurrency.source')) {
    chunks.push(chunk)
  }
  gzippedBody = gzipSync(Buffer.concat(chunks), { level: 1 })
  for (let i = 0; i < PARALLEL; i++) {
    await admin.command(`CREATE TABLE lsb_concurrency.t${i} AS lsb_concurrency.source`)
  }
})

afterAll(async () => {
  await admin?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('Function: ClickHouseConnection — chdb under parallel Map items', () => {
  it(`loads ${PARALLEL} gzip bodies at once on ${PARALLEL} connections, ${ROUNDS} rounds, never hanging`, async () => {
    // Prepare: one connection per item, as each Map item of RestoreClickHouse opens its own
    const conns = await Promise.all(Array.from({ length: PARALLEL }, () => connectClickHouse(url)))
    try {
      for (let round = 0; round < ROUNDS; round++) {
        // Act
        const loads = conns.map((conn, i) =>
          conn.insertNative(`lsb_concurrency.t${i}`, Readable.from([gzippedBody]).pipe(createGunzip())),
        )
        let timer: NodeJS.Timeout | undefined
        const hung = new Promise<'hung'>((resolve) => {
          timer = setTimeout(() => resolve('hung'), 20_000)
        })
        const outcome = await Promise.race([Promise.all(loads).then(() => 'done' as const), hung])
        clearTimeout(timer)
        // Assess
        expect(outcome, `round ${round}`).toBe('done')
      }
      const counts = await admin.query<{ n: string }>(
        `SELECT toString(count()) AS n FROM merge('lsb_concurrency', '^t[0-9]+$')`,
      )
      expect(Number(counts[0]!.n)).toBe(ROUNDS * PARALLEL * ROWS)
      expect(fifoDirs()).toEqual([])
    } finally {
      await Promise.all(conns.map((c) => c.close()))
    }
  }, 240_000)
})
