/**
 * pg_dump throughput: our streamed dump (dumpPostgresToS3: pg_dump → hash → S3 multipart upload)
 * against the runbook's plain `pg_dump -Fc` to a local file, on the same database in the same run.
 * Starts a throwaway PostgreSQL and s3rver on loopback, fills a table with hex text generated
 * server-side (compresses about 2:1), then per compress level runs the plain dump and ours once
 * each and prints wall time, MB/s of database, bytes and the ratio ours/plain.
 *
 *   npx tsx bench/pgDumpThroughput.ts [--rows 200000] [--levels 1,9] [--timeout-seconds 600]
 *
 * 200 000 rows are about 200 MB of database. Levels are gzip's (LSB_PG_COMPRESS); 9 is the runbook's.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { hashObject } from '#catalog/objectStore.ts'
import { resetConfig } from '#core/config.ts'
import { startPostgres, startS3 } from '#devtools/servers.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { killRunningChildren, measure } from './measure.ts'

const { values: argv } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    levels: { type: 'string', default: '1,9' },
    'timeout-seconds': { type: 'string', default: '600' },
  },
})
const rows = Number(argv.rows)
const levels = argv.levels.split(',').map(Number)
const timeoutMs = Number(argv['timeout-seconds']) * 1000
if (!Number.isInteger(rows) || rows <= 0) throw new Error('--rows must be a positive integer')
if (levels.some((l) => !Number.isInteger(l) || l < 0 || l > 9)) throw new Error('--levels must be 0–9')
const say = (text: string) => process.stderr.write(`== ${text}\n`)
const mb = (bytes: number) => (bytes / 1e6).toFixed(1)

process.on('SIGINT', () => {
  killRunningChildren()
  process.exit(130)
})

const [postgres, s3] = await Promise.all([startPostgres(), startS3()])
const workDir = mkdtempSync(join(tmpdir(), 'lsb-bench-pgdump-'))
try {
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    LSB_BUCKET: s3.bucket,
  })
  resetConfig()
  const database = 'throughput'
  const admin = new pg.Client({ connectionString: postgres.url('postgres') })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${database}`)
  await admin.end()
  say(`generating ${rows} rows`)
  const client = new pg.Client({ connectionString: postgres.url(database) })
  await client.connect()
  await client.query(
    `CREATE TABLE spans AS
       SELECT g AS id, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 32) i) AS body
         FROM generate_series(1, $1::int) g`,
    [rows],
  )
  const size = await client.query('SELECT pg_database_size(current_database())::bigint AS size')
  await client.end()
  const dbBytes = Number(size.rows[0].size)
  say(`database: ${mb(dbBytes)} MB`)

  const lines: string[] = []
  for (const level of levels) {
    // The runbook's command: pg_dump -Fc to a file.
    say(`level ${level}: plain pg_dump -Fc`)
    const file = join(workDir, `plain-${level}.dump`)
    const plain = await measure(
      join(postgres.binDir, 'pg_dump'),
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(postgres.port),
        '-U',
        'postgres',
        '--format=custom',
        `--compress=${level}`,
        '-f',
        file,
        database,
      ],
      { label: `pg_dump -Fc -Z${level}`, env: { ...process.env, PGPASSWORD: postgres.password }, timeoutMs },
    )
    const plainBytes = statSync(file).size
    rmSync(file)
    // Ours: streamed into S3 while hashed.
    say(`level ${level}: dumpPostgresToS3`)
    const key = `bench/level-${level}.dump`
    const started = performance.now()
    const ours = await dumpPostgresToS3({
      url: postgres.url(database),
      bucket: s3.bucket,
      key,
      compression: level === 0 ? { method: 'none', level: null } : { method: 'gzip', level },
      binDir: postgres.binDir,
    })
    const oursMs = performance.now() - started
    const stored = await hashObject(s3.bucket, key)
    if (stored.sha256 !== ours.sha256) throw new Error(`s3://${s3.bucket}/${key}: stored sha256 differs`)
    const rate = (ms: number) => `${(dbBytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`
    lines.push(
      `level ${level}: plain pg_dump -Fc ${(plain.wallMs / 1000).toFixed(1)} s (${rate(plain.wallMs)}, ${mb(plainBytes)} MB)` +
        ` · ours ${(oursMs / 1000).toFixed(1)} s (${rate(oursMs)}, ${mb(ours.bytes)} MB)` +
        ` · ours/plain ${(oursMs / plain.wallMs).toFixed(2)}×`,
    )
  }
  console.log(`pg_dump throughput, ${mb(dbBytes)} MB database:\n  ${lines.join('\n  ')}`)
} finally {
  await Promise.all([postgres.stop(), s3.stop()])
  rmSync(workDir, { recursive: true, force: true })
}
