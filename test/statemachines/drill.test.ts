import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { readDrillRecords } from '#catalog/drillRecords.ts'
import { hashObject, openObject, putBytes, uploadStream } from '#catalog/objectStore.ts'
import { LocalExecutionFailed, runStateMachine } from '#cli/local/runStateMachine.ts'
import { backupDir, manifestKey, provenAt } from '#core/backupKeys.ts'
import { expectedFingerprints } from '#core/fingerprint.ts'
import type { Manifest } from '#core/manifest.ts'
import {
  clickhouseContentHash,
  postgresContentHash,
  seedClickHouse,
  seedPostgres,
} from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { storedColumnTypes } from '#engines/clickhouse/describeDatabase.ts'
import { fingerprintOf } from '#engines/clickhouse/fingerprint.ts'
import { s3Function, serverS3FromSettings } from '#engines/clickhouse/s3Transfer.ts'
import { qualifiedName, quoteIdentifier } from '#engines/clickhouse/sql.ts'
import { createPostgresDatabase, postgresUrl, uniquePrefix, useEnv } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'

const bucket = process.env.LSB_BUCKET!
let pgUrl: string
let chdbDir: string
let ch: ClickHouseConnection
let slack: Awaited<ReturnType<typeof startSlackSink>>
let prefix: string
let backupIds: { postgres: string; clickhouse: string }

function configure() {
  useEnv({
    LSB_PREFIX: prefix,
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: `chdb://${chdbDir}?database=langsight`,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_MIGRATE_STRATEGY: 'none',
    LSB_QUIESCE_SERVICES: undefined,
  })
  slack.messages.length = 0
}

const store = () => new BackupStore(bucket, prefix)

async function pgDatabases(): Promise<string[]> {
  const client = new pg.Client({ connectionString: postgresUrl('postgres') })
  await client.connect()
  try {
    return (await client.query<{ datname: string }>('SELECT datname FROM pg_database')).rows.map(
      (r) => r.datname,
    )
  } finally {
    await client.end()
  }
}

async function scratchLeft(): Promise<string[]> {
  const ours = (await ch.query<{ name: string }>('SELECT name FROM system.databases')).map((r) => r.name)
  return [...(await pgDatabases()), ...ours].filter((n) => n.includes('__lsb_drill_'))
}

/** Backs up both engines of the test's databases and returns the backup ids. */
async function backUp(): Promise<typeof backupIds> {
  const { output } = await runStateMachine('backup', { engines: ['all'] })
  const backups = (output as { backups: { engine: 'postgres' | 'clickhouse'; backupId: string }[] }).backups
  return Object.fromEntries(backups.map((b) => [b.engine, b.backupId])) as typeof backupIds
}

/**
 * Replaces one stored object of a backup by valid Native rows that differ from the originals in
 * one column (same count), and records the new object's sha256 and size in the manifest: a backup
 * whose checksums all hold but whose content is not what was backed up.
 */
async function rewriteClickHouseObject(backupId: string, table: string, column: string): Promise<void> {
  const manifest = await store().readManifest('clickhouse', backupId)
  const object = manifest.objects.find((o) => o.table === table)!
  const columns = await storedColumnTypes(ch, 'langsight', table)
  const target = await serverS3FromSettings()
  const key = `${backupDir(prefix, 'clickhouse', backupId)}data/${table}/rewritten.native.zst`
  const select = columns
    .map((c) =>
      c.name === column
        ? `${quoteIdentifier(c.name)} + 1 AS ${quoteIdentifier(c.name)}`
        : quoteIdentifier(c.name),
    )
    .join(', ')
  await ch.command(
    `INSERT INTO FUNCTION ${s3Function(target, key, columns, 'zstd')} SELECT ${select} FROM ${s3Function(target, object.key, columns, 'zstd')}`,
  )
  const digest = await hashObject(bucket, key)
  const objects = manifest.objects.map((o) =>
    o === object ? { ...o, key, sha256: digest.sha256, bytes: digest.bytes } : o,
  )
  await writeManifest({ ...manifest, objects })
}

async function writeManifest(manifest: Manifest): Promise<void> {
  const key = manifestKey(prefix, manifest.engine, manifest.backupId)
  await putBytes(bucket, key, JSON.stringify(manifest), 'application/json')
}

beforeAll(async () => {
  slack = await startSlackSink()
  pgUrl = (await createPostgresDatabase('sm_drill')).url
  await seedPostgres(pgUrl, 0.3)
  chdbDir = mkdtempSync(join(tmpdir(), 'lsb-chdb-'))
  ch = await connectClickHouse(`chdb://${chdbDir}?database=langsight`)
  await seedClickHouse(ch, 'langsight', { scale: 0.05, flavor: 'modern' })
  prefix = uniquePrefix('drill')
  configure()
  backupIds = await backUp()
})

afterAll(async () => {
  await ch?.close()
  await slack?.close()
  if (chdbDir) rmSync(chdbDir, { recursive: true, force: true })
})

