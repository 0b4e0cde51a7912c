import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { readDrillRecords } from '#catalog/drillRecords.ts'
import { runStateMachine } from '#cli/local/runStateMachine.ts'
import { clickhouseContentHash, seedClickHouse } from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { clickhouseServerUrl, uniquePrefix, useEnv } from '../support/env.ts'

/** The same state machines against Debian's clickhouse-server 18.16 over HTTP. */
const database = `sm_ch_${randomUUID().slice(0, 8)}`
const prefix = uniquePrefix('ch1816')
let ch: ClickHouseConnection

beforeAll(async () => {
  ch = await connectClickHouse(clickhouseServerUrl(database))
  await seedClickHouse(ch, database, { scale: 0.5, flavor: 'legacy' })
  useEnv({
    LSB_PREFIX: prefix,
    LSB_CLICKHOUSE_URL: clickhouseServerUrl(database),
    LSB_POSTGRES_URL: undefined,
    LSB_SLACK_WEBHOOK_URL: undefined,
    // Small enough that the spans table (14 monthly partitions) is split into parts.
    LSB_CLICKHOUSE_SPLIT_BYTES: String(1 << 20),
  })
})

afterAll(async () => {
  await ch?.command(`DROP DATABASE IF EXISTS \`${database}\``)
  await ch?.close()
})

describe('State machines on clickhouse-server 18.16', () => {
  it('backs up every table, splitting the big one by partition, and restores identical contents', async () => {
    const before = await clickhouseContentHash(ch, database)
    const { output } = await runStateMachine('backup', { engines: ['clickhouse'] })
    const { backupId } = (output as { backups: { backupId: string }[] }).backups[0]!
    const manifest = await new BackupStore(process.env.LSB_BUCKET!, prefix).readManifest(
      'clickhouse',
      backupId,
    )
    const spanParts = manifest.objects.filter((o) => o.table === 'tool_call_spans')
    expect(spanParts.length).toBeGreaterThan(1)
    expect(new Set(spanParts.map((o) => o.part)).size).toBe(spanParts.length)
    await ch.command(`TRUNCATE TABLE \`${database}\`.tool_call_spans`)
    await ch.command(`DROP TABLE \`${database}\`.agent_sessions`)
    await runStateMachine('restore', { clickhouse: 'latest' })
    expect(await clickhouseContentHash(ch, database)).toEqual(before)
  })

  it('drills the streamed backup: fingerprints read after each export match the restored copy', async () => {
    // Prepare
    const store = new BackupStore(process.env.LSB_BUCKET!, prefix)
    const backupId = (await store.list('clickhouse')).at(-1)!.backupId
    const manifest = await store.readManifest('clickhouse', backupId)
    // nested Nullable types cannot be hashed by 18.16: those objects keep their counts only
    expect(manifest.objects.filter((o) => o.fingerprint !== undefined).length).toBeGreaterThan(1)
    // Act
    const { executionArn } = await runStateMachine('restore', { mode: 'drill', clickhouse: backupId })
    // Assess
    const [record] = (await readDrillRecords(store, 'clickhouse', backupId)).filter(
      (r) => r.executionId === executionArn,
    )
    expect(record!.passed).toBe(true)
    const spans = record!.tables.find((t) => t.table === 'tool_call_spans')!
    expect(spans).toMatchObject({ compared: 'full', match: true })
    const databases = await ch.query<{ name: string }>('SELECT name FROM system.databases')
    expect(databases.map((d) => d.name).filter((n) => n.includes('__lsb_drill_'))).toEqual([])
  })
})
