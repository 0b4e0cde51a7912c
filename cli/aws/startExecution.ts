/** Starting a deployed state machine under a name derived from its input: a double start is recognised. */
import { createHash } from 'node:crypto'
import { DescribeExecutionCommand, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn'
import { ConfigError, UntrustedInputError } from '#core/errors.ts'
import { STATE_MACHINE_ARN } from '#core/names.ts'
import { clientFor, parseJson } from './client.ts'

/** JSON with object keys sorted, so that the same input always has the same text and hash. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

/**
 * An execution name for `input` started at `now`: `<prefix>-<UTC time bucket>-<hash of the input>`.
 * The same input within the same bucket gets the same name, so a second start is recognised.
 */
export function executionNameFor(
  input: unknown,
  options: { now?: Date; bucketMinutes?: number; prefix?: string } = {},
): string {
  const { now = new Date(), bucketMinutes = 10, prefix = 'lsb' } = options
  const bucketMs = bucketMinutes * 60_000
  const bucket = new Date(Math.floor(now.getTime() / bucketMs) * bucketMs).toISOString() // 2026-11-25T15:10:00.000Z
  const stamp = `${bucket.slice(0, 10).replaceAll('-', '')}T${bucket.slice(11, 16).replace(':', '')}Z`
  const hash = createHash('sha256').update(canonicalJson(input)).digest('hex').slice(0, 16)
  return `${prefix}-${stamp}-${hash}`
}

/** The ARN of execution `name` of a state machine. */
export function executionArnFor(stateMachineArn: string, name: string): string {
  const m = STATE_MACHINE_ARN.exec(stateMachineArn)
  if (!m) throw new ConfigError(`not a state machine ARN: ${stateMachineArn}`)
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`
}

export interface StartOptions {
  stateMachineArn: string
  input: unknown
  /** An explicit name (a deliberate re-run); default {@link executionNameFor} of the input. */
  name?: string
  now?: Date
  bucketMinutes?: number
  client?: SFNClient
}

export interface StartedExecution {
  executionArn: string
  name: string
  startDate: Date
  /** True when an execution with this name and input existed: nothing new was started. */
  alreadyStarted: boolean
  /** Status of the existing execution when `alreadyStarted` (RUNNING, SUCCEEDED, FAILED, …). */
  status?: string
}

/**
 * Starts an execution whose name is derived from its input and a time bucket, so an accidental
 * second start is harmless: Step Functions answers a same-name start of a running execution with
 * that execution, and of a finished one with ExecutionAlreadyExists, which is turned into the
 * existing execution when its input is the same. The same name with another input is refused.
 */
export async function startExecution(options: StartOptions): Promise<StartedExecution> {
  const { stateMachineArn, input } = options
  if (!STATE_MACHINE_ARN.test(stateMachineArn))
    throw new ConfigError(`not a state machine ARN: ${stateMachineArn}`)
  const client = options.client ?? clientFor(stateMachineArn)
  const name =
    options.name ?? executionNameFor(input, { now: options.now, bucketMinutes: options.bucketMinutes })
  const text = JSON.stringify(input)
  try {
    const started = await client.send(new StartExecutionCommand({ stateMachineArn, name, input: text }))
    return { executionArn: started.executionArn!, name, startDate: started.startDate!, alreadyStarted: false }
  } catch (error) {
    if ((error as Error).name !== 'ExecutionAlreadyExists') throw error
    const executionArn = executionArnFor(stateMachineArn, name)
    const existing = await client.send(new DescribeExecutionCommand({ executionArn }))
    if (canonicalJson(parseJson(existing.input)) !== canonicalJson(input)) {
      throw new UntrustedInputError(
        `execution name ${name} is already used by an execution with different input (${executionArn})`,
      )
    }
    return {
      executionArn,
      name,
      startDate: existing.startDate!,
      alreadyStarted: true,
      status: existing.status,
    }
  }
}

/** What {@link followExecution} reports, one per history event that says something to a person. */
