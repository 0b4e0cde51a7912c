/**
 * The BACKUP column of the fault matrix ("never hang, never lose"): the real backup state machine,
 * run on the real servers, with a fault proxy between the pipeline and one real dependency at a
 * time — PostgreSQL (pg_dump's connection), ClickHouse 18.16 over HTTP, the S3 endpoint, Slack —
 * and the real CLI killed mid-step or started twice.
 *
 * Every cell ends one of two ways, both asserted:
 * - it succeeds after retries, and every object of every committed manifest re-hashes to its sha256;
 * - it fails cleanly: the error is named, no manifest.json exists for the failed backup id, no prune
 *   ran (an old backup that retention would remove is still there) and Slack got exactly one
 *   message naming the failed state.
 * Every run has a wall-time bound: the proof that the fault did not turn into a hang, never a
 * performance figure.
 */

import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { backupStore } from '#catalog/backupStore.ts'
import type { LocalRunOptions } from '#cli/local/runStateMachine.ts'
import { backupIdFor, type Engine } from '#core/backupKeys.ts'
import type { Manifest } from '#core/manifest.ts'
import { seedClickHouse, seedPostgres } from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import {
  clickhouseServerUrl,
  createPostgresDatabase,
  postgresUrl,
  uniquePrefix,
  useEnv,
} from '../support/env.ts'
import type { Fault, FaultProxy } from '../support/faultProxy.ts'
import { startS3FaultProxy } from '../support/s3Faults.ts'
import { startSlackSink } from '../support/slackSink.ts'
import {
  keysUnder,
  manifestKeysUnder,
  plantOldBackup,
  proxyInFrontOf,
  type RunRecord,
  realS3Endpoint,
  runCli,
  runRecorded,
  startCli,
  verifyCommitted,
  waitFor,
  within,
} from './support.ts'

const bucket = process.env.LSB_BUCKET!
/** ASL retries after this many ms instead of 5 s, 10 s, 20 s (the retries themselves are real). */
const FAST: LocalRunOptions = { retryIntervalMs: 20 }
/** The stall limit of every in-process run: the smallest LSB_STALL_SECONDS accepts. */
const STALL_SECONDS = 5
/** One attempt and the ASL's 3 retries (MaxAttempts 3) of a Task. */
const ATTEMPTS = 4
/** Preflight connections (version check) carry a few KB: only pg_dump's COPY stream reaches 1 MB. */
const MID_DUMP = 1 << 20
/** The concurrent cells share two cores with the servers: each has this long, its own bounds report first. */
const SLOW_CELL_TIMEOUT = 240_000
/** Metadata queries carry a few KB per connection; the spans export several hundred KB. */
const MID_EXPORT = 64 << 10

let pgUrl: string
let pgProxy: FaultProxy
let pgThrough: string
const chDatabase = `fault_bk_${randomUUID().slice(0, 8)}`
let ch: ClickHouseConnection
let chProxy: FaultProxy
let chThrough: string
let slack: Awaited<ReturnType<typeof startSlackSink>>
/** Connections one SnapshotPostgres attempt opens (the preflight's and pg_dump's), measured by a clean run. */
let pgConnectionsPerAttempt = 0
/** Manifests of a clean backup made first: the models of the old backups planted before a failure. */
const templates = {} as Record<Engine, Manifest>
const cleanups: (() => Promise<unknown>)[] = []

