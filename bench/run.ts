/**
 * `npm run bench`: the runbook's commands against our state machines, in one run on the same data
 * and the same S3 endpoint. Starts PostgreSQL, clickhouse-server 18.16 and s3rver on loopback,
 * generates LangSight-like data at `--scale`, then times
 *   runbook backup → our backup → runbook restore (verified) → our restore (verified)
 * and prints wall time, bytes stored and peak memory of each with the ratios ours/runbook. Then
 * the scale-out check: with a low LSB_CLICKHOUSE_SPLIT_BYTES the big tables go out as one object
 * per partition and come back. Each `--variant name:LSB_X=v,LSB_Y=w` runs our backup and restore
 * again with other settings on the same data (how the settings were chosen).
 *
 *   npm run bench -- [--scale 10] [--pg-scale N] [--variant …]… [--no-split-check] [--all-batches] [--json out.json]
 *
 * LSB_* variables in the environment apply to every one of our runs.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { BackupStore } from '#catalog/backupStore.ts'
import { listObjects } from '#catalog/objectStore.ts'
import { loadSettings, pgDumpCompression } from '#core/config.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { clickhouseContentHash, postgresContentHash } from '#devtools/sampleData.ts'
import { startPostgres, startS3 } from '#devtools/servers.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { describeCompression } from '#engines/postgres/pgCompression.ts'
import { startBenchClickHouse } from './clickhouseServer.ts'
import { dataSizes, generateBenchData } from './generateData.ts'
import { killRunningChildren } from './measure.ts'
import { type OursRun, runOurs } from './ours.ts'
import {
  type BenchReport,
  compareHashes,
  formatReport,
  machine,
  type OursResult,
  type Stored,
  type Verified,
} from './report.ts'
import { pgDumpLevels, runbookBackup, runbookRestore } from './runbook.ts'
import { measureSteps } from './steps.ts'

const { values: argv } = parseArgs({
  options: {
    scale: { type: 'string', default: '10' },
    'pg-scale': { type: 'string' },
    variant: { type: 'string', multiple: true, default: [] },
    'no-split-check': { type: 'boolean', default: false },
    'no-runbook': { type: 'boolean', default: false },
    'no-steps': { type: 'boolean', default: false },
    /** Measure every export and load batch alone (for peak memory), not only batch 0. */
    'all-batches': { type: 'boolean', default: false },
    'pg-compress-levels': { type: 'string' },
    'timeout-seconds': { type: 'string' },
    json: { type: 'string' },
    workdir: { type: 'string' },
    /** `server` (clickhouse-server 18.16, the streaming path) or `chdb` (the server-side path). */
    clickhouse: { type: 'string', default: 'server' },
    /** chdb mode: `legacy` (the same tables as on 18.16) or `modern` table types. */
    flavor: { type: 'string', default: 'legacy' },
  },
})
const scale = Number(argv.scale)
const pgScale = argv['pg-scale'] === undefined ? scale : Number(argv['pg-scale'])
if (!(scale > 0) || !(pgScale > 0)) throw new Error('--scale and --pg-scale must be positive numbers')
// a child running longer than this is a hang: its process group is killed and the run fails
const timeoutMs = Number(argv['timeout-seconds'] ?? Math.round(180 + scale * 6)) * 1000
const database = 'langsight'
if (argv.clickhouse === 'chdb') {
  if (argv.variant.length || argv['pg-compress-levels'])
    throw new Error('--clickhouse chdb: --variant and --pg-compress-levels are not supported')
  if (argv.flavor !== 'legacy' && argv.flavor !== 'modern') throw new Error('--flavor: legacy or modern')
  const { runChdbBench } = await import('./chdbBench.ts')
  await runChdbBench({
    scale,
    pgScale,
    timeoutMs,
    flavor: argv.flavor,
    runbook: !argv['no-runbook'],
    steps: !argv['no-steps'],
    workdir: argv.workdir,
    json: argv.json,
  })
  // servers stopped, report written: nothing below is for this mode
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()))
  process.exit(0)
} else if (argv.clickhouse !== 'server') throw new Error('--clickhouse: server or chdb')
const say = (text: string) => process.stderr.write(`\x1b[1m== ${text}\x1b[0m\n`)

/** The LSB_* settings that shape the work, as core/config.ts reads them (defaults included). */
function effective(env: NodeJS.ProcessEnv): Record<string, string> {
  const s = loadSettings(env)
  const compression = pgDumpCompression(s)
  return {
    LSB_PG_COMPRESSION: compression === 'auto' ? 'auto' : describeCompression(compression),
    LSB_CLICKHOUSE_GZIP_LEVEL: String(s.LSB_CLICKHOUSE_GZIP_LEVEL),
    LSB_CLICKHOUSE_SPLIT_BYTES: String(s.LSB_CLICKHOUSE_SPLIT_BYTES),
    LSB_MAP_CONCURRENCY: String(s.LSB_MAP_CONCURRENCY),
  }
}

