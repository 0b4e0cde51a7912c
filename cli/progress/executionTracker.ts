/**
 * Where an execution stands, from its events: which states ran and how they ended, and for each
 * running Map and pg_dump/pg_restore byte stream, the counts its live line shows. Drawing is left
 * to the caller, told of each change through `notify`.
 */
import type { ProgressEvent } from '#core/progress.ts'
import { bytesOf, type MachineLayout, objectBytes, valueAt } from './machineLayout.ts'
import type { StepEvent } from './stepEvent.ts'

export interface MapRun {
  kind: 'map'
  key: string
  name: string
  startedAt: number
  /** Items the Map iterates over, when its input says. */
  total?: number
  started: number
  succeeded: number
  failed: number
  /** Latest `bytes` a Task reported in each iteration: a batch's result counts what it stored so far. */
  bytesByIteration: Map<number, number>
}

export interface StreamRun {
  kind: 'stream'
  key: string
  state: string
  what: string
  startedAt: number
  bytes: number
  totalBytes?: number
}

export type LiveRun = MapRun | StreamRun

export interface StateRun {
  name: string
  type: string
  startedAt: number
  /** When its latest attempt started: entered, or retried. */
  attemptStartedAt: number
  endedAt?: number
  outcome: 'running' | 'succeeded' | 'failed'
  error?: string
  retries: number
  map?: MapRun
  bytes?: number
}

export type Notice =
  | { kind: 'entered'; run: StateRun }
  | { kind: 'exited'; run: StateRun }
  | { kind: 'failed'; state: string; error?: string }
  | { kind: 'retried'; state: string; retry: number }
  /** A live line appeared or its numbers changed. */
  | { kind: 'changed'; live: LiveRun }
  /** A live line is gone (its state ended). */
  | { kind: 'gone'; key: string }

/** States that do work worth a line: Choice and Pass only route data. */
const SILENT = new Set(['Choice', 'Pass'])

export const mapBytes = (map: MapRun): number | undefined =>
  map.bytesByIteration.size === 0
    ? undefined
    : [...map.bytesByIteration.values()].reduce((sum, b) => sum + b, 0)

export class ExecutionTracker {
  private readonly runs: StateRun[] = []
  private readonly current = new Map<string, StateRun>()
  private readonly maps = new Map<string, MapRun>()
  private readonly streams = new Map<string, StreamRun>()

  constructor(
    private readonly layout: MachineLayout,
    private readonly notify: (notice: Notice) => void,
  ) {}

  /** Every top-level state that ran, in the order they started. */
  states(): readonly StateRun[] {
    return this.runs
  }

  /** Running Maps and byte streams, in the order they started. */
  live(): LiveRun[] {
    return [...this.maps.values(), ...this.streams.values()].sort((a, b) => a.startedAt - b.startedAt)
  }

  onStep(event: StepEvent): void {
    // a retry shows wherever it happens; a state inside an iteration is otherwise only counted
    if (event.type === 'StateRetried') this.retried(event)
    else if (event.type.startsWith('MapIteration')) this.onIteration(event)
    else if (event.iteration) this.onInside(event)
    else if (event.type === 'StateEntered') this.entered(event)
    else if (event.type === 'StateExited') this.exited(event)
    else if (event.type === 'StateFailed') this.failed(event)
  }

  /** pg_dump/pg_restore bytes, reported by the running handler. */
  onBytes(event: ProgressEvent, at: number): void {
    const key = `${event.state} ${event.what}`
    const bytes = event.bytes ?? 0
    let stream = this.streams.get(key)
    // fewer bytes than before: a retry started the stream over
    if (!stream || bytes < stream.bytes) {
      // reports come every 8 MiB: the stream started with its state's attempt, not its first report
      const run = this.current.get(event.state)
      const startedAt = run?.outcome === 'running' ? run.attemptStartedAt : at
      stream = { kind: 'stream', key, state: event.state, what: event.what, startedAt, bytes }
      this.streams.set(key, stream)
    }
    stream.bytes = bytes
    if (event.totalBytes !== undefined) stream.totalBytes = event.totalBytes
    this.notify({ kind: 'changed', live: stream })
  }

