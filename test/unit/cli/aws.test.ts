import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation'
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  GetExecutionHistoryCommand,
  type GetExecutionHistoryCommandInput,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn'
import { mockClient } from 'aws-sdk-client-mock'
import { afterEach, describe, expect, it } from 'vitest'
import {
  describe as describeExecution,
  type ExecutionEvent,
  followExecution,
} from '#cli/aws/followExecution.ts'
import { resolveStateMachineArn } from '#cli/aws/resolveStateMachineArn.ts'
import { executionNameFor, startExecution } from '#cli/aws/startExecution.ts'
import { ConfigError, UntrustedInputError } from '#core/errors.ts'

const sfn = mockClient(SFNClient)
const cloudFormation = mockClient(CloudFormationClient)
afterEach(() => {
  sfn.reset()
  cloudFormation.reset()
})

const MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:langsight-backup-prod-restore'
const execution = (name: string) =>
  `arn:aws:states:eu-west-1:123456789012:execution:langsight-backup-prod-restore:${name}`

/** A history event as Step Functions returns it. */
function event(
  id: number,
  previousEventId: number,
  type: string,
  details: Partial<HistoryEvent> = {},
): HistoryEvent {
  return {
    id,
    previousEventId,
    type: type as HistoryEvent['type'],
    timestamp: new Date(1_800_000_000_000 + id * 1000),
    ...details,
  }
}
const entered = (id: number, prev: number, type: string, name: string) =>
  event(id, prev, `${type}StateEntered`, { stateEnteredEventDetails: { name } })
const exited = (id: number, prev: number, type: string, name: string) =>
  event(id, prev, `${type}StateExited`, { stateExitedEventDetails: { name } })

/**
 * A restore that fails in a Map iteration after a retry, as GetExecutionHistory records it: two
 * interleaved VerifyObject iterations, one retried then failed with a cause holding a password.
 */
const FAILED_RESTORE: HistoryEvent[] = [
  event(1, 0, 'ExecutionStarted'),
  entered(2, 1, 'Task', 'ResolveBackup'),
  event(3, 2, 'LambdaFunctionScheduled'),
  event(4, 3, 'LambdaFunctionStarted'),
  event(5, 4, 'LambdaFunctionSucceeded'),
  exited(6, 5, 'Task', 'ResolveBackup'),
  entered(7, 6, 'Map', 'VerifyChecksums'),
  event(8, 7, 'MapStateStarted'),
  event(9, 8, 'MapIterationStarted', {
    mapIterationStartedEventDetails: { name: 'VerifyChecksums', index: 0 },
  }),
  event(10, 8, 'MapIterationStarted', {
    mapIterationStartedEventDetails: { name: 'VerifyChecksums', index: 1 },
  }),
  entered(11, 9, 'Task', 'VerifyObject'),
  entered(12, 10, 'Task', 'VerifyObject'),
  event(13, 11, 'LambdaFunctionScheduled'),
  event(14, 12, 'LambdaFunctionScheduled'),
  event(15, 14, 'LambdaFunctionFailed', {
    lambdaFunctionFailedEventDetails: { error: 'TransientError', cause: 'ECONNRESET' },
  }),
  event(16, 15, 'LambdaFunctionScheduled'),
  event(17, 13, 'LambdaFunctionSucceeded'),
  exited(18, 17, 'Task', 'VerifyObject'),
  event(19, 18, 'MapIterationSucceeded', {
    mapIterationSucceededEventDetails: { name: 'VerifyChecksums', index: 0 },
  }),
  event(20, 16, 'LambdaFunctionFailed', {
    lambdaFunctionFailedEventDetails: {
      error: 'ChecksumMismatchError',
      cause:
        'postgres/x/postgres.dump: sha256 differs (read via postgres://langsight:hunter2-Secret@db:5432/langsight)',
    },
  }),
  event(21, 20, 'MapIterationFailed', {
    mapIterationFailedEventDetails: { name: 'VerifyChecksums', index: 1 },
  }),
  event(22, 21, 'MapStateFailed'),
  entered(23, 22, 'Pass', 'VerifyChecksumsFailed'),
  exited(24, 23, 'Pass', 'VerifyChecksumsFailed'),
  entered(25, 24, 'Task', 'NotifyFailure'),
  event(26, 25, 'LambdaFunctionScheduled'),
  event(27, 26, 'LambdaFunctionSucceeded'),
  exited(28, 27, 'Task', 'NotifyFailure'),
  entered(29, 28, 'Fail', 'Failed'),
  event(30, 29, 'ExecutionFailed', {
    executionFailedEventDetails: {
      error: 'ChecksumMismatchError',
      cause:
        'postgres/x/postgres.dump: sha256 differs (read via postgres://langsight:hunter2-Secret@db:5432/langsight)',
    },
  }),
]

