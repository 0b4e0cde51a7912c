import { createGzip } from 'node:zlib'
import { ClickHouseError } from '../errors.ts'
import type { StoredObject } from '../manifest.ts'
import { uploadStream } from '../objectStore.ts'
import type { ClickHouseConnection } from './connection.ts'
import { assertTableName } from './ddl.ts'
import { storedColumns } from './describeDatabase.ts'
import type { ExportItem } from './listTables.ts'
import { nativeRowCounter } from './nativeRowCounter.ts'
import { qualifiedName, quoteIdentifier } from './sql.ts'

/**
 * Streams one export item — a table, or one partition of it (`WHERE _partition_id = …`, which
 * ClickHouse 18.16 has too) — as `SELECT <columns> … FORMAT Native`, gzip at `gzipLevel`, into
 * s3://bucket/key, hashing while it uploads. MATERIALIZED columns are exported with the rest so a
 * restore does not recompute them. Nothing is staged; a failure anywhere aborts the upload.
 *
 * The row count recorded is the count of rows in the stored bytes themselves, read from the
 * Native block headers as they pass (see nativeRowCounter): exact whatever else is written to
 * the table meanwhile. It is null only for column types the counter cannot skip.
 */
export async function exportTableToS3(
  conn: ClickHouseConnection,
  opts: { item: ExportItem; bucket: string; key: string; gzipLevel: number; signal?: AbortSignal },
): Promise<StoredObject> {
  const { item } = opts
  assertTableName(item.table)
  const columns = await storedColumns(conn, conn.database, item.table)
  if (columns.length === 0) throw new ClickHouseError(`table ${conn.database}.${item.table} does not exist`)
  let sql = `SELECT ${columns.map(quoteIdentifier).join(', ')} FROM ${qualifiedName(conn.database, item.table)}`
  const params: Record<string, unknown> = {}
  if (item.partitionId !== null) {
    sql += ' WHERE _partition_id = {partition:String}'
    params.partition = item.partitionId
  }
  const source = await conn.exportNative(sql, params, opts.signal)
  const counter = nativeRowCounter(columns)
  try {
    const digest = await uploadStream(source, {
      bucket: opts.bucket,
      key: opts.key,
      transforms: [counter.stream, createGzip({ level: opts.gzipLevel })],
      signal: opts.signal,
    })
    return {
      key: opts.key,
      bytes: digest.bytes,
      sha256: digest.sha256,
      rows: counter.rows(),
      table: item.table,
      part: item.part,
      compression: 'gzip',
    }
  } catch (error) {
    source.destroy()
    if (error instanceof ClickHouseError) {
      throw new ClickHouseError(`export of ${conn.database}.${item.table} (${item.part}): ${error.message}`, {
        cause: error,
      })
    }
    throw error
  }
}
