import { createHash } from 'node:crypto'
import { PassThrough, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { openObject } from '#catalog/objectStore.ts'
import { ChecksumMismatchError, ClickHouseError, UntrustedInputError } from '#core/errors.ts'
import { restoreNames, SHA256 } from '#core/names.ts'
import type { RestoreItem } from '#core/payloads.ts'
import { COALESCE_BYTES, coalesceChunks } from '../coalesceChunks.ts'
import { type ClickHouseConnection, clickHouseFailure } from '../connection.ts'
import { assertTableName } from '../ddl.ts'
import { storedColumns } from '../describeDatabase.ts'
import { nativeRowCounter } from '../nativeRowCounter.ts'
import { qualifiedName, quoteString } from '../sql.ts'
import { PARTITION_ID } from './plan.ts'

/** Passes bytes through and, at the end, fails unless they have the recorded sha256 and size. */
function verifyingDigest(item: RestoreItem): Transform {
  const hash = createHash('sha256')
  let bytes = 0
  return new Transform({
    transform(chunk: Buffer, _e, callback) {
      hash.update(chunk)
      bytes += chunk.length
      callback(null, chunk)
    },
    flush(callback) {
      const sha256 = hash.digest('hex')
      if (sha256 === item.sha256 && bytes === item.bytes) return callback()
      callback(
        new ChecksumMismatchError(
          `s3 object ${item.key}: read ${bytes} bytes sha256 ${sha256}, expected ${item.bytes} bytes sha256 ${item.sha256}`,
        ),
      )
    },
  })
}

function assertRestoreItem(item: RestoreItem): void {
  assertTableName(item.table)
  assertTableName(item.stagingTable)
  if (!SHA256.test(item.sha256))
    throw new UntrustedInputError(`object ${item.key}: sha256 is not 64 hex digits`)
  if (item.partitionId != null && !PARTITION_ID.test(item.partitionId)) {
    throw new UntrustedInputError(`object ${item.key}: bad partition id`)
  }
}

/**
 * Streams one object from S3 into its staging table with INSERT … FORMAT Native: sha256 and size
 * checked as it streams, gunzipped, rows counted against the manifest. Rows an earlier attempt
 * of the same object left behind are removed first, so a retry does not double them.
 */
export async function restoreClickHouseObject(
  conn: ClickHouseConnection,
  opts: { targetDatabase: string; item: RestoreItem; bucket: string; signal?: AbortSignal },
): Promise<{ table: string; rows: number | null }> {
  const { item } = opts
  const { staging: stagingDatabase } = restoreNames(opts.targetDatabase)
  assertRestoreItem(item)
  const target = qualifiedName(stagingDatabase, item.stagingTable)
  const columns = await storedColumns(conn, stagingDatabase, item.stagingTable)
  if (columns.length === 0)
    throw new ClickHouseError(`staging table ${stagingDatabase}.${item.stagingTable} does not exist`)

  const partition = item.partitionId ?? null
  const [{ c: left } = { c: 0 }] = await conn.query<{ c: unknown }>(
    `SELECT count() AS c FROM ${target}${partition === null ? '' : ' WHERE _partition_id = {p:String}'}`,
    partition === null ? undefined : { p: partition },
  )
  if (Number(left) > 0) {
    await conn.command(
      partition === null
        ? `TRUNCATE TABLE ${target}`
        : `ALTER TABLE ${target} DROP PARTITION ID ${quoteString(partition)}`,
    )
  }

  const counter = nativeRowCounter(columns)
  const stages: (Transform | PassThrough)[] = [coalesceChunks(), verifyingDigest(item)]
  if (item.compression === 'gzip') stages.push(createGunzip({ chunkSize: COALESCE_BYTES }))
  stages.push(counter.stream)
  const object = await openObject(opts.bucket, item.key, opts.signal)
  const body = new PassThrough({ highWaterMark: 1 << 20 })
  // An empty object (an empty table) is still read to the end for its checksum; there is nothing to insert.
  const sink = item.rows === 0 ? new Writable({ write: (_c, _e, cb) => cb() }) : body
  const feeding = pipeline([object, ...stages, sink], { signal: opts.signal })
  const inserting =
    item.rows === 0
      ? Promise.resolve()
      : conn.insertNative(target, body, opts.signal).catch((error) => {
          // an insert that gave up stops reading: unblock the feeding pipeline
          object.destroy()
          throw error
        })
  const [fed, inserted] = await Promise.allSettled([feeding, inserting])
  if (fed.status === 'rejected' || inserted.status === 'rejected') {
    object.destroy()
    body.destroy()
    // the stream's own error (checksum, truncation) says more than the server's parse error it caused
    const reason = fed.status === 'rejected' ? fed.reason : (inserted as PromiseRejectedResult).reason
    if (reason instanceof ChecksumMismatchError) throw reason
    throw clickHouseFailure(`restore of ${item.table} from ${item.key}`, reason)
  }
  const rows = counter.rows()
  if (rows !== null && item.rows !== null && rows !== item.rows) {
    throw new ClickHouseError(
      `restore of ${item.table} from ${item.key}: the object holds ${rows} rows, the manifest says ${item.rows}`,
    )
  }
  return { table: item.table, rows: rows ?? item.rows }
}
