import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation'
import { CloudWatchClient, DescribeAlarmsForMetricCommand } from '@aws-sdk/client-cloudwatch'
import {
  DescribeRuleCommand,
  EventBridgeClient,
  ListRuleNamesByTargetCommand,
  ListTargetsByRuleCommand,
} from '@aws-sdk/client-eventbridge'
import { DescribeStateMachineCommand, SFNClient } from '@aws-sdk/client-sfn'
import { mockClient } from 'aws-sdk-client-mock'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest'
import { listObjects } from '#catalog/objectStore.ts'
import type { CheckResult } from '#cli/doctor/check.ts'
import { buildProgram } from '#cli/main.ts'
import { freePort } from '#devtools/servers.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import { clickhouseServerUrl, createPostgresDatabase, uniquePrefix, useEnv } from '../../support/env.ts'
import { startFaultProxy } from '../../support/faultProxy.ts'
import { startSlackSink } from '../../support/slackSink.ts'

const root = join(import.meta.dirname, '../../..')
const servers = inject('servers')
const weakPassword = `Weak-${randomUUID().slice(0, 8)}-pw`
const chDatabase = `doctor_${randomUUID().slice(0, 8)}`
let env: NodeJS.ProcessEnv
let pgUrl: string
let weakUrl: string
let weakRole: string
let chDir: string
/** Everything any run printed: no secret may be in it. */
const printed: string[] = []

interface Run {
  code: number | null
  stdout: string
  stderr: string
  /** Milliseconds from the start to the first stdout chunk holding `text`. */
  at(text: string): number | undefined
}

/** Runs the real bin as an operator would, with `changes` over the healthy environment. */
function doctor(changes: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  const started = performance.now()
  const chunks: { at: number; text: string }[] = []
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bin/langsight-backup.js'), 'doctor', ...args], {
      env: { ...env, ...changes },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stdout.on('data', (c) => chunks.push({ at: performance.now() - started, text: String(c) }))
    child.stderr.on('data', (c) => {
      stderr += c
    })
    child.on('close', (code) => {
      const stdout = chunks.map((c) => c.text).join('')
      printed.push(stdout, stderr)
      resolve({ code, stdout, stderr, at: (text) => chunks.find((c) => c.text.includes(text))?.at })
    })
  })
}

/** The text report as `{ check: [symbol, detail, fix] }`. */
function lines(stdout: string): Record<string, [string, string, string | undefined]> {
  const out: Record<string, [string, string, string | undefined]> = {}
  let last: string | undefined
  for (const line of stdout.split('\n')) {
    const check = /^([✓!✗-]) (\S+)\s+(.*)$/.exec(line)
    if (check) {
      last = check[2]!
      out[last] = [check[1]!, check[3]!, undefined]
    }
    const fix = /^\s+fix: (.*)$/.exec(line)
    if (fix && last) out[last]![2] = fix[1]
  }
  return out
}

beforeAll(async () => {
  const db = await createPostgresDatabase('doctor')
  pgUrl = db.url
  weakRole = `doctor_weak_${randomUUID().slice(0, 8)}`
  const admin = new pg.Client({ connectionString: pgUrl })
  await admin.connect()
  await admin.query('CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)')
  await admin.query(`CREATE ROLE ${weakRole} LOGIN PASSWORD '${weakPassword}'`)
  await admin.end()
  weakUrl = `postgres://${weakRole}:${encodeURIComponent(weakPassword)}@127.0.0.1:${servers.postgres.port}/${db.name}`

  const ch = await connectClickHouse(clickhouseServerUrl('default'))
  await ch.command(`CREATE DATABASE ${chDatabase}`)
  await ch.command(
    `CREATE TABLE ${chDatabase}.spans (id UInt64, at DateTime) ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY id`,
  )
  await ch.command(`CREATE TABLE ${chDatabase}.scratch_tmp (id UInt64) ENGINE = MergeTree() ORDER BY id`)
  await ch.command(`INSERT INTO ${chDatabase}.spans VALUES (1, now())`)
  await ch.close()

  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AWS_ENDPOINT_URL_S3: process.env.AWS_ENDPOINT_URL_S3,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    LSB_BUCKET: process.env.LSB_BUCKET,
    LSB_PREFIX: uniquePrefix('doctor'),
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: clickhouseServerUrl(chDatabase),
    LSB_CLICKHOUSE_EXCLUDE: 'scratch_*',
  }
})

