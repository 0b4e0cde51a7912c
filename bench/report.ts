/**
 * What one benchmark run found, and how it is printed: the comparison table with the ratios
 * ours/runbook and the issue's targets, each side's steps, the variants and the scale-out check.
 */
import { availableParallelism, totalmem } from 'node:os'
import type { DataSizes } from './generateData.ts'
import type { Measurement } from './measure.ts'
import type { OursRun } from './ours.ts'
import type { StepMeasurement } from './steps.ts'

export interface Comparison {
  tables: number
  /** Tables (and sequences, aggregates) whose row count or content hash differ from the original. */
  differing: string[]
}

export interface Verified {
  postgres: Comparison
  clickhouse: Comparison
}

/** Compares content hashes taken before the backup with those after a restore. */
export function compareHashes(before: Record<string, string>, after: Record<string, string>): Comparison {
  return {
    tables: Object.keys(before).length,
    differing: Object.keys(before).filter((k) => before[k] !== after[k]),
  }
}

export interface Stored {
  bytes: number
  objects: number
}

export interface OursResult {
  name: string
  /** The checkout whose CLI ran, when not this one. */
  checkout: string | undefined
  prefix: string
  engine: 'all' | 'clickhouse'
  settings: Record<string, string>
  backup: OursRun
  restore: OursRun
  stored: Stored
  /** Objects per ClickHouse table in the backup. */
  parts: Record<string, number>
  verified: Verified
}

export interface RunbookResult {
  backup: Measurement[]
  restore: Measurement[]
  files: { name: string; bytes: number }[]
  stored: Stored
  verified: Verified
}

export interface Machine {
  cpus: number
  memoryBytes: number
  node: string
  postgres: string
  clickhouse: string
}

export interface BenchReport {
  machine: Machine
  scale: number
  pgScale: number
  sizes: DataSizes | null
  runbook: RunbookResult | null
  results: OursResult[]
  /** Each data-moving handler alone in a process, on the biggest unit of work. */
  steps: StepMeasurement[]
  /** pg_dump -Fc to a file at each --compress level (`--pg-compress-levels`). */
  pgDumpLevels: { level: number; wallMs: number; bytes: number; peakRssBytes: number }[]
  split: OursResult | null
}

export const MEMORY_TARGET_BYTES = 256 * 2 ** 20

export function machine(postgres: string, clickhouse: string): Machine {
  return {
    cpus: availableParallelism(),
    memoryBytes: totalmem(),
    node: process.version,
    postgres,
    clickhouse,
  }
}

