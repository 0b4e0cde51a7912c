/** The CLI against AWS: start the deployed state machines, follow them, show where one stands. */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { MachineKind } from './aws/client.ts'
import { describe, followExecution } from './aws/followExecution.ts'
import { resolveStateMachineArn } from './aws/resolveStateMachineArn.ts'
import { startExecution } from './aws/startExecution.ts'
import type { AslShape } from './progress/machineLayout.ts'
import { executionProgress } from './progress.ts'

interface AwsOptions {
  json?: boolean
  wait?: boolean
  stateMachineArn?: string
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`)
}

/**
 * The definition the deployed machine was built from, for the progress display's item counts: the
 * CLI ships with it. Were they to differ, a Map would only lack its total.
 */
function localDefinition(kind: MachineKind): AslShape {
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'statemachines', `${kind}.asl.json`)
  return JSON.parse(readFileSync(file, 'utf8')) as AslShape
}

/**
 * Starts the deployed backup or restore; with --wait follows it and fails when it fails (the error
 * carries the `executionArn`). `quiet` leaves the printing of the result to the caller.
 */
export async function runAws(
  kind: MachineKind,
  input: unknown,
  opts: AwsOptions & { quiet?: boolean },
): Promise<{ executionArn: string; output: unknown }> {
  const stateMachineArn = await resolveStateMachineArn(kind, { flag: opts.stateMachineArn })
  const started = await startExecution({ stateMachineArn, input })
  process.stderr.write(
    started.alreadyStarted
      ? `already started (${started.status}): ${started.executionArn}\n`
      : `started ${started.executionArn}\n`,
  )
  if (!opts.wait) {
    if (!opts.quiet) print(opts.json, started, started.executionArn)
    return { executionArn: started.executionArn, output: undefined }
  }
  const progress = executionProgress({ definition: localDefinition(kind) })
  const result = await followExecution(started.executionArn, progress.onExecutionEvent).finally(() =>
    progress.done(),
  )
  if (result.status !== 'SUCCEEDED') {
    throw Object.assign(
      new Error(`${kind} ${result.status.toLowerCase()}: ${result.error}: ${result.cause}`),
      {
        executionArn: started.executionArn,
      },
    )
  }
  if (!opts.quiet) print(opts.json, result.output, JSON.stringify(result.output, null, 2))
  return { executionArn: started.executionArn, output: result.output }
}

/** `status <execution-arn>`. */
export async function showStatus(executionArn: string, opts: { json?: boolean }): Promise<void> {
  const s = await describe(executionArn)
  const lines = [
    `${s.name}: ${s.status}${s.currentState ? ` in ${s.currentState}` : ''}`,
    `started ${s.startDate.toISOString()}${s.stopDate ? `, stopped ${s.stopDate.toISOString()}` : ''}`,
    ...(s.error ? [`error: ${s.error}`, `cause: ${s.cause ?? ''}`] : []),
  ]
  print(opts.json, s, lines.join('\n'))
}
