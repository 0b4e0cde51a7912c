import type { EventLog } from '#cli/local/runStateMachine.ts'
import { humanBytes } from '#core/humanBytes.ts'
import type { ProgressEvent } from '#core/progress.ts'

/** Draws what a local execution is doing on stderr: each state as it starts and ends, Map counts, bytes. */
export function executionProgress(stream: NodeJS.WriteStream = process.stderr) {
  const started = new Map<string, number>()
  const mapDone = new Map<string, number>()
  const tty = stream.isTTY
  let transient = false
  const line = (text: string, keep = true) => {
    if (tty) {
      stream.write(`\r\x1b[2K${text}${keep ? '\n' : ''}`)
      transient = !keep
    } else if (keep) {
      stream.write(`${text}\n`)
    }
  }
  return {
    onEvent(event: EventLog) {
      const elapsed = (name: string) => ((Date.now() - (started.get(name) ?? Date.now())) / 1000).toFixed(1)
      switch (event.type) {
        case 'StateEntered':
          if (event.state.type === 'Choice' || event.state.type === 'Pass' || event.index !== undefined)
            return
          started.set(event.state.name, Date.now())
          if (event.state.type === 'Map') mapDone.set(event.state.name, 0)
          line(`→ ${event.state.name}`)
          return
        case 'StateExited':
          if (!started.has(event.state.name) || event.index !== undefined) return
          line(`✓ ${event.state.name} (${elapsed(event.state.name)} s)`)
          return
        case 'StateRetried':
          line(`↻ ${event.state.name} retry ${event.retry.attempt}`)
          return
        case 'StateFailed':
          if (event.index !== undefined) return
          line(`✗ ${event.state.name}: ${event.Error}`)
          return
        case 'MapIterationSucceeded': {
          const done = (mapDone.get(event.parentState.name) ?? 0) + 1
          mapDone.set(event.parentState.name, done)
          line(`  ${event.parentState.name}: ${done} item(s) done`, !tty)
          return
        }
        default:
          return
      }
    },
    onProgress(event: ProgressEvent) {
      const total = event.totalBytes ? ` of ${humanBytes(event.totalBytes)}` : ''
      line(`  ${event.state} ${event.what}: ${humanBytes(event.bytes ?? 0)}${total}`, !tty)
    },
    done() {
      if (transient) stream.write('\r\x1b[2K')
    },
  }
}