const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`
const x = (ours: number, theirs: number) => (theirs > 0 ? `${(ours / theirs).toFixed(2)}×` : '–')
const sum = (ms: Measurement[]) => ms.reduce((s, m) => s + m.wallMs, 0)
const peak = (ms: Measurement[]) => Math.max(...ms.map((m) => m.peakRssBytes))

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n')
}

function verdict(v: Verified): string {
  const one = (name: string, c: Comparison) =>
    c.tables === 0
      ? ''
      : c.differing.length === 0
        ? `${name} ${c.tables}/${c.tables} identical`
        : `${name} ${c.tables - c.differing.length}/${c.tables} identical, DIFFERENT: ${c.differing.join(', ')}`
  return [one('postgres', v.postgres), one('clickhouse', v.clickhouse)].filter(Boolean).join('; ')
}

const target = (ok: boolean) => (ok ? 'met' : 'MISSED')

function describeParts(parts: Record<string, number>): string {
  return Object.entries(parts)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ')
}

/** The report as text: what `npm run bench` prints on stdout. */
export function formatReport(r: BenchReport): string {
  const out: string[] = []
  const m = r.machine
  out.push(
    `machine: ${m.cpus} CPUs, ${mib(m.memoryBytes)} RAM, node ${m.node}, ${m.postgres}, ClickHouse ${m.clickhouse}`,
  )
  if (r.sizes) {
    out.push(
      `data (scale ${r.scale}, Postgres scale ${r.pgScale}): Postgres ${mib(r.sizes.postgresBytes)}, ClickHouse ${mib(r.sizes.clickhouseBytes)} on disk`,
    )
    for (const t of r.sizes.clickhouseTables)
      out.push(`  ${t.table}: ${t.rows} rows, ${mib(t.bytes)}, ${t.partitions} partition(s)`)
  }
  const ours = r.results[0]
  if (r.runbook && ours) {
    const rb = r.runbook
    const rbBackup = sum(rb.backup)
    const rbRestore = sum(rb.restore)
    out.push('')
    out.push(
      table([
        ['', 'wall', 'stored', 'peak RSS (one process)', 'peak RSS (process tree)'],
        [
          'runbook backup',
          sec(rbBackup),
          `${mib(rb.stored.bytes)} (${rb.stored.objects} obj)`,
          mib(peak(rb.backup)),
          mib(Math.max(...rb.backup.map((s) => s.treePeakBytes))),
        ],
        [
          'ours backup',
          sec(ours.backup.wallMs),
          `${mib(ours.stored.bytes)} (${ours.stored.objects} obj)`,
          mib(ours.backup.peakRssBytes),
          mib(ours.backup.treePeakBytes),
        ],
        [
          'ours/runbook',
          x(ours.backup.wallMs, rbBackup),
          x(ours.stored.bytes, rb.stored.bytes),
          x(ours.backup.peakRssBytes, peak(rb.backup)),
          '',
        ],
        [
          'runbook restore',
          sec(rbRestore),
          '',
          mib(peak(rb.restore)),
          mib(Math.max(...rb.restore.map((s) => s.treePeakBytes))),
        ],
        [
          'ours restore',
          sec(ours.restore.wallMs),
          '',
          mib(ours.restore.peakRssBytes),
          mib(ours.restore.treePeakBytes),
        ],
        [
          'ours/runbook',
          x(ours.restore.wallMs, rbRestore),
          '',
          x(ours.restore.peakRssBytes, peak(rb.restore)),
          '',
        ],
      ]),
    )
    const peakCli = Math.max(ours.backup.peakRssBytes, ours.restore.peakRssBytes)
    // On Lambda a step is one process; the local CLI runs every parallel Map item in one process.
    const peakStep = r.steps.length ? Math.max(...r.steps.map((s) => s.peakRssBytes)) : peakCli
    const memory = r.steps.length
      ? `${mib(peakStep)} for one step; the local CLI, all parallel items in one process: ${mib(peakCli)}`
      : `${mib(peakCli)}, whole CLI process`
    out.push('')
    out.push(
      `targets: backup ≤ 0.5× ${target(ours.backup.wallMs <= 0.5 * rbBackup)} (${x(ours.backup.wallMs, rbBackup)}); ` +
        `restore ≤ 1.0× ${target(ours.restore.wallMs <= rbRestore)} (${x(ours.restore.wallMs, rbRestore)}); ` +
        `bytes ≤ runbook ${target(ours.stored.bytes <= rb.stored.bytes)} (${x(ours.stored.bytes, rb.stored.bytes)}); ` +
        `peak ≤ 256 MiB ${target(peakStep <= MEMORY_TARGET_BYTES)} (${memory})`,
    )
    out.push(`verified: runbook restore: ${verdict(rb.verified)}`)
    out.push(`          ours restore:    ${verdict(ours.verified)}`)
    out.push('')
    out.push('runbook steps:')
    out.push(
      table([
        ['  step', 'wall', 'peak RSS'],
        ...[...rb.backup, ...rb.restore].map((s) => [`  ${s.label}`, sec(s.wallMs), mib(s.peakRssBytes)]),
      ]),
    )
    out.push(`runbook files: ${rb.files.map((f) => `${f.name} ${mib(f.bytes)}`).join(', ')}`)
  }
  if (ours) {
    out.push('')
    out.push(`ours states (default settings ${JSON.stringify(ours.settings)}):`)
    out.push(`  backup:  ${ours.backup.states.map(([s, t]) => `${s} ${t} s`).join(', ')}`)
    out.push(`  restore: ${ours.restore.states.map(([s, t]) => `${s} ${t} s`).join(', ')}`)
    out.push(`  objects per ClickHouse table: ${describeParts(ours.parts)}`)
  }
  if (r.steps.length) {
    const top = Math.max(...r.steps.map((s) => s.peakRssBytes))
    out.push('')
    out.push(
      `ours, one step per process as on Lambda (biggest unit of work): peak ≤ 256 MiB ${target(top <= MEMORY_TARGET_BYTES)} (${mib(top)})`,
    )
    out.push(
      table([
        ['  step', 'work', 'wall', 'peak RSS'],
        ...r.steps.map((s) => [`  ${s.label}`, s.what, sec(s.wallMs), mib(s.peakRssBytes)]),
      ]),
    )
  }
  if (r.pgDumpLevels.length && r.sizes) {
    const db = r.sizes.postgresBytes
    out.push('')
    out.push(`pg_dump -Fc of a ${mib(db)} database, by --compress level:`)
    out.push(
      table([
        ['  level', 'wall', 'dump', 'database MiB/s'],
        ...r.pgDumpLevels.map((l) => [
          `  ${l.level}`,
          sec(l.wallMs),
          mib(l.bytes),
          (db / 2 ** 20 / (l.wallMs / 1000)).toFixed(0),
        ]),
      ]),
    )
  }
  if (r.results.length > 1) {
    const rbBackup = r.runbook ? sum(r.runbook.backup) : 0
    const rbRestore = r.runbook ? sum(r.runbook.restore) : 0
    out.push('')
    out.push('variants (same data):')
    out.push(
      table([
        [
          '  variant',
          'backup',
          '×rb',
          'restore',
          '×rb',
          'stored',
          'peak backup',
          'peak restore',
          'parallel',
          'verified',
        ],
        ...r.results.map((v) => [
          `  ${v.name}${v.checkout ? ` (${v.checkout})` : ''} ${Object.entries(v.settings)
            .map(([k, val]) => `${k.replace('LSB_', '')}=${val}`)
            .join(' ')}`,
          sec(v.backup.wallMs),
          x(v.backup.wallMs, rbBackup),
          sec(v.restore.wallMs),
          x(v.restore.wallMs, rbRestore),
          mib(v.stored.bytes),
          mib(v.backup.peakRssBytes),
          mib(v.restore.peakRssBytes),
          `${v.backup.maxParallelTransfers}/${v.restore.maxParallelTransfers}`,
          v.verified.postgres.differing.length + v.verified.clickhouse.differing.length === 0
            ? 'ok'
            : 'DIFFERENT',
        ]),
      ]),
    )
  }
  if (r.split) {
    const s = r.split
    out.push('')
    out.push(
      `scale-out (LSB_CLICKHOUSE_SPLIT_BYTES=${s.settings.LSB_CLICKHOUSE_SPLIT_BYTES}, ClickHouse only):`,
    )
    out.push(`  objects per table: ${describeParts(s.parts)}`)
    out.push(
      `  backup ${sec(s.backup.wallMs)} (${s.backup.maxParallelTransfers} exports at once), restore ${sec(s.restore.wallMs)} (${s.restore.maxParallelTransfers} inserts at once), peak ${mib(Math.max(s.backup.peakRssBytes, s.restore.peakRssBytes))}`,
    )
    out.push(`  verified: ${verdict(s.verified)}`)
  }
  return `${out.join('\n')}\n`
}