beforeAll(async () => {
  const db = await createPostgresDatabase('fault_bk')
  pgUrl = db.url
  await seedPostgres(pgUrl, 0.2)
  // ~20 MB of table data: a dump is still streaming when a fault trips 1 MB in, and with
  // LSB_PG_COMPRESS=0 it is a three-part multipart upload (8 MiB parts) that outgrows the buffers.
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  await client.query(
    'CREATE TABLE audit_blobs AS SELECT i AS id, repeat(md5(i::text), 32) AS body FROM generate_series(1, 20000) i',
  )
  await client.end()
  ch = await connectClickHouse(clickhouseServerUrl(chDatabase))
  cleanups.push(async () => {
    await ch.command(`DROP DATABASE IF EXISTS \`${chDatabase}\``)
    await ch.close()
  })
  await seedClickHouse(ch, chDatabase, { scale: 0.05, flavor: 'legacy' })
  ;({ proxy: pgProxy, url: pgThrough } = await proxyInFrontOf(pgUrl))
  cleanups.push(() => pgProxy.close())
  ;({ proxy: chProxy, url: chThrough } = await proxyInFrontOf(clickhouseServerUrl(chDatabase)))
  cleanups.push(() => chProxy.close())
  slack = await startSlackSink()
  cleanups.push(() => slack.close())
  // A clean run through the (passing) proxies: the setup works, and its manifests are the templates.
  const prefix = uniquePrefix('fault-base')
  configure(prefix)
  let before = 0
  const base = await runRecorded(
    'backup',
    { engines: ['all'] },
    {
      ...FAST,
      beforeTask: (state) => {
        if (state === 'SnapshotPostgres') before = pgProxy.connections().total
        if (state === 'VerifyPostgresDump') pgConnectionsPerAttempt = pgProxy.connections().total - before
      },
    },
    30_000,
  )
  expect(pgConnectionsPerAttempt).toBeGreaterThan(0)
  expect(base.ok, base.cause).toBe(true)
  for (const engine of ['postgres', 'clickhouse'] as const)
    templates[engine] = await verifyCommitted(bucket, prefix, engine, base.backupId!)
})

afterAll(async () => {
  await within(
    Promise.allSettled(
      cleanups
        .splice(0)
        .reverse()
        .map((close) => close()),
    ),
    15_000,
    'cleanup',
  )
})

/**
 * Settings of an in-process run: every dependency through its proxy (passing), a 5 s stall limit, a
 * retention that would prune; no Slack message yet.
 */
function configure(prefix: string, extra: Record<string, string | undefined> = {}) {
  pgProxy.setFault({ kind: 'pass' })
  chProxy.setFault({ kind: 'pass' })
  useEnv({
    LSB_PREFIX: prefix,
    LSB_POSTGRES_URL: pgThrough,
    LSB_CLICKHOUSE_URL: chThrough,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_NOTIFY_SUCCESS: 'false',
    LSB_PG_BIN_DIR: undefined,
    LSB_PG_COMPRESS: undefined,
    LSB_MAP_CONCURRENCY: undefined,
    LSB_STALL_SECONDS: String(STALL_SECONDS),
    LSB_KEEP_LAST: '1',
    LSB_RETENTION_POSTGRES_DAYS: '1',
    LSB_RETENTION_CLICKHOUSE_DAYS: '1',
    AWS_ENDPOINT_URL_S3: realS3Endpoint(),
    ...extra,
  })
  slack.messages.length = 0
}

/** A 400-day-old complete backup of each engine below `prefix`; returns their manifest keys. */
async function plantOld(prefix: string, engines: Engine[]): Promise<string[]> {
  const id = backupIdFor(new Date(Date.now() - 400 * 86_400_000))
  const keys = []
  for (const engine of engines) keys.push(await plantOldBackup(bucket, prefix, templates[engine], id))
  return keys.sort()
}

/**
 * A beforeTask hook: the n-th attempt of Task state `state` (whose input passes `which`) runs with
 * `faults[n-1]` on `proxy`, and every attempt after the last fault with everything passing.
 */
function faultPerAttempt(
  proxy: FaultProxy,
  state: string,
  faults: Fault[],
  which: (input: unknown) => boolean | Promise<boolean> = () => true,
) {
  let attempt = 0
  return async (name: string, input: unknown) => {
    if (name !== state || !(await which(input))) return
    proxy.setFault(faults[attempt++] ?? { kind: 'pass' })
  }
}

/** pids of the pg_dump processes connected through `proxy` (from /proc, as ps would show them). */
function pgDumpsThrough(proxy: FaultProxy): string[] {
  return readdirSync('/proc')
    .filter((pid) => /^\d+$/.test(pid))
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
        return argv[0]?.endsWith('pg_dump') && argv.includes(`--port=${proxy.port}`)
      } catch {
        return false // gone meanwhile
      }
    })
}

/** The ExportBatch holding the biggest table: the one whose stream is long enough to cut mid-way. */
const spansItem = async (input: unknown) => {
  const { backupId, batch } = input as { backupId: string; batch: number }
  const plan = await backupStore().readPlan(backupId)
  return plan.batches[batch]!.some((item) => item.table === 'tool_call_spans')
}

