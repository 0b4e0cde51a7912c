import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn'
import { mockClient } from 'aws-sdk-client-mock'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { buildProgram } from '#cli/main.ts'

/** Step Functions cannot run here: the CLI's AWS mode is checked at the SDK boundary. */
const sfn = mockClient(SFNClient)
const machine = 'arn:aws:states:eu-west-1:123456789012:stateMachine:langsight-backup-prod-backup'
const execution = (name: string) => `${machine.replace(':stateMachine:', ':execution:')}:${name}`
let out: string[]
let err: string[]

beforeEach(() => {
  sfn.reset()
  out = []
  err = []
  vi.spyOn(process.stdout, 'write').mockImplementation((c) => out.push(String(c)) > 0)
  vi.spyOn(process.stderr, 'write').mockImplementation((c) => err.push(String(c)) > 0)
})
afterEach(() => vi.restoreAllMocks())

async function cli(...args: string[]) {
  await buildProgram()
    .exitOverride()
    .parseAsync(['node', 'langsight-backup', ...args])
}

describe('CLI: AWS mode', () => {
  it('starts the deployed backup with its input and a name derived from it, and follows it to the output', async () => {
    sfn
      .on(StartExecutionCommand)
      .callsFake((input) => ({ executionArn: execution(input.name), startDate: new Date() }))
    const t = new Date()
    sfn.on(GetExecutionHistoryCommand).resolves({
      events: [
        { id: 1, timestamp: t, type: 'ExecutionStarted' },
        {
          id: 2,
          previousEventId: 1,
          timestamp: t,
          type: 'TaskStateEntered',
          stateEnteredEventDetails: { name: 'SnapshotPostgres' },
        },
        {
          id: 3,
          previousEventId: 2,
          timestamp: t,
          type: 'TaskStateExited',
          stateExitedEventDetails: { name: 'SnapshotPostgres' },
        },
        { id: 4, previousEventId: 3, timestamp: t, type: 'ExecutionSucceeded' },
      ].reverse() as HistoryEvent[],
    })
    sfn.on(DescribeExecutionCommand).callsFake((input) => ({
      executionArn: input.executionArn,
      stateMachineArn: machine,
      name: 'x',
      status: 'SUCCEEDED',
      startDate: t,
      input: '{"engines":["postgres"]}',
      output: JSON.stringify({ backups: [{ engine: 'postgres', backupId: '20261125T020000.000Z' }] }),
    }))
    await cli('backup', '--engine', 'postgres', '--wait', '--json', '--state-machine-arn', machine)
    const start = sfn.commandCalls(StartExecutionCommand)[0]!.args[0].input
    expect(JSON.parse(start.input!)).toEqual({ engines: ['postgres'] })
    expect(start.name).toMatch(/^lsb-\d{8}T\d{4}Z-[0-9a-f]{16}$/)
    expect(err.join('')).toContain('→ SnapshotPostgres')
    expect(JSON.parse(out.join(''))).toEqual({
      backups: [{ engine: 'postgres', backupId: '20261125T020000.000Z' }],
    })
  })

  it('fails with the execution error and cause when the deployed restore fails', async () => {
    sfn
      .on(StartExecutionCommand)
      .callsFake((input) => ({ executionArn: execution(input.name), startDate: new Date() }))
    sfn
      .on(GetExecutionHistoryCommand)
      .resolves({ events: [{ id: 1, timestamp: new Date(), type: 'ExecutionFailed' }] })
    sfn.on(DescribeExecutionCommand).resolves({
      executionArn: execution('x'),
      stateMachineArn: machine,
      name: 'x',
      status: 'FAILED',
      startDate: new Date(),
      error: 'ChecksumMismatchError',
      cause:
        's3://bucket/langsight-backups/clickhouse/20261125T030000.000Z/data/spans/all.native.gz: stored …',
    })
    const run = cli(
      'restore',
      '--clickhouse',
      'latest',
      '--wait',
      '--state-machine-arn',
      machine.replace('backup', 'restore'),
    )
    await expect(run).rejects.toThrow(/restore failed: ChecksumMismatchError: s3:\/\/bucket/)
    const input = JSON.parse(sfn.commandCalls(StartExecutionCommand)[0]!.args[0].input.input!)
    expect(input).toEqual({ postgres: null, clickhouse: 'latest', targets: {}, migrate: 'default' })
  })

  it('says which setting is missing when no state machine is given', async () => {
    const saved = { ...process.env }
    delete process.env.LSB_BACKUP_STATE_MACHINE_ARN
    delete process.env.LSB_STACK_NAME
    await expect(cli('backup')).rejects.toThrow(/LSB_BACKUP_STATE_MACHINE_ARN/)
    process.env = saved
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0)
  })
})
