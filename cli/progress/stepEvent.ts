/**
 * One shape for what an execution reports, whether it runs here (aws-local-stepfunctions' event
 * log) or on AWS (its history, read by followExecution): the progress display reads only this.
 */
import type { ExecutionEvent } from '#cli/aws/followExecution.ts'
import type { EventLog } from '#cli/local/runStateMachine.ts'

export interface StepEvent {
  /** The state and Map-iteration events of an execution (its own start and end are not steps). */
  type: Exclude<ExecutionEvent['type'], `Execution${string}`>
  /** The state; for MapIteration* events, the Map. */
  state: string
  /** Task, Map, Parallel, Choice, … when known. */
  stateType?: string
  /** Epoch milliseconds. */
  at: number
  /**
   * Set inside a Map iteration (and on MapIteration* events): its index, and its Map when the
   * source says (the local event log does not: the definition tells).
   */
  iteration?: { map?: string; index: number }
  input?: unknown
  output?: unknown
  /** StateRetried: 1 for the first retry. */
  retry?: number
  /** StateFailed: the error name (the history of a failed Map or Parallel state has none). */
  error?: string
}

/** An aws-local-stepfunctions event, or undefined for those the display does not use. */
export function fromEventLog(event: EventLog): StepEvent | undefined {
  const at = event.timestamp
  switch (event.type) {
    case 'StateEntered':
    case 'StateExited':
    case 'StateFailed':
    case 'StateRetried': {
      const { name, type, input, output } = event.state
      const step: StepEvent = { type: event.type, state: name, stateType: type, at, input, output }
      if (event.index !== undefined) step.iteration = { index: event.index }
      if (event.type === 'StateRetried') step.retry = event.retry.attempt
      if (event.type === 'StateFailed') step.error = event.Error
      return step
    }
    case 'MapIterationStarted':
    case 'MapIterationSucceeded':
    case 'MapIterationFailed': {
      const map = event.parentState.name
      return { type: event.type, state: map, stateType: 'Map', at, iteration: { map, index: event.index } }
    }
    default:
      return undefined
  }
}

/** A history event as followExecution reports it, or undefined for those the display does not use. */
export function fromExecutionEvent(event: ExecutionEvent): StepEvent | undefined {
  if (event.state === undefined) return undefined
  const step: StepEvent = { type: 'StateEntered', state: event.state, at: event.at.getTime() }
  if (event.stateType) step.stateType = event.stateType
  if (event.iteration) step.iteration = event.iteration
  if (event.input !== undefined) step.input = event.input
  if (event.output !== undefined) step.output = event.output
  switch (event.type) {
    case 'StateEntered':
    case 'StateExited':
    case 'MapIterationStarted':
    case 'MapIterationSucceeded':
    case 'MapIterationFailed':
      return { ...step, type: event.type }
    case 'StateRetried':
      // the history counts attempts: the second is the first retry
      return { ...step, type: 'StateRetried', retry: (event.attempt ?? 2) - 1 }
    case 'StateFailed':
      return event.error === undefined
        ? { ...step, type: 'StateFailed' }
        : { ...step, type: 'StateFailed', error: event.error }
    default:
      return undefined
  }
}
