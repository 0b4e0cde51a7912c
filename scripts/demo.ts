/**
 * The demo behind `npm run demo`. Everything runs through the real CLI (`bin/langsight-backup.js`)
 * and the real state machines, against real servers started here on loopback.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import {
  clickhouseContentHash,
  postgresContentHash,
  seedClickHouse,
  seedPostgres,
} from '#devtools/sampleData.ts'
import { startPostgres, startS3 } from '#devtools/servers.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'

const root = join(import.meta.dirname, '..')
const scale = Number(process.env.DEMO_SCALE ?? 1)
const say = (text: string) => process.stderr.write(`\n\x1b[1m== ${text}\x1b[0m\n`)

const [pgServer, s3] = await Promise.all([startPostgres(), startS3('langsight-backups-demo')])
const chDir = mkdtempSync(join(tmpdir(), 'lsb-demo-chdb-'))
const pgUrl = pgServer.url('langsight')
const chUrl = `chdb://${chDir}?database=langsight`
const env = {
  ...process.env,
  AWS_ENDPOINT_URL_S3: s3.endpoint,
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  LSB_BUCKET: s3.bucket,
  LSB_POSTGRES_URL: pgUrl,
  LSB_CLICKHOUSE_URL: chUrl,
  LSB_MIGRATE_STRATEGY: 'command',
  LSB_MIGRATE_COMMAND: JSON.stringify([process.execPath, join(root, 'devtools/demoMigration.mjs')]),
  LSB_EXPECTED_SCHEMA_HEAD: '0008_feature_flags',
}

function cli(...args: string[]): string {
  process.stderr.write(`$ langsight-backup ${args.join(' ')}\n`)
  const r = spawnSync(process.execPath, [join(root, 'bin/langsight-backup.js'), ...args], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  })
  process.stdout.write(r.stdout)
  if (r.status !== 0) throw new Error(`langsight-backup ${args[0]} exited with ${r.status}`)
  return r.stdout
}

async function withClickHouse<T>(
  fn: (conn: Awaited<ReturnType<typeof connectClickHouse>>) => Promise<T>,
): Promise<T> {
  // chdb binds one data directory per process: open it only while the CLI is not running.
  const conn = await connectClickHouse(chUrl)
  try {
    return await fn(conn)
  } finally {
    await conn.close()
  }
}

try {
  say(
    `Sample LangSight data (scale ${scale}): PostgreSQL ${pgServer.port}, chdb at ${chDir}, S3 at ${s3.endpoint}`,
  )
  const admin = new pg.Client({ connectionString: pgServer.url('postgres') })
  await admin.connect()
  await admin.query('CREATE DATABASE langsight')
  await admin.end()
  await seedPostgres(pgUrl, scale)
  await withClickHouse((c) => seedClickHouse(c, 'langsight', { scale, flavor: 'modern' }))
  const pgBefore = await postgresContentHash(pgUrl)
  const chBefore = await withClickHouse((c) => clickhouseContentHash(c, 'langsight'))

  say('Back up both engines through the backup state machine')
  const ids = JSON.parse(cli('backup', '--local', '--json')) as { postgres: string; clickhouse: string }
  say('List and verify')
  cli('list')
  cli('verify', ids.postgres)

  say('An incident: rows deleted, a table dropped, trace data truncated')
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  await client.query('DELETE FROM api_keys; DROP TABLE alert_configs CASCADE')
  await client.end()
  await withClickHouse((c) => c.command('TRUNCATE TABLE langsight.tool_call_spans'))

  say('Restore the latest backups through the restore state machine, then migrate to head')
  cli('restore', '--local', '--postgres', 'latest', '--clickhouse', 'latest', '--json')

  say('Compare every table with what was backed up')
  const pgAfter = await postgresContentHash(pgUrl)
  const chAfter = await withClickHouse((c) => clickhouseContentHash(c, 'langsight'))
  let same = true
  const migrated = new Set(['alembic_version', 'feature_flags'])
  for (const [engine, before, after] of [
    ['postgres', pgBefore, pgAfter],
    ['clickhouse', chBefore, chAfter],
  ] as const) {
    for (const table of Object.keys(before)) {
      const ok = before[table] === after[table]
      if (!ok && !(engine === 'postgres' && migrated.has(table))) same = false
      const note = ok ? 'identical' : migrated.has(table) ? 'changed by the migration to head' : 'DIFFERENT'
      const value = before[table] ?? ''
      const size = value.includes(':')
        ? `${value.split(':')[0]} rows`
        : table.startsWith('sequence')
          ? `at ${value}`
          : ''
      process.stdout.write(`${engine.padEnd(11)} ${table.padEnd(36)} ${size.padStart(12)}  ${note}\n`)
    }
  }
  say(same ? 'Every table matches its backup.' : 'MISMATCH: see above')

  say(
    'Drill: prove the latest backups restorable in scratch databases, table by table, without touching live ones',
  )
  cli('drill', '--local')
  cli('list')
  process.exitCode = same ? 0 : 1
} finally {
  await Promise.all([pgServer.stop(), s3.stop()])
  rmSync(chDir, { recursive: true, force: true })
}
