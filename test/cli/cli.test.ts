import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  clickhouseContentHash,
  postgresContentHash,
  seedClickHouse,
  seedPostgres,
} from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { createPostgresDatabase, uniquePrefix } from '../support/env.ts'

const root = join(import.meta.dirname, '../..')
let env: NodeJS.ProcessEnv
let pgUrl: string
let chUrl: string

/** Runs the real bin as a user would; resolves with its exit code, stdout and stderr. */
function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bin/langsight-backup.js'), ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => {
      stdout += c
    })
    child.stderr.on('data', (c) => {
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

beforeAll(async () => {
  pgUrl = (await createPostgresDatabase('cli')).url
  await seedPostgres(pgUrl, 0.2)
  chUrl = `chdb://${mkdtempSync(join(tmpdir(), 'lsb-cli-chdb-'))}?database=langsight`
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

  it('exits non-zero with a clear message, and no password, when the database is unreachable', async () => {
    const password = decodeURIComponent(new URL(pgUrl).password)
    const saved = env.LSB_POSTGRES_URL
    env.LSB_POSTGRES_URL = pgUrl.replace(/:(\d+)\//, ':1/')
    const r = await cli('backup', '--local', '--engine', 'postgres')
    env.LSB_POSTGRES_URL = saved
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/SnapshotPostgres|127\.0\.0\.1:1/)
    expect(r.stderr + r.stdout).not.toContain(password)
  })

  it('verify names the object when a backup is unknown', async () => {
    const r = await cli('verify', '20010101T000000.000Z')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/no backup 20010101T000000\.000Z/)
  })
})
