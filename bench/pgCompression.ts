/**
 * Postgres compression and parallel restore (issue 10), with the PostgreSQL 17 tools of the pg tools
 * layer against a throwaway PostgreSQL 17 cluster and s3rver on loopback. Per data set and per
 * compression:
 *
 * - dump: dumpPostgresToS3 (pg_dump → hash → S3 multipart upload): wall time and bytes stored;
 * - streamed load: loadPostgresFromS3 with jobs 1 (S3 → pg_restore stdin, as before issue 10);
 * - for the `--parallel` compressions, loadPostgresFromS3 with `--jobs` jobs: the object copied to
 *   a temp dir, then `pg_restore -j` from it (custom format needs a seekable file for -j), end to
 *   end; and the copy alone, to see its share.
 *
 *   npx tsx bench/pgCompression.ts [--datasets pgbench:20,pgbench:60,langsight:300]
 *        [--methods gzip:1,gzip:6,zstd:1,zstd:3,lz4:1] [--parallel gzip:1,zstd:1] [--jobs 2] [--repeat 3]
 *
 * `pgbench:N` is `pgbench -i -s N` (server-side generation): one big table (pgbench_accounts) whose
 * blank-padded filler compresses far better than real data. `langsight:N` is devtools/sampleData's
 * LangSight-like schema (five tables of similar size, jsonb, arrays, indexes), 2 000 × N rows each.
 *
 * Each figure is the median of `--repeat` rounds. Prints one markdown table for bench/RESULTS.md. The PostgreSQL 17 build comes from
 * scripts/build-postgres.sh (bash scripts/setup.sh); pgbench from the PATH.
 */
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { openObject } from '#catalog/objectStore.ts'
import { loadSettings, type PgCompressionSetting, resetConfig } from '#core/config.ts'
import { seedPostgres } from '#devtools/sampleData.ts'
import { builtPostgres17, startPostgres, startS3 } from '#devtools/servers.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { loadPostgresFromS3 } from '#engines/postgres/loadPostgresFromS3.ts'
import { libraryPathFor } from '#engines/postgres/pgTool.ts'
import { discardRestoredPostgres } from '#engines/postgres/restorePostgresFromS3.ts'
import { killRunningChildren, measure } from './measure.ts'

const { values: argv } = parseArgs({
  options: {
    datasets: { type: 'string', default: 'pgbench:20,pgbench:60' },
    methods: { type: 'string', default: 'gzip:1,gzip:6,zstd:1,zstd:3,lz4:1' },
    parallel: { type: 'string', default: 'gzip:1,zstd:1' },
    jobs: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '3' },
    'timeout-seconds': { type: 'string', default: '900' },
  },
})
const datasets = argv.datasets.split(',').map((spec) => {
  const [kind, scale] = spec.split(':')
  if ((kind !== 'pgbench' && kind !== 'langsight') || !(Number(scale) > 0))
    throw new Error(`--datasets: ${spec} is not pgbench:<scale> or langsight:<scale>`)
  return { kind, scale: Number(scale), name: `${kind}_${scale}`.replace('.', '_') }
})
const methods = argv.methods.split(',')
const parallel = new Set(argv.parallel.split(',').filter(Boolean))
const jobs = Number(argv.jobs)
const repeat = Number(argv.repeat)
const timeoutMs = Number(argv['timeout-seconds']) * 1000
/** Each method as core/config.ts reads LSB_PG_COMPRESSION: a bad one fails here, before any work. */
const compressionOf = (method: string): PgCompressionSetting =>
  loadSettings({ LSB_BUCKET: 'bench-bucket', LSB_PG_COMPRESSION: method }).LSB_PG_COMPRESSION
for (const m of methods) compressionOf(m)
const say = (text: string) => process.stderr.write(`== ${text}\n`)
const seconds = (ms: number) => (ms / 1000).toFixed(1)
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1)
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

process.on('SIGINT', () => {
  killRunningChildren()
  process.exit(130)
})

const pg17 = builtPostgres17()
if (!pg17) throw new Error('PostgreSQL 17 is not built here: run `bash scripts/setup.sh` once')
const layer = pg17.layerBinDir
const [postgres, s3] = await Promise.all([startPostgres({ binDir: pg17.serverBinDir }), startS3()])
const workDir = mkdtempSync(join(tmpdir(), 'lsb-bench-pgcompression-'))
const timed = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
  const started = performance.now()
  const result = await work()
  return [result, performance.now() - started]
}
async function sql(database: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: postgres.url(database) })
  await client.connect()
  try {
    return await client.query(text)
  } finally {
    await client.end()
  }
}
const toolEnv = (tool: string) => ({
  ...process.env,
  PGPASSWORD: postgres.password,
  LD_LIBRARY_PATH: libraryPathFor(join(layer, tool)),
})
const connection = ['-h', '127.0.0.1', '-p', String(postgres.port), '-U', 'postgres']