interface Variant {
  name: string
  env: Record<string, string>
  /** Another checkout of this repository whose CLI runs instead (before/after a change). */
  checkout?: string
}

/** `name[@/path/to/checkout]:LSB_X=v,LSB_Y=w`. */
function parseVariant(spec: string): Variant {
  const colon = spec.indexOf(':')
  const head = colon < 0 ? spec : spec.slice(0, colon)
  const [name, checkout] = head.split('@')
  const env: Record<string, string> = {}
  for (const a of (colon < 0 ? '' : spec.slice(colon + 1)).split(',').filter(Boolean)) {
    const [k, v] = a.split('=')
    if (!k?.startsWith('LSB_') || v === undefined)
      throw new Error(`--variant ${spec}: expected name:LSB_X=v,…`)
    env[k] = v
  }
  if (!name || !/^[a-z0-9-]+$/.test(name)) throw new Error(`--variant ${spec}: name must be [a-z0-9-]+`)
  return { name, env, ...(checkout ? { checkout } : {}) }
}
const variants = argv.variant.map(parseVariant)

const root = mkdtempSync(join(argv.workdir ?? tmpdir(), 'lsb-bench-'))
say(`scale ${scale} (Postgres ${pgScale}); work directory ${root}`)
const [pgServer, ch, s3] = await Promise.all([
  startPostgres(),
  startBenchClickHouse(root),
  startS3('langsight-bench'),
])
// Ctrl-C: the servers are daemons (pg_ctl) or children of ours; stop them rather than leave them
process.once('SIGINT', () => {
  killRunningChildren()
  void Promise.allSettled([pgServer.stop(), ch.stop(), s3.stop()]).then(() => {
    rmSync(root, { recursive: true, force: true })
    process.exit(130)
  })
})
const s3Env = {
  AWS_ENDPOINT_URL_S3: s3.endpoint,
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
}
// this process reads manifests and listings from the same endpoint
Object.assign(process.env, s3Env, { LSB_BUCKET: s3.bucket })
const pgUrl = pgServer.url(database)
const conn = await connectClickHouse(ch.url(database))
const pgVersion = execFileSync(join(pgServer.binDir, 'pg_dump'), ['--version'], { encoding: 'utf8' }).trim()

async function bytesUnder(prefix: string): Promise<Stored> {
  let bytes = 0
  let objects = 0
  for await (const o of listObjects(s3.bucket, `${prefix}/`)) {
    bytes += o.bytes
    objects++
  }
  return { bytes, objects }
}

/** A backup of ours, waiting for its restore. */
interface OursBackup {
  name: string
  checkout: string | undefined
  prefix: string
  env: NodeJS.ProcessEnv
  engine: 'all' | 'clickhouse'
  run: OursRun
  stored: Stored
  parts: Record<string, number>
}

let pgBefore: Record<string, string> = {}
let chBefore: Record<string, string> = {}

async function verify(engine: 'all' | 'clickhouse'): Promise<Verified> {
  return {
    postgres:
      engine === 'all' ? compareHashes(pgBefore, await postgresContentHash(pgUrl)) : compareHashes({}, {}),
    clickhouse: compareHashes(chBefore, await clickhouseContentHash(conn, database)),
  }
}

async function oursBackup(
  { name, env: extraEnv, checkout }: Variant,
  engine: 'all' | 'clickhouse' = 'all',
): Promise<OursBackup> {
  const prefix = `ours-${name}`
  const env = {
    ...process.env,
    ...s3Env,
    LSB_BUCKET: s3.bucket,
    LSB_PREFIX: prefix,
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: ch.url(database),
    LSB_PG_BIN_DIR: pgServer.binDir,
    LSB_MIGRATE_STRATEGY: 'none',
    ...extraEnv,
  }
  say(`ours (${name}): backup`)
  const run = await runOurs(['backup', '--local', '--engine', engine, '--json'], {
    env,
    timeoutMs,
    label: `ours backup (${name})`,
    clickhouse: conn,
    checkout,
  })
  const ids = JSON.parse(run.stdout) as { postgres?: string; clickhouse: string }
  const manifest = await new BackupStore(s3.bucket, prefix).readManifest('clickhouse', ids.clickhouse)
  const parts: Record<string, number> = {}
  for (const o of manifest.objects) parts[o.table!] = (parts[o.table!] ?? 0) + 1
  return { name, checkout, prefix, env, engine, run, stored: await bytesUnder(prefix), parts }
}