/** It succeeded, and every object of every committed manifest re-hashes to its recorded sha256. */
async function expectVerifiedSuccess(record: RunRecord, prefix: string, engines: Engine[]) {
  expect(record.ok, `${record.error}: ${record.cause}`).toBe(true)
  const backups = (record.output as { backups: { engine: Engine; backupId: string }[] }).backups
  expect(backups.map((b) => b.engine)).toEqual(engines)
  for (const b of backups) {
    expect(b.backupId).toBe(record.backupId)
    await verifyCommitted(bucket, prefix, b.engine, b.backupId)
  }
  expect(slack.messages).toEqual([])
}

/**
 * It failed cleanly: the error is the one expected, no manifest exists below the prefix but the
 * planted old ones (no commit for the failed id, no prune), and exactly one Slack message names
 * the failed state, the error and the backup id.
 */
async function expectCleanFailure(
  record: RunRecord,
  opts: { prefix: string; planted: string[]; failedState: string; error: RegExp },
) {
  expect(record.ok).toBe(false)
  expect(record.backupId).toBeDefined()
  expect(`${record.error}: ${record.cause}`).toMatch(opts.error)
  expect(await manifestKeysUnder(bucket, opts.prefix)).toEqual(opts.planted)
  expect(slack.messages).toHaveLength(1)
  expectNotice(slack.messages[0]!, record, opts.failedState)
}

function expectNotice(message: { text: string; raw: string }, record: RunRecord, failedState: string) {
  expect(message.text).toContain(`failed in ${failedState}: ${record.error}`)
  expect(message.raw).toContain(record.backupId!)
}

describe('Backup faults: PostgreSQL (pg_dump through a TCP proxy)', () => {
  it('connection cut mid-dump: fails cleanly at SnapshotPostgres with PgDumpError naming the lost connection', async () => {
    const prefix = uniquePrefix('pg-cut')
    configure(prefix)
    const planted = await plantOld(prefix, ['postgres'])
    const before = pgProxy.bytes().downstream
    const record = await runRecorded(
      'backup',
      { engines: ['postgres'] },
      {
        ...FAST,
        beforeTask: faultPerAttempt(pgProxy, 'SnapshotPostgres', [{ kind: 'cut', afterBytes: MID_DUMP }]),
      },
      30_000,
    )
    // pg_dump's libpq says the connection was lost: not retried (PgDumpError), the upload aborted.
    await expectCleanFailure(record, {
      prefix,
      planted,
      failedState: 'SnapshotPostgres',
      error: /^PgDumpError: .*server closed the connection unexpectedly/s,
    })
    expect(pgProxy.bytes().downstream - before).toBeGreaterThan(MID_DUMP)
    expect(record.attemptFailures).toEqual(['SnapshotPostgres: PgDumpError'])
    expect(await keysUnder(bucket, `${prefix}/postgres/${record.backupId}`)).toEqual([])
  })

  it('pg_dump stalled past the step deadline (snapshotPostgres timeout 12 s): ended at the deadline, fails cleanly', async () => {
    const prefix = uniquePrefix('pg-deadline')
    configure(prefix)
    const planted = await plantOld(prefix, ['postgres'])
    pgProxy.setFault({ kind: 'stall', afterBytes: MID_DUMP })
    // middy's signal fires 10 s before the function's timeout: at 2 s, before the 5 s stall limit
    const record = await runRecorded(
      'backup',
      { engines: ['postgres'] },
      { ...FAST, functionTimeouts: { snapshotPostgres: 12 } },
      12_000,
    )
    await expectCleanFailure(record, {
      prefix,
      planted,
      failedState: 'SnapshotPostgres',
      error: /^TimeoutError: /,
    })
    expect(record.attemptFailures).toEqual(['SnapshotPostgres: TimeoutError'])
    // the deadline's signal stopped pg_dump (well before the stall limit would have) and aborted the upload
    await waitFor(() => pgDumpsThrough(pgProxy).length === 0, 1_000, 'pg_dump stopped')
    expect(await keysUnder(bucket, `${prefix}/postgres/${record.backupId}`)).toEqual([])
  })
})

