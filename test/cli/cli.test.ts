import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  clickhouseContentHash,
  postgresContentHash,
  seedClickHouse,
  seedPostgres,
} from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { createPostgresDatabase, uniquePrefix } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'
import { corruptStoredObject, storedFile } from '../support/storedObjects.ts'

const root = join(import.meta.dirname, '../..')
let env: NodeJS.ProcessEnv
let pgUrl: string
let chUrl: string

/** Runs the real bin as a user would; resolves with its exit code, stdout and stderr. */
function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return cliWithStdin(undefined, ...args)
}

/** The same, with `stdin` written to its standard input (a pipe) when given. */
function cliWithStdin(
  stdin: string | undefined,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bin/langsight-backup.js'), ...args], {
      env,
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    if (stdin !== undefined) child.stdin!.end(stdin)
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (c) => {
      stdout += c
    })
    child.stderr!.on('data', (c) => {
      stderr += c
    })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function chHash() {
  const conn = await connectClickHouse(chUrl)
  try {
    return await clickhouseContentHash(conn, 'langsight')
  } finally {
    await conn.close()
  }
}

let chDir: string

afterAll(() => {
  if (chDir) rmSync(chDir, { recursive: true, force: true })
})

beforeAll(async () => {
  pgUrl = (await createPostgresDatabase('cli')).url
  await seedPostgres(pgUrl, 0.2)
  chDir = mkdtempSync(join(tmpdir(), 'lsb-cli-chdb-'))
  chUrl = `chdb://${chDir}?database=langsight`
  const conn = await connectClickHouse(chUrl)
  await seedClickHouse(conn, 'langsight', { scale: 0.05, flavor: 'modern' })
  await conn.close()
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AWS_ENDPOINT_URL_S3: process.env.AWS_ENDPOINT_URL_S3,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    LSB_BUCKET: process.env.LSB_BUCKET,
    LSB_PREFIX: uniquePrefix('cli'),
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: chUrl,
  }
})

