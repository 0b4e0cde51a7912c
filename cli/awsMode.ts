/** The CLI against AWS: start the deployed state machines, follow them, show where one stands. */
import type { MachineKind } from './aws/client.ts'
import { describe, type ExecutionEvent, followExecution } from './aws/followExecution.ts'
import { resolveStateMachineArn } from './aws/resolveStateMachineArn.ts'
import { startExecution } from './aws/startExecution.ts'

interface AwsOptions {
  json?: boolean
  wait?: boolean
  stateMachineArn?: string
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`)
}

/** One line per state as it passes, on stderr; Map iterations are counted, not listed. */
function eventLine(event: ExecutionEvent): string | undefined {
  if (event.iteration) return undefined
  switch (event.type) {
    case 'StateEntered':
      return event.stateType === 'Choice' || event.stateType === 'Pass' ? undefined : `→ ${event.state}`
    case 'StateExited':
      return event.stateType === 'Choice' || event.stateType === 'Pass' ? undefined : `✓ ${event.state}`
    case 'StateRetried':
      return `↻ ${event.state} attempt ${event.attempt}`
    case 'StateFailed':
      return `✗ ${event.state}: ${event.error}`
    default:
      return undefined
  }
}

/** Starts the deployed backup or restore; with --wait follows it and fails when it fails. */
export async function runAws(kind: MachineKind, input: unknown, opts: AwsOptions): Promise<void> {
  const stateMachineArn = await resolveStateMachineArn(kind, { flag: opts.stateMachineArn })
  const started = await startExecution({ stateMachineArn, input })
  process.stderr.write(
    started.alreadyStarted
      ? `already started (${started.status}): ${started.executionArn}\n`
      : `started ${started.executionArn}\n`,
  )
  if (!opts.wait) {
    print(opts.json, started, started.executionArn)
    return
  }
  const result = await followExecution(started.executionArn, (event) => {
    const line = eventLine(event)
    if (line) process.stderr.write(`${line}\n`)
  })
  if (result.status !== 'SUCCEEDED') {
    throw new Error(`${kind} ${result.status.toLowerCase()}: ${result.error}: ${result.cause}`)
  }
  print(opts.json, result.output, JSON.stringify(result.output, null, 2))
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
