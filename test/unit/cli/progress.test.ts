import type { HistoryEvent } from '@aws-sdk/client-sfn'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { HistoryReader } from '#cli/aws/followExecution.ts'
import {
  type AslDefinition,
  type EventLog,
  loadDefinition,
  runStateMachine,
} from '#cli/local/runStateMachine.ts'
import { executionProgress } from '#cli/progress.ts'

const MiB = 1024 * 1024

/** A stream that records what is written, as a terminal (isTTY, columns) or as a pipe. */
function fakeStream(tty: boolean, columns = 120) {
  const chunks: { at: number; text: string }[] = []
  return {
    isTTY: tty,
    columns,
    chunks,
    write(chunk: string) {
      chunks.push({ at: Date.now(), text: chunk })
      return true
    },
    text: () => chunks.map((c) => c.text).join(''),
  }
}

/**
 * What a terminal shows after these chunks: printable text, \r, \n, and the sequences the
 * renderer uses (CSI n A cursor up, CSI J clear to the end of the screen, CSI 2K clear the line).
 * Anything else fails the test, so the renderer cannot rely on a sequence this does not check.
 */
function screen(output: string): string[] {
  const lines: string[] = ['']
  let row = 0
  let col = 0
  const put = (ch: string) => {
    const line = lines[row]!.padEnd(col)
    lines[row] = line.slice(0, col) + ch + line.slice(col + 1)
    col++
  }
  for (let i = 0; i < output.length; i++) {
    const ch = output[i]!
    if (ch === '\x1b') {
      const seq = /^\[(\d*)([AJK])/.exec(output.slice(i + 1))
      if (!seq) throw new Error(`unexpected escape sequence at ${JSON.stringify(output.slice(i, i + 8))}`)
      const n = Number(seq[1] || '0')
      if (seq[2] === 'A') row = Math.max(0, row - (n || 1))
      else if (seq[2] === 'J') {
        lines[row] = lines[row]!.slice(0, col)
        lines.length = row + 1
      } else if (n === 2) lines[row] = ''
      i += seq[0].length
    } else if (ch === '\r') col = 0
    else if (ch === '\n') {
      row++
      col = 0
      lines[row] ??= ''
    } else put(ch)
  }
  return lines.at(-1) === '' ? lines.slice(0, -1) : lines
}

/** Events as aws-local-stepfunctions logs them, stamped with the (fake) clock. */
const at = () => Date.now()
const state = (name: string, type: string, io: { input?: unknown; output?: unknown } = {}) => ({
  name,
  type,
  input: io.input ?? {},
  ...(io.output === undefined ? {} : { output: io.output }),
})
const ev = {
  entered: (name: string, type: string, input?: unknown, index?: number) =>
    ({ type: 'StateEntered', timestamp: at(), state: state(name, type, { input }), index }) as EventLog,
  exited: (name: string, type: string, output?: unknown, index?: number) =>
    ({ type: 'StateExited', timestamp: at(), state: state(name, type, { output }), index }) as EventLog,
  failed: (name: string, type: string, error: string, index?: number) =>
    ({
      type: 'StateFailed',
      timestamp: at(),
      state: state(name, type),
      Error: error,
      Cause: '',
      index,
    }) as EventLog,
  retried: (name: string, attempt: number, index?: number) =>
    ({
      type: 'StateRetried',
      timestamp: at(),
      state: state(name, 'Task'),
      retry: { retrier: {}, attempt },
      index,
    }) as EventLog,
  iteration: (kind: 'Started' | 'Succeeded' | 'Failed', map: string, index: number) =>
    ({
      type: `MapIteration${kind}`,
      timestamp: at(),
      index,
      parentState: { name: map, type: 'Map', input: {} },
    }) as EventLog,
}

/** ListClickHouseTables' result in the state's input ($.plan): 8 batches, 2 GiB on disk (exported: 800 MiB). */
const PLAN = {
  backupId: 'b',
  transfer: 'stream',
  items: 40,
  bytes: 2048 * MiB,
  batches: [0, 1, 2, 3, 4, 5, 6, 7],
}
/** ExportBatch's state output: its result at $.progress, `bytes` counting what the batch stored so far. */
const exportBatchOutput = (batch: number, bytes: number, done = true) => ({
  backupId: 'b',
  batch,
  cursor: null,
  progress: { batch, done, cursor: { next: 5, queryId: null, restarts: 0 }, objects: 5, items: 5, bytes },
})

/** The backup up to ExportTables, pg_dump started beside it; the clock is at ExportTables' start. */
function startBackup(progress: ReturnType<typeof executionProgress>) {
  progress.onEvent(ev.entered('PlanBackup', 'Task'))
  vi.advanceTimersByTime(100)
  progress.onEvent(ev.exited('PlanBackup', 'Task', {}))
  progress.onEvent(ev.entered('Engines', 'Parallel'))
  progress.onEvent(ev.entered('WantPostgres', 'Choice'))
  progress.onEvent(ev.entered('SnapshotPostgres', 'Task'))
  progress.onEvent(ev.entered('ListClickHouseTables', 'Task'))
  progress.onProgress({ state: 'SnapshotPostgres', what: 'pg_dump', bytes: 0 })
  vi.advanceTimersByTime(900)
  progress.onEvent(ev.exited('ListClickHouseTables', 'Task', { plan: PLAN }))
  progress.onEvent(ev.entered('ExportTables', 'Map', { backupId: 'b', plan: PLAN }))
  for (let i = 0; i < 8; i++) progress.onEvent(ev.iteration('Started', 'ExportTables', i))
}

/** Batches i..j-1 of ExportTables finish, 100 MiB each, a second apart; pg_dump goes on at 20 MiB/s. */
function exportBatches(progress: ReturnType<typeof executionProgress>, from: number, to: number) {
  for (let i = from; i < to; i++) {
    vi.advanceTimersByTime(1000)
    progress.onProgress({ state: 'SnapshotPostgres', what: 'pg_dump', bytes: 20 * MiB * (i + 1) })
    progress.onEvent(ev.entered('ExportBatch', 'Task', {}, i))
    progress.onEvent(ev.exited('ExportBatch', 'Task', exportBatchOutput(i, 100 * MiB), i))
    progress.onEvent(ev.entered('ExportBatchDone?', 'Choice', {}, i))
    progress.onEvent(ev.iteration('Succeeded', 'ExportTables', i))
  }
}

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-11-25T02:00:00Z') })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('Function: executionProgress', () => {
  const backup = loadDefinition('backup')

  it('on a terminal: one line per running Map and byte stream, redrawn in place, with counts, bytes, speed and ETA', () => {
    // Prepare
    const tty = fakeStream(true)
    const progress = executionProgress({ stream: tty, definition: backup })
    // Act: 3 of 8 batches in 3 s at first, one of them stopped near its deadline and called again
    startBackup(progress)
    progress.onEvent(ev.exited('ExportBatch', 'Task', exportBatchOutput(0, 40 * MiB, false), 0))
    exportBatches(progress, 0, 3)
    vi.advanceTimersByTime(100)
    // Assess: the lines that stay, then the two live ones
    const shown = screen(tty.text())
    expect(shown).toEqual([
      '→ PlanBackup',
      '✓ PlanBackup in 0.1 s',
      '→ Engines',
      '→ SnapshotPostgres',
      '→ ListClickHouseTables',
      '✓ ListClickHouseTables in 0.9 s',
      '→ ExportTables',
      // 300 MiB in 3.1 s: 96.8 MiB/s; 3/8 batches done: 5.2 s left (not by bytes: 300 MiB of 2 GiB on disk would say 18 s)
      'SnapshotPostgres pg_dump  60.0 MiB · 15.0 MiB/s · 0:04 elapsed',
      'ExportTables              3/8 batches · 300.0 MiB · 96.8 MiB/s · ETA 0:05',
    ])
    // the batch called twice counts its latest bytes once; the Map's line was redrawn, never repeated
    expect(tty.text().match(/ExportTables {2,}\d/g)!.length).toBeGreaterThan(1)

    // Act: the rest of the batches, then the dump and the Map end
    exportBatches(progress, 3, 8)
    progress.onEvent(ev.exited('ExportTables', 'Map', {}))
    progress.onProgress({ state: 'SnapshotPostgres', what: 'pg_dump', bytes: 170 * MiB })
    progress.onEvent(ev.exited('SnapshotPostgres', 'Task', { dump: { objects: [{ bytes: 171 * MiB }] } }))
    progress.onEvent(ev.exited('Engines', 'Parallel', {}))
    progress.onEvent(ev.entered('CommitManifest', 'Task'))
    vi.advanceTimersByTime(300)
    progress.onEvent(ev.exited('CommitManifest', 'Task', {}))
    progress.onEvent(ev.entered('Summary', 'Pass'))
    progress.done()
    // Assess: no live line left; each state's end stays, then the summary table
    const end = screen(tty.text())
    expect(end.slice(7)).toEqual([
      '✓ ExportTables 8/8 batches · 800.0 MiB in 8.1 s',
      '✓ SnapshotPostgres 171.0 MiB in 9.0 s',
      '✓ Engines in 9.0 s',
      '→ CommitManifest',
      '✓ CommitManifest in 0.3 s',
      '',
      'state                  time  items            bytes  result',
      'PlanBackup            0.1 s  -                    -  ok',
      'Engines               9.0 s  -                    -  ok',
      'SnapshotPostgres      9.0 s  -            171.0 MiB  ok',
      'ListClickHouseTables  0.9 s  -                    -  ok',
      'ExportTables          8.1 s  8/8 batches  800.0 MiB  ok',
      'CommitManifest        0.3 s  -                    -  ok',
      'total                 9.4 s               971.0 MiB',
    ])
  })

  it('on a terminal: redraws at most 10 times a second, and cuts live lines to the width of the terminal', () => {
    // Prepare
    const tty = fakeStream(true, 40)
    const progress = executionProgress({ stream: tty, definition: backup })
    startBackup(progress)
    vi.advanceTimersByTime(1000)
    const before = tty.chunks.length
    // Act: 500 byte reports within one second
    for (let i = 0; i < 500; i++) {
      vi.advanceTimersByTime(2)
      progress.onProgress({ state: 'SnapshotPostgres', what: 'pg_dump', bytes: i * MiB })
    }
    // Assess
    expect(tty.chunks.length - before).toBeLessThanOrEqual(11)
    const shown = screen(tty.text())
    expect(shown.slice(-2).map((l) => l.length)).toEqual([39, 39])
    expect(shown.at(-2)).toMatch(/^SnapshotPostgres pg_dump {2}4\d\d\.0 MiB/)
    progress.done()
  })

  it('without a terminal: plain lines, at most one per Map or byte stream every interval, and no escape sequences', () => {
    // Prepare
    const pipe = fakeStream(false)
    const progress = executionProgress({ stream: pipe, definition: backup, plainEveryMs: 5000 })
    // Act: one batch a second for 8 s, pg_dump reporting beside it
    startBackup(progress)
    exportBatches(progress, 0, 8)
    vi.advanceTimersByTime(5000)
    progress.onEvent(ev.exited('ExportTables', 'Map', {}))
    progress.done()
    // Assess
    const text = pipe.text()
    expect(text).not.toContain('\x1b')
    const periodic = (label: string) => pipe.chunks.filter((c) => c.text.startsWith(`  ${label} `))
    const map = periodic('ExportTables')
    expect(map.map((c) => c.text)).toEqual([
      // 5 s after its start (the → line), then the last change 5 s after that
      '  ExportTables 4/8 batches · 400.0 MiB · 80.0 MiB/s · ETA 0:05\n',
      '  ExportTables 8/8 batches · 800.0 MiB · 80.0 MiB/s · ETA 0:00\n',
    ])
    expect(map[1]!.at - map[0]!.at).toBe(5000)
    const dump = periodic('SnapshotPostgres pg_dump')
    expect(dump.length).toBe(2)
    expect(dump[1]!.at - dump[0]!.at).toBeGreaterThanOrEqual(5000)
    expect(text).toContain('→ ExportTables\n')
    expect(text).toContain('\n✓ ExportTables 8/8 batches · 800.0 MiB in 13.0 s\n')
    expect(text).toMatch(/\nExportTables +13\.0 s {2}8\/8 batches {2}800\.0 MiB {2}ok\n/)
  })

  it('shows retries and failures, inside a Map too, and says how each state ended in the summary', () => {
    // Prepare
    const pipe = fakeStream(false)
    const progress = executionProgress({ stream: pipe, definition: backup })
    // Act: pg_dump stalls and is retried; an export batch is retried, then the Map fails
    progress.onEvent(ev.entered('SnapshotPostgres', 'Task'))
    progress.onProgress({ state: 'SnapshotPostgres', what: 'pg_dump', bytes: 50 * MiB })
    vi.advanceTimersByTime(2000)
    progress.onEvent(ev.failed('SnapshotPostgres', 'Task', 'StallError'))
    progress.onEvent(ev.retried('SnapshotPostgres', 1))
    progress.onProgress({ state: 'SnapshotPostgres', what: 'pg_dump', bytes: 1 * MiB })
    vi.advanceTimersByTime(1000)
    progress.onEvent(ev.exited('SnapshotPostgres', 'Task', {}))
    progress.onEvent(ev.entered('ExportTables', 'Map', { plan: PLAN }))
    progress.onEvent(ev.iteration('Started', 'ExportTables', 0))
    progress.onEvent(ev.entered('ExportBatch', 'Task', {}, 0))
    progress.onEvent(ev.failed('ExportBatch', 'Task', 'StallError', 0))
    progress.onEvent(ev.retried('ExportBatch', 1, 0))
    progress.onEvent(ev.failed('ExportBatch', 'Task', 'ClickHouseError', 0))
    progress.onEvent(ev.iteration('Failed', 'ExportTables', 0))
    progress.onEvent(ev.failed('ExportTables', 'Map', 'ClickHouseError'))
    progress.onEvent(ev.entered('Failed', 'Fail'))
    progress.onEvent(ev.failed('Failed', 'Fail', 'ClickHouseError'))
    progress.done()
    // Assess: the lines the CLI tests grep for; a failure inside an iteration shows as its Map's
    const text = pipe.text()
    expect(text.match(/^[→✓✗↻].*$/gm)).toEqual([
      '→ SnapshotPostgres',
      '✗ SnapshotPostgres: StallError',
      '↻ SnapshotPostgres retry 1',
      '✓ SnapshotPostgres 1.0 MiB in 3.0 s',
      '→ ExportTables',
      '↻ ExportBatch retry 1',
      '✗ ExportTables: ClickHouseError',
      '→ Failed',
      '✗ Failed: ClickHouseError',
    ])
    expect(text).toMatch(/\nSnapshotPostgres +3\.0 s +- +1\.0 MiB +ok after 1 retry\n/)
    expect(text).toMatch(/\nExportTables +0\.0 s +0\/8 batches \(1 failed\) +- +failed: ClickHouseError\n/)
  })

  it('counts started items when the definition is not known, and gives pg_restore an ETA from its total', () => {
    // Prepare
    const tty = fakeStream(true)
    const progress = executionProgress({ stream: tty })
    // Act
    progress.onEvent(
      ev.entered('RestoreClickHouse', 'Map', { clickhouseRestore: { batchIndexes: [0, 1, 2] } }),
    )
    for (const i of [0, 1, 2]) progress.onEvent(ev.iteration('Started', 'RestoreClickHouse', i))
    progress.onEvent(ev.iteration('Succeeded', 'RestoreClickHouse', 1))
    progress.onEvent(ev.entered('RestorePostgres', 'Task'))
    // the first report comes 100 MiB in (every 8 MiB on the real path): the stream started with its state
    vi.advanceTimersByTime(10_000)
    progress.onProgress({
      state: 'RestorePostgres',
      what: 'pg_restore',
      bytes: 100 * MiB,
      totalBytes: 400 * MiB,
    })
    vi.advanceTimersByTime(100)
    // Assess
    expect(screen(tty.text()).slice(-2)).toEqual([
      'RestoreClickHouse           batches: 1 done, 2 running · 0:10 elapsed',
      'RestorePostgres pg_restore  100.0 MiB of 400.0 MiB · 9.9 MiB/s · ETA 0:30',
    ])
    progress.done()
    expect(screen(tty.text()).at(-1)).toMatch(/^total +10\.1 s/)
  })

  it('reads counts and bytes from a real local execution: the Map, its looping Task and their results', async () => {
    // Prepare: a plan with bytes, then a Map whose Task loops until its batch is done
    vi.useRealTimers()
    const RESOURCE = 'arn:aws:lambda:us-east-1:000000000000:function:work'
    const definition: AslDefinition = {
      StartAt: 'List',
      States: {
        List: { Type: 'Task', Resource: RESOURCE, ResultPath: '$.plan', Next: 'Export' },
        Export: {
          Type: 'Map',
          ItemsPath: '$.plan.batches',
          ItemSelector: { 'batch.$': '$$.Map.Item.Value', cursor: 0 },
          ItemProcessor: {
            StartAt: 'ExportBatch',
            States: {
              ExportBatch: { Type: 'Task', Resource: RESOURCE, ResultPath: '$.progress', Next: 'Again?' },
              'Again?': {
                Type: 'Choice',
                Choices: [{ Variable: '$.progress.done', BooleanEquals: false, Next: 'Again' }],
                Default: 'Finished',
              },
              Again: {
                Type: 'Pass',
                Parameters: { 'batch.$': '$.batch', 'cursor.$': '$.progress.cursor' },
                Next: 'ExportBatch',
              },
              Finished: { Type: 'Succeed' },
            },
          },
          ResultPath: null,
          End: true,
        },
      },
    }
    const pipe = fakeStream(false)
    const progress = executionProgress({ stream: pipe, definition })
    // Act: each batch takes two calls, storing 1,000 bytes in each
    await runStateMachine(
      'backup',
      {},
      {
        definition,
        onEvent: progress.onEvent,
        nativeHandlers: {
          List: async () => ({ batches: [0, 1, 2], bytes: 6000 }),
          ExportBatch: async (input) => {
            const { batch, cursor } = input as { batch: number; cursor: number }
            return { batch, done: cursor === 1, cursor: cursor + 1, bytes: 1000 * (cursor + 1) }
          },
        },
      },
    )
    progress.done()
    // Assess
    expect(pipe.text()).toMatch(/^✓ Export 3\/3 items · 5\.9 KiB in \d+\.\d s$/m)
    expect(pipe.text()).toMatch(/^Export +\d+\.\d s {2}3\/3 items {2}5\.9 KiB {2}ok$/m)
  })

  it('reads an execution on AWS from its history: Map total from the input, bytes from outputs, retries', () => {
    // Prepare: ExportTables with two batches, as GetExecutionHistory records it
    const pipe = fakeStream(false)
    const progress = executionProgress({ stream: pipe, definition: backup })
    const reader = new HistoryReader()
    let id = 0
    const history = (type: string, previous: number, details: Partial<HistoryEvent> = {}) => {
      vi.advanceTimersByTime(1000)
      const event = reader.read({
        id: ++id,
        previousEventId: previous,
        type,
        timestamp: new Date(),
        ...details,
      } as HistoryEvent)
      if (event) progress.onExecutionEvent(event)
      return id
    }
    const input = JSON.stringify({ backupId: 'b', plan: { ...PLAN, batches: [0, 1] } })
    const batch = (index: number, after: number, retried = false) => {
      const started = history('MapIterationStarted', after, {
        mapIterationStartedEventDetails: { name: 'ExportTables', index },
      })
      const entered = history('TaskStateEntered', started, {
        stateEnteredEventDetails: { name: 'ExportBatch', input: '{}' },
      })
      let scheduled = history('LambdaFunctionScheduled', entered)
      if (retried)
        scheduled = history(
          'LambdaFunctionScheduled',
          history('LambdaFunctionFailed', scheduled, {
            lambdaFunctionFailedEventDetails: { error: 'StallError' },
          }),
        )
      const output = JSON.stringify(exportBatchOutput(index, 100 * MiB))
      const exited = history('TaskStateExited', scheduled, {
        stateExitedEventDetails: { name: 'ExportBatch', output },
      })
      return history('MapIterationSucceeded', exited, {
        mapIterationSucceededEventDetails: { name: 'ExportTables', index },
      })
    }
    // Act
    const map = history('MapStateEntered', 0, { stateEnteredEventDetails: { name: 'ExportTables', input } })
    const last = batch(1, batch(0, map), true)
    history('MapStateExited', last, { stateExitedEventDetails: { name: 'ExportTables', output: input } })
    progress.done()
    // Assess
    const text = pipe.text()
    expect(text).toContain('\n↻ ExportBatch retry 1\n')
    expect(text).toContain('\n✓ ExportTables 2/2 batches · 200.0 MiB in 13.0 s\n')
    expect(text).not.toContain('✗ ')
  })
})