describe('Backup faults: ClickHouse 18.16 over HTTP (through a TCP proxy)', () => {
  it('connection cut mid-export once: TransientError, retried, every object verifies', async () => {
    const prefix = uniquePrefix('ch-cut')
    configure(prefix, { LSB_MAP_CONCURRENCY: '1' })
    const record = await runRecorded(
      'backup',
      { engines: ['clickhouse'] },
      {
        ...FAST,
        beforeTask: faultPerAttempt(
          chProxy,
          'ExportBatch',
          [{ kind: 'cut', afterBytes: MID_EXPORT }],
          spansItem,
        ),
      },
      30_000,
    )
    expect(record.attemptFailures).toEqual(['ExportBatch: TransientError'])
    expect(record.retried).toEqual(['ExportBatch'])
    await expectVerifiedSuccess(record, prefix, ['clickhouse'])
  })

  it('stalled mid-export once: StallError after LSB_STALL_SECONDS, retried, every object verifies', async () => {
    const prefix = uniquePrefix('ch-stall')
    configure(prefix, { LSB_MAP_CONCURRENCY: '1' })
    const record = await runRecorded(
      'backup',
      { engines: ['clickhouse'] },
      {
        ...FAST,
        beforeTask: faultPerAttempt(
          chProxy,
          'ExportBatch',
          [{ kind: 'stall', afterBytes: MID_EXPORT }],
          spansItem,
        ),
      },
      STALL_SECONDS * 1000 + 20_000,
    )
    expect(record.attemptFailures).toEqual(['ExportBatch: StallError'])
    expect(record.retried).toEqual(['ExportBatch'])
    await expectVerifiedSuccess(record, prefix, ['clickhouse'])
  })

  it('connection cut on every attempt: fails cleanly at ExportTables after the ASL retries', async () => {
    const prefix = uniquePrefix('ch-cut-all')
    configure(prefix, { LSB_MAP_CONCURRENCY: '1' })
    const planted = await plantOld(prefix, ['clickhouse'])
    const cut: Fault = { kind: 'cut', afterBytes: MID_EXPORT }
    const record = await runRecorded(
      'backup',
      { engines: ['clickhouse'] },
      { ...FAST, beforeTask: faultPerAttempt(chProxy, 'ExportBatch', Array(ATTEMPTS).fill(cut), spansItem) },
      30_000,
    )
    expect(record.attemptFailures).toEqual(Array(ATTEMPTS).fill('ExportBatch: TransientError'))
    await expectCleanFailure(record, {
      prefix,
      planted,
      failedState: 'ExportTables',
      error: /^TransientError: /,
    })
  })
})

