import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runStateMachine } from '#cli/local/runStateMachine.ts'
import { seedPostgres } from '#devtools/sampleData.ts'
import { settledServices } from '../support/ecsStandIns.ts'
import { createPostgresDatabase, uniquePrefix, useEnv } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'

/**
 * The native integrations of the restore machine (ECS updateService for Quiesce/Resume,
 * ecs:runTask.sync and lambda:invoke for the migration) cannot run here: they are replaced at
 * that boundary by stand-ins that record their input and act on the real database, while the
 * real ASL decides when they run.
 */
let pgUrl: string
let slack: Awaited<ReturnType<typeof startSlackSink>>
const prefix = uniquePrefix('integrations')
const services = [
  { cluster: 'langsight', service: 'api', desiredCount: 2 },
  { cluster: 'langsight', service: 'dashboard', desiredCount: 1 },
]

async function migrateLikeTheApp(database: string) {
  const client = new pg.Client({ connectionString: pgUrl.replace(/\/[^/]+$/, `/${database}`) })
  await client.connect()
  await client.query(`UPDATE alembic_version SET version_num = '0008_feature_flags'`)
  await client.end()
}

function recorder() {
  const calls: { state: string; input: Record<string, unknown> }[] = []
  const record = (state: string) => async (input: unknown) => {
    calls.push({ state, input: input as Record<string, unknown> })
    return {}
  }
  return { calls, record }
}

beforeAll(async () => {
  slack = await startSlackSink()
  pgUrl = (await createPostgresDatabase('sm_native')).url
  await seedPostgres(pgUrl, 0.1)
  useEnv({
    LSB_PREFIX: prefix,
    LSB_POSTGRES_URL: pgUrl,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_CLICKHOUSE_URL: undefined,
  })
  await runStateMachine('backup', { engines: ['postgres'] })
})

afterAll(() => slack?.close())

