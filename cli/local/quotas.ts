/**
 * Step Functions' quotas, enforced on local runs (runStateMachine.ts): what passes locally would
 * pass on AWS. Payload sizes and history events are read from the execution's event log.
 */
import type { StateMachine } from 'aws-local-stepfunctions'

/** An execution event (the library declares the type but does not export it). */
export type EventLog =
  ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never

/**
 * Step Functions' quotas for Standard workflows (docs.aws.amazon.com/step-functions/latest/dg/limits.html):
 * "Maximum input or output size for a task, state, or execution: 262,144 bytes of data as a UTF-8
 * encoded string" and "Maximum execution history size: 25,000 events".
 */
export const PAYLOAD_LIMIT_BYTES = 262_144
export const HISTORY_EVENT_LIMIT = 25_000

/**
 * A Step Functions quota breach, with the error name AWS reports.
 *
 * AWS documents States.DataLimitExceeded as "a terminal error that can't be caught by the
 * States.ALL error type" (Error handling in Step Functions, docs.aws.amazon.com/step-functions/
 * latest/dg/concepts-error-handling.html); the history quota fails the execution outright
 * (bp-history-limit.html). aws-local-stepfunctions skips every Retry and Catch for an error whose
 * isRetryable/isCatchable are false (as for its own States.Runtime): it cannot tell States.ALL from
 * a catcher naming the error, so neither catches here. That errs on the failing side: a run that
 * passes locally never relies on catching a quota breach, which AWS does not promise to allow.
 */
export class QuotaExceeded extends Error {
  constructor(name: 'States.DataLimitExceeded' | 'States.Runtime', message: string) {
    super(message)
    this.name = name
  }
  get isRetryable(): boolean {
    return false
  }
  get isCatchable(): boolean {
    return false
  }
}

/**
 * History events AWS writes for each event the library logs (Standard workflow, as in
 * GetExecutionHistory): a Lambda Task is TaskStateEntered, LambdaFunctionScheduled,
 * LambdaFunctionStarted, LambdaFunctionSucceeded|Failed, TaskStateExited (each retry schedules and
 * starts again); Map and Parallel add MapStateStarted|ParallelStateStarted and
 * …Succeeded|Failed; each inline Map iteration adds MapIterationStarted and
 * MapIterationSucceeded|Failed; Parallel branches add none; a Fail state only FailStateEntered.
 * So an inline Map over N items running one Task costs 4 + 7·N. Approximate: a caught Task counts
 * one event too many, and the MapIterationAborted events of a Map already failing are left out.
 */
function historyEventsOf(event: EventLog): number {
  const type = 'state' in event ? event.state.type : undefined
  const startsWork = type === 'Task' || type === 'Map' || type === 'Parallel'
  switch (event.type) {
    case 'StateEntered':
      return type === 'Task' ? 3 : startsWork ? 2 : 1
    case 'StateExited':
      return startsWork ? 2 : 1
    case 'StateRetried':
      return type === 'Task' ? 2 : 1
    case 'StateFailed':
      return type === 'Fail' ? 0 : 1
    case 'StateCaught':
    case 'ParallelBranchStarted':
    case 'ParallelBranchSucceeded':
    case 'ParallelBranchFailed':
      return 0
    default:
      return 1
  }
}

export const TERMINAL = new Set<EventLog['type']>([
  'ExecutionSucceeded',
  'ExecutionFailed',
  'ExecutionAborted',
  'ExecutionTimeout',
])

const bytes = (n: number) => n.toLocaleString('en-US')

/**
 * Enforces the payload and history quotas of one execution. Task inputs and results are checked
 * in the Task's own call, so the state fails exactly as on AWS; everything else (state inputs and
 * outputs after ResultSelector/ResultPath/OutputPath, Map iterations, Parallel branches, the
 * history count) is only visible in the event log, which the library emits asynchronously: a
 * breach seen there aborts the execution, and every Task first lets the log catch up, so no Task
 * runs after a breach it would not have outlived on AWS.
 */
export class Quotas {
  breach: QuotaExceeded | undefined
  private events = 0

  constructor(
    private readonly payloadLimit: number,
    private readonly historyLimit: number,
    private readonly onBreach: () => void,
  ) {}

  private record(error: QuotaExceeded, abort: boolean): QuotaExceeded {
    if (!this.breach) {
      this.breach = error
      if (abort) this.onBreach()
    }
    return this.breach
  }

  private oversize(what: string, value: unknown): QuotaExceeded | undefined {
    const size = Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8')
    if (size <= this.payloadLimit) return undefined
    const limit =
      this.payloadLimit === PAYLOAD_LIMIT_BYTES
        ? `Step Functions' ${bytes(PAYLOAD_LIMIT_BYTES)}-byte limit`
        : `the ${bytes(this.payloadLimit)}-byte limit (payloadLimitBytes)`
    return new QuotaExceeded('States.DataLimitExceeded', `${what} is ${bytes(size)} bytes, over ${limit}`)
  }

  /** In a Task's call: throws, failing the state, when the payload is over the limit. */
  check(what: string, value: unknown): void {
    const error = this.oversize(what, value)
    if (error) throw this.record(error, false)
  }

  /** In a Task's call, before it runs: throws the breach the event log has seen, if any. */
  async gate(): Promise<void> {
    // The log's consumer runs on microtasks; one macrotask turn lets it see every event so far.
    await new Promise((resolve) => setImmediate(resolve))
    if (this.breach) throw this.breach
  }

  /** Each event of the log, in order. */
  observe(event: EventLog): void {
    if (this.breach) return
    const error = this.payloadOf(event) ?? this.historyOf(event)
    if (error) this.record(error, true)
  }

  private payloadOf(event: EventLog): QuotaExceeded | undefined {
    // Iteration and branch events carry their sub-execution's input or output.
    const io = event as { input?: unknown; output?: unknown }
    switch (event.type) {
      case 'ExecutionStarted':
        return this.oversize('execution input', event.input)
      case 'ExecutionSucceeded':
        return this.oversize('execution output', event.output)
      case 'StateEntered':
        return this.oversize(`state ${event.state.name}: input`, event.state.input)
      case 'StateExited':
        return this.oversize(`state ${event.state.name}: output`, event.state.output)
      case 'MapIterationStarted':
        return this.oversize(`state ${event.parentState.name}: iteration ${event.index} input`, io.input)
      case 'MapIterationSucceeded':
        return this.oversize(`state ${event.parentState.name}: iteration ${event.index} output`, io.output)
      case 'ParallelBranchStarted':
        return this.oversize(`state ${event.parentState.name}: branch input`, io.input)
      case 'ParallelBranchSucceeded':
        return this.oversize(`state ${event.parentState.name}: branch output`, io.output)
      default:
        return undefined
    }
  }

  private historyOf(event: EventLog): QuotaExceeded | undefined {
    this.events += historyEventsOf(event)
    // AWS: "If the event number 25,000 is ExecutionSucceeded, the execution finishes successfully";
    // any other event there fails it.
    if (TERMINAL.has(event.type) || this.events < this.historyLimit) return undefined
    const where =
      'state' in event
        ? `state ${event.state.name}`
        : 'parentState' in event
          ? `state ${event.parentState.name}${'index' in event ? ` (iteration ${event.index})` : ''}`
          : 'the execution'
    return new QuotaExceeded(
      'States.Runtime',
      `The execution reached the maximum number of history events (${this.historyLimit}). Counted locally, reached in ${where}.`,
    )
  }
}