afterAll(async () => {
  if (chDir) rmSync(chDir, { recursive: true, force: true })
  const admin = new pg.Client({ connectionString: pgUrl })
  await admin.connect()
  await admin.query(`DROP OWNED BY ${weakRole}`).catch(() => {})
  await admin.query(`DROP ROLE IF EXISTS ${weakRole}`).catch(() => {})
  await admin.end()
})

describe('CLI: langsight-backup doctor --local', () => {
  it('reports every check of a healthy setup without a ✗ and exits 0, and leaves no probe object behind', async () => {
    // Act
    const text = await doctor({}, '--local')
    const json = await doctor({}, '--local', '--json')
    // Assess
    expect(text.code).toBe(0)
    const report = lines(text.stdout)
    const statuses = Object.fromEntries(Object.entries(report).map(([check, [symbol]]) => [check, symbol]))
    expect(statuses).toEqual({
      settings: '✓',
      postgres: '✓',
      'postgres-dump-privileges': '✓',
      'postgres-restore-privileges': '✓',
      'pg-tools': '✓',
      clickhouse: '✓',
      'clickhouse-tables': '✓',
      'clickhouse-s3': '!', // 18.16 has no s3 table function: the streaming path, a warning
      bucket: '✓',
      'bucket-versioning': '!', // s3rver: never enabled
      'bucket-object-lock': '!', // s3rver has no Object Lock API: the check says it cannot tell
      slack: '!', // no webhook set
    })
    expect(report.postgres![1]).toMatch(/^PostgreSQL 15\.\d+ at 127\.0\.0\.1:\d+\/doctor_\w+ as postgres$/)
    expect(report.clickhouse![1]).toBe(
      `ClickHouse ${servers.clickhouse.version} over HTTP at 127.0.0.1:${servers.clickhouse.port}, database ${chDatabase}`,
    )
    expect(report['clickhouse-tables']![1]).toMatch(
      /^1 table of doctor_\w+ to back up .*: spans; left out by LSB_CLICKHOUSE_EXCLUDE=scratch_\*: scratch_tmp$/,
    )
    expect(report['pg-tools']![1]).toMatch(
      /^pg_dump 15\.\d+ and pg_restore 15\.\d+ \(.+\) for PostgreSQL 15\.\d+$/,
    )
    expect(report.bucket![1]).toContain(`s3://${env.LSB_BUCKET}/${env.LSB_PREFIX}/ is writable`)
    for (const [symbol, , fix] of Object.values(report)) if (symbol === '!') expect(fix).toBeTruthy()
    expect(text.stdout).toMatch(/\n8 ok \(✓\), 4 warnings \(!\), 0 failed \(✗\), 0 not checked \(-\)\n$/)
    expect(json.code).toBe(0)
    const results = JSON.parse(json.stdout) as CheckResult[]
    expect(results.map((r) => r.check)).toEqual(Object.keys(report))
    expect(results.every((r) => r.ok)).toBe(true)
    const probes: string[] = []
    for await (const o of listObjects(env.LSB_BUCKET!, `${env.LSB_PREFIX}/`)) probes.push(o.key)
    expect(probes).toEqual([])
  })

  it('finds the server-side S3 path where ClickHouse has the s3 table function (chdb)', async () => {
    // Prepare
    chDir = mkdtempSync(join(tmpdir(), 'lsb-doctor-chdb-'))
    const url = `chdb://${chDir}?database=langsight`
    const conn = await connectClickHouse(url)
    await conn.command('CREATE DATABASE IF NOT EXISTS langsight')
    await conn.command('CREATE TABLE langsight.spans (id UInt64) ENGINE = MergeTree ORDER BY id')
    await conn.close()
    // Act
    const r = await doctor({ LSB_CLICKHOUSE_URL: url }, '--local')
    // Assess
    const report = lines(r.stdout)
    expect(report.clickhouse![1]).toMatch(
      /^ClickHouse \d+\.\S+ \(chdb, embedded\) in .+, database langsight$/,
    )
    expect(report['clickhouse-s3']!.slice(0, 2)).toEqual([
      '✓',
      expect.stringMatching(/^available: ClickHouse .* has the s3 table function/),
    ])
    expect(r.code).toBe(0)
  })

  it('a wrong PostgreSQL port: ✗ postgres with a fix, the checks that need it not checked, exit 1', async () => {
    const port = await freePort()
    const r = await doctor({ LSB_POSTGRES_URL: pgUrl.replace(/:\d+\//, `:${port}/`) }, '--local')
    const report = lines(r.stdout)
    expect(r.code).toBe(1)
    expect(report.postgres).toEqual([
      '✗',
      expect.stringContaining(`cannot connect to PostgreSQL at 127.0.0.1:${port}/`),
      `nothing accepts connections at 127.0.0.1:${port}: start PostgreSQL, or fix the host and port in LSB_POSTGRES_URL`,
    ])
    for (const check of ['postgres-dump-privileges', 'postgres-restore-privileges', 'pg-tools'])
      expect(report[check]).toEqual(['-', 'not checked: PostgreSQL is not reachable', undefined])
    expect(report.clickhouse![0]).toBe('✓')
  })

  it('a role without privileges: ✗ for dump (names the table) and restore (CREATEDB, owner), with the GRANTs', async () => {
    const r = await doctor({ LSB_POSTGRES_URL: weakUrl }, '--local')
    const report = lines(r.stdout)
    expect(r.code).toBe(1)
    expect(report.postgres![0]).toBe('✓')
    const [dumpSymbol, dumpDetail, dumpFix] = report['postgres-dump-privileges']!
    expect(dumpSymbol).toBe('✗')
    expect(dumpDetail).toContain(`pg_dump as ${weakRole} would fail`)
    expect(dumpDetail).toContain('public.users (no SELECT)')
    expect(dumpDetail).toContain('public.users_id_seq (no SELECT)')
    expect(dumpFix).toContain(`GRANT pg_read_all_data TO "${weakRole}"`)
    const [restoreSymbol, restoreDetail, restoreFix] = report['postgres-restore-privileges']!
    expect(restoreSymbol).toBe('✗')
    expect(restoreDetail).toContain(`${weakRole} cannot create databases`)
    expect(restoreFix).toContain(`ALTER ROLE "${weakRole}" CREATEDB`)
    expect(restoreFix).toMatch(/ALTER DATABASE "doctor_\w+" OWNER TO/)
  })

  it.skipIf(!servers.postgres17)(
    'pg_dump older than the server: ✗ pg-tools naming both versions (pgTool.ts rule)',
    async () => {
      // Prepare: PostgreSQL 17, with Debian's pg_dump 15
      const { port, password } = servers.postgres17!
      const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
      // Act
      const r = await doctor(
        { LSB_POSTGRES_URL: url, LSB_PG_BIN_DIR: '/usr/lib/postgresql/15/bin' },
        '--local',
      )
      // Assess
      const [symbol, detail, fix] = lines(r.stdout)['pg-tools']!
      expect(r.code).toBe(1)
      expect(symbol).toBe('✗')
      expect(detail).toMatch(
        /^pg_dump 15\.\S+ .* cannot dump database postgres on PostgreSQL 17\.\d+.*: pg_dump 17 or newer is required/,
      )
      expect(fix).toBe(
        'point LSB_PG_BIN_DIR at PostgreSQL 17+ client tools (pg_dump and pg_restore of one version)',
      )
    },
  )

  it('ClickHouse on a closed port: ✗ clickhouse with a fix, exit 1', async () => {
    const port = await freePort()
    const r = await doctor(
      { LSB_CLICKHOUSE_URL: `http://default:${servers.clickhouse.password}@127.0.0.1:${port}/${chDatabase}` },
      '--local',
    )
    const report = lines(r.stdout)
    expect(r.code).toBe(1)
    expect(report.clickhouse![0]).toBe('✗')
    expect(report.clickhouse![1]).toContain(
      `ClickHouse http://default:***@127.0.0.1:${port}/${chDatabase} is not reachable`,
    )
    expect(report.clickhouse![2]).toMatch(/^nothing accepts connections there/)
    expect(report['clickhouse-tables']![0]).toBe('-')
  })

  it('a ClickHouse that accepts and never answers: ✗ within the deadline, not after the client timeout', async () => {
    // Prepare: the real server behind a proxy that forwards no byte
    const proxy = await startFaultProxy(
      { host: '127.0.0.1', port: servers.clickhouse.port },
      { kind: 'stall', afterBytes: 0, direction: 'both' },
    )
    try {
      // Act
      const r = await doctor(
        {
          LSB_CLICKHOUSE_URL: `http://default:${servers.clickhouse.password}@127.0.0.1:${proxy.port}/${chDatabase}`,
        },
        '--local',
        '--timeout',
        '2',
      )
      // Assess: the line comes about 2 s after the first one (the settings, printed at once)
      const report = lines(r.stdout)
      expect(r.code).toBe(1)
      expect(proxy.connections().total).toBeGreaterThan(0)
      expect(report.clickhouse!.slice(0, 2)).toEqual([
        '✗',
        'StallError: check clickhouse: no answer within 2 s',
      ])
      expect(report.clickhouse![2]).toMatch(/did not answer within 2 s/)
      const waited = r.at('✗ clickhouse')! - r.at('✓ settings')!
      expect(waited).toBeGreaterThan(1_900)
      expect(waited).toBeLessThan(10_000) // the client alone would wait LSB_STALL_SECONDS + 1 = 121 s
    } finally {
      await proxy.close()
    }
  })

  it('a bucket that does not exist: ✗ bucket with a fix, versioning and Object Lock not checked', async () => {
    const r = await doctor({ LSB_BUCKET: `lsb-doctor-missing-${randomUUID().slice(0, 8)}` }, '--local')
    const report = lines(r.stdout)
    expect(r.code).toBe(1)
    expect(report.bucket).toEqual([
      '✗',
      'NoSuchBucket: The specified bucket does not exist',
      expect.stringMatching(/^bucket lsb-doctor-missing-\w+ does not exist at http:.*fix LSB_BUCKET$/),
    ])
    expect(report['bucket-versioning']![0]).toBe('-')
    expect(report['bucket-object-lock']![0]).toBe('-')
  })

  it('LSB_CLICKHOUSE_TRANSFER=server against a server without the s3 table function: ✗ with the fix, exit 1', async () => {
    // Act
    const r = await doctor({ LSB_CLICKHOUSE_TRANSFER: 'server' }, '--local')
    const report = lines(r.stdout)
    // Assess
    expect(r.code).toBe(1)
    expect(report['clickhouse-s3']).toEqual([
      '✗',
      expect.stringMatching(
        /^LSB_CLICKHOUSE_TRANSFER=server, but ClickHouse 18\.16\S* has no s3 table function/,
      ),
      expect.stringMatching(/set LSB_CLICKHOUSE_TRANSFER=auto/),
    ])
  })

  it('a setting that does not parse: ✗ settings naming the variable, the checks that need settings not checked', async () => {
    const r = await doctor({ LSB_KEEP_LAST: 'three' }, '--local', '--json')
    const results = JSON.parse(r.stdout) as CheckResult[]
    expect(r.code).toBe(1)
    expect(results[0]).toEqual({
      check: 'settings',
      ok: false,
      status: 'fail',
      detail: expect.stringMatching(/^ConfigError: invalid configuration: LSB_KEEP_LAST: /),
      fix: 'fix LSB_KEEP_LAST (README.md, Configuration)',
    })
    expect(results.filter((x) => x.status === 'skip').map((x) => x.check)).toEqual([
      'postgres',
      'postgres-dump-privileges',
      'postgres-restore-privileges',
      'pg-tools',
      'clickhouse',
      'clickhouse-tables',
      'clickhouse-s3',
      'bucket',
      'bucket-versioning',
      'bucket-object-lock',
    ])
  })

  it('--send-test-message posts one labelled message; no password or webhook is ever printed', async () => {
    // Prepare: a webhook that answers, and one nobody answers (its failure must not quote it)
    const slack = await startSlackSink()
    const deadHook = `http://127.0.0.1:${await freePort()}/services/T111/B222/${'y'.repeat(24)}`
    try {
      // Act
      const sent = await doctor({ LSB_SLACK_WEBHOOK_URL: slack.url }, '--local', '--send-test-message')
      const failed = await doctor(
        { LSB_SLACK_WEBHOOK_URL: deadHook, LSB_POSTGRES_URL: weakUrl.replace(/:\d+\//, ':1/') },
        '--local',
        '--send-test-message',
        '--json',
        '--verbose',
      )
      // Assess
      expect(lines(sent.stdout).slack!.slice(0, 2)).toEqual([
        '✓',
        'test message delivered (look for "langsight-backup: test message" in the channel)',
      ])
      expect(slack.messages).toHaveLength(1)
      expect(slack.messages[0]!.text).toMatch(
        /^:wrench: langsight-backup doctor: test message from .*no action needed/,
      )
      const results = JSON.parse(failed.stdout) as CheckResult[]
      expect(failed.code).toBe(1)
      expect(results.find((x) => x.check === 'slack')).toMatchObject({ ok: false, status: 'fail' })
      expect(results.find((x) => x.check === 'postgres')).toMatchObject({ ok: false, status: 'fail' })
      const secrets = [
        servers.postgres.password,
        servers.clickhouse.password,
        weakPassword,
        slack.url.split('/services/')[1]!,
        deadHook.split('/services/')[1]!,
      ]
      expect(printed.length).toBeGreaterThan(10) // every run of this file so far, and these two
      for (const text of printed) for (const secret of secrets) expect(text).not.toContain(secret)
    } finally {
      await slack.close()
    }
  })
})

/** Step Functions, EventBridge, CloudWatch and CloudFormation cannot run here: checked at the SDK boundary. */
describe('CLI: langsight-backup doctor against the deployed stack', () => {
  const cloudFormation = mockClient(CloudFormationClient)
  const sfn = mockClient(SFNClient)
  const events = mockClient(EventBridgeClient)
  const cloudWatch = mockClient(CloudWatchClient)
  const arn = (kind: string) =>
    `arn:aws:states:eu-west-1:123456789012:stateMachine:langsight-backup-prod-${kind}`
  const rules = {
    'langsight-backup-prod-postgres': { cron: 'cron(0 2 * * ? *)', input: '{"engines":["postgres"]}' },
    'langsight-backup-prod-clickhouse': { cron: 'cron(0 3 ? * SUN *)', input: '{"engines":["clickhouse"]}' },
  }
  let out: string[]
  let saved: NodeJS.ProcessEnv

  /** A stack as serverless.yml deploys it; tests then break one part. */
  function deployed(disabled: string[] = []) {
    cloudFormation.on(DescribeStacksCommand).resolves({
      Stacks: [
        {
          StackName: 'langsight-backup-prod',
          StackStatus: 'UPDATE_COMPLETE',
          CreationTime: new Date(),
          Outputs: [
            { OutputKey: 'BackupStateMachineArn', OutputValue: arn('backup') },
            { OutputKey: 'RestoreStateMachineArn', OutputValue: arn('restore') },
          ],
        },
      ],
    })
    sfn.on(DescribeStateMachineCommand).callsFake(({ stateMachineArn }) => ({
      stateMachineArn,
      name: stateMachineArn.split(':').at(-1),
      status: 'ACTIVE',
    }))
    events
      .on(ListRuleNamesByTargetCommand)
      .callsFake(({ TargetArn }) => ({ RuleNames: TargetArn === arn('backup') ? Object.keys(rules) : [] }))
    events.on(DescribeRuleCommand).callsFake(({ Name }: { Name: keyof typeof rules }) => ({
      Name,
      ScheduleExpression: rules[Name].cron,
      State: disabled.includes(Name) ? 'DISABLED' : 'ENABLED',
    }))
    events.on(ListTargetsByRuleCommand).callsFake(({ Rule }: { Rule: keyof typeof rules }) => ({
      Targets: [{ Id: 'backup', Arn: arn('backup'), Input: rules[Rule].input }],
    }))
    cloudWatch.on(DescribeAlarmsForMetricCommand).callsFake(({ MetricName, Dimensions }) => ({
      MetricAlarms: [
        {
          AlarmName: `${Dimensions[0].Value.split(':').at(-1)}-${MetricName}`,
          ActionsEnabled: true,
          AlarmActions: ['arn:aws:sns:eu-west-1:123456789012:langsight-backup-prod-alarms'],
          StateValue: 'OK',
        },
      ],
    }))
  }

  async function run(...args: string[]): Promise<Record<string, [string, string, string | undefined]>> {
    await buildProgram()
      .exitOverride()
      .parseAsync(['node', 'langsight-backup', 'doctor', ...args])
    return lines(out.join(''))
  }

  beforeEach(() => {
    saved = { ...process.env }
    useEnv({ ...env, LSB_STACK_NAME: 'langsight-backup-prod' })
    for (const mock of [cloudFormation, sfn, events, cloudWatch]) mock.reset()
    out = []
    vi.spyOn(process.stdout, 'write').mockImplementation((c) => out.push(String(c)) > 0)
    process.exitCode = undefined
  })
  afterEach(() => {
    vi.restoreAllMocks()
    process.env = saved
    useEnv({})
    process.exitCode = undefined
  })

  it('finds both state machines (from the stack outputs), a schedule per engine and the four alarms', async () => {
    deployed()
    const report = await run()
    expect(process.exitCode).toBeUndefined()
    expect(report['aws-backup-state-machine']).toEqual([
      '✓',
      `langsight-backup-prod-backup exists (${arn('backup')})`,
      undefined,
    ])
    expect(report['aws-restore-state-machine']![0]).toBe('✓')
    expect(report['aws-schedules']).toEqual([
      '✓',
      'langsight-backup-prod-postgres cron(0 2 * * ? *) → postgres; langsight-backup-prod-clickhouse cron(0 3 ? * SUN *) → clickhouse',
      undefined,
    ])
    expect(report['aws-alarms']![0]).toBe('✓')
    expect(report['aws-alarms']![1]).toMatch(
      /^4 alarms on the backup and restore state machines: backup ExecutionsFailed \(OK\)/,
    )
    const asked = cloudWatch.commandCalls(DescribeAlarmsForMetricCommand).map((c) => c.args[0].input)
    expect(asked).toContainEqual({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsTimedOut',
      Dimensions: [{ Name: 'StateMachineArn', Value: arn('restore') }],
    })
  })

  it('a missing state machine, no schedules and no alarms: ✗ each with a fix, exit 1', async () => {
    deployed()
    sfn.on(DescribeStateMachineCommand, { stateMachineArn: arn('restore') }).rejects(
      Object.assign(new Error(`State Machine Does Not Exist: '${arn('restore')}'`), {
        name: 'StateMachineDoesNotExist',
      }),
    )
    events.on(ListRuleNamesByTargetCommand).resolves({ RuleNames: [] })
    cloudWatch.on(DescribeAlarmsForMetricCommand).resolves({ MetricAlarms: [] })
    const report = await run()
    expect(process.exitCode).toBe(1)
    expect(report['aws-backup-state-machine']![0]).toBe('✓')
    expect(report['aws-restore-state-machine']).toEqual([
      '✗',
      `StateMachineDoesNotExist: State Machine Does Not Exist: '${arn('restore')}'`,
      'deploy the stack (npx serverless deploy), or fix LSB_RESTORE_STATE_MACHINE_ARN / LSB_STACK_NAME',
    ])
    expect(report['aws-schedules']!.slice(0, 2)).toEqual([
      '✗',
      'no enabled schedule backs up postgres or clickhouse: no EventBridge rule targets langsight-backup-prod-backup',
    ])
    expect(report['aws-schedules']![2]).toMatch(/schedulesEnabled=true/)
    expect(report['aws-alarms']).toEqual([
      '✗',
      'no CloudWatch alarm on backup ExecutionsFailed, backup ExecutionsTimedOut: a failing backup would go unnoticed outside Slack',
      expect.stringContaining('deploy the stack'),
    ])
  })

  it('a disabled schedule leaves an engine without backups: ✗ naming it', async () => {
    deployed(['langsight-backup-prod-clickhouse'])
    const report = await run()
    expect(report['aws-schedules']![0]).toBe('✗')
    expect(report['aws-schedules']![1]).toMatch(
      /^no enabled schedule backs up clickhouse: .*langsight-backup-prod-clickhouse cron\(0 3 \? \* SUN \*\) → clickhouse \(DISABLED\)$/,
    )
    expect(process.exitCode).toBe(1)
  })

  it('without a stack name or ARNs: ✗ saying which setting names the stack; --local leaves the stack out', async () => {
    deployed()
    delete process.env.LSB_STACK_NAME
    const report = await run()
    expect(report['aws-backup-state-machine']![2]).toMatch(/^set LSB_STACK_NAME to the deployed stack/)
    expect(report['aws-schedules']![0]).toBe('-')
    out = []
    process.exitCode = undefined
    const local = await run('--local')
    expect(Object.keys(local).filter((c) => c.startsWith('aws-'))).toEqual([])
    expect(process.exitCode).toBeUndefined()
  })

  it('an AWS API that never answers: ✗ within the deadline', async () => {
    deployed()
    sfn.on(DescribeStateMachineCommand).callsFake(() => new Promise(() => {}))
    const started = performance.now()
    const report = await run('--timeout', '1')
    expect(report['aws-backup-state-machine']!.slice(0, 2)).toEqual([
      '✗',
      'StallError: check aws-backup-state-machine: no answer within 1 s',
    ])
    expect(performance.now() - started).toBeLessThan(10_000)
  })
})
