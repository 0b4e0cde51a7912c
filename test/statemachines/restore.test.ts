import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { putBytes } from '#catalog/objectStore.ts'
import { LocalExecutionFailed, runStateMachine } from '#cli/local/runStateMachine.ts'
import type { Manifest } from '#core/manifest.ts'
import {
  clickhouseContentHash,
  postgresContentHash,
  seedClickHouse,
  seedPostgres,
} from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { createPostgresDatabase, postgresUrl, uniquePrefix, useEnv } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'
import { corruptStoredObject, storedFile } from '../support/storedObjects.ts'

const bucket = process.env.LSB_BUCKET!
const migrate = JSON.stringify([
  process.execPath,
  join(import.meta.dirname, '../../devtools/demoMigration.mjs'),
])
let pgUrl: string
let chdbUrl: string
let chdbDir: string
let ch: ClickHouseConnection
let slack: Awaited<ReturnType<typeof startSlackSink>>
let prefix: string
let backupIds: { postgres: string; clickhouse: string }
let pgBefore: Record<string, string>
let chBefore: Record<string, string>

async function sql(url: string, text: string) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

function configure(extra: Record<string, string | undefined> = {}) {
  useEnv({
    LSB_PREFIX: prefix,
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: chdbUrl,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_MIGRATE_STRATEGY: 'command',
    LSB_MIGRATE_COMMAND: migrate,
    LSB_EXPECTED_SCHEMA_HEAD: '0008_feature_flags',
    LSB_QUIESCE_SERVICES: undefined,
    ...extra,
  })
  slack.messages.length = 0
}

/** Wrecks both databases the way an incident would: rows gone, a table dropped, junk inserted. */
async function wreck() {
  await sql(
    pgUrl,
    "DELETE FROM slo_definitions; DROP TABLE IF EXISTS alert_configs; UPDATE users SET email = email || '.x' WHERE id < 50",
  )
  await ch.command('TRUNCATE TABLE langsight.tool_call_spans')
  await ch.command(
    "INSERT INTO langsight.health_checks (server_name, checked_at, status, latency_ms) VALUES ('junk', now(), 'UP', 1)",
  )
}

function withoutMigrated(hashes: Record<string, string>) {
  const { alembic_version: _a, feature_flags: _f, ...rest } = hashes
  return rest
}

beforeAll(async () => {
  slack = await startSlackSink()
  pgUrl = (await createPostgresDatabase('sm_restore')).url
  await seedPostgres(pgUrl, 0.5)
  chdbDir = mkdtempSync(join(tmpdir(), 'lsb-chdb-'))
  chdbUrl = `chdb://${chdbDir}?database=langsight`
  ch = await connectClickHouse(chdbUrl)
  await seedClickHouse(ch, 'langsight', { scale: 0.1, flavor: 'modern' })
  prefix = uniquePrefix('restore')
  configure()
  const { output } = await runStateMachine('backup', { engines: ['all'] })
  const backups = (output as { backups: { engine: 'postgres' | 'clickhouse'; backupId: string }[] }).backups
  backupIds = Object.fromEntries(backups.map((b) => [b.engine, b.backupId])) as typeof backupIds
  pgBefore = await postgresContentHash(pgUrl)
  chBefore = await clickhouseContentHash(ch, 'langsight')
})

afterAll(async () => {
  await ch?.close()
  await slack?.close()
  if (chdbDir) rmSync(chdbDir, { recursive: true, force: true })
})

