/**
 * The CLI's AWS mode: start the deployed state machines, follow an execution state by state,
 * and tell where one stands. Everything goes through @aws-sdk/client-sfn; errors and causes
 * read back from Step Functions are redacted before they leave this module.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn'
import { ConfigError, UntrustedInputError } from '#core/errors.ts'
import { EXECUTION_ARN, STATE_MACHINE_ARN } from '#core/names.ts'
import { redact } from '#core/redact.ts'

export type MachineKind = 'backup' | 'restore'

/** Environment variables that name a deployed state machine (the stack outputs say the same). */
export const STATE_MACHINE_ARN_ENV: Record<MachineKind, string> = {
  backup: 'LSB_BACKUP_STATE_MACHINE_ARN',
  restore: 'LSB_RESTORE_STATE_MACHINE_ARN',
}
/** The CloudFormation outputs of serverless.yml that hold the ARNs. */
export const STATE_MACHINE_OUTPUT: Record<MachineKind, string> = {
  backup: 'BackupStateMachineArn',
  restore: 'RestoreStateMachineArn',
}

const clients = new Map<string, SFNClient>()

/** One client per region; the region comes from the ARN, so no AWS_REGION is needed. */
function clientFor(arn: string): SFNClient {
  const region = STATE_MACHINE_ARN.exec(arn)?.[1] ?? EXECUTION_ARN.exec(arn)?.[1]
  const key = region ?? 'default'
  let client = clients.get(key)
  if (!client) {
    client = new SFNClient(region ? { region, maxAttempts: 5 } : { maxAttempts: 5 })
    clients.set(key, client)
  }
  return client
}

/** JSON with object keys sorted, so that the same input always has the same text and hash. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
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
export interface ExecutionEvent {
  type:
    | 'ExecutionStarted'
    | 'StateEntered'
    | 'StateExited'
    | 'StateFailed'
    | 'StateRetried'
    | 'MapIterationStarted'
    | 'MapIterationSucceeded'
    | 'MapIterationFailed'
    | 'ExecutionSucceeded'
    | 'ExecutionFailed'
    | 'ExecutionTimedOut'
    | 'ExecutionAborted'
  /** The history event id (1, 2, …). */
  id: number
  at: Date
  /** The state the event belongs to (for Map iterations: the Map state). */
  state?: string
  /** Task, Map, Choice, Pass, Parallel, Wait, Succeed, Fail — on StateEntered/StateExited. */
  stateType?: string
  /** The innermost Map iteration the event happened in; absent at the top level. */
  iteration?: { map: string; index: number }
  /** 2 for the first retry of a task, 3 for the second, … */
  attempt?: number
  error?: string
  cause?: string
}

export type ExecutionResult =
  | { executionArn: string; status: 'SUCCEEDED'; output: unknown }
  | { executionArn: string; status: 'FAILED' | 'TIMED_OUT' | 'ABORTED'; error: string; cause: string }

const TERMINAL = new Set(['ExecutionSucceeded', 'ExecutionFailed', 'ExecutionTimedOut', 'ExecutionAborted'])
const FAILURE_DETAILS = [
  'lambdaFunctionFailedEventDetails',
  'lambdaFunctionTimedOutEventDetails',
  'lambdaFunctionScheduleFailedEventDetails',
  'lambdaFunctionStartFailedEventDetails',
  'taskFailedEventDetails',
  'taskTimedOutEventDetails',
  'taskStartFailedEventDetails',
  'taskSubmitFailedEventDetails',
  'activityFailedEventDetails',
  'activityTimedOutEventDetails',
  'evaluationFailedEventDetails',
] as const

type Frame = { map: string; index: number }

/**
 * Turns raw history events into {@link ExecutionEvent}s. Map iterations interleave in the history,
 * so each event's state and iteration are found through its `previousEventId` chain.
 */
export class HistoryReader {
  /** Per event id: the Map iterations it is inside, its state, and the StateEntered event it follows. */
  private readonly frames = new Map<number, Frame[]>()
  private readonly stateOf = new Map<number, string>()
  private readonly entries = new Map<number, number>()
  /** Per StateEntered event id: how often that state entry scheduled its work. */
  private readonly attempts = new Map<number, number>()