describe('Backup faults: S3 errors (500, 503, SlowDown) through an HTTP proxy', () => {
  async function s3Faults() {
    const s3 = await startS3FaultProxy(realS3Endpoint())
    cleanups.push(() => s3.close())
    return s3
  }
  /** Uncompressed, the dump is a multipart upload of three parts. */
  const multipart = { LSB_PG_COMPRESS: '0' }
  const uploadPart = ['partNumber=', 'uploadId=']

  it('SlowDown and 503 on multipart UploadPart: the SDK retries the parts, the dump verifies', async () => {
    const s3 = await s3Faults()
    const prefix = uniquePrefix('s3-part-503')
    configure(prefix, { ...multipart, AWS_ENDPOINT_URL_S3: s3.endpoint })
    s3.inject({ method: 'PUT', urlIncludes: uploadPart, status: 503, code: 'SlowDown', times: 1 })
    s3.inject({ method: 'PUT', urlIncludes: uploadPart, status: 503, code: 'ServiceUnavailable', times: 1 })
    const record = await runRecorded('backup', { engines: ['postgres'] }, FAST, 30_000)
    expect(s3.injected()).toHaveLength(2)
    expect(record.attemptFailures).toEqual([])
    await expectVerifiedSuccess(record, prefix, ['postgres'])
    const manifest = await verifyCommitted(bucket, prefix, 'postgres', record.backupId!)
    expect(manifest.objects[0]!.bytes).toBeGreaterThan(2 * (8 << 20))
  })

  it('500 on one part past the SDK attempts: the attempt fails, the ASL retries the dump, which verifies', async () => {
    const s3 = await s3Faults()
    const prefix = uniquePrefix('s3-part-500')
    configure(prefix, { ...multipart, AWS_ENDPOINT_URL_S3: s3.endpoint })
    // the S3 client makes 5 attempts of a request
    s3.inject({ method: 'PUT', urlIncludes: ['partNumber=1&'], status: 500, code: 'InternalError', times: 5 })
    const record = await runRecorded('backup', { engines: ['postgres'] }, FAST, 30_000)
    expect(s3.injected()).toHaveLength(5)
    expect(record.attemptFailures).toEqual(['SnapshotPostgres: TransientError'])
    await expectVerifiedSuccess(record, prefix, ['postgres'])
  })

  it('SlowDown, then 500 past the SDK attempts, on the verify read (VerifyPostgresDump): retried, the backup commits', async () => {
    const s3 = await s3Faults()
    const prefix = uniquePrefix('s3-get')
    configure(prefix, { AWS_ENDPOINT_URL_S3: s3.endpoint })
    s3.inject({ method: 'GET', urlIncludes: ['/postgres.dump'], status: 503, code: 'SlowDown', times: 1 })
    s3.inject({
      method: 'GET',
      urlIncludes: ['/postgres.dump'],
      status: 500,
      code: 'InternalError',
      times: 5,
    })
    const record = await runRecorded('backup', { engines: ['postgres'] }, FAST, 30_000)
    expect(s3.injected()).toHaveLength(6)
    expect(record.attemptFailures).toEqual(['VerifyPostgresDump: TransientError'])
    await expectVerifiedSuccess(record, prefix, ['postgres'])
  })

  it('500 on every UploadPart: fails cleanly at SnapshotPostgres with the S3 error, after the ASL retries', async () => {
    const s3 = await s3Faults()
    const prefix = uniquePrefix('s3-part-all')
    configure(prefix, { ...multipart, AWS_ENDPOINT_URL_S3: s3.endpoint })
    const planted = await plantOld(prefix, ['postgres'])
    s3.inject({ method: 'PUT', urlIncludes: uploadPart, status: 500, code: 'InternalError', times: 10_000 })
    const record = await runRecorded('backup', { engines: ['postgres'] }, FAST, 45_000)
    expect(record.attemptFailures).toEqual(Array(ATTEMPTS).fill('SnapshotPostgres: TransientError'))
    await expectCleanFailure(record, {
      prefix,
      planted,
      failedState: 'SnapshotPostgres',
      error: /^TransientError: InternalError/,
    })
  })

  it('503 on every verify read: fails cleanly at VerifyPostgresDump after the ASL retries', async () => {
    const s3 = await s3Faults()
    const prefix = uniquePrefix('s3-get-all')
    configure(prefix, { AWS_ENDPOINT_URL_S3: s3.endpoint })
    const planted = await plantOld(prefix, ['postgres'])
    s3.inject({
      method: 'GET',
      urlIncludes: ['/postgres.dump'],
      status: 503,
      code: 'ServiceUnavailable',
      times: 10_000,
    })
    const record = await runRecorded('backup', { engines: ['postgres'] }, FAST, 45_000)
    expect(record.attemptFailures).toEqual(Array(ATTEMPTS).fill('VerifyPostgresDump: TransientError'))
    await expectCleanFailure(record, {
      prefix,
      planted,
      failedState: 'VerifyPostgresDump',
      error: /^TransientError: ServiceUnavailable/,
    })
  })
})

