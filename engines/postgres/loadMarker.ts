import { z } from 'zod'
import type { AdminSession } from './adminSession.ts'
import { quoteIdent } from './connectPostgres.ts'

/**
 * What a finished load writes on `<db>__lsb_restoring` (COMMENT ON DATABASE) as its last step, and
 * what the swap requires before it renames anything: a database without it is a load that did not
 * finish (or one that is not ours). A comment lives in the shared catalog, so it is read and written
 * from the `postgres` database, and pg_restore without --create never writes one.
 */
export interface LoadMarker {
  /** `s3://bucket/key` of the dump that was loaded. */
  source: string
  tables: number
  loadedAt: string
}

const MARKER_PREFIX = 'langsight-backup: load complete '
const markerSchema = z.object({
  source: z.string().min(1),
  tables: z.number().int().min(0),
  loadedAt: z.string(),
})

/** The comment's text: a fixed prefix, then the marker as JSON. */
export function formatLoadMarker(marker: LoadMarker): string {
  return `${MARKER_PREFIX}${JSON.stringify(marker)}`
}

/** The marker in a database comment, or null when the comment is missing or is not one. */
export function parseLoadMarker(comment: string | null): LoadMarker | null {
  if (!comment?.startsWith(MARKER_PREFIX)) return null
  try {
    const parsed = markerSchema.safeParse(JSON.parse(comment.slice(MARKER_PREFIX.length)))
    return parsed.success ? parsed.data : null
  } catch {
    return null
  }
}

export async function writeLoadMarker(
  admin: AdminSession,
  database: string,
  marker: LoadMarker,
): Promise<void> {
  await admin.run(
    `mark ${database} as completely loaded`,
    `COMMENT ON DATABASE ${quoteIdent(database)} IS ${admin.client.escapeLiteral(formatLoadMarker(marker))}`,
  )
}

/** Whether the database exists, and its marker if it has one. */
export async function readLoadMarker(
  admin: AdminSession,
  database: string,
): Promise<{ exists: boolean; marker: LoadMarker | null }> {
  const { rows } = await admin.run(
    `read the comment of ${database}`,
    `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
    [database],
  )
  if (rows.length === 0) return { exists: false, marker: null }
  return { exists: true, marker: parseLoadMarker(rows[0].comment) }
}