/**
 * Serves a history that grows: each new poll (a request without nextToken) sees the next length
 * of `reveal`; pages hold at most `pageSize` events, newest first when asked in reverse.
 */
function growingHistory(events: HistoryEvent[], reveal: number[], pageSize: number) {
  let polls = 0
  let visible = 0
  const requests: GetExecutionHistoryCommandInput[] = []
  sfn.on(GetExecutionHistoryCommand).callsFake((input: GetExecutionHistoryCommandInput) => {
    requests.push(input)
    if (!input.nextToken) visible = reveal[Math.min(polls++, reveal.length - 1)]!
    const ordered = input.reverseOrder ? events.slice(0, visible).reverse() : events.slice(0, visible)
    const start = Number(input.nextToken ?? 0)
    const size = Math.min(pageSize, input.maxResults ?? 1000)
    const end = start + size
    return { events: ordered.slice(start, end), nextToken: end < ordered.length ? String(end) : undefined }
  })
  return { requests, polls: () => polls }
}

describe('Function: startExecution', () => {
  it('makes a second start of the same input harmless: the existing execution comes back', async () => {
    // Prepare: the first start creates the execution; the second finds its name taken
    const input = { postgres: 'latest', clickhouse: null, targets: { postgresDatabase: 'drill' } }
    const sameInputReordered = {
      targets: { postgresDatabase: 'drill' },
      clickhouse: null,
      postgres: 'latest',
    }
    const startDate = new Date('2026-11-25T15:11:02Z')
    sfn
      .on(StartExecutionCommand)
      .resolvesOnce({ executionArn: execution('first'), startDate })
      .rejectsOnce(new ExecutionAlreadyExists({ message: 'Execution Already Exists', $metadata: {} }))
    sfn.on(DescribeExecutionCommand).callsFake(({ executionArn }) => ({
      executionArn,
      status: 'SUCCEEDED',
      startDate,
      input: JSON.stringify(input),
    }))
    // Act
    const first = await startExecution({
      stateMachineArn: MACHINE,
      input,
      now: new Date('2026-11-25T15:11:00Z'),
    })
    const second = await startExecution({
      stateMachineArn: MACHINE,
      input: sameInputReordered,
      now: new Date('2026-11-25T15:19:59Z'),
    })
    // Assess
    const starts = sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input)
    expect(starts[0]!.name).toBe(starts[1]!.name)
    expect(first.name).toMatch(/^lsb-20261125T1510Z-[0-9a-f]{16}$/)
    expect(JSON.parse(starts[0]!.input!)).toEqual(input)
    expect(first).toMatchObject({ alreadyStarted: false, executionArn: execution('first') })
    expect(second).toEqual({
      executionArn: execution(first.name),
      name: first.name,
      startDate,
      alreadyStarted: true,
      status: 'SUCCEEDED',
    })
  })

  it('refuses a taken name whose execution had different input', async () => {
    // Prepare
    sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', $metadata: {} }))
    sfn
      .on(DescribeExecutionCommand)
      .resolves({ status: 'RUNNING', input: '{"postgres":"20261101T020000.000Z"}' })
    // Act
    const start = startExecution({ stateMachineArn: MACHINE, input: { postgres: 'latest' }, name: 'drill-1' })
    // Assess
    await expect(start).rejects.toThrow(UntrustedInputError)
    await expect(start).rejects.toThrow(/drill-1 is already used by an execution with different input/)
  })

  it('names executions by input and time bucket: another input or the next bucket is a new execution', () => {
    // Prepare
    const at = new Date('2026-11-25T15:19:59.999Z')
    // Act
    const names = [
      executionNameFor({ engines: ['postgres'] }, { now: at }),
      executionNameFor({ engines: ['clickhouse'] }, { now: at }),
      executionNameFor({ engines: ['postgres'] }, { now: new Date('2026-11-25T15:20:00Z') }),
    ]
    // Assess
    expect(new Set(names).size).toBe(3)
    for (const name of names) expect(name).toMatch(/^[A-Za-z0-9_-]{1,80}$/)
  })

  it('passes other errors through and refuses a malformed ARN before calling AWS', async () => {
    // Prepare
    sfn
      .on(StartExecutionCommand)
      .rejects(Object.assign(new Error('no such machine'), { name: 'StateMachineDoesNotExist' }))
    // Act + Assess
    await expect(startExecution({ stateMachineArn: MACHINE, input: {} })).rejects.toThrow('no such machine')
    await expect(startExecution({ stateMachineArn: 'langsight-restore', input: {} })).rejects.toThrow(
      ConfigError,
    )
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1)
  })
})

