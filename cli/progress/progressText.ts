/** The words of the progress display: live lines, the lines that stay, and the summary table. */
import { humanBytes } from '#core/humanBytes.ts'
import { type LiveRun, type MapRun, mapBytes, type StateRun } from './executionTracker.ts'

/** What a Map's items are, for the Maps that iterate batches; any other Map counts "items". */
const ITEM_NOUNS: Record<string, string> = {
  ExportTables: 'batches',
  VerifyChecksums: 'batches',
  RestoreClickHouse: 'batches',
  Quiesce: 'services',
  Resume: 'services',
  ResumeWriters: 'services',
}

/** 72_000 → "1:12", 3_723_000 → "1:02:03". */
export function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  const mm = String(Math.floor(s / 60) % 60)
  const ss = String(s % 60).padStart(2, '0')
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`
}

/** A duration: "31.4 s" under a minute, else as a clock. */
export function duration(ms: number): string {
  return ms < 59_950 ? `${(Math.max(0, ms) / 1000).toFixed(1)} s` : clock(ms)
}

function counts(map: MapRun): string {
  const noun = ITEM_NOUNS[map.name] ?? 'items'
  const failed = map.failed ? ` (${map.failed} failed)` : ''
  if (map.total !== undefined) return `${map.succeeded}/${map.total} ${noun}${failed}`
  // no total known: what has started so far is all there is to say
  const running = map.started - map.succeeded - map.failed
  return `${noun}: ${map.succeeded} done${running > 0 ? `, ${running} running` : ''}${failed}`
}

/** Bytes per second over the whole run so far, once there is a second to average over. */
function rate(bytes: number | undefined, elapsedMs: number): string | undefined {
  return bytes && elapsedMs >= 1000 ? `${humanBytes(Math.round(bytes / (elapsedMs / 1000)))}/s` : undefined
}

/**
 * Time left at the pace so far: a byte stream by its bytes of the known total, a Map by its items.
 * Not a Map by bytes: the total ListClickHouseTables reports is the tables' size on disk, the
 * batches report compressed exports: in the demo (DEMO_SCALE=40, 1 MiB batches) 121 MiB were
 * exported of about 230 MiB on disk, and the ETA still said 12 s at the last of 40 batches. The
 * batches are cut by size on disk, so their count tracks it.
 */
function timeLeft(run: LiveRun, elapsedMs: number): number | undefined {
  const fraction =
    run.kind === 'stream'
      ? run.totalBytes && run.bytes > 0
        ? Math.min(1, run.bytes / run.totalBytes)
        : undefined
      : run.total && run.succeeded > 0
        ? run.succeeded / run.total
        : undefined
  return fraction === undefined ? undefined : (elapsedMs * (1 - fraction)) / fraction
}

export function liveLabel(run: LiveRun): string {
  return run.kind === 'map' ? run.name : `${run.state} ${run.what}`
}

/** `3/8 batches · 412.0 MiB · 38.0 MiB/s · ETA 0:12`: what a live line says after its label. */
export function liveDetail(run: LiveRun, now: number): string {
  const elapsed = now - run.startedAt
  const bytes = run.kind === 'map' ? mapBytes(run) : run.bytes
  const parts =
    run.kind === 'map'
      ? [counts(run), bytes === undefined ? undefined : humanBytes(bytes)]
      : [`${humanBytes(run.bytes)}${run.totalBytes ? ` of ${humanBytes(run.totalBytes)}` : ''}`]
  const left = timeLeft(run, elapsed)
  parts.push(rate(bytes, elapsed), left === undefined ? `${clock(elapsed)} elapsed` : `ETA ${clock(left)}`)
  return parts.filter(Boolean).join(' · ')
}

/** Live lines, labels padded to one width. */
export function liveLines(runs: LiveRun[], now: number): string[] {
  const width = Math.max(0, ...runs.map((r) => liveLabel(r).length))
  return runs.map((r) => `${liveLabel(r).padEnd(width)}  ${liveDetail(r, now)}`)
}

/** `✓ ExportTables 8/8 batches · 1.2 GiB in 31.4 s`. */
export function finishedLine(run: StateRun): string {
  const what = [run.map && counts(run.map), run.bytes === undefined ? undefined : humanBytes(run.bytes)]
  const said = what.filter(Boolean).join(' · ')
  return `✓ ${run.name}${said ? ` ${said}` : ''} in ${duration((run.endedAt ?? run.startedAt) - run.startedAt)}`
}

export const failedLine = (state: string, error: string | undefined) =>
  `✗ ${state}${error === undefined ? '' : `: ${error}`}`

export const retriedLine = (state: string, retry: number) => `↻ ${state} retry ${retry}`

/** States that take time of their own; Choice, Pass, Succeed and Fail do not. */
const SUMMARIZED = new Set(['Task', 'Map', 'Parallel'])

function outcome(run: StateRun): string {
  const retries = run.retries ? ` after ${run.retries} ${run.retries === 1 ? 'retry' : 'retries'}` : ''
  if (run.outcome === 'succeeded') return `ok${retries}`
  if (run.outcome === 'failed') return `failed${run.error ? `: ${run.error}` : ''}${retries}`
  return 'unfinished'
}

/** The table printed at the end: state, duration, items, bytes and how it ended. */
export function summaryTable(states: readonly StateRun[], startedAt: number, now: number): string[] {
  const rows = states
    .filter((s) => SUMMARIZED.has(s.type))
    .map((s) => [
      s.name,
      duration((s.endedAt ?? now) - s.startedAt),
      s.map ? counts(s.map) : '-',
      s.bytes === undefined ? '-' : humanBytes(s.bytes),
      outcome(s),
    ])
  if (rows.length === 0) return []
  const bytes = states.reduce((sum, s) => sum + (SUMMARIZED.has(s.type) ? (s.bytes ?? 0) : 0), 0)
  const table = [
    ['state', 'time', 'items', 'bytes', 'result'],
    ...rows,
    ['total', duration(now - startedAt), '', bytes ? humanBytes(bytes) : '-', ''],
  ]
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)))
  // times and sizes right-aligned, so that their units line up
  const right = new Set([1, 3])
  return table.map((row) =>
    row
      .map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd(),
  )
}
