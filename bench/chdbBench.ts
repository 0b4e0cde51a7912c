/**
 * `npm run bench -- --clickhouse chdb`: the benchmark on the server-side ClickHouse path. The same
 * data as the clickhouse-server run (bench/generateData.ts, `legacy` flavor unless `--flavor
 * modern`) goes into a chdb data directory instead of clickhouse-server 18.16; PostgreSQL and s3rver
 * as in the other mode. Then, one after the other (chdb is in-process: one process holds the data
 * directory at a time, so nothing here runs concurrently with anything else that opens it):
 *
 *   runbook backup → our backup → runbook restore (verified) → our restore (verified)
 *   → our ClickHouse-only backup and restore (verified) → each step alone in a process.
 *
 * The runbook's `clickhouse-client --query …` becomes bench/chdbClient.mjs, a node process that
 * opens the directory with chdb and runs the query: `SELECT * FROM t INTO OUTFILE '<file>'
 * TRUNCATE COMPRESSION 'none' FORMAT Native` for `… FORMAT Native > file`, and `INSERT INTO t
 * FROM INFILE '<file>' COMPRESSION 'none' FORMAT Native` (stdin /dev/null) for `< file`: chdb
 * ignores a plain `INSERT … FORMAT Native`'s stdin ("No data to insert"), and `FROM INFILE` with
 * the file also on stdin inserts it twice (chdb reads a non-terminal stdin as well).
 * Ours runs with LSB_CLICKHOUSE_TRANSFER=server and the run fails unless every stored ClickHouse
 * object is a `.native.zst` written by the server-side path. Our CLI's process is the ClickHouse
 * "server" here.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { BackupStore } from '#catalog/backupStore.ts'
import { listObjects } from '#catalog/objectStore.ts'
import { humanBytes } from '#core/humanBytes.ts'
import type { Manifest } from '#core/manifest.ts'
import { clickhouseContentHash, postgresContentHash } from '#devtools/sampleData.ts'
import { startPostgres, startS3 } from '#devtools/servers.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { type DataSizes, dataSizes, generateBenchData } from './generateData.ts'
import { killRunningChildren, type Measurement, measure } from './measure.ts'
import { type OursRun, runOurs } from './ours.ts'
import {
  compareHashes,
  type Machine,
  MEMORY_TARGET_BYTES,
  machine,
  type Stored,
  type Verified,
} from './report.ts'
import { measureSteps, type StepMeasurement } from './steps.ts'

export interface ChdbBenchOptions {
  scale: number
  pgScale: number
  timeoutMs: number
  flavor: 'legacy' | 'modern'
  runbook: boolean
  steps: boolean
  workdir?: string
  json?: string
}

type Engine = 'postgres' | 'clickhouse'

/** A runbook command, with the engine whose data it moves (sha256sum and upload run per engine). */
interface RunbookStep extends Measurement {
  engine: Engine
}

interface Load {
  phase: string
  before: number[]
  after: number[]
}

interface OursPhase {
  name: string
  engine: 'all' | 'clickhouse'
  backup: OursRun
  restore: OursRun
  stored: Stored
  /** ClickHouse objects: how many, and that each is a server-side `.native.zst`. */
  clickhouseObjects: { count: number; keys: string[] }
  verified: Verified
}

export interface ChdbBenchReport {
  machine: Machine
  scale: number
  pgScale: number
  flavor: string
  sizes: DataSizes | null
  /** `node bench/chdbClient.mjs <dir> 'SELECT 1'`: what every runbook ClickHouse command pays first. */
  chdbOpen: Measurement | null
  runbook: {
    backup: RunbookStep[]
    restore: RunbookStep[]
    files: { name: string; bytes: number }[]
    stored: Stored
    storedClickHouse: Stored
    verified: Verified
  } | null
  ours: OursPhase[]
  steps: StepMeasurement[]
  /** The engine alone (chdbClient.mjs) doing our biggest export, for its share of a step's memory. */
  engineAlone: Measurement | null
  load: Load[]
}

const database = 'langsight'
const say = (text: string) => process.stderr.write(`\x1b[1m== ${text}\x1b[0m\n`)
const client = join(import.meta.dirname, 'chdbClient.mjs')
const uploader = join(import.meta.dirname, 'uploadFiles.ts')
const sql = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
const ident = (s: string) => `\`${s.replaceAll('`', '\\`')}\``