  read(event: HistoryEvent): ExecutionEvent | undefined {
    const { id = 0, type = '', timestamp } = event
    const prev = event.previousEventId ?? 0
    let frames = this.frames.get(prev) ?? []
    let state = this.stateOf.get(prev)
    const base = { id, at: timestamp ?? new Date(0) }
    let out: ExecutionEvent | undefined

    if (type.endsWith('StateEntered')) {
      state = event.stateEnteredEventDetails?.name ?? '?'
      out = { ...base, type: 'StateEntered', state, stateType: type.slice(0, -'StateEntered'.length) }
    } else if (type.endsWith('StateExited')) {
      out = {
        ...base,
        type: 'StateExited',
        state: event.stateExitedEventDetails?.name ?? state,
        stateType: type.slice(0, -'StateExited'.length),
      }
    } else if (type === 'MapIterationStarted') {
      const { name = '?', index = 0 } = event.mapIterationStartedEventDetails ?? {}
      frames = [...frames, { map: name, index }]
      out = { ...base, type: 'MapIterationStarted', state: name }
    } else if (
      type === 'MapIterationSucceeded' ||
      type === 'MapIterationFailed' ||
      type === 'MapIterationAborted'
    ) {
      const details =
        event.mapIterationSucceededEventDetails ??
        event.mapIterationFailedEventDetails ??
        event.mapIterationAbortedEventDetails
      const { name = '?', index = 0 } = details ?? {}
      const at = frames.findLastIndex((f) => f.map === name && f.index === index)
      const frame = frames[at] ?? { map: name, index }
      frames = at >= 0 ? frames.slice(0, at) : frames
      state = name
      out = {
        ...base,
        type: type === 'MapIterationSucceeded' ? 'MapIterationSucceeded' : 'MapIterationFailed',
        state: name,
        iteration: frame,
      }
    } else if (
      type === 'LambdaFunctionScheduled' ||
      type === 'TaskScheduled' ||
      type === 'ActivityScheduled'
    ) {
      // The same state entry scheduling its work again is a Retry.
      const entry = this.entries.get(prev) ?? 0
      const attempt = (this.attempts.get(entry) ?? 0) + 1
      this.attempts.set(entry, attempt)
      if (attempt > 1) out = { ...base, type: 'StateRetried', state, attempt }
    } else if (type === 'ExecutionStarted') {
      out = { ...base, type: 'ExecutionStarted' }
    } else if (TERMINAL.has(type)) {
      const details =
        event.executionFailedEventDetails ??
        event.executionTimedOutEventDetails ??
        event.executionAbortedEventDetails
      out = { ...base, type: type as ExecutionEvent['type'], ...failureOf(details) }
      frames = []
    } else {
      const details = FAILURE_DETAILS.map((k) => event[k]).find(Boolean)
      if (details || type === 'MapStateFailed' || type === 'ParallelStateFailed') {
        out = { ...base, type: 'StateFailed', state, ...failureOf(details) }
      }
    }

    this.frames.set(id, frames)
    if (state !== undefined) this.stateOf.set(id, state)
    this.entries.set(id, type.endsWith('StateEntered') ? id : (this.entries.get(prev) ?? 0))
    const iteration = frames.at(-1)
    if (out && !out.iteration && iteration && !TERMINAL.has(type)) out.iteration = iteration
    return out
  }
}

function failureOf(details: { error?: string; cause?: string } | undefined): {
  error?: string
  cause?: string
} {
  if (!details) return {}
  return {
    ...(details.error === undefined ? {} : { error: redact(details.error) }),
    ...(details.cause === undefined ? {} : { cause: redact(details.cause) }),
  }
}

/** History events with an id above `afterId`, oldest first, read newest-first so polls stay cheap. */
async function eventsAfter(
  client: SFNClient,
  executionArn: string,
  afterId: number,
): Promise<HistoryEvent[]> {
  const fresh: HistoryEvent[] = []
  let nextToken: string | undefined
  do {
    const page = await client.send(
      new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 500, nextToken }),
    )
    for (const event of page.events ?? []) {
      if ((event.id ?? 0) <= afterId) return fresh.reverse()
      fresh.push(event)
    }
    nextToken = page.nextToken
  } while (nextToken)
  return fresh.reverse()
}

export interface FollowOptions {
  /** Time between two polls of the history (default 2 s). */
  pollMs?: number
  signal?: AbortSignal
  client?: SFNClient
}

/**
 * Follows an execution to its end: polls GetExecutionHistory, reports every state entered,
 * exited, retried or failed through `onEvent` (each event once, in order), and returns the
 * output, or the failure's error and (redacted) cause.
 */
export async function followExecution(
  executionArn: string,
  onEvent: (event: ExecutionEvent) => void,
  options: FollowOptions = {},
): Promise<ExecutionResult> {
  const client = options.client ?? clientFor(executionArn)
  const reader = new HistoryReader()
  let lastId = 0
  for (;;) {
    options.signal?.throwIfAborted()
    let ended = false
    for (const event of await eventsAfter(client, executionArn, lastId)) {
      lastId = event.id ?? lastId
      const reported = reader.read(event)
      if (reported) onEvent(reported)
      if (TERMINAL.has(event.type ?? '')) ended = true
    }
    if (ended) break
    await sleep(options.pollMs ?? 2000, undefined, { signal: options.signal })
  }
  const done = await client.send(new DescribeExecutionCommand({ executionArn }))
  return resultOf(done)
}

