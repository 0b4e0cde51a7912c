import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics'
import type { Engine } from '#core/backupKeys.ts'
import { logger } from '#core/logger.ts'

/** Used when POWERTOOLS_METRICS_NAMESPACE is not set; the alarms and the dashboard name it. */
export const DEFAULT_METRICS_NAMESPACE = 'LangSightBackup'
/** The `service` dimension when POWERTOOLS_SERVICE_NAME is not set (the logger's service name). */
export const DEFAULT_SERVICE_NAME = 'langsight-backup'

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit]
interface Datum {
  dimensions: Record<string, string>
  name: string
  unit: Unit
  value: number
}

/** What CommitManifest knows about one committed backup. */
export interface CommittedBackup {
  engine: Engine
  bytes: number
  /** Null when the engine does not count rows (a pg_dump archive). */
  rows: number | null
  objects: number
  startedAt: string
  committedAt: Date
  /** Bytes of the previous complete backup of the engine, when there is one. */
  previousBytes?: number
  /** Rows per ClickHouse table. */
  tables?: { table: string; rows: number }[]
}

export interface DrillOutcome {
  succeeded: boolean
  mismatchedTables: number
  durationSeconds: number
}

let pending: Datum[] = []
let emitter: Metrics | undefined

/**
 * Whether EMF lines are printed. On Lambda (AWS_LAMBDA_FUNCTION_NAME set) they are; a local run
 * (`--local`, tests) prints none, so the CLI's output stays readable. POWERTOOLS_METRICS_DISABLED,
 * when set, decides either way.
 */
export function metricsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const flag = env.POWERTOOLS_METRICS_DISABLED?.trim().toLowerCase()
  if (flag) return !['1', 'true', 'yes', 'on', 'y'].includes(flag)
  return Boolean(env.AWS_LAMBDA_FUNCTION_NAME)
}

function metrics(): Metrics {
  emitter ??= new Metrics({
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE || DEFAULT_METRICS_NAMESPACE,
    serviceName: process.env.POWERTOOLS_SERVICE_NAME || DEFAULT_SERVICE_NAME,
    logger,
  })
  return emitter
}

function add(dimensions: Record<string, string>, name: string, unit: Unit, value: number): void {
  if (Number.isFinite(value)) pending.push({ dimensions, name, unit, value })
}

/** Records a committed backup's metrics, by engine (and TableRows by engine and table). */
export function recordBackup(b: CommittedBackup): void {
  const byEngine = { Engine: b.engine }
  add(byEngine, 'BackupSucceeded', MetricUnit.Count, 1)
  add(byEngine, 'BackupBytes', MetricUnit.Bytes, b.bytes)
  if (b.rows !== null) add(byEngine, 'BackupRows', MetricUnit.Count, b.rows)
  add(byEngine, 'BackupObjects', MetricUnit.Count, b.objects)
  const seconds = (b.committedAt.getTime() - Date.parse(b.startedAt)) / 1000
  add(byEngine, 'BackupDurationSeconds', MetricUnit.Seconds, Math.max(0, seconds))
  add(byEngine, 'LastBackupEpochSeconds', MetricUnit.Seconds, Math.floor(b.committedAt.getTime() / 1000))
  if (b.previousBytes) add(byEngine, 'BackupSizeRatio', MetricUnit.NoUnit, b.bytes / b.previousBytes)
  for (const t of b.tables ?? []) add({ ...byEngine, Table: t.table }, 'TableRows', MetricUnit.Count, t.rows)
}

/** Records a restore drill: DrillSucceeded (1, on success only), DrillMismatchedTables, DrillDurationSeconds. */
export function recordDrill(engine: Engine, outcome: DrillOutcome): void {
  const byEngine = { Engine: engine }
  if (outcome.succeeded) add(byEngine, 'DrillSucceeded', MetricUnit.Count, 1)
  add(byEngine, 'DrillMismatchedTables', MetricUnit.Count, outcome.mismatchedTables)
  add(byEngine, 'DrillDurationSeconds', MetricUnit.Seconds, outcome.durationSeconds)
}

/**
 * Prints what was recorded as EMF, one line per dimension set (EMF gives one set of dimensions to
 * every metric of a line), and forgets it. Called once at the end of each invocation.
 */
export function flushMetrics(): void {
  const data = pending
  pending = []
  if (data.length === 0 || !metricsEnabled()) return
  const groups = new Map<string, Datum[]>()
  for (const d of data) {
    const id = JSON.stringify(d.dimensions)
    groups.set(id, [...(groups.get(id) ?? []), d])
  }
  const m = metrics()
  for (const group of groups.values()) {
    m.addDimensions(group[0]!.dimensions)
    for (const d of group) m.addMetric(d.name, d.unit, d.value)
    m.publishStoredMetrics()
  }
}

/** Forgets recorded metrics and the emitter, so that the next one reads the environment again (tests). */
export function resetMetrics(): void {
  pending = []
  emitter = undefined
}
