/**
 * What a content fingerprint costs (issue 12), against what the backup itself costs on the same
 * data, in one run:
 *   Postgres: pg_dump of one big table to /dev/null, then the fingerprint of the same table
 *   (`full`: md5 of every row; `rows`: count only), each in its own REPEATABLE READ transaction.
 *   ClickHouse (chdb, in process): the export of one big table as Native+zstd to a file, then, on
 *   that file, count() alone (what the server-side path always read) and count() + the row hash.
 *
 *   npx tsx bench/fingerprintCost.ts [--rows 2000000]
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { humanBytes } from '#core/humanBytes.ts'
import { postgresBinDir, startPostgres } from '#devtools/servers.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { storedColumnTypes } from '#engines/clickhouse/describeDatabase.ts'
import { rowHashArguments } from '#engines/clickhouse/fingerprint.ts'
import { fingerprintTables } from '#engines/postgres/fingerprint.ts'

const { values } = parseArgs({ options: { rows: { type: 'string', default: '2000000' } } })
const rows = Number(values.rows)

async function timed<T>(what: string, fn: () => Promise<T> | T): Promise<{ seconds: number; value: T }> {
  const started = performance.now()
  const value = await fn()
  const seconds = (performance.now() - started) / 1000
  process.stderr.write(`${what.padEnd(44)} ${seconds.toFixed(2).padStart(7)} s\n`)
  return { seconds, value }
}

const pgServer = await startPostgres()
const dir = mkdtempSync(join(tmpdir(), 'lsb-fpcost-'))
try {
  // ── Postgres: a spans-like table
  const url = pgServer.url('postgres')
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  await client.query(`CREATE TABLE spans AS SELECT i AS id, md5(i::text) AS name, now() - i * interval '1 s' AS at,
    (i % 1000) * 1.25 AS cost, CASE WHEN i % 7 = 0 THEN NULL ELSE 'ok' END AS status FROM generate_series(1, ${rows}) i`)
  await client.query('VACUUM ANALYZE spans')
  const [{ size }] = (await client.query("SELECT pg_total_relation_size('spans') AS size")).rows
  process.stderr.write(`postgres: ${rows} rows, ${humanBytes(Number(size))} on disk\n`)
  const pgDump = () =>
    new Promise<void>((resolve, reject) => {
      const args = ['--format=custom', '--compress=1', '--no-sync', '-t', 'spans', '-f', '/dev/null', url]
      spawn(join(postgresBinDir(), 'pg_dump'), args, { stdio: 'inherit' }).on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`pg_dump exited ${code}`)),
      )
    })
  const dump = await timed('pg_dump --compress=gzip:1 > /dev/null', pgDump)
  const inSnapshot = async (mode: 'full' | 'rows') => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
    try {
      return await fingerprintTables(client, mode)
    } finally {
      await client.query('COMMIT')
    }
  }
  const pgFull = await timed('postgres fingerprint full', () => inSnapshot('full'))
  const pgRows = await timed('postgres fingerprint rows', () => inSnapshot('rows'))
  // as SnapshotPostgres runs them: side by side
  const both = await timed('pg_dump and fingerprint full, side by side', () =>
    Promise.all([pgDump(), inSnapshot('full')]),
  )
  await client.end()

  // ── ClickHouse (chdb): the same shape, MergeTree
  const ch = await connectClickHouse(`chdb://${dir}/chdb?database=bench`)
  await ch.command('CREATE DATABASE IF NOT EXISTS bench')
  await ch.command(`CREATE TABLE bench.spans (id UInt64, name String, at DateTime64(3), cost Float64,
    status Nullable(String), tags Array(String)) ENGINE = MergeTree ORDER BY id`)
  await ch.command(`INSERT INTO bench.spans SELECT number, hex(MD5(toString(number))), now64(3) - number,
    (number % 1000) * 1.25, if(number % 7 = 0, NULL, 'ok'), ['a', toString(number % 10)] FROM numbers(${rows})`)
  const file = join(dir, 'spans.native.zst')
  const exported = await timed('chdb export Native+zstd to a file', () =>
    ch.command(`SELECT * FROM bench.spans INTO OUTFILE '${file}' COMPRESSION 'zstd' FORMAT Native`),
  )
  const columns = await storedColumnTypes(ch, 'bench', 'spans')
  const structure = columns.map((c) => `${c.name} ${c.type}`).join(', ')
  const source = `file('${file}', 'Native', '${structure}', 'zstd')`
  const count = await timed('chdb count() of the stored object', () =>
    ch.query(`SELECT count() FROM ${source}`),
  )
  const hashed = await timed('chdb count() + row hash of the stored object', () =>
    ch.query(`SELECT count(), sum(cityHash64(${rowHashArguments(columns)})) FROM ${source}`),
  )
  await ch.close()

  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`
  process.stdout.write(
    [
      `rows: ${rows}; object ${humanBytes(statSync(file).size)}`,
      `postgres: fingerprint full ${ratio(pgFull.seconds, dump.seconds)} of pg_dump's time, rows-only ${ratio(pgRows.seconds, dump.seconds)}; ` +
        `pg_dump with the fingerprint beside it ${ratio(both.seconds, dump.seconds)} of pg_dump alone`,
      `clickhouse: export ${exported.seconds.toFixed(2)} s; reading the object back for count() ${count.seconds.toFixed(2)} s, ` +
        `count() + hash ${hashed.seconds.toFixed(2)} s: the hash adds ${ratio(hashed.seconds - count.seconds, exported.seconds)} of the export's time`,
      '',
    ].join('\n'),
  )
} finally {
  await pgServer.stop()
  rmSync(dir, { recursive: true, force: true })
}