describe('Backup faults: Slack (through a TCP proxy) while a failure is notified', () => {
  /** A Slack sink of its own behind a proxy with `fault`; returns the webhook URL and the sink. */
  async function slackBehind(fault: Fault) {
    const sink = await startSlackSink()
    cleanups.push(() => sink.close())
    const { proxy, url } = await proxyInFrontOf(sink.url)
    cleanups.push(() => proxy.close())
    proxy.setFault(fault)
    return { url, sink }
  }
  /** Every connection to Postgres cut at once: a quick, real, retried failure to notify. */
  const unreachable: Fault = { kind: 'cut', afterBytes: 0 }

  it('Slack cut: the execution fails with the real error and cause, no manifest, no prune', async () => {
    const prefix = uniquePrefix('slack-cut')
    const { url, sink } = await slackBehind({ kind: 'cut', afterBytes: 0 })
    configure(prefix, { LSB_SLACK_WEBHOOK_URL: url })
    const planted = await plantOld(prefix, ['postgres'])
    pgProxy.setFault(unreachable)
    const record = await runRecorded('backup', { engines: ['postgres'] }, FAST, 30_000)
    expect(record.attemptFailures).toEqual(Array(ATTEMPTS).fill('SnapshotPostgres: TransientError'))
    expect(record.error).toBe('TransientError')
    expect(record.cause).toMatch(/^cannot connect to PostgreSQL at /)
    expect(sink.messages).toEqual([])
    expect(await manifestKeysUnder(bucket, prefix)).toEqual(planted)
  })

  it('Notify past its own deadline (Slack stalled, notify timeout 12 s): still the real error', async () => {
    const prefix = uniquePrefix('slack-deadline')
    const { url, sink } = await slackBehind({ kind: 'stall', afterBytes: 0, direction: 'both' })
    configure(prefix, { LSB_SLACK_WEBHOOK_URL: url })
    pgProxy.setFault(unreachable)
    // middy aborts the handler 10 s before the function's timeout: at 2 s, before Slack's own 10 s
    const record = await runRecorded(
      'backup',
      { engines: ['postgres'] },
      { ...FAST, functionTimeouts: { notify: 12 } },
      20_000,
    )
    expect(record.attemptFailures.at(-1)).toBe('NotifyFailure: TimeoutError')
    expect(record.error).toBe('TransientError')
    expect(record.cause).toMatch(/^cannot connect to PostgreSQL at /)
    expect(sink.messages).toEqual([])
    expect(await manifestKeysUnder(bucket, prefix)).toEqual([])
  })
})

/**
 * The slow cells run together: in-process runs that wait out stall limits beside real CLI processes
 * (each with an environment of its own, so they share nothing with the in-process configuration).
 */
