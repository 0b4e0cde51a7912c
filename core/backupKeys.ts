import { UntrustedInputError } from './errors.ts'
import { BACKUP_ID } from './names.ts'

export const ENGINES = ['postgres', 'clickhouse'] as const
export type Engine = (typeof ENGINES)[number]

/** The backup id for a start time (an ISO string or a Date). */
export function backupIdFor(startedAt: string | Date): string {
  const date = typeof startedAt === 'string' ? new Date(startedAt) : startedAt
  if (Number.isNaN(date.getTime())) throw new UntrustedInputError(`not a timestamp: ${String(startedAt)}`)
  const iso = date.toISOString() // 2026-11-25T14:42:26.123Z
  return `${iso.slice(0, 10).replaceAll('-', '')}T${iso.slice(11, 19).replaceAll(':', '')}${iso.slice(19)}`
}

/** The start time a backup id stands for. */
export function backupTime(backupId: string): Date {
  assertBackupId(backupId)
  const d = backupId
  return new Date(
    `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}T${d.slice(9, 11)}:${d.slice(11, 13)}:${d.slice(13)}`,
  )
}

export function assertBackupId(backupId: unknown): asserts backupId is string {
  if (typeof backupId !== 'string' || !BACKUP_ID.test(backupId)) {
    throw new UntrustedInputError(
      `not a backup id: ${JSON.stringify(backupId)} (expected e.g. 20261125T144226.123Z)`,
    )
  }
}

export function assertEngine(engine: unknown): asserts engine is Engine {
  if (!ENGINES.includes(engine as Engine))
    throw new UntrustedInputError(`unknown engine ${JSON.stringify(engine)}`)
}

/** `<prefix>/<engine>/` — every backup of an engine lives below it. */
export function engineDir(prefix: string, engine: Engine): string {
  return `${prefix}/${engine}/`
}

/** `<prefix>/<engine>/<backupId>/` — every object of one backup lives below it. */
export function backupDir(prefix: string, engine: Engine, backupId: string): string {
  assertBackupId(backupId)
  return `${engineDir(prefix, engine)}${backupId}/`
}

export function manifestKey(prefix: string, engine: Engine, backupId: string): string {
  return `${backupDir(prefix, engine, backupId)}manifest.json`
}

export function postgresDumpKey(prefix: string, backupId: string): string {
  return `${backupDir(prefix, 'postgres', backupId)}postgres.dump`
}

/** One ClickHouse data object: a table, or one part of a table split for size. */
export function tableDataKey(
  prefix: string,
  backupId: string,
  table: string,
  part: string,
  compression: 'gzip' | 'zstd' = 'gzip',
): string {
  const ext = compression === 'gzip' ? 'gz' : 'zst'
  return `${backupDir(prefix, 'clickhouse', backupId)}data/${encodeURIComponent(table)}/${encodeURIComponent(part)}.native.${ext}`
}

/** The plan of a ClickHouse backup: tables, and export items in batches (working state, not data). */
export function clickhousePlanKey(prefix: string, backupId: string): string {
  return `${backupDir(prefix, 'clickhouse', backupId)}plan/plan.json`
}

/** What one export batch has stored so far: its objects, in item order. */
export function exportBatchResultKey(prefix: string, backupId: string, batch: number): string {
  return `${backupDir(prefix, 'clickhouse', backupId)}plan/batch-${batch}.json`
}

/**
 * A drill's record beside the backup it restored. Its outcome is in the name, so a listing of
 * keys tells which backups are proven restorable without reading a record.
 */
export function drillRecordKey(
  prefix: string,
  engine: Engine,
  backupId: string,
  drillId: string,
  passed: boolean,
): string {
  assertBackupId(drillId)
  return `${backupDir(prefix, engine, backupId)}drills/${drillId}-${passed ? 'passed' : 'failed'}.json`
}

const DRILL_RECORD = /\/drills\/(\d{8}T\d{6}\.\d{3}Z)-(passed|failed)\.json$/

/** The drill a key records, or undefined for any other key. */
export function drillOfKey(key: string): { drillId: string; passed: boolean } | undefined {
  const m = DRILL_RECORD.exec(key)
  return m ? { drillId: m[1]!, passed: m[2] === 'passed' } : undefined
}

/** When a drill last proved this backup restorable (its drill id, a UTC time), or null. */
export function provenAt(keys: readonly string[]): string | null {
  let newest: string | null = null
  for (const key of keys) {
    const drill = drillOfKey(key)
    if (drill?.passed && (newest === null || drill.drillId > newest)) newest = drill.drillId
  }
  return newest
}

/**
 * Checks that a key read from a manifest lies inside the backup it claims to belong to:
 * no `..`, no absolute path, no escape from `<prefix>/<engine>/<backupId>/`.
 */
export function assertKeyInBackup(
  key: unknown,
  prefix: string,
  engine: Engine,
  backupId: string,
): asserts key is string {
  const dir = backupDir(prefix, engine, backupId)
  if (
    typeof key !== 'string' ||
    !key.startsWith(dir) ||
    key.split('/').some((s) => s === '..' || s === '.' || s === '') ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
    /[\u0000-\u001f\\]/.test(key)
  ) {
    throw new UntrustedInputError(`object key ${JSON.stringify(key)} is not inside backup ${dir}`)
  }
}

/** The backup id of a key below `<prefix>/<engine>/`, or undefined for anything else. */
export function backupIdOfKey(prefix: string, engine: Engine, key: string): string | undefined {
  const dir = engineDir(prefix, engine)
  if (!key.startsWith(dir)) return undefined
  const id = key.slice(dir.length).split('/')[0]
  return id && BACKUP_ID.test(id) ? id : undefined
}
