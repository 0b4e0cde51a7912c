import { createHash } from 'node:crypto'
import { PassThrough, type Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { loadSettings } from '#core/config.ts'
import { stallGuard, stallLimitMs } from '#core/deadline.ts'
import { ChecksumMismatchError, ObjectExistsError, TransientError } from '#core/errors.ts'

type S3Failure = { name?: string; $metadata?: { httpStatusCode?: number } }

/** S3's answer to `If-None-Match: *` when the key exists (412 PreconditionFailed). */
function keyExisted(error: unknown): boolean {
  const e = error as S3Failure
  return e?.name === 'PreconditionFailed' || e?.$metadata?.httpStatusCode === 412
}

/**
 * S3's 409 ConditionalRequestConflict: another conditional write to the key was in flight. S3 says
 * to start the upload again, which a retry of the state does (and then meets the 412 and compares).
 */
function conditionalConflict(error: unknown, where: string): Error | undefined {
  const e = error as S3Failure
  if (e?.name !== 'ConditionalRequestConflict' && e?.$metadata?.httpStatusCode !== 409) return undefined
  return new TransientError(`${where}: another write to the same key was in progress (409)`, {
    cause: error,
  })
}

export interface ObjectDigest {
  bytes: number
  sha256: string
}

export interface ListedObject {
  key: string
  bytes: number
  lastModified: Date
}

/**
 * Multipart part size and parallel parts: memory of one upload is about partSize × queueSize.
 * Measured (bench/RESULTS.md): 8 MiB × 2 peaks at 161 MiB for a 256 MiB object where 16 MiB × 4
 * peaked at 214 MiB, and was no slower. 10,000 parts cap an object at 80 GiB, past any Lambda run.
 */
export const UPLOAD_PART_BYTES = 8 * 1024 * 1024
export const UPLOAD_QUEUE_SIZE = 2

const clients = new Map<string, S3Client>()

/** One S3 client per endpoint. An S3-compatible endpoint (AWS_ENDPOINT_URL_S3) gets path-style addressing. */
export function s3Client(): S3Client {
  const { AWS_ENDPOINT_URL_S3: endpoint, AWS_REGION: region } = loadSettings()
  const id = `${endpoint ?? 'aws'}|${region}`
  let client = clients.get(id)
  if (!client) {
    const config: S3ClientConfig = {
      region,
      maxAttempts: 5,
      // a connection that never opens, or a socket with no byte for the stall limit, fails the
      // attempt (and the SDK retries it) instead of waiting forever
      requestHandler: { connectionTimeout: 10_000, requestTimeout: stallLimitMs() },
    }
    if (endpoint) {
      config.endpoint = endpoint
      config.forcePathStyle = true
      // Local S3 servers store aws-chunked checksum trailers verbatim; our own sha256 is the check that counts.
      config.requestChecksumCalculation = 'WHEN_REQUIRED'
      config.responseChecksumValidation = 'WHEN_REQUIRED'
    }
    client = new S3Client(config)
    clients.set(id, client)
  }
  return client
}

/** A pass-through stream that hashes and counts what flows through it. */
export function digestStream(): { stream: Transform; digest: () => ObjectDigest } {
  const hash = createHash('sha256')
  let bytes = 0
  let sha256: string | undefined
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk)
      bytes += chunk.length
      callback(null, chunk)
    },
  })
  return {
    stream,
    digest: () => {
      sha256 ??= hash.digest('hex')
      return { bytes, sha256 }
    },
  }
}

export interface UploadOptions {
  bucket: string
  key: string
  /** Transforms between the source and the hash (compression): the hash is of the stored bytes. */
  transforms?: Transform[]
  /**
   * Runs after the source ended and before the upload is completed. Throwing here aborts the
   * multipart upload: this is where a child process's exit status is checked.
   */
  beforeComplete?: () => Promise<void>
  contentType?: string
  signal?: AbortSignal
}

/**
 * Streams `source` into a NEW S3 object while computing its sha256 and size. Nothing is staged:
 * memory is bounded by the multipart queue. Any error — in the source, a transform,
 * `beforeComplete` or S3 — aborts the multipart upload, so no partial object is left behind.
 * The write is conditional (`If-None-Match: *`, on PutObject or CompleteMultipartUpload): when the
 * key exists, the stored object is re-hashed, and it is this object's digest when the bytes are
 * the same (a retried state); otherwise an ObjectExistsError, and the stored object stays.
 */
export async function uploadStream(source: Readable, options: UploadOptions): Promise<ObjectDigest> {
  const { stream: hasher, digest } = digestStream()
  const gate = new Transform({
    transform: (chunk, _e, cb) => cb(null, chunk),
    flush(callback) {
      ;(options.beforeComplete ?? (async () => {}))().then(() => callback(), callback)
    },
  })
  const body = new PassThrough({ highWaterMark: 1024 * 1024 })
  const upload = new Upload({
    client: s3Client(),
    params: {
      Bucket: options.bucket,
      Key: options.key,
      Body: body,
      ContentType: options.contentType ?? 'application/octet-stream',
      // lib-storage passes it on to PutObject (one part) or CompleteMultipartUpload, where S3 checks it
      IfNoneMatch: '*',
    },
    partSize: UPLOAD_PART_BYTES,
    queueSize: UPLOAD_QUEUE_SIZE,
    // The multipart upload is aborted below: lib-storage's own abort would throw ITS error in place of
    // the part's (a 500 the state machine retries), e.g. an endpoint that refuses AbortMultipartUpload.
    leavePartsOnError: true,
  })
  const uploaded = upload.done()
  uploaded.catch(() => {}) // observed below; avoid an unhandled rejection while the pipeline runs
  try {
    const guard = stallGuard(`upload to s3://${options.bucket}/${options.key}`)
    await pipeline([source, guard, ...(options.transforms ?? []), hasher, gate, body], {
      signal: options.signal,
    })
    await uploaded
  } catch (error) {
    // A part that failed for good makes lib-storage tear the body down, and the pipeline then only
    // says "The operation was aborted": the upload's own error (S3's, retryable) says what happened.
    const failure =
      (error as Error).name === 'AbortError' && !options.signal?.aborted
        ? ((await uploaded.then(
            () => undefined,
            (e: unknown) => e,
          )) ?? error)
        : error
    await upload.abort().catch(() => {})
    if (upload.uploadId) {
      const { bucket: Bucket, key: Key } = options
      await s3Client()
        .send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: upload.uploadId }))
        .catch(() => {})
    }
    const where = `s3://${options.bucket}/${options.key}`
    if (keyExisted(failure)) return sameAsStored(options.bucket, options.key, digest(), options.signal)
    throw conditionalConflict(failure, where) ?? failure
  }
  return digest()
}