describe.concurrent('Backup faults: permanent stalls, the CLI killed, started twice, Slack stalled', {
  timeout: SLOW_CELL_TIMEOUT,
}, () => {
  /** The environment of a CLI child: the real S3 endpoint and bucket, and what the cell adds. */
  function cliEnv(prefix: string, extra: Record<string, string>): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AWS_ENDPOINT_URL_S3: realS3Endpoint(),
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      LSB_BUCKET: bucket,
      LSB_PREFIX: prefix,
      ...extra,
    }
  }
  type Listed = { engine: Engine; backupId: string; complete: boolean }[]

  it('stalled on every attempt, Postgres and ClickHouse at once: both fail cleanly with StallError in bounded time', async () => {
    const prefix = uniquePrefix('stall-all')
    configure(prefix, { LSB_MAP_CONCURRENCY: '1' })
    const planted = await plantOld(prefix, ['postgres', 'clickhouse'])
    pgProxy.setFault({ kind: 'stall', afterBytes: MID_DUMP })
    // ClickHouse stalls mid-export, or sends no byte at all (its client's request timeout): by turns
    const midExport: Fault = { kind: 'stall', afterBytes: MID_EXPORT }
    const noAnswer: Fault = { kind: 'stall', afterBytes: 0 }
    // each attempt ends at the stall limit (+1 s for no answer): four of them (~25 s); a hang never ends,
    // so the bound only has to be finite and generous enough for two cores shared with the servers
    const bound = 90_000
    const [pgRun, chRun] = await Promise.all([
      runRecorded('backup', { engines: ['postgres'] }, FAST, bound),
      runRecorded(
        'backup',
        { engines: ['clickhouse'] },
        {
          ...FAST,
          beforeTask: faultPerAttempt(
            chProxy,
            'ExportBatch',
            [midExport, noAnswer, midExport, noAnswer],
            spansItem,
          ),
        },
        bound,
      ),
    ])
    pgProxy.setFault({ kind: 'pass' })
    expect(pgRun.attemptFailures).toEqual(Array(ATTEMPTS).fill('SnapshotPostgres: StallError'))
    expect(`${pgRun.error}: ${pgRun.cause}`).toMatch(/^StallError: upload to s3:\/\/.* no progress for 5 s/)
    expect(chRun.attemptFailures).toEqual(Array(ATTEMPTS).fill('ExportBatch: StallError'))
    expect(`${chRun.error}: ${chRun.cause}`).toMatch(/^StallError: .*no answer for 5 s/)
    expect(await manifestKeysUnder(bucket, prefix)).toEqual(planted)
    expect(slack.messages).toHaveLength(2)
    expectNotice(slack.messages.find((m) => m.text.includes('SnapshotPostgres'))!, pgRun, 'SnapshotPostgres')
    expectNotice(slack.messages.find((m) => m.text.includes('ExportTables'))!, chRun, 'ExportTables')
  })

  it('CLI, pg_dump stalled mid-dump on the first attempt: StallError, retried, the dump verifies', async () => {
    const prefix = uniquePrefix('cli-pg-stall')
    const stalling = await proxyInFrontOf(pgUrl)
    cleanups.push(() => stalling.proxy.close())
    // Every connection of the first attempt (the preflight's pass below 1 MB), none of the retry's.
    stalling.proxy.setFault({ kind: 'stall', afterBytes: MID_DUMP, times: pgConnectionsPerAttempt })
    const env = cliEnv(prefix, { LSB_POSTGRES_URL: stalling.url, LSB_STALL_SECONDS: String(STALL_SECONDS) })
    // the ASL's own retry interval here (up to 5 s with full jitter), after the stall limit
    const run = await runCli(['backup', '--local', '--json', '--engine', 'postgres'], env, 90_000)
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr.match(/✗ .*/g)).toEqual(['✗ SnapshotPostgres: StallError'])
    expect(run.stderr).toContain('↻ SnapshotPostgres retry 1')
    const { postgres: id } = JSON.parse(run.stdout) as Record<Engine, string>
    await verifyCommitted(bucket, prefix, 'postgres', id)
  })

  it('CLI killed in SnapshotPostgres and in ExportTables: no manifest, `list` hides the rest, a fresh run succeeds', async () => {
    const prefix = uniquePrefix('cli-kill')
    // Proxies of this test's own, so that the in-process cells never touch them.
    const pgKill = await proxyInFrontOf(pgUrl)
    const chKill = await proxyInFrontOf(clickhouseServerUrl(chDatabase))
    cleanups.push(
      () => pgKill.proxy.close(),
      () => chKill.proxy.close(),
    )
    // the default stall limit (120 s): nothing but the kill ends these runs
    const env = cliEnv(prefix, { LSB_POSTGRES_URL: pgKill.url, LSB_CLICKHOUSE_URL: chKill.url })
    const killWhen = async (what: string, ready: (stderr: string) => boolean | Promise<boolean>) => {
      const run = startCli(['backup', '--local', '--json'], env)
      try {
        await waitFor(
          async () => (await ready(run.stderr())) || run.child.exitCode !== null,
          60_000,
          what,
        ).catch((e: Error) => {
          throw new Error(`${e.message}; stderr so far:\n${run.stderr()}`)
        })
        expect(run.child.exitCode, run.stderr()).toBeNull()
        run.child.kill('SIGKILL')
        expect(await within(run.exited, 5_000, `${what}: exit after SIGKILL`)).toEqual({
          code: null,
          signal: 'SIGKILL',
        })
      } finally {
        run.child.kill('SIGKILL')
      }
    }
    // 1. pg_dump stalled 1 MB into its stream: killed in SnapshotPostgres
    pgKill.proxy.setFault({ kind: 'stall', afterBytes: MID_DUMP })
    await killWhen(
      'SnapshotPostgres',
      (stderr) => stderr.includes('→ SnapshotPostgres') && pgKill.proxy.bytes().downstream >= MID_DUMP,
    )
    pgKill.proxy.setFault({ kind: 'pass' }) // the orphaned pg_dump resumes, and dies writing to nobody
    // 2. the spans export stalled: killed in ExportTables once another table is stored (a batch's
    // connection carries several tables: the stall comes after the small ones)
    chKill.proxy.setFault({ kind: 'stall', afterBytes: 1 << 20 })
    await killWhen('ExportTables', async () => {
      // the engines run side by side: killed once the dump is stored and a table is too
      const keys = await keysUnder(bucket, prefix)
      return (
        keys.some((k) => k.endsWith('/postgres.dump')) &&
        keys.some((k) => k.includes('/clickhouse/') && k.endsWith('.native.gz'))
      )
    })
    chKill.proxy.setFault({ kind: 'pass' })
    const leftBehind = await keysUnder(bucket, prefix)
    expect(leftBehind.some((k) => k.endsWith('/postgres.dump'))).toBe(true)
    expect(leftBehind.some((k) => k.includes('/clickhouse/') && k.endsWith('.native.gz'))).toBe(true)
    expect(leftBehind.filter((k) => k.endsWith('manifest.json'))).toEqual([])
    // A fresh run, without any clean-up.
    const fresh = await runCli(['backup', '--local', '--json'], env, 90_000)
    expect(fresh.code, fresh.stderr).toBe(0)
    const ids = JSON.parse(fresh.stdout) as Record<Engine, string>
    for (const engine of ['postgres', 'clickhouse'] as const) {
      await verifyCommitted(bucket, prefix, engine, ids[engine])
      expect(leftBehind.some((k) => k.includes(`/${ids[engine]}/`))).toBe(false)
    }
    // `list --all` marks what `list` leaves out: only the fresh backups are complete
    const all = await runCli(['list', '--all', '--json'], env, 60_000)
    const listed = JSON.parse(all.stdout) as Listed
    const complete = listed.filter((b) => b.complete).map((b) => `${b.engine} ${b.backupId}`)
    expect(complete.sort()).toEqual([`clickhouse ${ids.clickhouse}`, `postgres ${ids.postgres}`])
    const incomplete = listed.filter((b) => !b.complete)
    // the first kill left ClickHouse's plan (its branch ran beside pg_dump) and no dump (an
    // unfinished multipart upload is no object); the second a dump and table objects
    expect(incomplete.map((b) => b.engine).sort()).toEqual(['clickhouse', 'clickhouse', 'postgres'])
    for (const b of incomplete) expect(leftBehind.some((k) => k.includes(`/${b.backupId}/`))).toBe(true)
  })

  it('two CLI backups started at once on one prefix: both succeed with distinct ids, every manifest verifies', async () => {
    const prefix = uniquePrefix('cli-twice')
    const env = cliEnv(prefix, {
      LSB_POSTGRES_URL: pgUrl,
      LSB_CLICKHOUSE_URL: clickhouseServerUrl(chDatabase),
    })
    const runs = await Promise.all([0, 1].map(() => runCli(['backup', '--local', '--json'], env, 90_000)))
    const ids = runs.map((run) => {
      expect(run.code, run.stderr).toBe(0)
      return JSON.parse(run.stdout) as Record<Engine, string>
    })
    for (const engine of ['postgres', 'clickhouse'] as const) {
      expect(ids[0]![engine]).not.toBe(ids[1]![engine])
      for (const id of ids) await verifyCommitted(bucket, prefix, engine, id[engine])
    }
    expect(await manifestKeysUnder(bucket, prefix)).toHaveLength(4)
  })

  it('CLI, Slack stalled while a failure is notified: exit 1 with the real error after the 10 s limit of its Slack post', async () => {
    const prefix = uniquePrefix('cli-slack-stall')
    const sink = await startSlackSink()
    const stalled = await proxyInFrontOf(sink.url)
    cleanups.push(
      () => stalled.proxy.close(),
      () => sink.close(),
    )
    stalled.proxy.setFault({ kind: 'stall', afterBytes: 0, direction: 'both' })
    const env = cliEnv(prefix, {
      // a database that does not exist: a ConfigError, not retried
      LSB_POSTGRES_URL: postgresUrl(`missing_${randomUUID().slice(0, 8)}`),
      LSB_SLACK_WEBHOOK_URL: stalled.url,
    })
    const run = await runCli(['backup', '--local', '--engine', 'postgres'], env, 90_000)
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(
      /langsight-backup: ConfigError: cannot connect to PostgreSQL .* does not exist/,
    )
    expect(run.stderr).not.toContain('NotifyFailed')
    // the message was attempted, and given up on by the post's own limit, not by Notify's deadline
    expect(run.stderr).toContain('→ NotifyFailure')
    expect(run.stderr).not.toContain('✗ NotifyFailure')
    expect(stalled.proxy.connections().total).toBeGreaterThan(0)
    expect(sink.messages).toEqual([])
    expect(await manifestKeysUnder(bucket, prefix)).toEqual([])
  })
})
