import { z } from 'zod'
import { assertKeyInBackup, ENGINES } from './backupKeys.ts'
import { ManifestError } from './errors.ts'
import { rowHashSchema, tableFingerprintSchema } from './fingerprint.ts'
import { BACKUP_ID, SHA256 } from './names.ts'

export const MANIFEST_FORMAT_VERSION = 1

const sha256 = z.string().regex(SHA256, 'sha256 must be 64 lowercase hex digits')

export const storedObjectSchema = z.object({
  key: z.string().min(1).max(1024),
  bytes: z.number().int().nonnegative(),
  sha256,
  /** Rows written into the object (ClickHouse), or null where the format does not count rows (pg_dump). */
  rows: z.number().int().nonnegative().nullable(),
  /** The table the object holds, or null for a whole-database dump. */
  table: z.string().nullable(),
  /** For a table split into parts: which part (`partition-<id>`, or `partitions-<n>` with `partitions`). */
  part: z.string().optional(),
  /** The partition ids a `partitions-<n>` object holds. */
  partitions: z.array(z.string()).optional(),
  /** gzip: the streaming path; zstd: written by the ClickHouse server itself (s3 table function). */
  compression: z.enum(['none', 'gzip', 'zstd']).default('none'),
  /** ClickHouse: the sum of a hash of each row stored (core/fingerprint.ts); absent when not computed. */
  fingerprint: rowHashSchema.optional(),
})
export type StoredObject = z.output<typeof storedObjectSchema>

export const tableKindSchema = z.enum(['table', 'view', 'materialized_view', 'dictionary'])

/** What a ClickHouse restore needs to recreate one table, in dependency order. */
export const clickhouseTableSchema = z.object({
  name: z.string().min(1).max(255),
  engine: z.string(),
  kind: tableKindSchema,
  /** `SHOW CREATE TABLE` as the source server printed it. */
  ddl: z.string().min(1).max(1_000_000),
  rows: z.number().int().nonnegative(),
  /** Tables this one reads from or writes to (views and materialized views). */
  dependsOn: z.array(z.string()).default([]),
  /** Materialized views: the table the view writes to (`TO` target or its inner table). */
  target: z.string().optional(),
})
export type ClickHouseTable = z.output<typeof clickhouseTableSchema>

export const manifestSchema = z
  .object({
    formatVersion: z.literal(MANIFEST_FORMAT_VERSION),
    backupId: z.string().regex(BACKUP_ID, 'backupId must look like 20261125T144226.123Z'),
    engine: z.enum(ENGINES),
    prefix: z.string().min(1),
    startedAt: z.iso.datetime(),
    finishedAt: z.iso.datetime(),
    toolVersion: z.string(),
    source: z.object({
      serverVersion: z.string(),
      database: z.string().min(1),
      /** pg_dump's version for Postgres backups. */
      dumpToolVersion: z.string().optional(),
    }),
    executionId: z.string().optional(),
    objects: z.array(storedObjectSchema),
    tables: z.array(clickhouseTableSchema).default([]),
    /** Postgres: each table's fingerprint, read in the snapshot pg_dump dumped (core/fingerprint.ts). */
    fingerprints: z.array(tableFingerprintSchema).optional(),
  })
  .superRefine((m, ctx) => {
    for (const [i, o] of m.objects.entries()) {
      try {
        assertKeyInBackup(o.key, m.prefix, m.engine, m.backupId)
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: ['objects', i, 'key'], message: (e as Error).message })
      }
    }
    if (m.engine === 'postgres' && m.objects.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['objects'],
        message: 'a postgres backup has exactly one dump object',
      })
    }
  })

export type Manifest = z.output<typeof manifestSchema>

/** Validates a manifest (on write and on every read); the error names the manifest and each problem. */
export function parseManifest(json: unknown, where: string): Manifest {
  const parsed = manifestSchema.safeParse(json)
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ')
    throw new ManifestError(`manifest ${where} is invalid: ${problems}`)
  }
  return parsed.data
}
