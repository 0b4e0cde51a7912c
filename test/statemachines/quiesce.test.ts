import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runStateMachine } from '#cli/local/runStateMachine.ts'
import { seedPostgres } from '#devtools/sampleData.ts'
import { createPostgresDatabase, uniquePrefix, useEnv } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'

/**
 * Quiesce waits until every writer service runs no task, and Resume until each runs its desired
 * count, both polling ecs:describeServices with a deadline. ECS is faked at the SDK-integration
 * boundary (the runner's stand-ins for native Tasks): a fake cluster whose running counts follow
 * the desired counts a given number of polls later. The real ASL decides when anything runs.
 */
let pgUrl: string
let database: string
let slack: Awaited<ReturnType<typeof startSlackSink>>
const services = [
  { cluster: 'langsight', service: 'api', desiredCount: 2 },
  { cluster: 'langsight', service: 'dashboard', desiredCount: 1 },
]

/** A shorter deadline and a 1 s poll (the defaults are 600 s and 10 s), through the settings. */
function withTiming(timeoutSeconds: number): void {
  useEnv({ LSB_QUIESCE_TIMEOUT_SECONDS: String(timeoutSeconds), LSB_QUIESCE_POLL_SECONDS: '1' })
}

type Service = { desired: number; running: number; lag: number; polls: number }

/**
 * A fake ECS cluster: updateService sets the desired count; each describeServices is one poll, and a
 * service's running count reaches its desired count after `lag` polls (never for Infinity).
 */
function fakeEcs(lags: Record<string, { stop?: number; start?: number }>) {
  const state = new Map<string, Service>(
    services.map((s) => [s.service, { desired: s.desiredCount, running: s.desiredCount, lag: 0, polls: 0 }]),
  )
  const events: string[] = []
  const update = (phase: 'stop' | 'start') => async (input: unknown) => {
    const { Service: name, DesiredCount } = input as { Service: string; DesiredCount: number }
    const s = state.get(name)!
    Object.assign(s, { desired: DesiredCount, lag: lags[name]?.[phase] ?? 0, polls: 0 })
    events.push(`update ${name} desired=${DesiredCount}`)
    return { Service: { ServiceName: name, DesiredCount, RunningCount: s.running } }
  }
  const describe = async (input: unknown) => {
    const name = (input as { Services: string[] }).Services[0]!
    const s = state.get(name)!
    s.polls++
    if (s.polls >= s.lag) s.running = s.desired
    events.push(`describe ${name} running=${s.running}`)
    return {
      Services: [{ ServiceName: name, DesiredCount: s.desired, RunningCount: s.running }],
      Failures: [],
    }
  }
  return {
    events,
    handlers: {
      StopWriters: update('stop'),
      DescribeStoppingWriters: describe,
      StartWriters: update('start'),
      DescribeStartingWriters: describe,
      RestartWriters: update('start'),
    },
    /** Records the Lambda states that matter here, in order with ECS's events. */
    beforeTask: (state: string) => {
      if (['SwapPostgres', 'Notify', 'NotifyFailure'].includes(state)) events.push(state)
    },
  }
}

async function liveDatabases(): Promise<string[]> {
  const admin = new pg.Client({ connectionString: pgUrl.replace(/\/[^/]+$/, '/postgres') })
  await admin.connect()
  const { rows } = await admin.query<{ datname: string }>(
    'SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname',
    [`${database}%`],
  )
  await admin.end()
  return rows.map((r) => r.datname)
}

beforeAll(async () => {
  slack = await startSlackSink()
  pgUrl = (await createPostgresDatabase('sm_quiesce')).url
  database = new URL(pgUrl).pathname.slice(1)
  await seedPostgres(pgUrl, 0.1)
  useEnv({
    LSB_PREFIX: uniquePrefix('quiesce'),
    LSB_POSTGRES_URL: pgUrl,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_CLICKHOUSE_URL: undefined,
    LSB_MIGRATE_STRATEGY: 'none',
    LSB_EXPECTED_SCHEMA_HEAD: undefined,
    LSB_PG_BIN_DIR: undefined,
  })
  await runStateMachine('backup', { engines: ['postgres'] })
  useEnv({ LSB_QUIESCE_SERVICES: JSON.stringify(services) })
})

afterAll(async () => {
  useEnv({
    LSB_QUIESCE_SERVICES: undefined,
    LSB_QUIESCE_TIMEOUT_SECONDS: undefined,
    LSB_QUIESCE_POLL_SECONDS: undefined,
  })
  await slack?.close()
})

