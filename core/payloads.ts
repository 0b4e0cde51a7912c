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
  fingerprints: manifestSchema.shape.fingerprints,
})
export type EngineBackup = z.output<typeof engineBackupSchema>

/** One stored object to be: a whole table, or a run of partitions of a big one. */
export const exportItemSchema = z.object({
  table: z.string().min(1),
  /** Names the stored object: `all` for a whole table, `partition-<id>` or `partitions-<n>` for parts of one. */
  part: z.string().min(1),
  /** The partitions the object holds, or null for the whole table. */
  partitions: z.array(z.string()).min(1).nullable(),
  rows: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
})
export type ExportItem = z.output<typeof exportItemSchema>

export const transferSchema = z.enum(['server', 'stream'])

/**
 * A ClickHouse backup's plan, stored in S3 beside its data (the state carries its key and the
 * batch count): what ListClickHouseTables found, and the export items in batches, one batch per
 * Map item of ExportTables.
 */
export const clickhousePlanSchema = z.object({
  backupId: backupIdSchema,
  startedAt: z.iso.datetime(),
  source: manifestSchema.shape.source,
  transfer: transferSchema,
  tables: z.array(clickhouseTableSchema),
  batches: z.array(z.array(exportItemSchema)),
})
export type ClickHousePlan = z.output<typeof clickhousePlanSchema>

/** Where a batch worker stands: the next item, and the statement it left running, if any. */
export const batchCursorSchema = z.object({
  next: z.number().int().nonnegative(),
  queryId: z
    .string()
    .regex(/^lsb-[A-Za-z0-9-]{1,100}$/)
    .nullable(),
  /** Restarts of the current item after its statement was lost between invocations. */
  restarts: z.number().int().nonnegative().default(0),
})
export type BatchCursor = z.output<typeof batchCursorSchema>

/** One unit of RestoreClickHouse: one stored object and the staging table it is loaded into. */
export const restoreItemSchema = z.object({
  table: z.string().min(1),
  stagingTable: z.string().min(1),
  key: z.string().min(1),
  sha256: sha256Schema,
  bytes: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative().nullable(),
  compression: storedObjectSchema.shape.compression,
  /** The partitions the object holds, or null for a whole table: what a retry clears first. */
  partitions: z.array(z.string()).nullable(),
})
export type RestoreItem = z.output<typeof restoreItemSchema>

/** The Step Functions context every state gets through its Parameters. */
export const executionFields = {
  startedAt: z.iso.datetime(),
  executionId: z.string().min(1),
}