/** The digest of what a conditional write streamed when S3 already holds those very bytes. */
async function sameAsStored(
  bucket: string,
  key: string,
  ours: ObjectDigest,
  signal?: AbortSignal,
): Promise<ObjectDigest> {
  const stored = await hashObject(bucket, key, signal)
  if (stored.sha256 === ours.sha256 && stored.bytes === ours.bytes) return ours
  throw new ObjectExistsError(
    `s3://${bucket}/${key} already exists with other content (${stored.bytes} bytes sha256 ${stored.sha256}; ` +
      `this write: ${ours.bytes} bytes sha256 ${ours.sha256}); backups are never overwritten`,
  )
}

export interface PutOptions {
  /**
   * `If-None-Match: *`: never replace an object. When the key exists with the same bytes (a retry)
   * the write counts as done; with other bytes it is an ObjectExistsError.
   */
  ifNoneMatch?: boolean
}

/** Writes a small object (a manifest, a plan) in one request. */
export async function putBytes(
  bucket: string,
  key: string,
  body: string | Uint8Array,
  contentType: string,
  options: PutOptions = {},
): Promise<void> {
  const IfNoneMatch = options.ifNoneMatch ? '*' : undefined
  try {
    await s3Client().send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType, IfNoneMatch }),
    )
  } catch (error) {
    const where = `s3://${bucket}/${key}`
    if (!(IfNoneMatch && keyExisted(error))) throw conditionalConflict(error, where) ?? error
    const bytes = typeof body === 'string' ? Buffer.from(body) : body
    const ours = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }
    await sameAsStored(bucket, key, ours)
  }
}

/** A readable stream of an object's bytes. The caller consumes it to the end or destroys it. */
export async function openObject(bucket: string, key: string, signal?: AbortSignal): Promise<Readable> {
  const response = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
    abortSignal: signal,
  })
  // a read that stops mid-object fails as a StallError instead of waiting for bytes that never come
  const guard = stallGuard(`read of s3://${bucket}/${key}`)
  pipeline(response.Body as Readable, guard).catch(() => {}) // the error reaches the reader through `guard`
  return guard
}

/** An object's bytes as text, or undefined when it does not exist. */
export async function getText(bucket: string, key: string): Promise<string | undefined> {
  try {
    const response = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }))
    return await response.Body!.transformToString('utf8')
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined
    throw error
  }
}

/** Whether an object exists (a HEAD request). */
export async function objectExists(bucket: string, key: string): Promise<boolean> {
  try {
    await s3Client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
    return true
  } catch (error) {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } }
    if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return false
    throw error
  }
}

/** Re-reads an object from S3 and returns its sha256 and size. */
export async function hashObject(bucket: string, key: string, signal?: AbortSignal): Promise<ObjectDigest> {
  const { stream: hasher, digest } = digestStream()
  const sink = new Writable({ write: (_c, _e, cb) => cb() })
  await pipeline(await openObject(bucket, key, signal), hasher, sink, { signal })
  return digest()
}

/** Re-hashes an object and throws a ChecksumMismatchError naming it when it differs from `expected`. */
export async function verifyObjectChecksum(
  bucket: string,
  key: string,
  expected: ObjectDigest,
  signal?: AbortSignal,
): Promise<ObjectDigest> {
  const actual = await hashObject(bucket, key, signal)
  if (actual.sha256 !== expected.sha256 || actual.bytes !== expected.bytes) {
    throw new ChecksumMismatchError(
      `s3://${bucket}/${key}: stored ${actual.bytes} bytes sha256 ${actual.sha256}, ` +
        `expected ${expected.bytes} bytes sha256 ${expected.sha256}`,
    )
  }
  return actual
}

/** Every object below `prefix`, page by page. */
export async function* listObjects(bucket: string, prefix: string): AsyncGenerator<ListedObject> {
  let token: string | undefined
  do {
    const page = await s3Client().send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    )
    for (const o of page.Contents ?? []) {
      yield { key: o.Key!, bytes: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) }
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined
  } while (token)
}

/** S3's limit for one DeleteObjects request. */
export const DELETE_BATCH = 1000

/** Deletes keys in batches of {@link DELETE_BATCH}; a key S3 refuses to delete is an error that names it. */
export async function deleteObjects(bucket: string, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += DELETE_BATCH) {
    const batch = keys.slice(i, i + DELETE_BATCH)
    const result = await s3Client().send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }),
    )
    if (result.Errors?.length) {
      const first = result.Errors[0]!
      throw new TransientError(
        `S3 refused to delete ${result.Errors.length} object(s), first s3://${bucket}/${first.Key}: ${first.Code} ${first.Message}`,
      )
    }
  }
}