describe('State machine: restore', () => {
  it('gives back every table of both engines, MV aggregates included, and ends with the schema at head', async () => {
    // Prepare
    configure()
    await wreck()
    expect(await clickhouseContentHash(ch, 'langsight')).not.toEqual(chBefore)
    // Act
    const { output } = await runStateMachine('restore', { postgres: 'latest', clickhouse: 'latest' })
    // Assess
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(chBefore)
    const pgAfter = await postgresContentHash(pgUrl)
    expect(withoutMigrated(pgAfter)).toEqual(withoutMigrated(pgBefore))
    expect((output as { schema: { head: string } }).schema.head).toBe('0008_feature_flags')
    const [max] = await sql(pgUrl, 'SELECT max(id) AS m FROM users')
    const [next] = await sql(pgUrl, "INSERT INTO users (email) VALUES ('new@example.com') RETURNING id")
    expect(Number(next.id)).toBeGreaterThan(Number(max.m))
    await expect(sql(pgUrl, "INSERT INTO users (email) VALUES ('no-at-sign')")).rejects.toThrow(
      /check constraint/,
    )
    // A new span still feeds the restored MV exactly once
    const costs = async () =>
      (await ch.query<{ s: string }>('SELECT toString(sum(spans)) AS s FROM langsight.daily_costs'))[0]!.s
    const before = Number(await costs())
    await ch.command(
      "INSERT INTO langsight.tool_call_spans (span_id, session_id, project_id, server_name, tool_name, started_at, latency_ms, status, cost_usd, tags) VALUES (99999999, 1, 1, 'a', 'b', now64(3), 1, 'ok', 0.5, [])",
    )
    expect(Number(await costs())).toBe(before + 1)
  })

  it('restores into other databases for a drill, leaving the live ones alone', async () => {
    configure()
    const liveCh = await clickhouseContentHash(ch, 'langsight')
    const livePg = await postgresContentHash(pgUrl)
    await runStateMachine('restore', {
      postgres: backupIds.postgres,
      clickhouse: backupIds.clickhouse,
      targets: { postgresDatabase: 'drill_pg', clickhouseDatabase: 'drill_ch' },
      migrate: 'none',
    })
    expect(await clickhouseContentHash(ch, 'drill_ch')).toEqual(chBefore)
    expect(await postgresContentHash(postgresUrl('drill_pg'))).toEqual(pgBefore)
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(liveCh)
    expect(await postgresContentHash(pgUrl)).toEqual(livePg)
  })

  it('refuses a backup with one corrupted byte before touching any database', async () => {
    configure()
    await wreck()
    const pgWrecked = await postgresContentHash(pgUrl)
    const chWrecked = await clickhouseContentHash(ch, 'langsight')
    const manifest = await new BackupStore(bucket, prefix).readManifest('clickhouse', backupIds.clickhouse)
    const victim = manifest.objects.find((o) => o.table === 'agent_sessions')!.key
    const file = storedFile(victim)
    const saved = `${file}.saved`
    copyFileSync(file, saved)
    corruptStoredObject(victim)
    try {
      const run = runStateMachine('restore', { postgres: 'latest', clickhouse: 'latest' })
      await expect(run).rejects.toThrow(/ChecksumMismatchError/)
      await expect(run).rejects.toThrow(victim)
    } finally {
      copyFileSync(saved, file)
      rmSync(saved)
    }
    expect(await postgresContentHash(pgUrl)).toEqual(pgWrecked)
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(chWrecked)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toBe(
      ':rotating_light: langsight-backup: restore failed in VerifyChecksums: ChecksumMismatchError',
    )
    expect(slack.messages[0]!.raw).toContain(victim)
  })

  it('survives a stream corrupted half-way through the restore: previous data intact, a second run succeeds', async () => {
    configure()
    await wreck()
    const pgWrecked = await postgresContentHash(pgUrl)
    const chWrecked = await clickhouseContentHash(ch, 'langsight')
    const manifest = await new BackupStore(bucket, prefix).readManifest('clickhouse', backupIds.clickhouse)
    const victim = manifest.objects.find((o) => o.table === 'tool_call_spans')!.key
    const file = storedFile(victim)
    const saved = `${file}.saved`
    copyFileSync(file, saved)
    let corrupted = 0
    let failure: unknown
    try {
      // Corrupt after VerifyChecksums passed, just before the object is streamed in.
      failure = await runStateMachine(
        'restore',
        { postgres: 'latest', clickhouse: 'latest' },
        {
          beforeTask: (state) => {
            if (state === 'LoadClickHouseBatch' && corrupted++ === 0) {
              corruptStoredObject(victim, 0.6)
            }
          },
        },
      ).catch((e: unknown) => e)
    } finally {
      copyFileSync(saved, file)
      rmSync(saved)
    }
    // The execution failed on that object, and said so
    expect(corrupted).toBeGreaterThanOrEqual(1)
    expect(failure).toBeInstanceOf(LocalExecutionFailed)
    const { error, cause_ } = failure as LocalExecutionFailed
    expect(error).toBe('ChecksumMismatchError')
    expect(cause_).toContain(`s3 object ${victim}: read `)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toBe(
      ':rotating_light: langsight-backup: restore failed in RestoreClickHouse: ChecksumMismatchError',
    )
    expect(slack.messages[0]!.raw).toContain(`s3 object ${victim}: read `)
    expect(await postgresContentHash(pgUrl)).toEqual(pgWrecked)
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(chWrecked)
    await runStateMachine('restore', { postgres: 'latest', clickhouse: 'latest' })
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(chBefore)
    expect(withoutMigrated(await postgresContentHash(pgUrl))).toEqual(withoutMigrated(pgBefore))
  })

  it('fails the execution with a Slack message when the migration fails', async () => {
    configure({
      LSB_MIGRATE_COMMAND: JSON.stringify([
        process.execPath,
        '-e',
        'console.error("alembic: boom"); process.exit(3)',
      ]),
    })
    const run = runStateMachine('restore', { postgres: 'latest', clickhouse: null })
    await expect(run).rejects.toThrow(/MigrationError.*boom/)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.raw).toContain('MigrateToHead')
  })

  it('fails when the migration ends at an unexpected head', async () => {
    configure({ LSB_EXPECTED_SCHEMA_HEAD: '0009_not_there' })
    await expect(runStateMachine('restore', { postgres: 'latest', clickhouse: null })).rejects.toThrow(
      /MigrationError.*0008_feature_flags.*0009_not_there/,
    )
  })

  describe('untrusted input is refused before any database changes', () => {
    async function tampered(
      mutate: (m: Manifest) => unknown,
      engine: 'postgres' | 'clickhouse' = 'clickhouse',
    ) {
      const original = await new BackupStore(bucket, prefix).readManifest(engine, backupIds[engine])
      const id = engine === 'clickhouse' ? '20200101T000000.000Z' : '20200101T000000.001Z'
      const moved = JSON.parse(JSON.stringify(original).replaceAll(`/${original.backupId}/`, `/${id}/`))
      moved.backupId = id
      const bad = mutate(moved) ?? moved
      await putBytes(
        bucket,
        `${prefix}/${engine}/${id}/manifest.json`,
        JSON.stringify(bad),
        'application/json',
      )
      return id
    }

    async function expectRefused(input: Record<string, unknown>, pattern: RegExp) {
      configure()
      const pgHash = await postgresContentHash(pgUrl)
      const chHash = await clickhouseContentHash(ch, 'langsight')
      const databases = await ch.query<{ name: string }>('SELECT name FROM system.databases ORDER BY name')
      await expect(runStateMachine('restore', input)).rejects.toThrow(pattern)
      expect(await postgresContentHash(pgUrl)).toEqual(pgHash)
      expect(await clickhouseContentHash(ch, 'langsight')).toEqual(chHash)
      expect(await ch.query<{ name: string }>('SELECT name FROM system.databases ORDER BY name')).toEqual(
        databases,
      )
    }

    it('an unknown backup id', async () => {
      await expectRefused({ postgres: '20010101T000000.000Z' }, /BackupNotFoundError/)
    })
    it('a table name with a quote and a semicolon', async () => {
      const id = await tampered((m) => {
        m.tables[0]!.name = 'x`; DROP DATABASE langsight; --'
      })
      await expectRefused({ clickhouse: id }, /UntrustedInputError|ManifestError/)
    })
    it('DDL that targets another database', async () => {
      const id = await tampered((m) => {
        const t = m.tables.find((x) => x.kind === 'table')!
        t.ddl = t.ddl.replace(/CREATE TABLE \S+/, 'CREATE TABLE system.evil')
      })
      await expectRefused({ clickhouse: id }, /UntrustedInputError/)
    })
    it('DDL with a second statement', async () => {
      const id = await tampered((m) => {
        const t = m.tables.find((x) => x.kind === 'table')!
        t.ddl = `${t.ddl}; DROP TABLE langsight.tool_call_spans`
      })
      await expectRefused({ clickhouse: id }, /UntrustedInputError/)
    })
    it('an object key that climbs out with ..', async () => {
      const id = await tampered((m) => {
        m.objects[0]!.key = `${prefix}/clickhouse/20200101T000000.000Z/../../etc/passwd`
      })
      await expectRefused({ clickhouse: id }, /ManifestError|UntrustedInputError/)
    })
    it('a manifest of another engine', async () => {
      const original = await new BackupStore(bucket, prefix).readManifest('clickhouse', backupIds.clickhouse)
      const id = '20200101T000000.002Z'
      await putBytes(
        bucket,
        `${prefix}/postgres/${id}/manifest.json`,
        JSON.stringify({ ...original, backupId: id, objects: [] }),
        'application/json',
      )
      await expectRefused({ postgres: id }, /UntrustedInputError|ManifestError/)
    })
    it('a manifest that fails its schema', async () => {
      const id = await tampered((m) => ({ ...m, formatVersion: 99 }))
      await expectRefused({ clickhouse: id }, /ManifestError/)
    })
  })
})
