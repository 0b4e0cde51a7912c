/**
 * The operator's runbook (../shared/seeds/000_d841aade33fbc0f0.txt) as a script would run it,
 * one command after the other, each measured: pg_dump to a file, every ClickHouse table to a
 * Native file with clickhouse-client, sha256sum of the files, an upload of each to S3; and the
 * restore from those files: drop and create the Postgres database, pg_restore, then per
 * ClickHouse table TRUNCATE and INSERT … FORMAT Native. Commands are argv arrays, no shell.
 */
import { rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchClickHouse } from './clickhouseServer.ts'
import { type Measurement, measure } from './measure.ts'

export interface RunbookTarget {
  pgBinDir: string
  pgPort: number
  pgPassword: string
  database: string
  clickhouse: BenchClickHouse
  /** ClickHouse data tables in `system.tables` order (views have no data of their own). */
  clickhouseTables: string[]
  /** Where the runbook's files go. */
  workDir: string
  bucket: string
  /** Key prefix of the uploaded files. */
  prefix: string
  /** AWS_* variables for the upload. */
  s3Env: NodeJS.ProcessEnv
  timeoutMs: number
}

export interface RunbookFile {
  name: string
  path: string
  bytes: number
}

export interface RunbookBackup {
  steps: Measurement[]
  files: RunbookFile[]
}

const uploader = join(import.meta.dirname, 'uploadFiles.ts')

function pgEnv(t: RunbookTarget): NodeJS.ProcessEnv {
  return { ...process.env, PGPASSWORD: t.pgPassword }
}

function pgConnection(t: RunbookTarget): string[] {
  return ['-h', '127.0.0.1', '-p', String(t.pgPort), '-U', 'postgres']
}

/** pg_dump -Fc -Z9 to a file, each table to a Native file, sha256sum, upload: sequential. */
export async function runbookBackup(t: RunbookTarget): Promise<RunbookBackup> {
  const steps: Measurement[] = []
  const files: RunbookFile[] = []
  const dump = join(t.workDir, 'backup-postgres.dump')
  steps.push(
    await measure(
      join(t.pgBinDir, 'pg_dump'),
      [...pgConnection(t), '--format=custom', '--compress=9', '-f', dump, t.database],
      { label: 'pg_dump -Fc -Z9', env: pgEnv(t), timeoutMs: t.timeoutMs },
    ),
  )
  files.push({ name: 'backup-postgres.dump', path: dump, bytes: statSync(dump).size })
  for (const table of t.clickhouseTables) {
    const name = `backup-ch-${table}.bin`
    const path = join(t.workDir, name)
    steps.push(
      await measure(
        'clickhouse-client',
        [...t.clickhouse.clientArgs(t.database), '--query', `SELECT * FROM \`${table}\` FORMAT Native`],
        { label: `clickhouse-client SELECT ${table}`, stdoutFile: path, timeoutMs: t.timeoutMs },
      ),
    )
    files.push({ name, path, bytes: statSync(path).size })
  }
  const sums = join(t.workDir, 'SHA256SUMS')
  steps.push(
    await measure(
      'sha256sum',
      files.map((f) => f.name),
      { label: 'sha256sum', cwd: t.workDir, stdoutFile: sums, timeoutMs: t.timeoutMs },
    ),
  )
  files.push({ name: 'SHA256SUMS', path: sums, bytes: statSync(sums).size })
  steps.push(
    await measure(
      process.execPath,
      ['--import', 'tsx', uploader, t.bucket, ...files.map((f) => `${t.prefix}/${f.name}=${f.path}`)],
      { label: 'upload to S3', env: { ...process.env, ...t.s3Env }, timeoutMs: t.timeoutMs },
    ),
  )
  return { steps, files }
}

/** DROP/CREATE DATABASE + pg_restore, then TRUNCATE + INSERT … FORMAT Native per table. */
export async function runbookRestore(t: RunbookTarget, backup: RunbookBackup): Promise<Measurement[]> {
  const steps: Measurement[] = []
  const psql = (sql: string) =>
    measure(
      join(t.pgBinDir, 'psql'),
      [...pgConnection(t), '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql],
      {
        label: `psql ${sql.split(' ').slice(0, 2).join(' ')}`,
        env: pgEnv(t),
        timeoutMs: t.timeoutMs,
      },
    )
  steps.push(await psql(`DROP DATABASE IF EXISTS ${t.database}`))
  steps.push(await psql(`CREATE DATABASE ${t.database}`))
  const dump = backup.files.find((f) => f.name === 'backup-postgres.dump')!
  steps.push(
    await measure(
      join(t.pgBinDir, 'pg_restore'),
      [...pgConnection(t), '--no-owner', '--no-privileges', '-d', t.database, dump.path],
      { label: 'pg_restore', env: pgEnv(t), timeoutMs: t.timeoutMs },
    ),
  )
  const client = (query: string, label: string, stdinFile?: string) =>
    measure('clickhouse-client', [...t.clickhouse.clientArgs(t.database), '--query', query], {
      label,
      stdinFile,
      timeoutMs: t.timeoutMs,
    })
  for (const table of t.clickhouseTables) {
    const file = backup.files.find((f) => f.name === `backup-ch-${table}.bin`)!
    steps.push(await client(`TRUNCATE TABLE \`${table}\``, `clickhouse-client TRUNCATE ${table}`))
    // clickhouse-client refuses an empty body ("Code: 108. No data to insert"): an empty table's
    // file makes the runbook's loop fail; the operator skips it.
    if (file.bytes === 0) continue
    steps.push(
      await client(`INSERT INTO \`${table}\` FORMAT Native`, `clickhouse-client INSERT ${table}`, file.path),
    )
  }
  return steps
}

/** pg_dump -Fc at each compression level to a file: time and size, to choose LSB_PG_COMPRESS. */
export async function pgDumpLevels(
  t: RunbookTarget,
  levels: number[],
): Promise<{ level: number; wallMs: number; bytes: number; peakRssBytes: number }[]> {
  const out = []
  for (const level of levels) {
    const file = join(t.workDir, `level-${level}.dump`)
    const m = await measure(
      join(t.pgBinDir, 'pg_dump'),
      [...pgConnection(t), '--format=custom', `--compress=${level}`, '-f', file, t.database],
      { label: `pg_dump -Z${level}`, env: pgEnv(t), timeoutMs: t.timeoutMs },
    )
    out.push({ level, wallMs: m.wallMs, bytes: statSync(file).size, peakRssBytes: m.peakRssBytes })
    rmSync(file)
  }
  return out
}
