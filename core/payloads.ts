/**
 * The JSON that flows between states, as zod schemas with their types derived from them. Every
 * state parses its input with these: state input is untrusted (a console user can start an
 * execution with anything).
 */
import { z } from 'zod'
import { ENGINES } from './backupKeys.ts'
import { clickhouseTableSchema, manifestSchema, storedObjectSchema } from './manifest.ts'
import { BACKUP_ID, databaseNameProblem, SHA256 } from './names.ts'

export const engineSchema = z.enum(ENGINES)
export const backupIdSchema = z.string().regex(BACKUP_ID, 'must be a backup id like 20261125T144226.123Z')
export const sha256Schema = z.string().regex(SHA256, 'must be 64 lowercase hex digits')

/** A database to restore into (see `core/names.ts`). */
export const databaseNameSchema = z.string().superRefine((name, ctx) => {
  const problem = databaseNameProblem(name)
  if (problem) ctx.addIssue({ code: 'custom', message: `database name ${JSON.stringify(name)}: ${problem}` })
})

/** One engine's backup as it travels from its snapshot/export states to CommitManifest. */
export const engineBackupSchema = z.object({
  engine: engineSchema,
  backupId: backupIdSchema,
  startedAt: z.iso.datetime(),
  source: manifestSchema.shape.source,
  objects: z.array(storedObjectSchema),
  tables: z.array(clickhouseTableSchema).default([]),
})
export type EngineBackup = z.output<typeof engineBackupSchema>

/** One unit of ExportTables: a whole table, or one partition of a big one. */
export const exportItemSchema = z.object({
  table: z.string().min(1),
  /** Names the stored object: `all` for a whole table, `partition-<id>` for one partition. */
  part: z.string().min(1),
  partitionId: z.string().nullable(),
  rows: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
})
export type ExportItem = z.output<typeof exportItemSchema>

/** One unit of RestoreClickHouse: one stored object and the staging table it is loaded into. */
export const restoreItemSchema = z.object({
  table: z.string().min(1),
  stagingTable: z.string().min(1),
  key: z.string().min(1),
  sha256: sha256Schema,
  bytes: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative().nullable(),
  compression: z.enum(['none', 'gzip']),
  /** The partition the object holds, or null for a whole table: what a retry clears first. */
  partitionId: z.string().nullable().optional(),
})
export type RestoreItem = z.output<typeof restoreItemSchema>

/** The Step Functions context every state gets through its Parameters. */
export const executionFields = {
  startedAt: z.iso.datetime(),
  executionId: z.string().min(1),
}
