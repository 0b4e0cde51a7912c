import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { listObjects, putBytes, verifyObjectChecksum } from '#catalog/objectStore.ts'
import { LocalExecutionFailed, runStateMachine } from '#cli/local/runStateMachine.ts'
import { backupIdFor } from '#core/backupKeys.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { logger } from '#core/logger.ts'
import { seedClickHouse, seedPostgres } from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import type { SlackMessage } from '#notify/slack.ts'
import { createPostgresDatabase, uniquePrefix, useEnv } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'
import { corruptStoredObject } from '../support/storedObjects.ts'

const bucket = process.env.LSB_BUCKET!
let pgUrl: string
let chdbUrl: string
let chdbDir: string
let ch: ClickHouseConnection
let slack: Awaited<ReturnType<typeof startSlackSink>>

beforeAll(async () => {
  const db = await createPostgresDatabase('sm_backup')
  pgUrl = db.url
  await seedPostgres(pgUrl, 0.5)
  chdbDir = mkdtempSync(join(tmpdir(), 'lsb-chdb-'))
  chdbUrl = `chdb://${chdbDir}?database=langsight`
  ch = await connectClickHouse(chdbUrl)
  await seedClickHouse(ch, 'langsight', { scale: 0.1, flavor: 'modern' })
  slack = await startSlackSink()
})

afterAll(async () => {
  await ch?.close()
  await slack?.close()
  if (chdbDir) rmSync(chdbDir, { recursive: true, force: true })
})

function configure(prefix: string, extra: Record<string, string | undefined> = {}) {
  useEnv({
    LSB_PREFIX: prefix,
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: chdbUrl,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_NOTIFY_SUCCESS: 'false',
    LSB_PG_BIN_DIR: undefined,
    ...extra,
  })
  slack.messages.length = 0
}

async function keysUnder(prefix: string): Promise<string[]> {
  const keys = []
  for await (const o of listObjects(bucket, `${prefix}/`)) keys.push(o.key)
  return keys.sort()
}