describe('State machine: restore with native integrations', () => {
  it('stops the writers, migrates through the Lambda integration, checks the head, starts the writers', async () => {
    useEnv({
      LSB_QUIESCE_SERVICES: JSON.stringify(services),
      LSB_QUIESCE_POLL_SECONDS: '1',
      LSB_MIGRATE_STRATEGY: 'lambda',
      LSB_MIGRATE_FUNCTION: 'langsight-migrate',
      LSB_EXPECTED_SCHEMA_HEAD: '0008_feature_flags',
    })
    const { calls, record } = recorder()
    const database = new URL(pgUrl).pathname.slice(1)
    await runStateMachine(
      'restore',
      { postgres: 'latest' },
      {
        nativeHandlers: {
          StopWriters: record('StopWriters'),
          DescribeStoppingWriters: settledServices(services, 0),
          StartWriters: record('StartWriters'),
          DescribeStartingWriters: settledServices(services),
          MigrateWithLambda: async (input) => {
            calls.push({ state: 'MigrateWithLambda', input: input as Record<string, unknown> })
            await migrateLikeTheApp(database)
            return {}
          },
        },
      },
    )
    expect(calls.map((c) => c.state)).toEqual([
      'StopWriters',
      'StopWriters',
      'MigrateWithLambda',
      'StartWriters',
      'StartWriters',
    ])
    const inputs = (state: string) =>
      calls
        .filter((c) => c.state === state)
        .map((c) => c.input)
        .sort((a, b) => String(a.Service).localeCompare(String(b.Service)))
    expect(inputs('StopWriters')).toEqual(
      services.map((s) => ({ Cluster: s.cluster, Service: s.service, DesiredCount: 0 })),
    )
    expect(inputs('StartWriters')).toEqual(
      services.map((s) => ({ Cluster: s.cluster, Service: s.service, DesiredCount: s.desiredCount })),
    )
    expect(calls.find((c) => c.state === 'MigrateWithLambda')!.input).toEqual({
      FunctionName: 'langsight-migrate',
      Payload: { action: 'upgrade', targetDatabase: null },
    })
  })

  it('runs the application image as an ECS task with alembic upgrade head', async () => {
    useEnv({
      LSB_QUIESCE_SERVICES: undefined,
      LSB_MIGRATE_STRATEGY: 'ecs',
      LSB_MIGRATE_FUNCTION: undefined,
      LSB_MIGRATE_ECS_CLUSTER: 'langsight',
      LSB_MIGRATE_ECS_TASK_DEFINITION: 'langsight-api:42',
      LSB_MIGRATE_ECS_SUBNETS: 'subnet-a,subnet-b',
      LSB_MIGRATE_ECS_SECURITY_GROUPS: 'sg-1',
      LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP: 'ENABLED',
      LSB_EXPECTED_SCHEMA_HEAD: '0008_feature_flags',
    })
    const { calls, record } = recorder()
    const database = new URL(pgUrl).pathname.slice(1)
    await runStateMachine(
      'restore',
      { postgres: 'latest' },
      {
        nativeHandlers: {
          MigrateWithEcs: async (input) => {
            await record('MigrateWithEcs')(input)
            await migrateLikeTheApp(database)
            return {}
          },
        },
      },
    )
    expect(calls).toHaveLength(1)
    expect(calls[0]!.input).toMatchObject({
      Cluster: 'langsight',
      TaskDefinition: 'langsight-api:42',
      LaunchType: 'FARGATE',
      NetworkConfiguration: {
        AwsvpcConfiguration: {
          Subnets: ['subnet-a', 'subnet-b'],
          SecurityGroups: ['sg-1'],
          AssignPublicIp: 'ENABLED',
        },
      },
      Overrides: {
        ContainerOverrides: [{ Name: 'api', Command: ['uv', 'run', 'alembic', 'upgrade', 'head'] }],
      },
    })
  })

  it('starts the writers again when the restore fails after they were stopped, and tells Slack', async () => {
    useEnv({
      LSB_QUIESCE_SERVICES: JSON.stringify(services),
      LSB_QUIESCE_POLL_SECONDS: '1',
      LSB_MIGRATE_STRATEGY: 'none',
      LSB_MIGRATE_FUNCTION: undefined,
      LSB_MIGRATE_ECS_TASK_DEFINITION: undefined,
      // set by the ECS case above: with strategy none they would do nothing, a ConfigError everywhere
      LSB_MIGRATE_ECS_SUBNETS: undefined,
      LSB_MIGRATE_ECS_SECURITY_GROUPS: undefined,
      LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP: undefined,
      LSB_EXPECTED_SCHEMA_HEAD: undefined,
    })
    slack.messages.length = 0
    const { calls, record } = recorder()
    // the loaded database loses its completeness mark before the swap: SwapPostgres refuses it,
    // after Quiesce, before any database changed
    const restoring = `${new URL(pgUrl).pathname.slice(1)}__lsb_restoring`
    const run = runStateMachine(
      'restore',
      { postgres: 'latest' },
      {
        nativeHandlers: {
          StopWriters: record('StopWriters'),
          DescribeStoppingWriters: settledServices(services, 0),
          RestartWriters: record('RestartWriters'),
        },
        beforeTask: async (state) => {
          if (state !== 'SwapPostgres') return
          const admin = new pg.Client({ connectionString: pgUrl.replace(/\/[^/]+$/, '/postgres') })
          await admin.connect()
          await admin.query(`COMMENT ON DATABASE "${restoring}" IS NULL`)
          await admin.end()
        },
      },
    )
    await expect(run).rejects.toThrow(/PgRestoreError.*nothing was changed/)
    expect(calls.map((c) => c.state)).toEqual([
      'StopWriters',
      'StopWriters',
      'RestartWriters',
      'RestartWriters',
    ])
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.raw).toContain('SwapPostgres')
    useEnv({ LSB_PG_BIN_DIR: undefined })
  })
})
