import { createHash } from 'node:crypto'
import { PassThrough, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import zlib, { createGunzip } from 'node:zlib'
import { hashObject, openObject } from '#catalog/objectStore.ts'
import {
  ChecksumMismatchError,
  ClickHouseError,
  isNetworkError,
  StallError,
  TransientError,
  UntrustedInputError,
} from '#core/errors.ts'
import { restoreNames, SHA256 } from '#core/names.ts'
import type { RestoreItem } from '#core/payloads.ts'
import { COALESCE_BYTES, coalesceChunks } from '../coalesceChunks.ts'
import { type ClickHouseConnection, clickHouseFailure } from '../connection.ts'
import { assertTableName } from '../ddl.ts'
import { storedColumns } from '../describeDatabase.ts'
import { partitionFilter } from '../exportTable.ts'
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
      callback(checksumMismatch(item, { bytes, sha256 }))
    },
  })
}

function checksumMismatch(
  item: RestoreItem,
  read: { bytes: number; sha256: string },
  options?: ErrorOptions,
): ChecksumMismatchError {
  return new ChecksumMismatchError(
    `s3 object ${item.key}: read ${read.bytes} bytes sha256 ${read.sha256}, expected ${item.bytes} bytes sha256 ${item.sha256}`,
    options,
  )
}

/**
 * A corrupted byte usually breaks gunzip or the Native parser before the digest has seen the last
 * byte, so the stream fails with their error first. When the restore failed that way, the object is
 * hashed again: if it differs from the manifest, the failure is the ChecksumMismatchError it really is.
 */
async function storedMismatch(
  bucket: string,
  item: RestoreItem,
  reason: unknown,
  signal?: AbortSignal,
): Promise<ChecksumMismatchError | undefined> {
  // a stall, a dropped connection or an abort says nothing about the stored bytes
  if (signal?.aborted || reason instanceof StallError || reason instanceof TransientError) return undefined
  const stored = await hashObject(bucket, item.key, signal).catch(() => undefined)
  if (!stored || (stored.sha256 === item.sha256 && stored.bytes === item.bytes)) return undefined
  return checksumMismatch(item, stored, { cause: reason })
}

/**
 * The failure as the state machine should see it: a stall (no byte from S3, or ClickHouse's
 * HTTP client giving up on a silent socket) is a StallError and a dropped connection a TransientError,
 * both retried, which is safe because an attempt first removes what an earlier one loaded (rows of
 * an abandoned INSERT that reach the server later still are caught by the count check before any
 * database is swapped, CheckClickHouseStaging); anything else (the server refusing the data) is a
 * ClickHouseError.
 */
function loadFailure(what: string, reason: unknown, other: unknown): Error {
  const failure = clickHouseFailure(what, reason)
  const chain = (start: unknown) => {
    const errors: Error[] = []
    for (let e = start; e instanceof Error && errors.length < 10; e = e.cause) errors.push(e)
    return errors
  }
  const errors = [...chain(reason), ...chain(other)]
  if (errors.some((e) => e instanceof StallError)) return new StallError(failure.message, { cause: reason })
  if (errors.some(isNetworkError)) return new TransientError(failure.message, { cause: reason })
  return failure
}

function assertRestoreItem(item: RestoreItem): void {
  assertTableName(item.table)
  assertTableName(item.stagingTable)
  if (!SHA256.test(item.sha256))
    throw new UntrustedInputError(`object ${item.key}: sha256 is not 64 hex digits`)
  if (item.partitions?.some((id) => !PARTITION_ID.test(id))) {
    throw new UntrustedInputError(`object ${item.key}: bad partition id`)
  }
}

/**
 * zstd objects are written by the server-side path; streaming one into a server without the s3
 * table function needs Node's zstd (22.15 and later, as on Lambda's nodejs22.x).
 */
function zstdDecompressor(item: RestoreItem): Transform {
  const create = (zlib as { createZstdDecompress?: () => Transform }).createZstdDecompress
  if (!create) {
    throw new ClickHouseError(
      `object ${item.key} is zstd (written by ClickHouse itself); streaming it needs Node 22.15 or later, this is ${process.version}: restore into a ClickHouse with the s3 table function, or run on Node 22`,
    )
  }
  return create()
}

/**
 * Removes what an earlier attempt of the same object loaded into `target` (its partitions, or the
 * whole table for a whole-table object), so a retry never doubles rows.
 */
export async function clearEarlierAttempt(
  conn: ClickHouseConnection,
  target: string,
  partitions: string[] | null,
): Promise<void> {
  const params: Record<string, unknown> = {}
  const where = partitions === null ? '' : ` WHERE ${partitionFilter(partitions, params)}`
  const [{ c: left } = { c: 0 }] = await conn.query<{ c: unknown }>(
    `SELECT count() AS c FROM ${target}${where}`,
    params,
  )
  if (Number(left) === 0) return
  if (partitions === null) return conn.command(`TRUNCATE TABLE ${target}`)
  for (const id of partitions)
    await conn.command(`ALTER TABLE ${target} DROP PARTITION ID ${quoteString(id)}`)
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

  await clearEarlierAttempt(conn, target, item.partitions)
  const counter = nativeRowCounter(columns)
  const stages: (Transform | PassThrough)[] = [coalesceChunks(), verifyingDigest(item)]
  if (item.compression === 'gzip') stages.push(createGunzip({ chunkSize: COALESCE_BYTES }))
  if (item.compression === 'zstd') stages.push(zstdDecompressor(item))
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
    const other = fed.status === 'rejected' && inserted.status === 'rejected' ? inserted.reason : undefined
    const failure = loadFailure(`restore of ${item.table} from ${item.key}`, reason, other)
    throw (await storedMismatch(opts.bucket, item, failure, opts.signal)) ?? failure
  }
  const rows = counter.rows()
  if (rows !== null && item.rows !== null && rows !== item.rows) {
    throw new ClickHouseError(
      `restore of ${item.table} from ${item.key}: the object holds ${rows} rows, the manifest says ${item.rows}`,
    )
  }
  return { table: item.table, rows: rows ?? item.rows }
}
