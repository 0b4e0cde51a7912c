/**
 * What a drill found, stored beside the backup it restored:
 * `<prefix>/<engine>/<backupId>/drills/<drillId>-passed.json` (or `-failed`). The outcome is in the
 * key so that a listing alone tells which backups are proven (core/backupKeys.ts provenAt).
 */
import { z } from 'zod'
import { backupDir, drillOfKey, drillRecordKey, type Engine } from '#core/backupKeys.ts'
import { ManifestError } from '#core/errors.ts'
import { BACKUP_ID } from '#core/names.ts'
import type { BackupStore } from './backupStore.ts'
import { getText, listObjects, putBytes } from './objectStore.ts'

export const tableCheckSchema = z.object({
  table: z.string(),
  expectedRows: z.number().int().nonnegative().nullable(),
  rows: z.number().int().nonnegative().nullable(),
  compared: z.enum(['rows', 'full']),
  match: z.boolean(),
  seconds: z.number().nonnegative(),
})
export type TableCheck = z.output<typeof tableCheckSchema>

export const drillRecordSchema = z.object({
  drillId: z.string().regex(BACKUP_ID),
  engine: z.enum(['postgres', 'clickhouse']),
  backupId: z.string().regex(BACKUP_ID),
  executionId: z.string(),
  /** The scratch database the backup was restored into (dropped since). */
  database: z.string(),
  passed: z.boolean(),
  /** What the backup recorded to compare with: full fingerprints, row counts, or nothing. */
  fingerprints: z.enum(['full', 'rows', 'none']),
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
  /** From the drill's start to this engine's comparison (restore included). */
  seconds: z.number().nonnegative(),
  tables: z.array(tableCheckSchema),
  /** A drill that failed before comparing: where, and why (redacted). */
  failedState: z.string().optional(),
  error: z.string().optional(),
})
export type DrillRecord = z.output<typeof drillRecordSchema>

/** Stores a drill's record (each drill has its own key: nothing is overwritten). */
export async function writeDrillRecord(store: BackupStore, record: DrillRecord): Promise<string> {
  const parsed = drillRecordSchema.parse(record)
  const key = drillRecordKey(store.prefix, parsed.engine, parsed.backupId, parsed.drillId, parsed.passed)
  await putBytes(store.bucket, key, JSON.stringify(parsed, null, 2), 'application/json')
  return key
}

/** The keys of one backup's drill records, oldest drill first. */
export async function drillRecordKeys(
  store: BackupStore,
  engine: Engine,
  backupId: string,
): Promise<string[]> {
  const keys: string[] = []
  for await (const o of listObjects(store.bucket, `${backupDir(store.prefix, engine, backupId)}drills/`)) {
    if (drillOfKey(o.key)) keys.push(o.key)
  }
  return keys.sort()
}

/** Every drill record of one backup, oldest first. */
export async function readDrillRecords(
  store: BackupStore,
  engine: Engine,
  backupId: string,
): Promise<DrillRecord[]> {
  const records: DrillRecord[] = []
  for (const key of await drillRecordKeys(store, engine, backupId)) {
    const text = await getText(store.bucket, key)
    let json: unknown
    try {
      json = text === undefined ? undefined : JSON.parse(text)
    } catch {}
    const parsed = drillRecordSchema.safeParse(json)
    if (!parsed.success) throw new ManifestError(`drill record s3://${store.bucket}/${key} is invalid`)
    records.push(parsed.data)
  }
  return records
}