async function oursRestore(b: OursBackup): Promise<OursResult> {
  say(`ours (${b.name}): restore`)
  const args = ['restore', '--local', '--clickhouse', 'latest', '--json']
  if (b.engine === 'all') args.push('--postgres', 'latest')
  const restore = await runOurs(args, {
    env: b.env,
    timeoutMs,
    label: `ours restore (${b.name})`,
    clickhouse: conn,
    checkout: b.checkout,
  })
  const { env, run, ...rest } = b
  return { ...rest, settings: effective(env), backup: run, restore, verified: await verify(b.engine) }
}

const report: BenchReport = {
  machine: machine(pgVersion, ch.version),
  scale,
  pgScale,
  sizes: null,
  runbook: null,
  results: [],
  steps: [],
  pgDumpLevels: [],
  split: null,
}
try {
  say('generating data')
  const started = performance.now()
  await generateBenchData({
    postgresAdminUrl: pgServer.url('postgres'),
    postgresUrl: pgUrl,
    clickhouse: conn,
    database,
    scale,
    pgScale,
  })
  report.sizes = await dataSizes({ postgresUrl: pgUrl, clickhouse: conn, database })
  pgBefore = await postgresContentHash(pgUrl)
  chBefore = await clickhouseContentHash(conn, database)
  say(
    `data: Postgres ${humanBytes(report.sizes.postgresBytes)}, ClickHouse ${humanBytes(report.sizes.clickhouseBytes)} on disk (${((performance.now() - started) / 1000).toFixed(1)} s)`,
  )
  const dataTables = (
    await conn.query<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT IN ('View', 'MaterializedView') ORDER BY name`,
      { db: database },
    )
  ).map((r) => r.name)
  const target = {
    pgBinDir: pgServer.binDir,
    pgPort: pgServer.port,
    pgPassword: pgServer.password,
    database,
    clickhouse: ch,
    clickhouseTables: dataTables,
    workDir: join(root, 'runbook'),
    bucket: s3.bucket,
    prefix: 'runbook',
    s3Env,
    timeoutMs,
  }
  mkdirSync(target.workDir)
  if (!argv['no-runbook']) say('runbook: backup')
  const runbookFiles = argv['no-runbook'] ? null : await runbookBackup(target)
  if (argv['pg-compress-levels']) {
    say('pg_dump at each compression level')
    report.pgDumpLevels = await pgDumpLevels(target, argv['pg-compress-levels'].split(',').map(Number))
  }
  // Both backups are of the original data; the runbook's restore may change it (see RESULTS.md).
  const main = await oursBackup({ name: 'default', env: {} })
  if (runbookFiles) {
    say('runbook: restore')
    const restore = await runbookRestore(target, runbookFiles)
    report.runbook = {
      backup: runbookFiles.steps,
      restore,
      files: runbookFiles.files.map(({ name, bytes }) => ({ name, bytes })),
      stored: await bytesUnder('runbook'),
      verified: await verify('all'),
    }
    rmSync(target.workDir, { recursive: true, force: true })
  }
  report.results.push(await oursRestore(main))
  if (!argv['no-steps']) {
    say('ours: one step per process, as on Lambda')
    const ids = JSON.parse(main.run.stdout) as { postgres: string; clickhouse: string }
    report.steps = await measureSteps({
      env: main.env,
      scratchPrefix: 'steps',
      allBatches: argv['all-batches'],
      postgres: await new BackupStore(s3.bucket, main.prefix).readManifest('postgres', ids.postgres),
      clickhouse: await new BackupStore(s3.bucket, main.prefix).readManifest('clickhouse', ids.clickhouse),
      dropClickHouseDatabase: (name) => conn.command(`DROP DATABASE IF EXISTS \`${name}\``),
      dropPostgresDatabase: async (name) => {
        const admin = new pg.Client({ connectionString: pgServer.url('postgres') })
        await admin.connect()
        try {
          await admin.query(`DROP DATABASE IF EXISTS ${name}`)
        } finally {
          await admin.end()
        }
      },
      timeoutMs,
    })
  }
  for (const v of variants) report.results.push(await oursRestore(await oursBackup(v)))
  if (!argv['no-split-check']) {
    report.split = await oursRestore(
      await oursBackup({ name: 'split', env: { LSB_CLICKHOUSE_SPLIT_BYTES: String(2 ** 20) } }, 'clickhouse'),
    )
  }
} finally {
  await conn.close()
  await Promise.all([pgServer.stop(), ch.stop(), s3.stop()])
  rmSync(root, { recursive: true, force: true })
}
process.stdout.write(formatReport(report))
if (argv.json) writeFileSync(argv.json, `${JSON.stringify(report, null, 2)}\n`)
