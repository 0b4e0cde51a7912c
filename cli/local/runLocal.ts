import { setProgressSink } from '#core/progress.ts'
import { executionProgress } from '../progress.ts'
import type { MachineName } from './runStateMachine.ts'

/** Runs a state machine here with live progress on stderr (the runner is loaded only for --local). */
export async function runLocal(machine: MachineName, input: Record<string, unknown>) {
  const { runStateMachine } = await import('./runStateMachine.ts')
  const progress = executionProgress()
  setProgressSink(progress.onProgress)
  try {
    return await runStateMachine(machine, input, { onEvent: progress.onEvent })
  } finally {
    progress.done()
    setProgressSink(undefined)
  }
}
