import { setProgressSink } from '#core/progress.ts'
import { executionProgress } from '../progress.ts'
import type { MachineName } from './runStateMachine.ts'

export interface RunLocalOptions {
  /** Structured logs share the terminal: progress lines are then printed, never redrawn in place. */
  verbose?: boolean
}

/** Runs a state machine here with live progress on stderr (the runner is loaded only for --local). */
export async function runLocal(
  machine: MachineName,
  input: Record<string, unknown>,
  options: RunLocalOptions = {},
) {
  const { runStateMachine, loadDefinition } = await import('./runStateMachine.ts')
  const progress = executionProgress({
    definition: loadDefinition(machine),
    live: Boolean(process.stderr.isTTY) && !options.verbose,
  })
  setProgressSink(progress.onProgress)
  try {
    return await runStateMachine(machine, input, { onEvent: progress.onEvent })
  } finally {
    progress.done()
    setProgressSink(undefined)
  }
}
