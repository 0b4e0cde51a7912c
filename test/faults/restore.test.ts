/**
 * The RESTORE column of the fault matrix ("never hang, never lose"): each cell is a fault injected
 * between the real restore pipeline and a real server — PostgreSQL 15, clickhouse-server 18.16 over
 * HTTP, the S3 endpoint, Slack — or a kill of the real CLI, and asserts that
 * - the live databases are exactly as they were (a fingerprint of every table) or fully restored,
 *   never half; the one documented exception (a failure between the two engines' swaps) leaves
 *   exactly what the Slack message says;
 * - the next run succeeds without any manual clean-up;
 * - nothing waits past its deadline (every run and wait here has one, and asserts its wall time);
 * - a failure sends one Slack message naming the failed state, and no secret reaches Slack or an error.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { backupStore } from '#catalog/backupStore.ts'
import { type EventLog, runStateMachine } from '#cli/local/runStateMachine.ts'
import { loadSettings } from '#core/config.ts'
import {
  clickhouseContentHash,
  postgresContentHash,
  seedClickHouse,
  seedPostgres,
} from '#devtools/sampleData.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { restoreBatches } from '#engines/clickhouse/restore/plan.ts'
import { settledServices } from '../support/ecsStandIns.ts'
import {
  clickhouseServerUrl,
  createPostgresDatabase,
  postgresUrl,
  uniquePrefix,
  useEnv,
} from '../support/env.ts'
import { type Fault, type FaultProxy, startFaultProxy } from '../support/faultProxy.ts'
import { type S3Fault, type S3FaultProxy, startS3FaultProxy } from '../support/s3Faults.ts'
import { startSlackSink } from '../support/slackSink.ts'

const root = join(import.meta.dirname, '../..')
const servers = inject('servers')
const prefix = uniquePrefix('faults-restore')
const chDatabase = `fr_${randomUUID().slice(0, 8)}`
const STALL_SECONDS = 5
/** Each function's deadline here (Lambda's timeout): well above a stall plus its retry, far below the deployed ones. */
const functionTimeouts = {
  resolveBackup: 30,
  verifyObject: 30,
  prepareClickHouseRestore: 30,
  loadClickHouseBatch: 40,
  loadPostgres: 40,
  commitClickHouseRestore: 30,
  migrateToHead: 30,
  notify: 30,
}
const services = [
  { cluster: 'langsight', service: 'api', desiredCount: 2 },
  { cluster: 'langsight', service: 'worker', desiredCount: 1 },
]

let pgDatabase: string
let ch: ClickHouseConnection
let slack: Awaited<ReturnType<typeof startSlackSink>>
/** TCP proxies: pipeline → proxy → server. S3 goes through the TCP proxy, then the HTTP error injector. */
let pgProxy: FaultProxy
let chProxy: FaultProxy
let s3Tcp: FaultProxy
let s3Http: S3FaultProxy
let slackProxy: FaultProxy
let chStatements: StatementFaultProxy
let backupIds: { postgres: string; clickhouse: string }
/** Fingerprints of the backed-up data: what "fully restored" means. */
let backedUp: { postgres: Record<string, string>; clickhouse: Record<string, string> }
let wrecks = 0

/** Rejects when `promise` has not settled within `ms`: no wait in this file is open-ended. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/** Polls `check` until it returns a value, for `ms` at most. */
async function waitUntil<T>(check: () => Promise<T | undefined> | T | undefined, ms: number, what: string) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(100)
  }
}

const secrets = () => [
  servers.postgres.password,
  servers.clickhouse.password,
  new URL(slack.url).pathname.split('/').pop()!,
  'S3RVER',
]

const slackUrl = () => `http://127.0.0.1:${slackProxy.port}${new URL(slack.url).pathname}`
const pgThroughProxy = () =>
  `postgres://postgres:${encodeURIComponent(servers.postgres.password)}@127.0.0.1:${pgProxy.port}/${pgDatabase}`
const chThrough = (port: number) =>
  `http://default:${encodeURIComponent(servers.clickhouse.password)}@127.0.0.1:${port}/${chDatabase}`