  private entered(event: StepEvent): void {
    const type = event.stateType ?? 'Task'
    if (SILENT.has(type)) return
    const run: StateRun = {
      name: event.state,
      type,
      startedAt: event.at,
      attemptStartedAt: event.at,
      outcome: 'running',
      retries: 0,
    }
    this.runs.push(run)
    this.current.set(run.name, run)
    this.notify({ kind: 'entered', run })
    if (type !== 'Map') return
    const map: MapRun = {
      kind: 'map',
      key: `map ${run.name}`,
      name: run.name,
      startedAt: event.at,
      started: 0,
      succeeded: 0,
      failed: 0,
      bytesByIteration: new Map(),
    }
    const path = this.layout.itemsPath.get(run.name)
    const items = path === undefined ? undefined : valueAt(event.input, path)
    if (Array.isArray(items)) map.total = items.length
    run.map = map
    this.maps.set(run.name, map)
    this.notify({ kind: 'changed', live: map })
  }

  private retried(event: StepEvent): void {
    const run = event.iteration ? undefined : this.current.get(event.state)
    if (run) {
      run.outcome = 'running'
      run.attemptStartedAt = event.at
      delete run.endedAt
      run.retries = event.retry ?? run.retries + 1
      if (run.map) this.restartMap(run.map, event.at)
    }
    this.notify({ kind: 'retried', state: event.state, retry: event.retry ?? 1 })
  }

  private failed(event: StepEvent): void {
    const run = this.current.get(event.state)
    if (run) {
      run.outcome = 'failed'
      if (event.error !== undefined) run.error = event.error
      run.endedAt = event.at
      this.endLive(run.name)
    }
    this.notify({ kind: 'failed', state: event.state, error: event.error })
  }

  private exited(event: StepEvent): void {
    const run = this.current.get(event.state)
    if (!run) return
    run.outcome = 'succeeded'
    run.endedAt = event.at
    if (run.map) {
      run.bytes = mapBytes(run.map)
    } else {
      // the objects it stored are exact; its byte stream's last report is up to half a second old
      const path = this.layout.resultPath.get(run.name)
      const stored = path == null ? undefined : objectBytes(valueAt(event.output, path))
      run.bytes = stored ?? [...this.streams.values()].find((s) => s.state === run.name)?.bytes
    }
    this.endLive(run.name)
    this.notify({ kind: 'exited', run })
  }

  /** A state inside a Map iteration: a Task's result may say how many bytes the iteration stored. */
  private onInside(event: StepEvent): void {
    if (event.type !== 'StateExited' || event.stateType !== 'Task') return
    const map = this.mapFor(event)
    const { resultPath } = this.layout
    const path = resultPath.has(event.state) ? resultPath.get(event.state)! : '$'
    if (!map || path === null) return
    const bytes = bytesOf(valueAt(event.output, path))
    if (bytes === undefined || !event.iteration) return
    map.bytesByIteration.set(event.iteration.index, bytes)
    this.notify({ kind: 'changed', live: map })
  }

  private onIteration(event: StepEvent): void {
    const map = this.maps.get(event.state)
    if (!map) return // a Map inside another Map's iteration has no line of its own
    if (event.type === 'MapIterationStarted') map.started++
    else if (event.type === 'MapIterationSucceeded') map.succeeded++
    else map.failed++
    this.notify({ kind: 'changed', live: map })
  }

  /** The Map an event inside an iteration belongs to: named by the event or the definition, else the newest. */
  private mapFor(event: StepEvent): MapRun | undefined {
    const name = event.iteration?.map ?? this.layout.mapOf.get(event.state)
    return name === undefined ? [...this.maps.values()].at(-1) : this.maps.get(name)
  }

  private restartMap(map: MapRun, at: number): void {
    Object.assign(map, { startedAt: at, started: 0, succeeded: 0, failed: 0 })
    map.bytesByIteration.clear()
    this.maps.set(map.name, map)
    this.notify({ kind: 'changed', live: map })
  }

  private endLive(state: string): void {
    if (this.maps.delete(state)) this.notify({ kind: 'gone', key: `map ${state}` })
    for (const stream of [...this.streams.values()].filter((s) => s.state === state)) {
      this.streams.delete(stream.key)
      this.notify({ kind: 'gone', key: stream.key })
    }
  }
}