describe('State machine: restore (Quiesce and Resume wait)', () => {
  it('swaps only after every service runs no task, and notifies only after each runs its desired count', async () => {
    // Prepare: api needs 3 polls to drain and 2 to start; dashboard 1 each
    const ecs = fakeEcs({ api: { stop: 3, start: 2 }, dashboard: { stop: 1, start: 1 } })
    withTiming(20)
    // Act
    await runStateMachine(
      'restore',
      { postgres: 'latest' },
      {
        nativeHandlers: ecs.handlers,
        beforeTask: ecs.beforeTask,
      },
    )
    // Assess: the polls of each service, in order, around the swap and the notification
    const of = (name: string) => ecs.events.filter((e) => e.includes(` ${name} `) || !e.includes(' '))
    expect(of('api')).toEqual([
      'update api desired=0',
      'describe api running=2',
      'describe api running=2',
      'describe api running=0',
      'SwapPostgres',
      'update api desired=2',
      'describe api running=0',
      'describe api running=2',
      'Notify',
    ])
    expect(of('dashboard')).toEqual([
      'update dashboard desired=0',
      'describe dashboard running=0',
      'SwapPostgres',
      'update dashboard desired=1',
      'describe dashboard running=1',
      'Notify',
    ])
    expect(await liveDatabases()).toEqual([database, `${database}__lsb_previous`])
  })

  it('fails Quiesce after the deadline when a service never drains: writers restarted, Slack names Quiesce, live database untouched', async () => {
    // Prepare: no previous copy from the first test must mislead the check below
    const admin = new pg.Client({ connectionString: pgUrl.replace(/\/[^/]+$/, '/postgres') })
    await admin.connect()
    await admin.query(`DROP DATABASE IF EXISTS "${database}__lsb_previous"`)
    await admin.end()
    // a row written after the backup: a swap would replace the database with one without it
    const live = new pg.Client({ connectionString: pgUrl })
    await live.connect()
    await live.query(
      'CREATE TABLE written_after_backup (id int); INSERT INTO written_after_backup VALUES (1)',
    )
    await live.end()
    const ecs = fakeEcs({ api: { stop: Number.POSITIVE_INFINITY } })
    withTiming(3)
    slack.messages.length = 0
    const started = Date.now()
    // Act
    const run = runStateMachine(
      'restore',
      { postgres: 'latest' },
      {
        nativeHandlers: ecs.handlers,
        beforeTask: ecs.beforeTask,
      },
    )
    // Assess
    await expect(run).rejects.toMatchObject({ error: 'QuiesceTimeout' })
    expect(Date.now() - started).toBeLessThan(30_000)
    expect(ecs.events.filter((e) => e.startsWith('describe api'))).toEqual([
      'describe api running=2',
      'describe api running=2',
      'describe api running=2',
    ])
    expect(ecs.events).not.toContain('SwapPostgres')
    expect(ecs.events.slice(-3).sort()).toEqual([
      'NotifyFailure',
      'update api desired=2',
      'update dashboard desired=1',
    ])
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toContain('restore failed in Quiesce: QuiesceTimeout')
    expect(slack.messages[0]!.raw).toContain(
      'ECS service api in cluster langsight still runs 2 task(s) 3 s after its desired count was set to 0',
    )
    // the load waits in staging; the live database is the one written after the backup
    expect(await liveDatabases()).toEqual([database, `${database}__lsb_restoring`])
    const after = new pg.Client({ connectionString: pgUrl })
    await after.connect()
    expect((await after.query('SELECT id FROM written_after_backup')).rows).toEqual([{ id: 1 }])
    await after.end()
  })

  it('fails Resume after the deadline when a service does not come back, and Slack names Resume', async () => {
    const ecs = fakeEcs({ dashboard: { start: Number.POSITIVE_INFINITY } })
    withTiming(2)
    slack.messages.length = 0
    const run = runStateMachine(
      'restore',
      { postgres: 'latest' },
      {
        nativeHandlers: ecs.handlers,
        beforeTask: ecs.beforeTask,
      },
    )
    await expect(run).rejects.toMatchObject({ error: 'ResumeTimeout' })
    expect(ecs.events.filter((e) => e.startsWith('describe dashboard')).slice(-2)).toEqual([
      'describe dashboard running=0',
      'describe dashboard running=0',
    ])
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toContain('restore failed in Resume: ResumeTimeout')
    expect(slack.messages[0]!.raw).toContain(
      'ECS service dashboard in cluster langsight runs 0 of 1 task(s) 2 s',
    )
  })
})