try {
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    LSB_BUCKET: s3.bucket,
  })
  resetConfig()
  const rows: string[] = []
  for (const { kind, scale, name: database } of datasets) {
    const label = `${kind} ${scale}`
    await sql('postgres', `CREATE DATABASE ${database}`)
    say(`${label}: generating`)
    const [, generateMs] = await timed(async () => {
      if (kind === 'langsight') return seedPostgres(postgres.url(database), scale)
      await measure('pgbench', ['-i', '-I', 'dtGvp', '-q', '-s', String(scale), ...connection, database], {
        label: `pgbench -i -s ${scale}`,
        env: toolEnv('psql'),
        timeoutMs,
      })
    })
    await sql(database, 'VACUUM ANALYZE')
    const tableCount = Number(
      (
        await sql(
          database,
          "SELECT count(*) AS n FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
      ).rows[0].n,
    )
    const size = Number(
      (await sql(database, 'SELECT pg_database_size(current_database())::bigint AS size')).rows[0].size,
    )
    say(`${label}: ${mib(size)} MiB database, ${tableCount} tables, generated in ${seconds(generateMs)} s`)
    /** Per method, the wall times of each round (ms) and the bytes stored. */
    const times = new Map<string, Record<string, number[]>>()
    const stored = new Map<string, { bytes: number; compression: string }>()
    const record = (method: string, what: string, ms: number) => {
      const byWhat = times.get(method) ?? {}
      times.set(method, byWhat)
      byWhat[what] = [...(byWhat[what] ?? []), ms]
      say(`${label} ${method}: ${what} ${seconds(ms)} s (load average ${loadavg()[0]!.toFixed(1)})`)
    }
    // rounds go over every method in turn, so a burst of load from elsewhere hits them all alike
    for (let round = 1; round <= repeat; round++) {
      for (const method of methods) {
        const key = `bench/${database}-${method.replace(':', '-')}.dump`
        say(`${label} ${method} round ${round}: dump`)
        const [dump, dumpMs] = await timed(() =>
          dumpPostgresToS3({
            url: postgres.url(database),
            bucket: s3.bucket,
            key,
            compression: compressionOf(method),
            binDir: layer,
          }),
        )
        record(method, 'dump', dumpMs)
        stored.set(method, { bytes: dump.bytes, compression: dump.compression })
        say(`${label} ${method} round ${round}: streamed restore`)
        const target = postgres.url('restored')
        const [loaded, streamMs] = await timed(() =>
          loadPostgresFromS3({ url: target, bucket: s3.bucket, key, binDir: layer, jobs: 1 }),
        )
        record(method, 'stream', streamMs)
        await discardRestoredPostgres(target)
        if (loaded.tables !== tableCount)
          throw new Error(`restored ${loaded.tables} tables, not ${tableCount}`)
        if (!parallel.has(method)) continue
        say(`${label} ${method} round ${round}: parallel restore`)
        const [copied, parallelMs] = await timed(() =>
          loadPostgresFromS3({ url: target, bucket: s3.bucket, key, binDir: layer, jobs, tempDir: workDir }),
        )
        record(method, 'parallel', parallelMs)
        await discardRestoredPostgres(target)
        if (copied.pgRestore.from !== 'file') throw new Error(`streamed: ${JSON.stringify(copied.pgRestore)}`)
        if (copied.tables !== tableCount)
          throw new Error(`restored ${copied.tables} tables, not ${tableCount}`)
        // the copy alone, as the parallel load makes it
        const file = join(workDir, 'copy.dump')
        const [, downloadMs] = await timed(async () =>
          pipeline(await openObject(s3.bucket, key), createWriteStream(file)),
        )
        if (statSync(file).size !== dump.bytes) throw new Error(`${file}: not ${dump.bytes} bytes`)
        rmSync(file)
        record(method, 'download', downloadMs)
      }
    }
    for (const method of methods) {
      const t = times.get(method)!
      const { bytes, compression } = stored.get(method)!
      const cell = (what: string) => (t[what] ? seconds(median(t[what]!)) : '')
      rows.push(
        `| ${label} (${mib(size)} MiB, ${tableCount} tables) | ${compression} | ${cell('dump')} | ${mib(bytes)} | ` +
          `${cell('stream')} | ${cell('parallel')} | ${cell('download')} |`,
      )
    }
    await sql('postgres', `DROP DATABASE ${database}`)
  }
  console.log(
    [
      `| data set (database size) | compression | dump s | stored MiB | load, streamed (jobs 1) s | load, copy + pg_restore -j ${jobs} s | of which the copy s |`,
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...rows,
    ].join('\n'),
  )
} finally {
  await Promise.all([postgres.stop(), s3.stop()])
  rmSync(workDir, { recursive: true, force: true })
}