describe('Function: followExecution', () => {
  it('reports each state as the history grows and ends with the failure, its cause redacted', async () => {
    // Prepare: three polls see 6, 19, then all 30 events
    growingHistory(FAILED_RESTORE, [6, 19, 30], 500)
    sfn.on(DescribeExecutionCommand).resolves({
      executionArn: execution('x'),
      status: 'FAILED',
      error: FAILED_RESTORE[29]!.executionFailedEventDetails!.error,
      cause: FAILED_RESTORE[29]!.executionFailedEventDetails!.cause,
    })
    const seen: ExecutionEvent[] = []
    // Act
    const result = await followExecution(execution('x'), (e) => seen.push(e), { pollMs: 1 })
    // Assess
    const brief = seen.map((e) =>
      [e.type, e.state, e.iteration && `#${e.iteration.index}`, e.attempt && `attempt ${e.attempt}`, e.error]
        .filter(Boolean)
        .join(' '),
    )
    expect(brief).toEqual([
      'ExecutionStarted',
      'StateEntered ResolveBackup',
      'StateExited ResolveBackup',
      'StateEntered VerifyChecksums',
      'MapIterationStarted VerifyChecksums #0',
      'MapIterationStarted VerifyChecksums #1',
      'StateEntered VerifyObject #0',
      'StateEntered VerifyObject #1',
      'StateFailed VerifyObject #1 TransientError',
      'StateRetried VerifyObject #1 attempt 2',
      'StateExited VerifyObject #0',
      'MapIterationSucceeded VerifyChecksums #0',
      'StateFailed VerifyObject #1 ChecksumMismatchError',
      'MapIterationFailed VerifyChecksums #1',
      'StateFailed VerifyChecksums',
      'StateEntered VerifyChecksumsFailed',
      'StateExited VerifyChecksumsFailed',
      'StateEntered NotifyFailure',
      'StateExited NotifyFailure',
      'StateEntered Failed',
      'ExecutionFailed ChecksumMismatchError',
    ])
    expect(result).toEqual({
      executionArn: execution('x'),
      status: 'FAILED',
      error: 'ChecksumMismatchError',
      cause: expect.stringContaining('postgres/x/postgres.dump: sha256 differs'),
    })
    expect(JSON.stringify([result, seen])).not.toContain('hunter2-Secret')
  })

  it('pages through a long history, newest first, and reports every event exactly once in order', async () => {
    // Prepare: 40 Map iterations (242 events) served in pages of 7, appearing over four polls
    const events: HistoryEvent[] = [event(1, 0, 'ExecutionStarted'), entered(2, 1, 'Map', 'ExportTables')]
    for (let index = 0; index < 40; index++) {
      const base = events.length
      events.push(
        event(base + 1, 2, 'MapIterationStarted', {
          mapIterationStartedEventDetails: { name: 'ExportTables', index },
        }),
        entered(base + 2, base + 1, 'Task', 'ExportTable'),
        event(base + 3, base + 2, 'LambdaFunctionScheduled'),
        event(base + 4, base + 3, 'LambdaFunctionSucceeded'),
        exited(base + 5, base + 4, 'Task', 'ExportTable'),
        event(base + 6, base + 5, 'MapIterationSucceeded', {
          mapIterationSucceededEventDetails: { name: 'ExportTables', index },
        }),
      )
    }
    const n = events.length
    events.push(exited(n + 1, n, 'Map', 'ExportTables'), event(n + 2, n + 1, 'ExecutionSucceeded'))
    const history = growingHistory(events, [1, 50, 51, events.length], 7)
    sfn
      .on(DescribeExecutionCommand)
      .resolves({ executionArn: execution('y'), status: 'SUCCEEDED', output: '{"backups":[]}' })
    const seen: ExecutionEvent[] = []
    // Act
    const result = await followExecution(execution('y'), (e) => seen.push(e), { pollMs: 1 })
    // Assess
    const ids = seen.map((e) => e.id)
    expect(ids).toEqual([...ids].sort((a, b) => a - b))
    expect(new Set(ids).size).toBe(ids.length)
    expect(
      seen
        .filter((e) => e.type === 'StateExited' && e.state === 'ExportTable')
        .map((e) => e.iteration?.index),
    ).toEqual(Array.from({ length: 40 }, (_, i) => i))
    expect(seen.at(-1)?.type).toBe('ExecutionSucceeded')
    expect(result).toEqual({ executionArn: execution('y'), status: 'SUCCEEDED', output: { backups: [] } })
    expect(history.polls()).toBe(4)
    expect(history.requests.every((r) => r.reverseOrder === true)).toBe(true)
    // Later polls stop paging once they reach events already seen: far fewer than 4 full reads.
    expect(history.requests.length).toBeLessThan(2 * Math.ceil(events.length / 7))
  })

  it('stops when its signal aborts, without waiting for the end', async () => {
    // Prepare: an execution that never ends
    growingHistory(FAILED_RESTORE.slice(0, 6), [6], 500)
    const controller = new AbortController()
    // Act
    const following = followExecution(execution('z'), () => controller.abort(), {
      pollMs: 60_000,
      signal: controller.signal,
    })
    // Assess
    await expect(following).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('Function: describe', () => {
  it('tells a running execution’s current state, and a failed one’s redacted cause', async () => {
    // Prepare
    sfn
      .on(DescribeExecutionCommand, { executionArn: execution('running') })
      .resolves({
        executionArn: execution('running'),
        stateMachineArn: MACHINE,
        name: 'running',
        status: 'RUNNING',
        startDate: new Date('2026-11-25T15:11:02Z'),
        input: '{"postgres":"latest"}',
      })
      .on(DescribeExecutionCommand, { executionArn: execution('failed') })
      .resolves({
        executionArn: execution('failed'),
        stateMachineArn: MACHINE,
        name: 'failed',
        status: 'FAILED',
        startDate: new Date('2026-11-25T15:11:02Z'),
        stopDate: new Date('2026-11-25T15:12:02Z'),
        input: '{"postgres":"latest"}',
        error: 'PgRestoreError',
        cause: 'pg_restore: connection to postgres://app:pa55-word-x@db/app failed',
      })
    growingHistory(FAILED_RESTORE.slice(0, 12), [12], 500)
    // Act
    const running = await describeExecution(execution('running'))
    const failed = await describeExecution(execution('failed'))
    // Assess
    expect(running).toMatchObject({
      status: 'RUNNING',
      currentState: 'VerifyObject',
      input: { postgres: 'latest' },
    })
    expect(failed).toMatchObject({ status: 'FAILED', error: 'PgRestoreError' })
    expect(failed.currentState).toBeUndefined()
    expect(failed.cause).toContain('postgres://app:***@db/app')
    expect(failed.cause).not.toContain('pa55-word-x')
  })
})

describe('Function: resolveStateMachineArn', () => {
  it('takes the flag first, then the environment variable, then the stack outputs', async () => {
    // Prepare
    const fromEnv = MACHINE.replace('-restore', '-restore-env')
    cloudFormation.on(DescribeStacksCommand, { StackName: 'langsight-backup-prod' }).resolves({
      Stacks: [
        {
          StackName: 'langsight-backup-prod',
          CreationTime: new Date(),
          StackStatus: 'UPDATE_COMPLETE',
          Outputs: [
            { OutputKey: 'BackupStateMachineArn', OutputValue: MACHINE.replace('-restore', '-backup') },
            { OutputKey: 'RestoreStateMachineArn', OutputValue: MACHINE },
          ],
        },
      ],
    })
    const env = { LSB_RESTORE_STATE_MACHINE_ARN: fromEnv, LSB_STACK_NAME: 'langsight-backup-prod' }
    // Act
    const flag = await resolveStateMachineArn('restore', { flag: MACHINE.replace('-restore', '-flag'), env })
    const variable = await resolveStateMachineArn('restore', { env })
    const stack = await resolveStateMachineArn('backup', { env })
    // Assess
    expect(flag).toBe(MACHINE.replace('-restore', '-flag'))
    expect(variable).toBe(fromEnv)
    expect(stack).toBe(MACHINE.replace('-restore', '-backup'))
    expect(cloudFormation.commandCalls(DescribeStacksCommand)).toHaveLength(1)
  })

  it('says how to name the machine when nothing does, and what is missing when the stack lacks it', async () => {
    // Prepare
    cloudFormation.on(DescribeStacksCommand).resolves({
      Stacks: [{ StackName: 'other', CreationTime: new Date(), StackStatus: 'CREATE_COMPLETE', Outputs: [] }],
    })
    // Act + Assess
    await expect(resolveStateMachineArn('restore', { env: {} })).rejects.toThrow(
      /--state-machine-arn, set LSB_RESTORE_STATE_MACHINE_ARN, or set LSB_STACK_NAME/,
    )
    await expect(resolveStateMachineArn('restore', { env: {}, stackName: 'other' })).rejects.toThrow(
      /stack other has no output RestoreStateMachineArn/,
    )
    await expect(
      resolveStateMachineArn('backup', { env: { LSB_BACKUP_STATE_MACHINE_ARN: 'backup' } }),
    ).rejects.toThrow(ConfigError)
  })
})
