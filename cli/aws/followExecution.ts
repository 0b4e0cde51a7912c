/**
 * Following an execution state by state, and telling where one stands. Errors and causes read
 * back from Step Functions are redacted before they leave this module.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  type SFNClient,
} from '@aws-sdk/client-sfn'
import { ConfigError } from '#core/errors.ts'
import { EXECUTION_ARN } from '#core/names.ts'
import { redact } from '#core/redact.ts'
import { clientFor, parseJson } from './client.ts'

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
  /** StateEntered: the state's input; StateExited: its output (parsed JSON; progress counts from them). */
  input?: unknown
  output?: unknown
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
      const input = parseJson(event.stateEnteredEventDetails?.input)
      if (input !== undefined) out.input = input
    } else if (type.endsWith('StateExited')) {
      out = {
        ...base,
        type: 'StateExited',
        state: event.stateExitedEventDetails?.name ?? state,
        stateType: type.slice(0, -'StateExited'.length),
      }
      const output = parseJson(event.stateExitedEventDetails?.output)
      if (output !== undefined) out.output = output
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
