import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { ClickHouseError, ConfigError } from '#core/errors.ts'
import { freePort } from '#devtools/servers.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { nativeRowCounter } from '#engines/clickhouse/nativeRowCounter.ts'

const { clickhouse } = inject('servers')
const suffix = randomBytes(3).toString('hex')
const chdbDir = mkdtempSync(join(tmpdir(), 'lsb-chdb-conn-'))
const httpUrl = (db: string, password = clickhouse.password) =>
  `http://default:${encodeURIComponent(password)}@127.0.0.1:${clickhouse.port}/${db}`

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

describe('Function: connectClickHouse', () => {
  it('keeps the password out of errors: wrong password, closed port, malformed URL', async () => {
    const secret = `Wr0ng-${suffix}-pass`
    const wrong = connectClickHouse(httpUrl('langsight', secret))
    await expect(wrong).rejects.toBeInstanceOf(ClickHouseError)
    await expect(wrong).rejects.not.toThrow(secret)
    await expect(wrong).rejects.toThrow('default:***@')

    const closed = connectClickHouse(`http://default:${secret}@127.0.0.1:${await freePort()}/x`)
    await expect(closed).rejects.toThrow(/not reachable/)
    await expect(closed).rejects.not.toThrow(secret)

    const malformed = connectClickHouse(`http://default:${secret}@[::1/x`)
    await expect(malformed).rejects.toBeInstanceOf(ConfigError)
    await expect(malformed).rejects.not.toThrow(secret)
  })

  it('takes the database from the URL path or ?database=, langsight by default', async () => {
    const http = await connectClickHouse(httpUrl(''))
    expect(http).toMatchObject({ kind: 'http', database: 'langsight' })
    await http.close()
    await expect(connectClickHouse('chdb://relative/dir')).rejects.toBeInstanceOf(ConfigError)
    await expect(connectClickHouse(`chdb://${chdbDir}?database=a;b`)).rejects.toThrow(
      /database "a;b" is not accepted/,
    )
  })
})

describe.each([
  { name: `clickhouse-server ${clickhouse.version}`, url: (db: string) => httpUrl(db) },
  { name: 'chdb', url: (db: string) => `chdb://${chdbDir}?database=${db}` },
])('Function: ClickHouseConnection — $name', ({ name, url }) => {
  const db = `lsb_conn_${name.startsWith('chdb') ? 'chdb' : 'http'}_${suffix}`
  let conn: ClickHouseConnection

  beforeAll(async () => {
    conn = await connectClickHouse(url(db))
    await conn.command(`CREATE DATABASE ${db}`)
    await conn.command(`CREATE TABLE ${db}.notes (id UInt64, note String) ENGINE = MergeTree ORDER BY id`)
    await conn.command(`CREATE TABLE ${db}.copy (id UInt64, note String) ENGINE = MergeTree ORDER BY id`)
    await conn.command(
      `INSERT INTO ${db}.notes SELECT number, if(number = 7, 'it''s a \\\\ back\\'slash', toString(number)) FROM numbers(100000)`,
    )
  })

  afterAll(async () => {
    await conn.command(`DROP DATABASE IF EXISTS ${db}`)
    await conn.close()
    if (name === 'chdb') rmSync(chdbDir, { recursive: true, force: true })
  })

  it('binds parameters with quotes and backslashes as values, whether or not the engine binds them', async () => {
    const rows = await conn.query<{ id: string }>(`SELECT id FROM ${db}.notes WHERE note = {note:String}`, {
      note: "it's a \\ back'slash",
    })
    expect(rows.map((r) => Number(r.id))).toEqual([7])
    const exported = await collect(
      await conn.exportNative(`SELECT id, note FROM ${db}.notes WHERE note = {note:String}`, {
        note: "it's a \\ back'slash",
      }),
    )
    const counter = nativeRowCounter(['id', 'note'])
    await pipeline(Readable.from([exported]), counter.stream, new Writable({ write: (_c, _e, cb) => cb() }))
    expect(counter.rows()).toBe(1)
  })

  it('streams Native out and back in unchanged', async () => {
    // a chdb export holds its engine until its stream ends: the body is read first, then inserted
    const body = await collect(await conn.exportNative(`SELECT id, note FROM ${db}.notes`))
    await conn.insertNative(`\`${db}\`.\`copy\``, Readable.from([body]))
    const [a] = await conn.query<{ h: string }>(
      `SELECT toString(groupBitXor(cityHash64(id, note))) AS h FROM ${db}.notes`,
    )
    const [b] = await conn.query<{ h: string }>(
      `SELECT toString(groupBitXor(cityHash64(id, note))) AS h FROM ${db}.copy`,
    )
    expect(b).toEqual(a)
    await conn.command(`TRUNCATE TABLE ${db}.copy`)
  })

  it('fails, without hanging, when the table does not exist or the body breaks half-way', async () => {
    const body = await collect(await conn.exportNative(`SELECT id, note FROM ${db}.notes`))
    await expect(conn.insertNative(`\`${db}\`.\`missing\``, Readable.from([body]))).rejects.toBeInstanceOf(
      ClickHouseError,
    )
    const breaking = new Readable({
      read() {
        this.push(body.subarray(0, Math.floor(body.length / 2)))
        this.destroy(new Error('connection reset by peer'))
      },
    })
    await expect(conn.insertNative(`\`${db}\`.\`copy\``, breaking)).rejects.toThrow(
      /connection reset by peer/,
    )
    // the connection is still usable afterwards
    await conn.insertNative(`\`${db}\`.\`copy\``, Readable.from([body]))
    const [row] = await conn.query<{ n: string }>(`SELECT toString(count()) AS n FROM ${db}.copy`)
    expect(Number(row!.n)).toBeGreaterThanOrEqual(100000)
  })

  it('an exception the server raises mid-stream makes the export fail, not end short', async () => {
    const stream = await conn.exportNative(
      `SELECT number, throwIf(number = 150000) AS boom FROM numbers(300000) SETTINGS max_block_size = 1000`,
    )
    const counter = nativeRowCounter(['number', 'boom'])
    const draining = pipeline(stream, counter.stream, new Writable({ write: (_c, _e, cb) => cb() }))
    await expect(draining).rejects.toThrow()
    expect(counter.rows()).toBeNull()
  })
})