describe('State machine: restore, drill mode', () => {
  it('records fingerprints at backup time: per Postgres table, per ClickHouse object, equal to the live tables', async () => {
    // Act
    const pgManifest = await store().readManifest('postgres', backupIds.postgres)
    const chManifest = await store().readManifest('clickhouse', backupIds.clickhouse)
    // Assess
    const pgTables = expectedFingerprints(pgManifest)!
    expect(pgTables.map((t) => t.table)).toContain('public.users')
    expect(pgTables.every((t) => t.hash !== null && /^\d+$/.test(t.hash))).toBe(true)
    const users = pgTables.find((t) => t.table === 'public.users')!
    const client = new pg.Client({ connectionString: pgUrl })
    await client.connect()
    const [{ n }] = (await client.query('SELECT count(*)::int AS n FROM users')).rows
    await client.end()
    expect(users.rows).toBe(n)
    for (const o of chManifest.objects) expect(o.fingerprint).toMatch(/^\d+$/)
    // the sum over a table's objects is the fingerprint of the live table, read by the server
    const spans = expectedFingerprints(chManifest)!.find((t) => t.table === 'tool_call_spans')!
    const live = await fingerprintOf(ch, {
      source: qualifiedName('langsight', 'tool_call_spans'),
      columns: await storedColumnTypes(ch, 'langsight', 'tool_call_spans'),
      mode: 'full',
      what: 'live spans',
    })
    expect(spans).toEqual({ table: 'tool_call_spans', ...live })
  })

  it('proves an intact backup restorable, records it beside the backup, drops its scratch databases and leaves live data unchanged', async () => {
    // Prepare
    configure()
    const livePg = await postgresContentHash(pgUrl)
    const liveCh = await clickhouseContentHash(ch, 'langsight')
    // Act
    const { output, executionArn } = await runStateMachine('restore', {
      mode: 'drill',
      postgres: 'latest',
      clickhouse: 'latest',
    })
    // Assess
    expect((output as { drillFinished: { passed: boolean } }).drillFinished.passed).toBe(true)
    for (const engine of ['postgres', 'clickhouse'] as const) {
      const records = (await readDrillRecords(store(), engine, backupIds[engine])).filter(
        (r) => r.executionId === executionArn,
      )
      expect(records).toHaveLength(1)
      const [record] = records
      expect(record!.passed).toBe(true)
      expect(record!.fingerprints).toBe('full')
      expect(record!.tables.length).toBeGreaterThan(3)
      expect(record!.tables.every((t) => t.match && t.compared === 'full' && t.rows === t.expectedRows)).toBe(
        true,
      )
      expect(record!.database).toMatch(
        /^langsight__lsb_drill_[0-9a-f]{8}$|^sm_drill_[0-9a-f]{8}__lsb_drill_[0-9a-f]{8}$/,
      )
    }
    expect(await scratchLeft()).toEqual([])
    expect(await postgresContentHash(pgUrl)).toEqual(livePg)
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(liveCh)
    // the listing alone says which backups are proven
    for (const engine of ['postgres', 'clickhouse'] as const) {
      const listed = (await store().list(engine)).find((b) => b.backupId === backupIds[engine])!
      expect(provenAt(listed.keys)).not.toBeNull()
    }
  })

  it('fails on a ClickHouse backup whose restored rows differ from its fingerprints, naming the table in Slack', async () => {
    // Prepare: a second backup, one of whose objects is rewritten with other (valid) rows
    configure()
    const ids = await backUp()
    await rewriteClickHouseObject(ids.clickhouse, 'health_checks', 'latency_ms')
    const liveCh = await clickhouseContentHash(ch, 'langsight')
    slack.messages.length = 0
    // Act
    const failure = await runStateMachine('restore', { mode: 'drill', clickhouse: ids.clickhouse }).catch(
      (e: unknown) => e,
    )
    // Assess
    expect(failure).toBeInstanceOf(LocalExecutionFailed)
    expect((failure as LocalExecutionFailed).error).toBe('DrillMismatchError')
    expect((failure as LocalExecutionFailed).message).toMatch(
      /health_checks: same \d+ rows, different content/,
    )
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toContain('CheckFingerprints')
    expect(slack.messages[0]!.raw).toContain('health_checks')
    const [record] = await readDrillRecords(store(), 'clickhouse', ids.clickhouse)
    expect(record!.passed).toBe(false)
    expect(record!.tables.filter((t) => !t.match).map((t) => t.table)).toEqual(['health_checks'])
    expect(await scratchLeft()).toEqual([])
    expect(await clickhouseContentHash(ch, 'langsight')).toEqual(liveCh)
  })

  it('fails on a Postgres dump that restores other rows than it recorded, naming the table', async () => {
    // Prepare: backup B's dump (one email changed since A) stored as backup A's, A's fingerprints kept
    configure()
    const client = new pg.Client({ connectionString: pgUrl })
    await client.connect()
    await client.query("UPDATE users SET email = 'changed-' || email WHERE id = (SELECT min(id) FROM users)")
    await client.end()
    const later = await backUp()
    const a = await store().readManifest('postgres', backupIds.postgres)
    const b = await store().readManifest('postgres', later.postgres)
    // a manifest names keys inside its own backup only: B's dump is copied into A's
    const key = `${backupDir(prefix, 'postgres', a.backupId)}swapped.dump`
    await uploadStream(await openObject(bucket, b.objects[0]!.key), { bucket, key })
    await writeManifest({
      ...a,
      objects: [{ ...a.objects[0]!, key, sha256: b.objects[0]!.sha256, bytes: b.objects[0]!.bytes }],
    })
    // Act
    const failure = await runStateMachine('restore', { mode: 'drill', postgres: a.backupId }).catch(
      (e: unknown) => e,
    )
    // Assess
    expect((failure as LocalExecutionFailed).error).toBe('DrillMismatchError')
    expect((failure as LocalExecutionFailed).message).toMatch(
      /public\.users: same \d+ rows, different content/,
    )
    expect(await scratchLeft()).toEqual([])
  })

  it('refuses a drill that names its own target databases', async () => {
    configure()
    const run = runStateMachine('restore', {
      mode: 'drill',
      postgres: 'latest',
      targets: { postgresDatabase: 'langsight' },
    })
    await expect(run).rejects.toThrow(/a drill picks its own scratch databases/)
  })
})