export async function runChdbBench(o: ChdbBenchOptions): Promise<ChdbBenchReport> {
  const root = mkdtempSync(join(o.workdir ?? tmpdir(), 'lsb-bench-chdb-'))
  const chDir = join(root, 'chdb')
  mkdirSync(chDir)
  const chUrl = `chdb://${chDir}?database=${database}`
  say(`chdb mode, scale ${o.scale} (Postgres ${o.pgScale}, ${o.flavor} tables); work directory ${root}`)
  const [pgServer, s3] = await Promise.all([startPostgres(), startS3('langsight-bench')])
  process.once('SIGINT', () => {
    killRunningChildren()
    void Promise.allSettled([pgServer.stop(), s3.stop()]).then(() => {
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
  Object.assign(process.env, s3Env, { LSB_BUCKET: s3.bucket })
  const pgUrl = pgServer.url(database)
  const pgEnv = { ...process.env, PGPASSWORD: pgServer.password }
  const pgArgs = ['-h', '127.0.0.1', '-p', String(pgServer.port), '-U', 'postgres']
  const pgVersion = execFileSync(join(pgServer.binDir, 'pg_dump'), ['--version'], { encoding: 'utf8' }).trim()

  /** Opens the chdb directory in this process for `fn` only: never while a child holds it. */
  const withCh = async <T>(fn: (c: ClickHouseConnection) => Promise<T>): Promise<T> => {
    const c = await connectClickHouse(chUrl)
    try {
      return await fn(c)
    } finally {
      await c.close()
    }
  }
  const load: Load[] = []
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const before = loadavg()
    say(`${name} (load average ${before.map((l) => l.toFixed(2)).join(' ')})`)
    try {
      return await fn()
    } finally {
      load.push({ phase: name, before, after: loadavg() })
    }
  }
  const bytesUnder = async (prefix: string): Promise<Stored> => {
    let bytes = 0
    let objects = 0
    for await (const obj of listObjects(s3.bucket, `${prefix}/`)) {
      bytes += obj.bytes
      objects++
    }
    return { bytes, objects }
  }
  // stdin is /dev/null: chdb would read a file or pipe on stdin as more data for an INSERT
  const chdb = (label: string, query: string) =>
    measure(process.execPath, [client, chDir, query], { label, timeoutMs: o.timeoutMs })

  const report: ChdbBenchReport = {
    machine: machine(pgVersion, 'chdb (version below)'),
    scale: o.scale,
    pgScale: o.pgScale,
    flavor: o.flavor,
    sizes: null,
    chdbOpen: null,
    runbook: null,
    ours: [],
    steps: [],
    engineAlone: null,
    load,
  }
  let pgBefore: Record<string, string> = {}
  let chBefore: Record<string, string> = {}
  const verify = async (engine: 'all' | 'clickhouse'): Promise<Verified> => ({
    postgres:
      engine === 'all' ? compareHashes(pgBefore, await postgresContentHash(pgUrl)) : compareHashes({}, {}),
    clickhouse: compareHashes(chBefore, await withCh((c) => clickhouseContentHash(c, database))),
  })

  try {
    const dataTables = await phase('generating data', async () => {
      await withCh(async (c) => {
        // generateBenchData seeds both engines at once; chdb is opened in this process only
        await generateBenchData({
          postgresAdminUrl: pgServer.url('postgres'),
          postgresUrl: pgUrl,
          clickhouse: c,
          database,
          scale: o.scale,
          pgScale: o.pgScale,
          flavor: o.flavor,
        })
        report.sizes = await dataSizes({ postgresUrl: pgUrl, clickhouse: c, database })
        report.machine.clickhouse = `chdb ${await c.serverVersion()} (in-process)`
        chBefore = await clickhouseContentHash(c, database)
      })
      pgBefore = await postgresContentHash(pgUrl)
      return withCh(async (c) =>
        (
          await c.query<{ name: string }>(
            `SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT IN ('View', 'MaterializedView') ORDER BY name`,
            { db: database },
          )
        ).map((r) => r.name),
      )
    })
    say(
      `data: Postgres ${humanBytes(report.sizes!.postgresBytes)}, ClickHouse ${humanBytes(report.sizes!.clickhouseBytes)} on disk`,
    )
    report.chdbOpen = await chdb('chdb open + SELECT 1', 'SELECT 1')

    const workDir = join(root, 'runbook')
    mkdirSync(workDir)
    let files: { name: string; path: string; bytes: number; engine: Engine }[] = []
    let runbookBackup: RunbookStep[] = []
    if (o.runbook) {
      runbookBackup = await phase('runbook: backup', async () => {
        const steps: RunbookStep[] = []
        const dump = join(workDir, 'backup-postgres.dump')
        steps.push({
          engine: 'postgres',
          ...(await measure(
            join(pgServer.binDir, 'pg_dump'),
            [...pgArgs, '--format=custom', '--compress=9', '-f', dump, database],
            { label: 'pg_dump -Fc -Z9', env: pgEnv, timeoutMs: o.timeoutMs },
          )),
        })
        files.push({
          name: 'backup-postgres.dump',
          path: dump,
          bytes: statSync(dump).size,
          engine: 'postgres',
        })
        for (const table of dataTables) {
          const name = `backup-ch-${table}.bin`
          const path = join(workDir, name)
          steps.push({
            engine: 'clickhouse',
            ...(await chdb(
              `chdb SELECT ${table}`,
              `SELECT * FROM ${ident(database)}.${ident(table)} INTO OUTFILE ${sql(path)} TRUNCATE COMPRESSION 'none' FORMAT Native`,
            )),
          })
          files.push({ name, path, bytes: statSync(path).size, engine: 'clickhouse' })
        }
        // sha256sum and the upload as in bench/runbook.ts, but once per engine (for the per-engine
        // ratios): the same bytes hashed and sent, one more process each
        for (const engine of ['postgres', 'clickhouse'] as const) {
          const mine = files.filter((f) => f.engine === engine)
          const sums = join(workDir, `SHA256SUMS.${engine}`)
          steps.push({
            engine,
            ...(await measure(
              'sha256sum',
              mine.map((f) => f.name),
              { label: `sha256sum (${engine})`, cwd: workDir, stdoutFile: sums, timeoutMs: o.timeoutMs },
            )),
          })
          const withSums = [...mine, { name: `SHA256SUMS.${engine}`, path: sums, bytes: statSync(sums).size }]
          steps.push({
            engine,
            ...(await measure(
              process.execPath,
              ['--import', 'tsx', uploader, s3.bucket, ...withSums.map((f) => `runbook/${f.name}=${f.path}`)],
              {
                label: `upload to S3 (${engine})`,
                env: { ...process.env, ...s3Env },
                timeoutMs: o.timeoutMs,
              },
            )),
          })
        }
        return steps
      })
    }

    const oursEnv = (prefix: string): NodeJS.ProcessEnv => ({
      ...process.env,
      ...s3Env,
      LSB_BUCKET: s3.bucket,
      LSB_PREFIX: prefix,
      LSB_POSTGRES_URL: pgUrl,
      LSB_CLICKHOUSE_URL: chUrl,
      LSB_PG_BIN_DIR: pgServer.binDir,
      LSB_MIGRATE_STRATEGY: 'none',
      LSB_CLICKHOUSE_TRANSFER: 'server',
    })
    const oursBackup = async (name: string, engine: 'all' | 'clickhouse') =>
      phase(`ours (${name}): backup`, async () => {
        const prefix = `ours-${name}`
        const env = oursEnv(prefix)
        const run = await runOurs(['backup', '--local', '--engine', engine, '--json'], {
          env,
          timeoutMs: o.timeoutMs,
          label: `ours backup (${name})`,
        })
        const ids = JSON.parse(run.stdout) as { postgres?: string; clickhouse: string }
        const store = new BackupStore(s3.bucket, prefix)
        const manifest = await store.readManifest('clickhouse', ids.clickhouse)
        assertServerSide(manifest, run.stderr)
        const postgres = ids.postgres ? await store.readManifest('postgres', ids.postgres) : undefined
        return { name, engine, env, run, manifest, postgres, stored: await bytesUnder(prefix) }
      })
    type Backup = Awaited<ReturnType<typeof oursBackup>>
    const oursRestore = async (b: Backup): Promise<OursPhase> =>
      phase(`ours (${b.name}): restore`, async () => {
        const args = ['restore', '--local', '--clickhouse', 'latest', '--json']
        if (b.engine === 'all') args.push('--postgres', 'latest')
        const restore = await runOurs(args, {
          env: b.env,
          timeoutMs: o.timeoutMs,
          label: `ours restore (${b.name})`,
        })
        return {
          name: b.name,
          engine: b.engine,
          backup: b.run,
          restore,
          stored: b.stored,
          clickhouseObjects: { count: b.manifest.objects.length, keys: b.manifest.objects.map((x) => x.key) },
          verified: await verify(b.engine),
        }
      })

    // Both backups are of the original data; the runbook's restore may change it (see RESULTS.md).
    const main = await oursBackup('default', 'all')
    if (o.runbook) {
      const restore = await phase('runbook: restore', async () => {
        const steps: RunbookStep[] = []
        const psql = async (text: string) =>
          steps.push({
            engine: 'postgres',
            ...(await measure(
              join(pgServer.binDir, 'psql'),
              [...pgArgs, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', text],
              { label: `psql ${text.split(' ').slice(0, 2).join(' ')}`, env: pgEnv, timeoutMs: o.timeoutMs },
            )),
          })
        await psql(`DROP DATABASE IF EXISTS ${database}`)
        await psql(`CREATE DATABASE ${database}`)
        steps.push({
          engine: 'postgres',
          ...(await measure(
            join(pgServer.binDir, 'pg_restore'),
            [
              ...pgArgs,
              '--no-owner',
              '--no-privileges',
              '-d',
              database,
              join(workDir, 'backup-postgres.dump'),
            ],
            { label: 'pg_restore', env: pgEnv, timeoutMs: o.timeoutMs },
          )),
        })
        for (const table of dataTables) {
          const file = files.find((f) => f.name === `backup-ch-${table}.bin`)!
          const qualified = `${ident(database)}.${ident(table)}`
          steps.push({
            engine: 'clickhouse',
            ...(await chdb(`chdb TRUNCATE ${table}`, `TRUNCATE TABLE ${qualified}`)),
          })
          // as with clickhouse-client, an empty file is skipped (it refuses an empty body)
          if (file.bytes === 0) continue
          steps.push({
            engine: 'clickhouse',
            ...(await chdb(
              `chdb INSERT ${table}`,
              `INSERT INTO ${qualified} FROM INFILE ${sql(file.path)} COMPRESSION 'none' FORMAT Native`,
            )),
          })
        }
        return steps
      })
      report.runbook = {
        backup: runbookBackup,
        restore,
        files: files.map(({ name, bytes }) => ({ name, bytes })),
        stored: await bytesUnder('runbook'),
        storedClickHouse: files
          .filter((f) => f.engine === 'clickhouse')
          .reduce((s, f) => ({ bytes: s.bytes + f.bytes, objects: s.objects + 1 }), { bytes: 0, objects: 0 }),
        verified: await verify('all'),
      }
      rmSync(workDir, { recursive: true, force: true })
      files = []
    }
    report.ours.push(await oursRestore(main))
    report.ours.push(await oursRestore(await oursBackup('clickhouse-only', 'clickhouse')))

    if (o.steps) {
      report.steps = await phase('ours: one step per process, as on Lambda', () =>
        measureSteps({
          env: main.env,
          scratchPrefix: 'steps',
          postgres: main.postgres!,
          clickhouse: main.manifest,
          dropClickHouseDatabase: (name) =>
            withCh((c) => c.command(`DROP DATABASE IF EXISTS ${ident(name)}`)),
          dropPostgresDatabase: async (name) => {
            const admin = new pg.Client({ connectionString: pgServer.url('postgres') })
            await admin.connect()
            try {
              await admin.query(`DROP DATABASE IF EXISTS ${name}`)
            } finally {
              await admin.end()
            }
          },
          timeoutMs: o.timeoutMs,
          allBatches: true,
        }),
      )
      // the engine alone doing the biggest table's export to S3, as our export step asks it to
      const biggest = [...report.sizes!.clickhouseTables].sort((a, b) => b.bytes - a.bytes)[0]!
      const url = `${s3.endpoint}/${s3.bucket}/engine-alone/${biggest.table}.native.zst`
      report.engineAlone = await phase('the engine alone: biggest export', () =>
        chdb(
          `chdb INSERT INTO FUNCTION s3 (${biggest.table})`,
          `INSERT INTO FUNCTION s3(${sql(url)}, 'S3RVER', 'S3RVER', 'Native', 'auto', 'zstd') SELECT * FROM ${ident(database)}.${ident(biggest.table)}`,
        ),
      )
    }
  } finally {
    await Promise.all([pgServer.stop(), s3.stop()])
    rmSync(root, { recursive: true, force: true })
  }
  process.stdout.write(formatChdbReport(report))
  if (o.json) writeFileSync(o.json, `${JSON.stringify(report, null, 2)}\n`)
  return report
}

/** Fails the run unless every ClickHouse object came from the server-side path. */
function assertServerSide(manifest: Manifest, stderr: string): void {
  const bad = manifest.objects.filter((x) => !x.key.endsWith('.native.zst') || x.compression !== 'zstd')
  if (manifest.objects.length === 0 || bad.length > 0) {
    throw new Error(
      `our backup did not take the server-side path: ${bad.length} of ${manifest.objects.length} ClickHouse objects are not .native.zst (${bad
        .slice(0, 3)
        .map((x) => x.key)
        .join(', ')}); CLI said: ${stderr.slice(-2000)}`,
    )
  }
}

const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`
const x = (ours: number, theirs: number) => (theirs > 0 ? `${(ours / theirs).toFixed(2)}×` : '–')
const sum = (ms: Measurement[]) => ms.reduce((s, m) => s + m.wallMs, 0)
const peak = (ms: Measurement[]) => Math.max(0, ...ms.map((m) => m.peakRssBytes))
const met = (ok: boolean) => (ok ? 'met' : 'MISSED')

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n')
}

function verdict(v: Verified): string {
  const one = (name: string, c: { tables: number; differing: string[] }) =>
    c.tables === 0
      ? ''
      : c.differing.length === 0
        ? `${name} ${c.tables}/${c.tables} identical`
        : `${name} ${c.tables - c.differing.length}/${c.tables} identical, DIFFERENT: ${c.differing.join(', ')}`
  return [one('postgres', v.postgres), one('clickhouse', v.clickhouse)].filter(Boolean).join('; ')
}

export function formatChdbReport(r: ChdbBenchReport): string {
  const out: string[] = []
  const m = r.machine
  out.push(
    `machine: ${m.cpus} CPUs, ${mib(m.memoryBytes)} RAM, node ${m.node}, ${m.postgres}, ClickHouse ${m.clickhouse}`,
  )
  if (r.sizes) {
    out.push(
      `data (scale ${r.scale}, Postgres scale ${r.pgScale}, ${r.flavor} tables): Postgres ${mib(r.sizes.postgresBytes)}, ClickHouse ${mib(r.sizes.clickhouseBytes)} on disk`,
    )
    for (const t of r.sizes.clickhouseTables)
      out.push(`  ${t.table}: ${t.rows} rows, ${mib(t.bytes)}, ${t.partitions} partition(s)`)
  }
  out.push('load average (1/5/15 min) before → after each phase:')
  for (const l of r.load)
    out.push(
      `  ${l.phase}: ${l.before.map((v) => v.toFixed(2)).join(' ')} → ${l.after.map((v) => v.toFixed(2)).join(' ')}`,
    )
  if (r.chdbOpen)
    out.push(
      `chdb open + SELECT 1 in a fresh node process (paid by every runbook ClickHouse command): ${sec(r.chdbOpen.wallMs)}, ${mib(r.chdbOpen.peakRssBytes)}`,
    )
  const all = r.ours.find((o) => o.engine === 'all')
  const chOnly = r.ours.find((o) => o.engine === 'clickhouse')
  const rb = r.runbook
  if (rb && all) {
    const eng = (steps: RunbookStep[], e: Engine) => steps.filter((s) => s.engine === e)
    const rbB = sum(rb.backup)
    const rbR = sum(rb.restore)
    const rbChB = sum(eng(rb.backup, 'clickhouse'))
    const rbChR = sum(eng(rb.restore, 'clickhouse'))
    const stepPeak = r.steps.length
      ? peak(r.steps)
      : Math.max(all.backup.peakRssBytes, all.restore.peakRssBytes)
    out.push('')
    out.push(
      table([
        ['', 'wall', 'stored', 'peak RSS (one process)', 'ratio wall', 'ratio stored'],
        [
          'runbook backup',
          sec(rbB),
          `${mib(rb.stored.bytes)} (${rb.stored.objects} obj)`,
          mib(peak(rb.backup)),
          '',
          '',
        ],
        [
          'ours backup',
          sec(all.backup.wallMs),
          `${mib(all.stored.bytes)} (${all.stored.objects} obj)`,
          mib(all.backup.peakRssBytes),
          x(all.backup.wallMs, rbB),
          x(all.stored.bytes, rb.stored.bytes),
        ],
        ['runbook restore', sec(rbR), '', mib(peak(rb.restore)), '', ''],
        [
          'ours restore',
          sec(all.restore.wallMs),
          '',
          mib(all.restore.peakRssBytes),
          x(all.restore.wallMs, rbR),
          '',
        ],
      ]),
    )
    out.push('')
    out.push(
      'ClickHouse only (runbook: its ClickHouse commands; ours: a backup/restore with --engine clickhouse):',
    )
    if (chOnly) {
      out.push(
        table([
          ['', 'wall', 'stored', 'peak RSS', 'ratio wall', 'ratio stored'],
          [
            '  runbook backup',
            sec(rbChB),
            mib(rb.storedClickHouse.bytes),
            mib(peak(eng(rb.backup, 'clickhouse'))),
            '',
            '',
          ],
          [
            '  ours backup',
            sec(chOnly.backup.wallMs),
            `${mib(chOnly.stored.bytes)} (${chOnly.stored.objects} obj)`,
            mib(chOnly.backup.peakRssBytes),
            x(chOnly.backup.wallMs, rbChB),
            x(chOnly.stored.bytes, rb.storedClickHouse.bytes),
          ],
          ['  runbook restore', sec(rbChR), '', mib(peak(eng(rb.restore, 'clickhouse'))), '', ''],
          [
            '  ours restore',
            sec(chOnly.restore.wallMs),
            '',
            mib(chOnly.restore.peakRssBytes),
            x(chOnly.restore.wallMs, rbChR),
            '',
          ],
        ]),
      )
    }
    out.push(
      `  runbook Postgres part: backup ${sec(sum(eng(rb.backup, 'postgres')))}, restore ${sec(sum(eng(rb.restore, 'postgres')))}`,
    )
    out.push('')
    out.push(
      `targets (server-side path): backup ≤ 0.35× ${met(all.backup.wallMs <= 0.35 * rbB)} (${x(all.backup.wallMs, rbB)}); ` +
        `restore ≤ 0.7× ${met(all.restore.wallMs <= 0.7 * rbR)} (${x(all.restore.wallMs, rbR)}); ` +
        `bytes ≤ 0.2× ${met(all.stored.bytes <= 0.2 * rb.stored.bytes)} (${x(all.stored.bytes, rb.stored.bytes)}); ` +
        `peak of a step ≤ 256 MiB ${met(stepPeak <= MEMORY_TARGET_BYTES)} (${mib(stepPeak)}${r.steps.length ? ', one step per process' : ', whole CLI'})`,
    )
    out.push(`verified: runbook restore: ${verdict(rb.verified)}`)
    out.push('')
    out.push('runbook steps:')
    out.push(
      table([
        ['  step', 'wall', 'peak RSS'],
        ...[...rb.backup, ...rb.restore].map((s) => [`  ${s.label}`, sec(s.wallMs), mib(s.peakRssBytes)]),
      ]),
    )
    out.push(`runbook files: ${rb.files.map((f) => `${f.name} ${mib(f.bytes)}`).join(', ')}`)
  }
  for (const o of r.ours) {
    out.push('')
    out.push(
      `ours (${o.name}, --engine ${o.engine}): backup ${sec(o.backup.wallMs)} (${mib(o.backup.peakRssBytes)}), restore ${sec(o.restore.wallMs)} (${mib(o.restore.peakRssBytes)}), stored ${mib(o.stored.bytes)}, ${o.clickhouseObjects.count} ClickHouse objects, all .native.zst`,
    )
    out.push(`  backup states:  ${o.backup.states.map(([s, t]) => `${s} ${t} s`).join(', ')}`)
    out.push(`  restore states: ${o.restore.states.map(([s, t]) => `${s} ${t} s`).join(', ')}`)
    out.push(`  verified: ${verdict(o.verified)}`)
  }
  if (r.steps.length) {
    out.push('')
    out.push(
      `ours, one step per process as on Lambda (here the process also holds the engine): peak ≤ 256 MiB ${met(peak(r.steps) <= MEMORY_TARGET_BYTES)} (${mib(peak(r.steps))})`,
    )
    out.push(
      table([
        ['  step', 'work', 'wall', 'peak RSS'],
        ...r.steps.map((s) => [`  ${s.label}`, s.what, sec(s.wallMs), mib(s.peakRssBytes)]),
      ]),
    )
  }
  if (r.engineAlone)
    out.push(
      `the engine alone (chdbClient.mjs, no function code): ${r.engineAlone.label} ${sec(r.engineAlone.wallMs)}, ${mib(r.engineAlone.peakRssBytes)}`,
    )
  return `${out.join('\n')}\n`
}
