/**
 * The JSON that flows between states. Every state parses its input with these schemas: state input
 * is untrusted (a console user can start an execution with anything).
 */
import { z } from 'zod'
import { BACKUP_ID, ENGINES } from './backupKeys.ts'
import { clickhouseTableSchema, manifestSchema, storedObjectSchema } from './manifest.ts'

export const engineSchema = z.enum(ENGINES)
export const backupIdSchema = z.string().regex(BACKUP_ID, 'must be a backup id like 20261125T144226.123Z')

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

export const exportItemSchema = z.object({
  table: z.string().min(1),
  part: z.string().min(1),
  partitionId: z.string().nullable(),
  rows: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
})

/** The Step Functions context every state gets through its Parameters. */
export const executionFields = {
  startedAt: z.iso.datetime(),
  executionId: z.string().min(1),
}

export const databaseNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,47}$/, 'letters, digits and _ only, at most 48 characters')
