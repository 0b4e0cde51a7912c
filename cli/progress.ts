/**
 * What an execution is doing, on stderr. Each state prints a line when it starts (`→ ExportTables`)
 * and when it ends (`✓ …`, `✗ <State>: <Error>`, `↻ <State> retry N`). Each running Map and
 * pg_dump/pg_restore byte stream has one more: on a terminal a line redrawn in place
 * (`ExportTables  3/8 batches · 412.0 MiB · 38.0 MiB/s · ETA 0:12`), elsewhere a plain line at
 * most every few seconds. A table of every state's time, items and bytes closes the run.
 */
import type { ExecutionEvent } from '#cli/aws/followExecution.ts'
import type { EventLog } from '#cli/local/runStateMachine.ts'
import type { ProgressEvent } from '#core/progress.ts'
import { ExecutionTracker, type Notice } from './progress/executionTracker.ts'
import { LiveArea, type ProgressStream } from './progress/liveArea.ts'
import { type AslShape, machineLayout } from './progress/machineLayout.ts'
import { PlainLines } from './progress/plainLines.ts'
import {
  failedLine,
  finishedLine,
  liveDetail,
  liveLabel,
  liveLines,
  retriedLine,
  summaryTable,
} from './progress/progressText.ts'
import { fromEventLog, fromExecutionEvent } from './progress/stepEvent.ts'

export interface ProgressOptions {
  stream?: ProgressStream
  /** The state machine's definition: where each Map's items are, which states run inside it. */
  definition?: AslShape
  /** Redraw lines in place (default: when the stream is a terminal). */
  live?: boolean
  /** Without redrawing: the shortest time between two lines of one Map or byte stream. */
  plainEveryMs?: number
  /** On a terminal: the shortest time between two redraws. */
  redrawEveryMs?: number
}

const defaults = { plainEveryMs: 5000, redrawEveryMs: 100 }

export function executionProgress(options: ProgressOptions = {}) {
  const { stream = process.stderr, plainEveryMs, redrawEveryMs } = { ...defaults, ...options }
  const live = options.live ?? Boolean(stream.isTTY)
  const startedAt = Date.now()
  const tracker = new ExecutionTracker(machineLayout(options.definition), notice)
  const area = new LiveArea(stream, () => liveLines(tracker.live(), Date.now()), redrawEveryMs)
  const plain = new PlainLines(
    stream,
    (key) => {
      const run = tracker.live().find((r) => r.key === key)
      return run && `${liveLabel(run)} ${liveDetail(run, Date.now())}`
    },
    plainEveryMs,
  )
  let finished = false
  const print = (...lines: string[]): void => {
    if (live) area.print(lines)
    else stream.write(lines.map((l) => `${l}\n`).join(''))
  }

  function notice(n: Notice): void {
    // a handler aborted with the run may still report bytes: the display has closed
    if (finished) return
    if (n.kind === 'changed') {
      if (live) area.start()
      else plain.changed(n.live.key)
    } else if (n.kind === 'gone') {
      if (!live) plain.gone(n.key)
    } else if (n.kind === 'entered') {
      print(`→ ${n.run.name}`)
    } else if (n.kind === 'exited') {
      print(finishedLine(n.run))
    } else if (n.kind === 'failed') {
      print(failedLine(n.state, n.error))
    } else {
      print(retriedLine(n.state, n.retry))
    }
  }

  return {
    /** An event of a local execution (aws-local-stepfunctions). */
    onEvent(event: EventLog): void {
      const step = fromEventLog(event)
      if (step) tracker.onStep(step)
    },
    /** An event of an execution on AWS, read from its history (followExecution). */
    onExecutionEvent(event: ExecutionEvent): void {
      const step = fromExecutionEvent(event)
      if (step) tracker.onStep(step)
    },
    /** Bytes of a pg_dump or pg_restore (core/progress.ts). */
    onProgress(event: ProgressEvent): void {
      tracker.onBytes(event, Date.now())
    },
    /** Clears the live lines and prints the summary table. */
    done(): void {
      if (finished) return
      finished = true
      area.stop()
      plain.stop()
      const table = summaryTable(tracker.states(), startedAt, Date.now())
      if (table.length > 0) stream.write(`\n${table.join('\n')}\n`)
    },
  }
}