/** The pipeline's environment: every server behind its proxy, a 5 s stall limit. */
function pipelineEnv(): Record<string, string> {
  return {
    LSB_PREFIX: prefix,
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${s3Tcp.port}`,
    LSB_POSTGRES_URL: pgThroughProxy(),
    LSB_CLICKHOUSE_URL: chThrough(chProxy.port),
    LSB_SLACK_WEBHOOK_URL: slackUrl(),
    LSB_STALL_SECONDS: String(STALL_SECONDS),
    LSB_MIGRATE_STRATEGY: 'none',
    // one Map item at a time: a fault set for one object's load meets that load only
    LSB_MAP_CONCURRENCY: '1',
  }
}

const PASS: Fault = { kind: 'pass' }

function configure(extra: Record<string, string | undefined> = {}) {
  useEnv({ ...pipelineEnv(), LSB_QUIESCE_SERVICES: undefined, ...extra })
  slack.messages.length = 0
  for (const proxy of [pgProxy, chProxy, s3Tcp, slackProxy]) proxy.setFault(PASS)
  chStatements.failNth(undefined)
}

async function pgRows(text: string, database = pgDatabase) {
  const client = new pg.Client({ connectionString: postgresUrl(database) })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

/** Every table of both live databases (read directly, not through the proxies), and ClickHouse's views. */
async function fingerprint(pgDb = pgDatabase, chDb = chDatabase) {
  const objects = await ch.query<{ name: string; engine: string }>(
    'SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name',
    { db: chDb },
  )
  return {
    postgres: await postgresContentHash(postgresUrl(pgDb)),
    clickhouse: await clickhouseContentHash(ch, chDb),
    clickhouseObjects: objects.map((o) => `${o.name} ${o.engine}`),
  }
}

/** Per table of a ClickHouse database, as {@link clickhouseContentHash} computes it (without the aggregate). */
async function tableHashes(database: string): Promise<Record<string, string>> {
  const tables = await ch.query<{ name: string }>(
    `SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT IN ('View', 'MaterializedView') ORDER BY name`,
    { db: database },
  )
  const out: Record<string, string> = {}
  for (const { name } of tables) {
    const [row] = await ch.query<{ n: string; h: string }>(
      `SELECT count() AS n, toString(groupBitXor(cityHash64(*))) AS h FROM \`${database}\`.\`${name}\``,
    )
    out[name] = `${row!.n}:${row!.h}`
  }
  return out
}

/** An incident: every table of both databases differs from the backup afterwards. Returns the fingerprint. */
async function wreck() {
  const n = ++wrecks
  await pgRows(
    `INSERT INTO users (email) VALUES ('wreck-${n}@example.com');
     DELETE FROM slo_definitions WHERE id IN (SELECT id FROM slo_definitions ORDER BY id LIMIT 3);
     UPDATE projects SET name = name || ' (wrecked)' WHERE id = ${n};
     INSERT INTO alert_configs (project_id, rule, threshold) VALUES (1, '{}', ${n});
     INSERT INTO api_keys (project_id, key_hash, prefix, created_at) VALUES (1, 'wreck-${n}', 'ls_w', now())`,
  )
  const db = `\`${chDatabase}\``
  await ch.command(
    `INSERT INTO ${db}.tool_call_spans (span_id, session_id, project_id, server_name, tool_name, started_at, latency_ms, status, cost_usd, tags) VALUES (${9_000_000 + n}, 1, 1, 'w', 'w', now(), 1, 'ok', 0.5, [])`,
  )
  await ch.command(
    `INSERT INTO ${db}.health_checks (server_name, checked_at, status, latency_ms) VALUES ('wreck', now(), 'DOWN', ${n})`,
  )
  await ch.command(
    `INSERT INTO ${db}.agent_sessions (session_id, project_id, agent, started_at, ended_at, spans, total_cost_usd, version) VALUES (${9_000_000 + n}, 1, 'w', now(), NULL, 1, 0, 1)`,
  )
  await ch.command(
    `INSERT INTO ${db}.mcp_schema_snapshots (server_name, tool_name, captured_at, description, schema_hash) VALUES ('w', 'w', now(), 'wreck', 'wwwwwwwwwwwwwwww')`,
  )
  await ch.command(`INSERT INTO ${db}.drift_alerts (server_name, raised_at) VALUES ('wreck', now())`)
  const before = await fingerprint()
  for (const [table, hash] of Object.entries(backedUp.clickhouse))
    expect(before.clickhouse[table], `${table} must differ from the backup`).not.toBe(hash)
  expect(before.postgres).not.toEqual(backedUp.postgres)
  return before
}

async function expectRestored() {
  const now = await fingerprint()
  expect(now.postgres).toEqual(backedUp.postgres)
  expect(now.clickhouse).toEqual(backedUp.clickhouse)
  expect(now.clickhouseObjects).toEqual(objectsAfterBackup)
}
let objectsAfterBackup: string[]

/** The failure reached Slack exactly once, names its state, and nothing anywhere holds a secret. */
function expectOneFailureMessage(failedState: string, error?: Error) {
  expect(slack.messages).toHaveLength(1)
  expect(slack.messages[0]!.text).toContain(`restore failed in ${failedState}`)
  expectNoSecret(JSON.stringify(slack.messages), error ? `${error.name} ${error.message} ${error.stack}` : '')
}

function expectNoSecret(...texts: string[]) {
  for (const text of texts) for (const secret of secrets()) expect(text).not.toContain(secret)
}

interface Run {
  ok: boolean
  error?: Error
  output?: unknown
  ms: number
  /** Each failed attempt: `State Error`. */
  failures: string[]
  entered: string[]
}