function resultOf(d: DescribeExecutionCommandOutput): ExecutionResult {
  const executionArn = d.executionArn!
  if (d.status === 'SUCCEEDED') return { executionArn, status: 'SUCCEEDED', output: parseJson(d.output) }
  if (d.status === 'FAILED' || d.status === 'TIMED_OUT' || d.status === 'ABORTED') {
    return {
      executionArn,
      status: d.status,
      error: redact(d.error ?? d.status),
      cause: redact(d.cause ?? ''),
    }
  }
  throw new ConfigError(`execution ${executionArn} has not ended (status ${d.status})`)
}

export interface ExecutionStatus {
  executionArn: string
  stateMachineArn: string
  name: string
  status: string
  startDate: Date
  stopDate?: Date
  input: unknown
  output?: unknown
  error?: string
  cause?: string
  /** While RUNNING: the state entered most recently. */
  currentState?: string
}

/** Where an execution stands: status, times, input, output or failure, and its current state. */
export async function describe(
  executionArn: string,
  options: { client?: SFNClient } = {},
): Promise<ExecutionStatus> {
  if (!EXECUTION_ARN.test(executionArn)) throw new ConfigError(`not an execution ARN: ${executionArn}`)
  const client = options.client ?? clientFor(executionArn)
  const d = await client.send(new DescribeExecutionCommand({ executionArn }))
  const status: ExecutionStatus = {
    executionArn,
    stateMachineArn: d.stateMachineArn!,
    name: d.name!,
    status: d.status!,
    startDate: d.startDate!,
    input: parseJson(d.input),
  }
  if (d.stopDate) status.stopDate = d.stopDate
  if (d.output !== undefined) status.output = parseJson(d.output)
  if (d.error !== undefined) status.error = redact(d.error)
  if (d.cause !== undefined) status.cause = redact(d.cause)
  if (d.status === 'RUNNING') {
    const page = await client.send(
      new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 50 }),
    )
    const entered = page.events?.find((e) => e.type?.endsWith('StateEntered'))
    if (entered?.stateEnteredEventDetails?.name) status.currentState = entered.stateEnteredEventDetails.name
  }
  return status
}

export interface ResolveArnOptions {
  /** --state-machine-arn */
  flag?: string
  env?: NodeJS.ProcessEnv
  /** The deployed stack (`langsight-backup-<stage>`); default LSB_STACK_NAME. Read with DescribeStacks. */
  stackName?: string
  /** Region of the stack; default the SDK's (AWS_REGION, profile). */
  region?: string
}

/**
 * The ARN of the deployed backup or restore state machine: the flag, else
 * LSB_BACKUP_STATE_MACHINE_ARN / LSB_RESTORE_STATE_MACHINE_ARN, else the stack's outputs.
 */
export async function resolveStateMachineArn(
  kind: MachineKind,
  options: ResolveArnOptions = {},
): Promise<string> {
  const env = options.env ?? process.env
  const variable = STATE_MACHINE_ARN_ENV[kind]
  const given = options.flag || env[variable]
  if (given) {
    if (!STATE_MACHINE_ARN.test(given)) {
      throw new ConfigError(
        `${options.flag ? '--state-machine-arn' : variable} is not a state machine ARN: ${given}`,
      )
    }
    return given
  }
  const stackName = options.stackName || env.LSB_STACK_NAME
  if (!stackName) {
    throw new ConfigError(
      `which ${kind} state machine? pass --state-machine-arn, set ${variable}, or set LSB_STACK_NAME ` +
        `(e.g. langsight-backup-prod) to read it from the stack's outputs`,
    )
  }
  const outputKey = STATE_MACHINE_OUTPUT[kind]
  const outputs = await stackOutputs(stackName, options.region)
  const arn = outputs[outputKey]
  if (!arn)
    throw new ConfigError(
      `stack ${stackName} has no output ${outputKey} (deployed from this serverless.yml?)`,
    )
  return arn
}

/** The outputs of a CloudFormation stack. The client is loaded only when a stack is asked for. */
async function stackOutputs(stackName: string, region?: string): Promise<Record<string, string>> {
  let cloudFormation: typeof import('@aws-sdk/client-cloudformation')
  try {
    cloudFormation = await import('@aws-sdk/client-cloudformation')
  } catch (error) {
    throw new ConfigError(
      'reading stack outputs needs @aws-sdk/client-cloudformation (npm install it), or pass --state-machine-arn',
      { cause: error },
    )
  }
  const client = new cloudFormation.CloudFormationClient(region ? { region } : {})
  try {
    const { Stacks } = await client.send(new cloudFormation.DescribeStacksCommand({ StackName: stackName }))
    return Object.fromEntries(
      (Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']),
    )
  } catch (error) {
    throw new ConfigError(
      `cannot read the outputs of stack ${stackName}: ${redact((error as Error).message)}`,
      {
        cause: error,
      },
    )
  } finally {
    client.destroy()
  }
}
