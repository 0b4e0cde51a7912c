import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runStateMachine } from '#cli/local/runStateMachine.ts'
import { clickhouseContentHash, seedClickHouse } from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { uniquePrefix, useEnv } from '../support/env.ts'

/**
 * The hang as it was reported: `restore --clickhouse latest` into the embedded engine with the
 * default Map concurrency, a backup of many objects (tables split by partition). It hung in 4
 * runs out of 5; here it must pass 20 times in a row, each run within a deadline.
 */
const RUNS = 20
const dir = mkdtempSync(join(tmpdir(), 'lsb-chdb-'))
const url = `chdb://${dir}?database=langsight`
let ch: ClickHouseConnection
let before: Record<string, string>

beforeAll(async () => {
  ch = await connectClickHouse(url)
  await seedClickHouse(ch, 'langsight', { scale: 0.05, flavor: 'modern' })
  useEnv({
    LSB_PREFIX: uniquePrefix('chdb-repeat'),
    LSB_CLICKHOUSE_URL: url,
    LSB_POSTGRES_URL: undefined,
    LSB_SLACK_WEBHOOK_URL: undefined,
    LSB_MAP_CONCURRENCY: '4',
    // every partitioned table goes out as one object per partition: many objects, many loads
    LSB_CLICKHOUSE_SPLIT_BYTES: String(2 ** 20),
    LSB_MIGRATE_STRATEGY: 'none',
    LSB_EXPECTED_SCHEMA_HEAD: undefined,
    LSB_QUIESCE_SERVICES: undefined,
  })
  await runStateMachine('backup', { engines: ['clickhouse'] })
  before = await clickhouseContentHash(ch, 'langsight')
})

afterAll(async () => {
  await ch?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('State machine: restore into the embedded engine', () => {
  it(`restores the latest backup ${RUNS} times in a row, identical each time, never hanging`, async () => {
    for (let run = 0; run < RUNS; run++) {
      // Prepare: the live tables differ from the backup
      await ch.command('TRUNCATE TABLE langsight.tool_call_spans')
      // Act
      const controller = new AbortController()
      const timer = setTimeout(() => controller.abort(new Error(`run ${run} hung`)), 60_000)
      const { output } = await runStateMachine(
        'restore',
        { clickhouse: 'latest' },
        { signal: controller.signal },
      ).finally(() => clearTimeout(timer))
      // Assess
      expect((output as { clickhouseCommitted?: unknown }).clickhouseCommitted, `run ${run}`).toBeTruthy()
      expect(await clickhouseContentHash(ch, 'langsight'), `run ${run}`).toEqual(before)
    }
    const leftovers = readdirSync(tmpdir()).filter((n) => n.startsWith(`lsb-chdb-fifo-${process.pid}-`))
    expect(leftovers).toEqual([])
  }, 600_000)
})