/** One restore through the real ASL with the real handlers, with a hard deadline. */
async function restore(
  options: Parameters<typeof runStateMachine>[2] = {},
  input: Record<string, unknown> = { postgres: 'latest', clickhouse: 'latest' },
  deadlineMs = 60_000,
): Promise<Run> {
  const failures: string[] = []
  const entered: string[] = []
  const started = Date.now()
  const onEvent = (e: EventLog) => {
    if (e.type === 'StateEntered') entered.push(e.state.name)
    // the terminal Fail states repeat the error: only the states that failed are kept
    if (e.type === 'StateFailed' && e.state.type !== 'Fail') failures.push(`${e.state.name} ${e.Error}`)
  }
  const settled = await within(
    runStateMachine('restore', input, { retryIntervalMs: 50, functionTimeouts, onEvent, ...options }).then(
      (r) => ({ ok: true, output: r.output }),
      (error: Error) => ({ ok: false, error }),
    ),
    deadlineMs,
    'restore',
  )
  return { ...settled, ms: Date.now() - started, failures, entered }
}

/**
 * beforeTask hook: `apply` the first time `state` runs (for inputs `match` accepts), and back to
 * pass for every proxy and injector when it runs again (its retry).
 */
function onFirst(
  state: string,
  apply: () => void,
  match: (input: unknown) => boolean | Promise<boolean> = () => true,
) {
  let calls = 0
  return async (name: string, input: unknown) => {
    if (name !== state || !(await match(input))) return
    if (++calls === 1) apply()
    else for (const proxy of [pgProxy, chProxy, s3Tcp, slackProxy]) proxy.setFault(PASS)
  }
}
/** Whether a LoadClickHouseBatch input is the batch that holds `table`. */
const itemOf = (table: string) => async (input: unknown) => {
  const { backupId, batch } = input as { backupId: string; batch: number }
  const manifest = await backupStore().readManifest('clickhouse', backupId)
  return restoreBatches(manifest, loadSettings())[batch]!.some((item) => item.table === table)
}

/**
 * An HTTP proxy before ClickHouse that answers the n-th statement matching a pattern with a
 * ClickHouse error instead of running it: a failure at an exact point of a multi-statement step.
 * Inserts (query in the URL, data in the body) stream through untouched.
 */
interface StatementFaultProxy {
  port: number
  failNth(fault: { pattern: RegExp; nth: number } | undefined): void
  failed(): string[]
  close(): Promise<void>
}