describe('CLI: langsight-backup', () => {
  it("keeps the AWS SDK's Node-version warning out of its output, unless asked to show it", async () => {
    // Act: the SDK warns on Node 20 when a client is created (list creates one)
    const quiet = await cli('list', '--json')
    const saved = env
    env = { ...env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: '' }
    const loud = await cli('list', '--json').finally(() => {
      env = saved
    })
    // Assess: the control run shows the warning is there to hide (on Node 22+ neither prints it)
    expect(quiet.code, quiet.stderr).toBe(0)
    expect(quiet.stderr).not.toMatch(/NodeVersionSupportWarning|require node/)
    if (Number(process.versions.node.split('.')[0]) < 22)
      expect(loud.stderr).toMatch(/NodeVersionSupportWarning/)
  })

  it('backup --local --json prints the backup id per engine; list, verify and restore --local use them', async () => {
    const pgBefore = await postgresContentHash(pgUrl)
    const chBefore = await chHash()
    // Act: back up
    const backup = await cli('backup', '--local', '--json')
    expect(backup.code).toBe(0)
    const ids = JSON.parse(backup.stdout) as Record<string, string>
    expect(Object.keys(ids).sort()).toEqual(['clickhouse', 'postgres'])
    expect(backup.stderr).toContain('→ SnapshotPostgres')
    expect(backup.stderr).toContain('✓ CommitManifest')
    // list and verify
    const list = JSON.parse((await cli('list', '--json')).stdout) as { backupId: string; engine: string }[]
    expect(list.map((b) => `${b.engine}:${b.backupId}`).sort()).toEqual([
      `clickhouse:${ids.clickhouse}`,
      `postgres:${ids.postgres}`,
    ])
    const verify = await cli('verify', ids.clickhouse!, '--engine', 'clickhouse', '--json')
    expect(verify.code).toBe(0)
    expect(JSON.parse(verify.stdout).verified[0].objects).toBeGreaterThan(1)
    // restore after an incident
    const conn = await connectClickHouse(chUrl)
    await conn.command('TRUNCATE TABLE langsight.agent_sessions')
    await conn.close()
    const restore = await cli(
      'restore',
      '--local',
      '--postgres',
      'latest',
      '--clickhouse',
      'latest',
      '--json',
    )
    expect(restore.code).toBe(0)
    expect(JSON.parse(restore.stdout)).toMatchObject({ postgres: ids.postgres, clickhouse: ids.clickhouse })
    expect(await chHash()).toEqual(chBefore)
    expect(await postgresContentHash(pgUrl)).toEqual(pgBefore)
  })

  it('drill --local --json proves the latest backups per table, and list shows them proven', async () => {
    // Act
    const drill = await cli('drill', '--local', '--json')
    // Assess
    expect(drill.code).toBe(0)
    const report = JSON.parse(drill.stdout) as {
      passed: boolean
      engines: {
        engine: string
        passed: boolean
        tables: { table: string; rows: number; match: boolean }[]
      }[]
    }
    expect(report.passed).toBe(true)
    expect(report.engines.map((e) => e.engine).sort()).toEqual(['clickhouse', 'postgres'])
    const spans = report.engines
      .find((e) => e.engine === 'clickhouse')!
      .tables.find((t) => t.table === 'tool_call_spans')!
    expect(spans.match).toBe(true)
    expect(spans.rows).toBeGreaterThan(0)
    const list = JSON.parse((await cli('list', '--json')).stdout) as { provenAt: string | null }[]
    expect(list.every((b) => b.provenAt !== null)).toBe(true)
  })

  it('drill exits 1 and reports where a drill of a damaged backup failed', async () => {
    // Prepare: the latest Postgres dump loses a byte at rest
    const list = JSON.parse((await cli('list', '--json', '--engine', 'postgres')).stdout) as {
      backupId: string
    }[]
    const backupId = list.at(-1)!.backupId
    const key = `${env.LSB_PREFIX}/postgres/${backupId}/postgres.dump`
    const file = storedFile(key)
    copyFileSync(file, `${file}.saved`)
    corruptStoredObject(key)
    try {
      // Act
      const drill = await cli('drill', '--local', '--postgres', backupId, '--json')
      // Assess
      expect(drill.code).toBe(1)
      const report = JSON.parse(drill.stdout) as {
        passed: boolean
        error: string
        engines: { passed: boolean; error: string }[]
      }
      expect(report.passed).toBe(false)
      expect(report.error).toMatch(/ChecksumMismatchError/)
      expect(report.engines).toHaveLength(1)
      expect(report.engines[0]!.passed).toBe(false)
      expect(report.engines[0]!.error).toMatch(/ChecksumMismatchError/)
    } finally {
      copyFileSync(`${file}.saved`, file)
      rmSync(`${file}.saved`)
    }
  })

  it('restores through the embedded engine whatever its standard input holds (chdb reads stdin on FROM INFILE)', async () => {
    // Prepare: a streamed backup, so the restore feeds chdb through a FIFO (INSERT … FROM INFILE)
    const chBefore = await chHash()
    const saved = { ...env }
    Object.assign(env, { LSB_CLICKHOUSE_TRANSFER: 'stream' })
    try {
      const backup = await cli('backup', '--local', '--engine', 'clickhouse', '--json')
      expect(backup.code).toBe(0)
      const conn = await connectClickHouse(chUrl)
      await conn.command('TRUNCATE TABLE langsight.health_checks')
      await conn.close()
      // Act: stdin is a pipe with bytes in it, as under `yes | …` or a CI runner
      const restore = await cliWithStdin(
        'not a Native body\n'.repeat(1000),
        'restore',
        '--local',
        '--clickhouse',
        'latest',
      )
      // Assess
      expect(restore.stderr).not.toMatch(/Code: \d+/)
      expect(restore.code).toBe(0)
      expect(await chHash()).toEqual(chBefore)
    } finally {
      env = saved
    }
  })

  it('exits 1 naming the failed state and the unreachable database', async () => {
    const saved = env.LSB_POSTGRES_URL
    env.LSB_POSTGRES_URL = pgUrl.replace(/:(\d+)\//, ':1/')
    const r = await cli('backup', '--local', '--engine', 'postgres')
    env.LSB_POSTGRES_URL = saved
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    // only a failure draws these: the state that failed, and the error as the last line
    expect(r.stderr).toMatch(/^✗ SnapshotPostgres: TransientError$/m)
    expect(r.stderr).toMatch(/^✗ Failed: TransientError$/m)
    const database = new URL(pgUrl).pathname.slice(1)
    expect(r.stderr.trimEnd().split('\n').at(-1)).toMatch(
      new RegExp(
        `^langsight-backup: TransientError: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:1/${database} as postgres: .*ECONNREFUSED`,
      ),
    )
  })

  it('exits 1 with the ClickHouse URL its failure carries masked: no password on stderr, stdout, in logs or Slack', async () => {
    // Prepare: a ClickHouse URL nobody answers; its connection error names the whole URL
    const password = 'Ch-S3cret/pass:w0rd'
    const encoded = encodeURIComponent(password)
    const slack = await startSlackSink()
    const saved = { ...env }
    env.LSB_CLICKHOUSE_URL = `http://default:${encoded}@127.0.0.1:1/langsight`
    env.LSB_SLACK_WEBHOOK_URL = slack.url
    try {
      // Act: --verbose adds the JSON logs and the stack trace to stderr
      const r = await cli('backup', '--local', '--engine', 'clickhouse', '--verbose')
      // Assess
      const masked = 'ClickHouse http://default:***@127.0.0.1:1/langsight'
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/^✗ ListClickHouseTables: \w+Error$/m)
      expect(r.stderr).toMatch(
        new RegExp(`^langsight-backup: \\w+Error: ${masked.replace(/[.*]/g, '\\$&')}`, 'm'),
      )
      expect(r.stderr).toMatch(/^\{"level":"ERROR","message":"ListClickHouseTables failed"/m)
      expect(slack.messages).toHaveLength(1)
      expect(slack.messages[0]!.raw).toContain(masked)
      for (const text of [r.stdout, r.stderr, ...slack.messages.map((m) => m.raw)]) {
        expect(text).not.toContain(password)
        expect(text).not.toContain(encoded)
        expect(text).not.toContain(slack.url.split('/services/')[1])
      }
    } finally {
      env = saved
      await slack.close()
    }
  })

  it('verify names the object when a backup is unknown', async () => {
    const r = await cli('verify', '20010101T000000.000Z')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/no backup 20010101T000000\.000Z/)
  })
})