describe('State machine: backup', () => {
  it('backs up both engines, commits valid manifests whose objects re-hash to their recorded sha256', async () => {
    // Prepare
    const prefix = uniquePrefix('both')
    configure(prefix, { LSB_NOTIFY_SUCCESS: 'true' })
    // Act
    const { output } = await runStateMachine('backup', { engines: ['all'] })
    // Assess
    const backups = (output as { backups: { engine: string; backupId: string; rows: number | null }[] })
      .backups
    expect(backups.map((b) => b.engine)).toEqual(['postgres', 'clickhouse'])
    for (const b of backups) {
      const manifest = await new BackupStore(bucket, prefix).readManifest(b.engine as 'postgres', b.backupId)
      expect(manifest.objects.length).toBeGreaterThan(0)
      for (const o of manifest.objects) await verifyObjectChecksum(bucket, o.key, o)
    }
    const chManifest = await new BackupStore(bucket, prefix).readManifest('clickhouse', backups[1]!.backupId)
    const spans = chManifest.objects.filter((o) => o.table === 'tool_call_spans')
    const [count] = await ch.query<{ n: string }>('SELECT count() AS n FROM langsight.tool_call_spans')
    expect(spans.reduce((s, o) => s + (o.rows ?? 0), 0)).toBe(Number(count!.n))
    expect(chManifest.tables.find((t) => t.name === 'daily_costs_mv')?.kind).toBe('materialized_view')
    // Slack: one success summary whose figures are the manifests'
    const manifests = await Promise.all(
      backups.map((b) => new BackupStore(bucket, prefix).readManifest(b.engine as 'postgres', b.backupId)),
    )
    const bytesOf = (m: (typeof manifests)[number]) => m.objects.reduce((n, o) => n + o.bytes, 0)
    const total = manifests.reduce((n, m) => n + bytesOf(m), 0)
    const chRows = chManifest.objects.reduce((n, o) => n + (o.rows ?? 0), 0)
    expect(slack.messages).toHaveLength(1)
    const message = JSON.parse(slack.messages[0]!.raw) as SlackMessage
    const escaped = humanBytes(total).replace('.', '\\.')
    expect(message.text).toMatch(
      new RegExp(`^:white_check_mark: langsight-backup: backup succeeded \\(${escaped}, (\\d+m )?\\d+s\\)$`),
    )
    expect(message.blocks[0]).toEqual({
      type: 'header',
      text: { type: 'plain_text', text: 'Backup succeeded' },
    })
    expect(message.blocks[1]).toEqual({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: [
          `• *postgres* \`${backups[0]!.backupId}\`: ${humanBytes(bytesOf(manifests[0]!))}, rows not counted, 1 object(s)`,
          `• *clickhouse* \`${backups[1]!.backupId}\`: ${humanBytes(bytesOf(manifests[1]!))}, ` +
            `${chRows.toLocaleString('en-US')} rows, ${chManifest.objects.length} object(s)`,
        ].join('\n'),
      },
    })
    expect(message.blocks[2]).toEqual({
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: expect.stringMatching(
            new RegExp(`^took (\\d+m )?\\d+s · ${escaped} in total · ${process.env.AWS_REGION}$`),
          ),
        },
      ],
    })
  })

  it('backs up only the engines the input names', async () => {
    const prefix = uniquePrefix('pgonly')
    configure(prefix)
    const { output } = await runStateMachine('backup', { engines: ['postgres'] })
    const backups = (output as { backups: { engine: string }[] }).backups
    expect(backups.map((b) => b.engine)).toEqual(['postgres'])
    expect((await keysUnder(prefix)).some((k) => k.includes('/clickhouse/'))).toBe(false)
  })

  it('refuses bad input with a clear error and a Slack message, writing nothing', async () => {
    const prefix = uniquePrefix('badinput')
    configure(prefix)
    const run = runStateMachine('backup', { engines: ['mysql'] })
    await expect(run).rejects.toBeInstanceOf(LocalExecutionFailed)
    await expect(run).rejects.toThrow(/UntrustedInputError.*engines/)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.raw).toContain('PlanBackup')
    expect(await keysUnder(prefix)).toEqual([])
  })

  it('reports a bad setting to Slack too: the failure notification does not need the settings that failed', async () => {
    // Prepare: a setting out of its range fails the first state that reads the settings
    const prefix = uniquePrefix('badsetting')
    configure(prefix, { LSB_MAP_CONCURRENCY: '0' })
    // Act
    const run = runStateMachine('backup', { engines: ['postgres'] })
    // Assess
    await expect(run).rejects.toThrow(/ConfigError.*LSB_MAP_CONCURRENCY/)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toContain('ConfigError')
    expect(slack.messages[0]!.raw).toContain('LSB_MAP_CONCURRENCY')
    configure(prefix, { LSB_MAP_CONCURRENCY: undefined })
    expect(await keysUnder(prefix)).toEqual([])
  })

  it('fails at VerifyPostgresDump when a stored byte is corrupted before it is re-read: no manifest, Slack names the state and the object', async () => {
    const prefix = uniquePrefix('corrupt')
    configure(prefix)
    let corrupted = ''
    const run = runStateMachine(
      'backup',
      { engines: ['postgres'] },
      {
        beforeTask: (state, input) => {
          if (state === 'VerifyPostgresDump' && !corrupted) {
            corrupted = (input as { key: string }).key
            corruptStoredObject(corrupted)
          }
        },
      },
    )
    await expect(run).rejects.toThrow(/ChecksumMismatchError/)
    expect(corrupted).toMatch(/postgres\.dump$/)
    expect((await keysUnder(prefix)).some((k) => k.endsWith('manifest.json'))).toBe(false)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.raw).toContain('VerifyPostgresDump')
    expect(slack.messages[0]!.raw).toContain(corrupted)
  })

  it('fails SnapshotPostgres when the database is unreachable and never prunes', async () => {
    // Prepare: an old complete backup that retention would remove after a success
    const prefix = uniquePrefix('unreachable')
    const good = uniquePrefix('seed')
    configure(good)
    const { output } = await runStateMachine('backup', { engines: ['postgres'] })
    const seeded = (output as { backups: { backupId: string }[] }).backups[0]!.backupId
    const old = await new BackupStore(bucket, good).readManifest('postgres', seeded)
    const oldId = backupIdFor(new Date(Date.now() - 400 * 86400_000))
    await new BackupStore(bucket, prefix).writeManifest({
      ...old,
      prefix,
      backupId: oldId,
      objects: old.objects.map((o) => ({
        ...o,
        key: o.key.replace(`${good}/postgres/${seeded}/`, `${prefix}/postgres/${oldId}/`),
      })),
    })
    await putBytes(bucket, `${prefix}/postgres/${oldId}/postgres.dump`, 'x', 'application/octet-stream')
    const badUrl = pgUrl.replace(/:(\d+)\//, ':1/')
    configure(prefix, { LSB_POSTGRES_URL: badUrl, LSB_KEEP_LAST: '1', LSB_RETENTION_POSTGRES_DAYS: '1' })
    // Act
    const run = runStateMachine('backup', { engines: ['postgres'] }, { retryIntervalMs: 10 })
    const failure = (await run.catch((e: LocalExecutionFailed) => e)) as LocalExecutionFailed
    // Assess
    expect(failure).toBeInstanceOf(LocalExecutionFailed)
    expect(failure.message).toMatch(/127\.0\.0\.1:1/)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.raw).toContain('SnapshotPostgres')
    // Prune never ran: the 400-day-old backup is still there
    expect((await new BackupStore(bucket, prefix).list('postgres')).map((b) => b.backupId)).toContain(oldId)
  })

  it('masks the ClickHouse password its failure carries in the error, Slack, every log line and every history event', async () => {
    // Prepare: a ClickHouse URL nobody answers. Its connection error names the whole URL,
    // password included: only redaction keeps it out of what leaves the process.
    const password = 'Ch-S3cret/pass:w0rd'
    const encoded = encodeURIComponent(password)
    const badUrl = `http://default:${encoded}@127.0.0.1:1/langsight`
    const prefix = uniquePrefix('chsecret')
    configure(prefix, { LSB_CLICKHOUSE_URL: badUrl })
    const events: string[] = []
    const lines: string[] = []
    const streams = [process.stdout, process.stderr] as const
    const writes = streams.map((s) => s.write)
    for (const s of streams) {
      s.write = ((chunk: string) => {
        lines.push(String(chunk))
        return true
      }) as typeof s.write
    }
    logger.setLogLevel('DEBUG')
    // Act
    let failure: unknown
    try {
      failure = await runStateMachine(
        'backup',
        { engines: ['clickhouse'] },
        { retryIntervalMs: 10, onEvent: (event) => events.push(JSON.stringify(event)) },
      ).catch((e: unknown) => e)
    } finally {
      logger.setLogLevel('SILENT')
      streams.forEach((s, i) => {
        s.write = writes[i]!
      })
    }
    // Assess: the failure is the connection error, with the URL's password masked
    const masked = 'http://default:***@127.0.0.1:1/langsight'
    expect(failure).toBeInstanceOf(LocalExecutionFailed)
    const { error, cause_ } = failure as LocalExecutionFailed
    expect(cause_).toContain(`ClickHouse ${masked}`)
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.raw).toContain('ListClickHouseTables')
    expect(slack.messages[0]!.raw).toContain(masked)
    // the failure reached the log and the history, masked
    expect(lines.some((l) => l.includes(masked))).toBe(true)
    expect(events.some((e) => e.includes('"StateFailed"') || e.includes('"TaskFailed"'))).toBe(true)
    expect(events.some((e) => e.includes(masked))).toBe(true)
    // …and nowhere the password, decoded or as the URL carries it
    const everything = {
      failure: [(failure as Error).message, error, cause_, (failure as Error).stack ?? ''],
      slack: slack.messages.map((m) => m.raw),
      logs: lines,
      events,
    }
    for (const [where, texts] of Object.entries(everything)) {
      for (const text of texts) {
        expect(text, where).not.toContain(password)
        expect(text, where).not.toContain(encoded)
        expect(text, where).not.toContain(slack.url.split('/services/')[1])
      }
    }
  })

  it('prunes by retention after a success but keeps the newest complete backups', async () => {
    const prefix = uniquePrefix('prune')
    configure(prefix, { LSB_KEEP_LAST: '2', LSB_RETENTION_POSTGRES_DAYS: '30' })
    const first = (await runStateMachine('backup', { engines: ['postgres'] })).output as {
      backups: { backupId: string }[]
    }
    const template = await new BackupStore(bucket, prefix).readManifest(
      'postgres',
      first.backups[0]!.backupId,
    )
    // Three old complete backups and one abandoned incomplete one.
    const oldIds = [90, 60, 45].map((days) => backupIdFor(new Date(Date.now() - days * 86400_000)))
    for (const id of oldIds) {
      const dir = `${prefix}/postgres/${id}/`
      await putBytes(bucket, `${dir}postgres.dump`, 'old', 'application/octet-stream')
      await new BackupStore(bucket, prefix).writeManifest({
        ...template,
        backupId: id,
        objects: [{ ...template.objects[0]!, key: `${dir}postgres.dump` }],
      })
    }
    const second = (await runStateMachine('backup', { engines: ['postgres'] })).output as {
      pruned: { removed: { backupId: string }[] }[]
    }
    const left = (await new BackupStore(bucket, prefix).list('postgres')).map((b) => b.backupId)
    expect(second.pruned[0]!.removed.map((r) => r.backupId).sort()).toEqual([...oldIds].sort())
    expect(left).toHaveLength(2)
    expect(left).toContain(first.backups[0]!.backupId)
  })
})