async function startStatementFaultProxy(target: {
  host: string
  port: number
}): Promise<StatementFaultProxy> {
  let fault: { pattern: RegExp; nth: number; seen: number } | undefined
  const failed: string[] = []
  const forward = (req: IncomingMessage, res: ServerResponse, body?: Buffer) => {
    const upstream = request(
      { ...target, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    if (body) upstream.end(body)
    else req.pipe(upstream)
  }
  const server: Server = createServer((req, res) => {
    if (new URL(req.url ?? '/', 'http://x').searchParams.has('query')) return forward(req, res)
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const statement = body.toString('utf8')
      if (fault?.pattern.test(statement) && ++fault.seen === fault.nth) {
        failed.push(statement)
        res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' })
        res.end('Code: 999, e.displayText() = DB::Exception: injected failure, e.what() = DB::Exception\n')
        return
      }
      forward(req, res, body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    failNth: (f) => {
      fault = f && { ...f, seen: 0 }
    },
    failed: () => [...failed],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** CLIs started by the current test: killed by afterEach if a test fails before it ends them. */
const clis = new Set<ChildProcessByStdio<null, Readable, Readable>>()
afterEach(async () => {
  for (const child of clis) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await within(new Promise((r) => child.once('close', r)), 5000, 'CLI exit').catch(() => {})
    }
  }
  clis.clear()
})

/** The real CLI, as an operator runs it, in a process of its own. */
function startCli(args: string[], env: Record<string, string>) {
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(
    process.execPath,
    [join(root, 'bin/langsight-backup.js'), ...args],
    {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_REGION: 'us-east-1',
        LSB_BUCKET: process.env.LSB_BUCKET,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  clis.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c) => {
    stdout += c
  })
  child.stderr.on('data', (c) => {
    stderr += c
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  )
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    /** Resolves once stderr shows `text`. */
    shows: (text: string, ms: number) =>
      waitUntil(() => (stderr.includes(text) ? true : undefined), ms, `CLI stderr to show ${text}`),
    /** SIGKILL, as an OOM killer or a lost container would: no clean-up code runs. */
    kill: async () => {
      child.kill('SIGKILL')
      return within(exited, 5000, 'CLI exit after SIGKILL')
    },
  }
}
const RESTORE_ARGS = ['restore', '--local', '--postgres', 'latest', '--clickhouse', 'latest', '--json']

beforeAll(async () => {
  slack = await startSlackSink()
  slackProxy = await startFaultProxy({ host: '127.0.0.1', port: Number(new URL(slack.url).port) })
  s3Http = await startS3FaultProxy(servers.s3.endpoint)
  s3Tcp = await startFaultProxy({ host: '127.0.0.1', port: Number(new URL(s3Http.endpoint).port) })
  pgProxy = await startFaultProxy({ host: '127.0.0.1', port: servers.postgres.port })
  chProxy = await startFaultProxy({ host: '127.0.0.1', port: servers.clickhouse.port })
  chStatements = await startStatementFaultProxy({ host: '127.0.0.1', port: servers.clickhouse.port })
  pgDatabase = (await createPostgresDatabase('fault_restore')).name
  await seedPostgres(postgresUrl(pgDatabase), 0.2)
  ch = await connectClickHouse(clickhouseServerUrl(chDatabase))
  await seedClickHouse(ch, chDatabase, { scale: 0.05, flavor: 'legacy' })
  configure()
  const { output } = await runStateMachine('backup', { engines: ['all'] })
  const backups = (output as { backups: { engine: 'postgres' | 'clickhouse'; backupId: string }[] }).backups
  backupIds = Object.fromEntries(backups.map((b) => [b.engine, b.backupId])) as typeof backupIds
  const now = await fingerprint()
  backedUp = { postgres: now.postgres, clickhouse: now.clickhouse }
  objectsAfterBackup = now.clickhouseObjects
})

afterAll(async () => {
  await ch?.command(`DROP DATABASE IF EXISTS \`${chDatabase}\``).catch(() => {})
  for (const suffix of ['__lsb_restore', '__lsb_previous'])
    await ch?.command(`DROP DATABASE IF EXISTS \`${chDatabase}${suffix}\``).catch(() => {})
  await ch?.close()
  await Promise.all([pgProxy, chProxy, s3Tcp, slackProxy, chStatements].map((p) => p?.close()))
  await s3Http?.close()
  await slack?.close()
})

describe('Restore under faults: PostgreSQL (pg_restore through the proxy)', () => {
  it('a connection cut mid-stream is retried (TransientError) and the restore completes', async () => {
    configure()
    await wreck()
    const run = await restore({
      beforeTask: onFirst('LoadPostgres', () =>
        pgProxy.setFault({ kind: 'cut', direction: 'upstream', afterBytes: 50_000 }),
      ),
    })
    expect(run.error).toBeUndefined()
    expect(run.failures).toEqual(['LoadPostgres TransientError'])
    await expectRestored()
    expect(slack.messages).toEqual([])
    expect(run.ms).toBeLessThan(30_000)
  })

  it('a stall mid-stream is a StallError after LSB_STALL_SECONDS, retried, and the restore completes', async () => {
    configure()
    await wreck()
    const run = await restore({
      beforeTask: onFirst('LoadPostgres', () =>
        pgProxy.setFault({ kind: 'stall', direction: 'upstream', afterBytes: 50_000 }),
      ),
    })
    expect(run.error).toBeUndefined()
    expect(run.failures).toEqual(['LoadPostgres StallError'])
    await expectRestored()
    // the stall is noticed after the limit, not at the step's deadline (loadPostgres: 40 s)
    expect(run.ms).toBeGreaterThan(STALL_SECONDS * 1000)
    expect(run.ms).toBeLessThan((STALL_SECONDS + 15) * 1000)
  })

  it('cut on every attempt: fails in LoadPostgres, both live databases exactly as they were, the next run succeeds', async () => {
    configure()
    const before = await wreck()
    pgProxy.setFault({ kind: 'cut', direction: 'upstream', afterBytes: 50_000 })
    const run = await restore()
    expect(run.ok).toBe(false)
    expect(run.failures.filter((f) => f.startsWith('LoadPostgres '))).toHaveLength(4) // 1 + 3 retries
    expect(await fingerprint()).toEqual(before)
    expectOneFailureMessage('LoadPostgres', run.error)
    expect(run.ms).toBeLessThan(30_000)
    // next run, nothing cleaned by hand
    configure()
    expect((await restore()).error).toBeUndefined()
    await expectRestored()
  })
})

describe('Restore under faults: ClickHouse 18.16 over HTTP (RestoreClickHouse inserts)', () => {
  it('the insert connection cut mid-load is retried (TransientError) and the restore completes', async () => {
    configure()
    await wreck()
    const run = await restore({
      beforeTask: onFirst(
        'LoadClickHouseBatch',
        () => chProxy.setFault({ kind: 'cut', direction: 'upstream', afterBytes: 100_000 }),
        itemOf('tool_call_spans'),
      ),
    })
    expect(run.error).toBeUndefined()
    expect(run.failures).toEqual(['LoadClickHouseBatch TransientError'])
    await expectRestored()
    expect(run.ms).toBeLessThan(30_000)
  })

  it('the insert stalled mid-load is a StallError after LSB_STALL_SECONDS, retried on a new connection, and the restore completes', async () => {
    configure()
    await wreck()
    let calls = 0
    const run = await restore({
      beforeTask: async (state, input) => {
        if (state !== 'LoadClickHouseBatch' || !(await itemOf('tool_call_spans')(input))) return
        if (++calls === 1) chProxy.setFault({ kind: 'stall', direction: 'upstream', afterBytes: 100_000 })
        // the network drops the stalled connection; new ones pass
        else
          chProxy.setFault({
            kind: 'cut',
            direction: 'both',
            afterBytes: 0,
            times: chProxy.connections().open,
          })
      },
    })
    expect(run.error).toBeUndefined()
    expect(run.failures).toEqual(['LoadClickHouseBatch StallError'])
    await expectRestored()
    expect(run.ms).toBeGreaterThan(STALL_SECONDS * 1000)
    expect(run.ms).toBeLessThan((STALL_SECONDS + 15) * 1000)
  })

  it('the stalled insert delivered late, after its retry loaded the table: caught before Postgres is swapped, both databases as they were', async () => {
    configure()
    const before = await wreck()
    // a batch's connection carries several inserts: the stalled one is whichever crosses the
    // 100 kB mark, so every staging table is watched for rows beyond the backup's
    const expected = Object.fromEntries(
      Object.entries(backedUp.clickhouse).map(([table, hash]) => [table, Number(hash.split(':')[0])]),
    )
    const overfull = async () => {
      for (const [table, rows] of Object.entries(expected)) {
        const [row] = await ch
          .query<{ c: string }>(`SELECT count() AS c FROM \`${chDatabase}__lsb_restore\`.\`${table}\``)
          .catch(() => [])
        if (Number(row?.c ?? 0) > rows) return true
      }
      return undefined
    }
    let calls = 0
    const run = await restore({
      beforeTask: async (state, input) => {
        if (state === 'LoadClickHouseBatch' && (await itemOf('tool_call_spans')(input))) {
          if (++calls === 1) chProxy.setFault({ kind: 'stall', direction: 'upstream', afterBytes: 100_000 })
          // the abandoned connection stays stalled; the retry's new ones pass
          else
            chProxy.setFault({
              kind: 'stall',
              direction: 'upstream',
              afterBytes: 0,
              times: chProxy.connections().open,
            })
        }
        if (state === 'CheckClickHouseStaging') {
          // the network heals: the abandoned INSERT's bytes reach the server and it completes
          chProxy.setFault(PASS)
          await waitUntil(overfull, 10_000, 'the late insert')
        }
      },
    })
    expect(run.ok).toBe(false)
    // the branch's failure, then the Parallel's, which carries "<state>|<error>" for the notice
    expect(run.failures).toEqual([
      'LoadClickHouseBatch StallError',
      'CheckClickHouseStaging ClickHouseError',
      'Loads CheckClickHouseStaging|ClickHouseError',
    ])
    expect(run.error?.message).toMatch(/table \w+: staging holds \d+ rows, the backup \d+/)
    expect(run.entered).not.toContain('SwapPostgres')
    expect(await fingerprint()).toEqual(before)
    expectOneFailureMessage('CheckClickHouseStaging', run.error)
    configure()
    expect((await restore()).error).toBeUndefined()
    await expectRestored()
  })
})

describe('Restore under faults: S3 (500 / 503 / SlowDown, and a cut mid-object)', () => {
  const dataGet = (key?: string): Pick<S3Fault, 'method' | 'urlIncludes'> => ({
    method: 'GET',
    urlIncludes: [key ?? `/${prefix}/`, key ? '' : '/data/'].filter(Boolean) as string[],
  })

  it('errors during the verify read are absorbed by the retries and the restore completes', async () => {
    configure()
    await wreck()
    const before = s3Http.injected().length
    const run = await restore({
      beforeTask: onFirst('VerifyBatch', () => {
        s3Http.inject({ ...dataGet(), status: 500, code: 'InternalError', times: 1 })
        s3Http.inject({ ...dataGet(), status: 503, code: 'SlowDown', times: 1 })
        s3Http.inject({ ...dataGet(), status: 503, code: 'ServiceUnavailable', times: 1 })
      }),
    })
    expect(run.error).toBeUndefined()
    expect(run.failures).toEqual([]) // the S3 client's own retries absorbed them
    expect(s3Http.injected().slice(before)).toHaveLength(3)
    await expectRestored()
  })

  it('errors on every verify read: fails in VerifyChecksums, nothing touched, the next run succeeds', async () => {
    configure()
    const before = await wreck()
    const injected = s3Http.injected().length
    // 4 attempts of the state (1 + 3 retries) × 5 attempts of the S3 client: every read of the first object
    const run = await restore({
      beforeTask: onFirst('VerifyBatch', () =>
        s3Http.inject({ ...dataGet(), status: 500, code: 'InternalError', times: 20 }),
      ),
    })
    expect(run.ok).toBe(false)
    expect(s3Http.injected().length - injected).toBe(20)
    expect(run.failures.filter((f) => f.startsWith('VerifyBatch '))).toEqual(
      Array(4).fill('VerifyBatch TransientError'),
    )
    expect(run.entered).not.toContain('PrepareClickHouse')
    expect(await fingerprint()).toEqual(before)
    expectOneFailureMessage('VerifyChecksums', run.error)
    expect(run.ms).toBeLessThan(30_000)
    configure()
    expect((await restore()).error).toBeUndefined()
    await expectRestored()
  })

  it('errors on the load reads (a ClickHouse object, the Postgres dump) are absorbed and the restore completes', async () => {
    configure()
    await wreck()
    const before = s3Http.injected().length
    const spansKey = `/${prefix}/clickhouse/${backupIds.clickhouse}/data/tool_call_spans/`
    const dumpKey = `/${prefix}/postgres/${backupIds.postgres}/postgres.dump`
    const run = await restore({
      beforeTask: async (state, input) => {
        if (state === 'LoadClickHouseBatch' && (await itemOf('tool_call_spans')(input))) {
          s3Http.inject({ ...dataGet(spansKey), status: 503, code: 'SlowDown', times: 1 })
          s3Http.inject({ ...dataGet(spansKey), status: 500, code: 'InternalError', times: 1 })
        }
        if (state === 'LoadPostgres') {
          s3Http.inject({ ...dataGet(dumpKey), status: 503, code: 'ServiceUnavailable', times: 1 })
          s3Http.inject({ ...dataGet(dumpKey), status: 503, code: 'SlowDown', times: 1 })
        }
      },
    })
    expect(run.error).toBeUndefined()
    expect(run.failures).toEqual([]) // the S3 client's own retries absorbed them
    const injected = s3Http.injected().slice(before)
    expect(injected.filter((l) => l.includes('tool_call_spans'))).toHaveLength(2)
    expect(injected.filter((l) => l.includes('postgres.dump'))).toHaveLength(2)
    await expectRestored()
  })

  it('the S3 connection cut mid-object while loading ClickHouse is retried and the restore completes', async () => {
    configure()
    await wreck()
    const run = await restore({
      beforeTask: onFirst(
        'LoadClickHouseBatch',
        () => s3Tcp.setFault({ kind: 'cut', direction: 'downstream', afterBytes: 60_000 }),
        itemOf('tool_call_spans'),
      ),
    })
    expect(run.error).toBeUndefined()
    // the cut takes the S3 connections open at that moment: the dump LoadPostgres reads beside
    // the ClickHouse load may be one of them; each is retried
    expect(run.failures).toContain('LoadClickHouseBatch TransientError')
    expect(
      run.failures.every((f) =>
        ['LoadClickHouseBatch TransientError', 'LoadPostgres TransientError'].includes(f),
      ),
    ).toBe(true)
    await expectRestored()
  })
})

describe('Restore under faults: Slack while notifying a failure', () => {
  /** A restore that fails at its first step, before any database is touched. */
  const failing = { postgres: '20010101T000000.000Z' }

  it('Slack cut mid-request: the post is retried once and exactly one message arrives', async () => {
    configure()
    const connections = slackProxy.connections().total
    slackProxy.setFault({ kind: 'cut', direction: 'upstream', afterBytes: 200, times: 1 })
    const run = await restore({}, failing)
    expect(run.error?.name).toBe('LocalExecutionFailed')
    expect(run.error?.message).toMatch(/^BackupNotFoundError: /)
    expectOneFailureMessage('ResolveBackup', run.error)
    expect(slackProxy.connections().total - connections).toBe(2)
    expect(run.ms).toBeLessThan(15_000)
  })

  it('Slack stalled after the message arrived: no second copy, the execution still fails with its own error, in bounded time', async () => {
    configure()
    // the request reaches Slack whole; its answer stops after the first byte
    slackProxy.setFault({ kind: 'stall', direction: 'downstream', afterBytes: 1 })
    const run = await restore({}, failing)
    // the post gives up after its 10 s timeout and is not repeated: Slack may have the message already
    expect(run.error?.message).toMatch(/^BackupNotFoundError: /)
    expectOneFailureMessage('ResolveBackup', run.error)
    expect(run.ms).toBeGreaterThan(9_000)
    expect(run.ms).toBeLessThan(15_000) // one 10 s attempt, well inside notify's deadline
  })
})

describe('Restore under faults: the process killed (real CLI, SIGKILL)', () => {
  const cliEnv = () => ({ ...pipelineEnv(), LSB_PREFIX: prefix })

  it('killed mid-RestoreClickHouse (an insert in flight): both databases as they were; the next CLI restore succeeds', async () => {
    configure()
    const before = await wreck()
    const cli = startCli(RESTORE_ARGS, cliEnv())
    await cli.shows('→ RestoreClickHouse', 30_000)
    // the big table's insert stops half-way: the kill lands while it is in flight
    const sent = chProxy.bytes().upstream
    chProxy.setFault({ kind: 'stall', direction: 'upstream', afterBytes: 100_000 })
    await waitUntil(
      () => (chProxy.bytes().upstream - sent >= 100_000 ? true : undefined),
      15_000,
      'the spans insert in flight',
    )
    const exit = await cli.kill()
    expect(exit.signal).toBe('SIGKILL')
    expect(cli.stderr()).not.toContain('✓ RestoreClickHouse')
    chProxy.setFault(PASS)
    expect(await fingerprint()).toEqual(before)
    // the next run, as an operator would start it, with nothing cleaned up by hand
    const again = startCli(RESTORE_ARGS, cliEnv())
    const done = await within(again.exited, 60_000, 'CLI restore')
    expect(done.code, again.stderr()).toBe(0)
    expect(JSON.parse(again.stdout())).toMatchObject(backupIds)
    await expectRestored()
  })

  it('killed mid-LoadPostgres while pg_restore runs: live untouched, no pg_restore left behind; the next restore succeeds', async () => {
    configure()
    const before = await wreck()
    const cli = startCli(RESTORE_ARGS, cliEnv())
    await cli.shows('→ LoadPostgres', 30_000)
    // pg_restore's COPY stops half-way: the kill lands mid-stream
    const sent = pgProxy.bytes().upstream
    pgProxy.setFault({ kind: 'stall', direction: 'upstream', afterBytes: 50_000 })
    const restoring = `${pgDatabase}__lsb_restoring`
    const session = `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = '${restoring}' AND application_name LIKE '%pg_restore'`
    await waitUntil(
      async () =>
        (pgProxy.bytes().upstream - sent >= 50_000 && (await pgRows(session, 'postgres'))[0].n > 0) ||
        undefined,
      15_000,
      'pg_restore streaming',
    )
    await cli.kill()
    expect(cli.stderr()).not.toContain('✓ LoadPostgres')
    pgProxy.setFault(PASS)
    // pg_restore, orphaned, meets the end of its input and goes away by itself
    await waitUntil(
      async () => (await pgRows(session, 'postgres'))[0].n === 0 || undefined,
      15_000,
      'pg_restore gone',
    )
    expect(await fingerprint()).toEqual(before)
    const run = await restore()
    expect(run.error).toBeUndefined()
    await expectRestored()
    const left = await pgRows(`SELECT datname FROM pg_database WHERE datname = '${restoring}'`, 'postgres')
    expect(left).toEqual([])
  })

  it('killed after ClickHouse was staged and before any swap: both live databases exactly as they were; the next restore succeeds', async () => {
    configure()
    const before = await wreck()
    // LoadPostgres hangs from its first byte while ClickHouse is staged beside it: killed once staged
    pgProxy.setFault({ kind: 'stall', direction: 'both', afterBytes: 0 })
    const cli = startCli(RESTORE_ARGS, cliEnv())
    await cli.shows('✓ CheckClickHouseStaging', 30_000)
    await sleep(300)
    await cli.kill()
    expect(cli.stderr()).toContain('✓ CheckClickHouseStaging')
    pgProxy.setFault(PASS)
    expect(await fingerprint()).toEqual(before)
    // the staged data is complete and still there, untouched by the kill
    expect(await clickhouseContentHash(ch, `${chDatabase}__lsb_restore`)).toEqual(backedUp.clickhouse)
    const run = await restore()
    expect(run.error).toBeUndefined()
    await expectRestored()
  })
})

describe('Restore under faults: between the two swaps (Postgres restored, ClickHouse not committed), writers stopped', () => {
  /** Stand-ins for ECS updateService: they record which services were scaled, and to what. */
  function writers() {
    const calls: string[] = []
    const record = (state: string) => async (input: unknown) => {
      const { Service, DesiredCount } = input as { Service: string; DesiredCount: number }
      calls.push(`${state} ${Service} ${DesiredCount}`)
      return {}
    }
    return {
      calls,
      nativeHandlers: {
        StopWriters: record('StopWriters'),
        DescribeStoppingWriters: settledServices(services, 0),
        StartWriters: record('StartWriters'),
        DescribeStartingWriters: settledServices(services),
        RestartWriters: record('RestartWriters'),
      },
    }
  }
  const stopped = services.map((s) => `StopWriters ${s.service} 0`).sort()
  const started = (state: string) => services.map((s) => `${state} ${s.service} ${s.desiredCount}`).sort()
  const withQuiesce = () => ({
    LSB_QUIESCE_SERVICES: JSON.stringify(services),
    LSB_QUIESCE_POLL_SECONDS: '1',
  })

  /** Postgres as the message says: restored, and what it replaced kept in `<db>__lsb_previous`. */
  async function expectPostgresRestored(before: Awaited<ReturnType<typeof fingerprint>>) {
    expect(await postgresContentHash(postgresUrl(pgDatabase))).toEqual(backedUp.postgres)
    expect(await postgresContentHash(postgresUrl(`${pgDatabase}__lsb_previous`))).toEqual(before.postgres)
  }

  /** The message says where each engine's data is, that the writers stay stopped, and how to finish. */
  function expectMixedMessage(clickhouse: 'not restored' | 'partly restored') {
    expectOneFailureMessage('CommitClickHouse')
    const { text, raw } = slack.messages[0]!
    expect(text).toContain('databases left mixed, writers left stopped')
    const shown = JSON.parse(raw)
      .blocks.map((b: { text?: { text: string } }) => b.text?.text ?? '')
      .join('\n')
    expect(shown).toContain(
      `*PostgreSQL* \`${pgDatabase}\` is *restored* from \`${backupIds.postgres}\`; the data it replaced is in \`${pgDatabase}__lsb_previous\``,
    )
    expect(shown).toContain(`*ClickHouse* \`${chDatabase}\` is *${clickhouse}*`)
    expect(shown).toContain(`\`${chDatabase}__lsb_restore\``)
    if (clickhouse === 'partly restored') expect(shown).toContain(`\`${chDatabase}__lsb_previous\``)
    expect(shown).toContain('*Writers left stopped*: api (langsight), worker (langsight)')
    expect(shown).toContain(`\`langsight-backup restore --clickhouse ${backupIds.clickhouse}\``)
  }

  /** Finishing as the message says: ClickHouse alone, same backup; it starts the writers at its end. */
  async function finishAsTold() {
    configure(withQuiesce())
    const w = writers()
    const run = await restore({ nativeHandlers: w.nativeHandlers }, { clickhouse: backupIds.clickhouse })
    expect(run.error).toBeUndefined()
    expect(w.calls.sort()).toEqual([...started('StartWriters'), ...stopped].sort())
    await expectRestored()
  }

  it('CommitClickHouse fails before its first rename: Postgres restored, ClickHouse unchanged, writers left stopped, and Slack says so', async () => {
    configure(withQuiesce())
    const before = await wreck()
    const w = writers()
    const run = await restore({
      nativeHandlers: w.nativeHandlers,
      beforeTask: (state) => {
        // ClickHouse unreachable from here on: the commit cannot even connect
        if (state === 'CommitClickHouse') chProxy.setFault({ kind: 'cut', direction: 'both', afterBytes: 0 })
      },
    })
    expect(run.ok).toBe(false)
    // unreachable before any rename: a TransientError, retried, then the same unchanged-ClickHouse path
    expect(run.failures[0]).toBe('CommitClickHouse TransientError')
    expect(run.entered).toEqual(expect.arrayContaining(['ClickHouseLeftUnchanged', 'NotifyFailure']))
    expect(w.calls.sort()).toEqual(stopped) // stopped, and not started again
    await expectPostgresRestored(before)
    const now = await fingerprint()
    expect(now.clickhouse).toEqual(before.clickhouse)
    expect(now.clickhouseObjects).toEqual(before.clickhouseObjects)
    expect(await clickhouseContentHash(ch, `${chDatabase}__lsb_restore`)).toEqual(backedUp.clickhouse)
    expectMixedMessage('not restored')
    await finishAsTold()
  })

  it('CommitClickHouse fails part-way through its renames: exactly the split the Slack message describes; finishing as told succeeds', async () => {
    configure({ ...withQuiesce(), LSB_CLICKHOUSE_URL: chThrough(chStatements.port) })
    const before = await wreck()
    // the third table swap fails: two tables restored, the rest old, the MV dropped before the swap
    chStatements.failNth({ pattern: /^RENAME TABLE .* TO .*, .* TO /s, nth: 3 })
    const w = writers()
    const run = await restore({ nativeHandlers: w.nativeHandlers })
    expect(chStatements.failed()).toHaveLength(1)
    expect(run.ok).toBe(false)
    expect(run.failures[0]).toBe('CommitClickHouse ClickHouseSwapError')
    expect(run.entered).toEqual(expect.arrayContaining(['ClickHouseLeftPartial', 'NotifyFailure']))
    expect(w.calls.sort()).toEqual(stopped)
    await expectPostgresRestored(before)
    expectMixedMessage('partly restored')
    // every data table is either swapped (live = backup, previous = before) or not (live = before, staging = backup)
    const live = await tableHashes(chDatabase)
    const previous = await tableHashes(`${chDatabase}__lsb_previous`)
    const staging = await tableHashes(`${chDatabase}__lsb_restore`)
    const tables = Object.keys(backedUp.clickhouse).filter((t) => !t.includes(' '))
    const swapped = tables.filter((t) => live[t] === backedUp.clickhouse[t])
    expect(swapped).toHaveLength(2)
    for (const t of tables) {
      if (swapped.includes(t)) {
        expect(previous[t], t).toBe(before.clickhouse[t])
        expect(staging[t], t).toBeUndefined()
      } else {
        expect(live[t], t).toBe(before.clickhouse[t])
        expect(staging[t], t).toBe(backedUp.clickhouse[t])
      }
    }
    const cause = JSON.parse(slack.messages[0]!.raw).blocks.map(
      (b: { text?: { text: string } }) => b.text?.text ?? '',
    )
    expect(cause.join('\n')).toMatch(/failed at "swap table \w+"/)
    await finishAsTold()
  })
})
