import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { getText, hashObject, putBytes, uploadStream } from '#catalog/objectStore.ts'
import { backupIdFor, manifestKey, postgresDumpKey } from '#core/backupKeys.ts'
import { ObjectExistsError } from '#core/errors.ts'
import { MANIFEST_FORMAT_VERSION, type Manifest } from '#core/manifest.ts'
import { uniquePrefix, useEnv } from '../../support/env.ts'
import { type S3Recorder, startS3Recorder } from '../../support/s3Recorder.ts'

/**
 * Backups are written with `If-None-Match: *`. s3rver does not honour it on writes, so every
 * request here goes through a recording proxy that gives S3's 412 PreconditionFailed when the key
 * exists: what is asserted is the header on the wire and what our code does with S3's answer.
 */
const { s3 } = inject('servers')
const bucket = s3.bucket
let recorder: S3Recorder

beforeAll(async () => {
  recorder = await startS3Recorder(s3.endpoint, { enforceIfNoneMatch: true })
  useEnv({ AWS_ENDPOINT_URL_S3: recorder.endpoint })
})

afterAll(async () => {
  useEnv({ AWS_ENDPOINT_URL_S3: s3.endpoint })
  await recorder?.close()
})

const source = (bytes: Buffer) => Readable.from([bytes])
const writesTo = (key: string) =>
  recorder.requests.filter(
    (r) =>
      r.url.split('?')[0] === `/${bucket}/${key}` &&
      ((r.method === 'PUT' && !r.url.includes('partNumber=')) ||
        (r.method === 'POST' && r.url.includes('uploadId='))),
  )

function manifestFor(prefix: string, backupId: string, sha256: string): Manifest {
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    backupId,
    engine: 'postgres',
    prefix,
    startedAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    toolVersion: 'test',
    source: { serverVersion: '17.0', database: 'app' },
    objects: [
      {
        key: postgresDumpKey(prefix, backupId),
        bytes: 3,
        sha256,
        rows: null,
        table: null,
        compression: 'none',
      },
    ],
    tables: [],
  }
}

describe('Local S3 (s3rver): If-None-Match on writes', () => {
  it('is ignored by s3rver itself: a second conditional PutObject overwrites (why the proxy exists)', async () => {
    // Prepare: straight to s3rver, no proxy
    const client = new S3Client({
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    })
    const key = `${uniquePrefix('s3rver')}/object`
    const put = (Body: string) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body, IfNoneMatch: '*' }))
    // Act
    await put('first')
    await put('second')
    // Assess: real S3 would have answered 412 to the second
    expect(await getText(bucket, key)).toBe('second')
    client.destroy()
  })
})

describe('Function: uploadStream (conditional)', () => {
  it('sends If-None-Match: * on CompleteMultipartUpload, and only there, for a multipart object', async () => {
    // Prepare: 20 MiB, three parts
    const key = `${uniquePrefix('cond')}/big.bin`
    const start = recorder.requests.length
    // Act
    await uploadStream(source(randomBytes(20 << 20)), { bucket, key })
    // Assess
    const mine = recorder.requests.slice(start).filter((r) => r.url.startsWith(`/${bucket}/${key}`))
    const complete = mine.filter((r) => r.method === 'POST' && r.url.includes('uploadId='))
    const parts = mine.filter((r) => r.method === 'PUT' && r.url.includes('partNumber='))
    expect(complete).toEqual([expect.objectContaining({ ifNoneMatch: '*', status: 200 })])
    expect(parts.length).toBe(3)
    // S3 refuses conditional headers on CreateMultipartUpload and UploadPart
    expect(parts.every((p) => p.ifNoneMatch === undefined)).toBe(true)
  })

  it('sends If-None-Match: * on the single PutObject of a small object', async () => {
    const key = `${uniquePrefix('cond')}/small.bin`
    await uploadStream(source(Buffer.from('tiny')), { bucket, key })
    expect(writesTo(key)).toEqual([expect.objectContaining({ method: 'PUT', ifNoneMatch: '*', status: 200 })])
  })

  it('takes a retry that meets its own bytes at the key (412) as done, with the same digest', async () => {
    // Prepare
    const key = `${uniquePrefix('cond')}/retried.bin`
    const bytes = randomBytes(9 << 20)
    const first = await uploadStream(source(bytes), { bucket, key })
    // Act
    const retried = await uploadStream(source(bytes), { bucket, key })
    // Assess: S3 refused the second write, and the object is the first one
    expect(writesTo(key).map((r) => r.status)).toEqual([200, 412])
    expect(retried).toEqual(first)
    expect(await hashObject(bucket, key)).toEqual(first)
  })

  it('fails with ObjectExistsError naming the key when other bytes are at it, and leaves them', async () => {
    // Prepare
    const key = `${uniquePrefix('cond')}/taken.bin`
    const first = await uploadStream(source(randomBytes(1 << 20)), { bucket, key })
    // Act
    const failure = await uploadStream(source(randomBytes(1 << 20)), { bucket, key }).catch((e: Error) => e)
    // Assess
    expect(failure).toBeInstanceOf(ObjectExistsError)
    expect((failure as Error).name).toBe('ObjectExistsError')
    expect((failure as Error).message).toContain(`s3://${bucket}/${key} already exists with other content`)
    expect((failure as Error).message).toContain(first.sha256)
    expect(await hashObject(bucket, key)).toEqual(first)
  })
})

describe('Function: putBytes (conditional)', () => {
  it('writes once with If-None-Match, accepts the same bytes again and refuses others', async () => {
    const key = `${uniquePrefix('cond')}/note.json`
    await putBytes(bucket, key, '{"a":1}', 'application/json', { ifNoneMatch: true })
    await putBytes(bucket, key, '{"a":1}', 'application/json', { ifNoneMatch: true })
    await expect(putBytes(bucket, key, '{"a":2}', 'application/json', { ifNoneMatch: true })).rejects.toThrow(
      ObjectExistsError,
    )
    expect(writesTo(key).map((r) => [r.ifNoneMatch, r.status])).toEqual([
      ['*', 200],
      ['*', 412],
      ['*', 412],
    ])
    expect(await getText(bucket, key)).toBe('{"a":1}')
  })
})

describe('Class: BackupStore (conditional writes)', () => {
  it('writes a manifest with If-None-Match; a retried commit (only finishedAt differs) is done', async () => {
    // Prepare
    const prefix = uniquePrefix('cond')
    const store = new BackupStore(bucket, prefix)
    const backupId = backupIdFor(new Date())
    const manifest = manifestFor(prefix, backupId, 'a'.repeat(64))
    const key = manifestKey(prefix, 'postgres', backupId)
    await store.writeManifest(manifest)
    // Act: the same commit a minute later
    const later = new Date(Date.now() + 60_000).toISOString()
    const again = await store.writeManifest({ ...manifest, finishedAt: later })
    // Assess
    expect(again).toBe(key)
    expect(writesTo(key).map((r) => [r.ifNoneMatch, r.status])).toEqual([
      ['*', 200],
      ['*', 412],
    ])
    expect((await store.readManifest('postgres', backupId)).finishedAt).toBe(manifest.finishedAt)
  })

  it('refuses to replace a manifest that describes other objects (ObjectExistsError), and keeps it', async () => {
    const prefix = uniquePrefix('cond')
    const store = new BackupStore(bucket, prefix)
    const backupId = backupIdFor(new Date())
    await store.writeManifest(manifestFor(prefix, backupId, 'a'.repeat(64)))
    await expect(store.writeManifest(manifestFor(prefix, backupId, 'b'.repeat(64)))).rejects.toThrow(
      ObjectExistsError,
    )
    expect((await store.readManifest('postgres', backupId)).objects[0]!.sha256).toBe('a'.repeat(64))
  })

  it('rewrites plans and batch results unconditionally: they change across a batch loop', async () => {
    const prefix = uniquePrefix('cond')
    const store = new BackupStore(bucket, prefix)
    const backupId = backupIdFor(new Date())
    const start = recorder.requests.length
    await store.writeBatchResult(backupId, 0, [])
    await store.writeBatchResult(backupId, 0, [])
    const puts = recorder.requests.slice(start).filter((r) => r.method === 'PUT')
    expect(puts.map((r) => [r.ifNoneMatch, r.status])).toEqual([
      [undefined, 200],
      [undefined, 200],
    ])
  })

  it('finds the previous complete backup of an engine, older than the one given', async () => {
    // Prepare: three complete backups and an incomplete one between them
    const prefix = uniquePrefix('prev')
    const store = new BackupStore(bucket, prefix)
    const ids = ['20260101T000000.000Z', '20260102T000000.000Z', '20260104T000000.000Z']
    for (const id of ids) await store.writeManifest(manifestFor(prefix, id, 'c'.repeat(64)))
    await putBytes(bucket, postgresDumpKey(prefix, '20260103T000000.000Z'), 'x', 'application/octet-stream')
    // Act / Assess
    expect((await store.previous('postgres', '20260104T000000.000Z'))?.backupId).toBe(ids[1])
    expect((await store.previous('postgres', '20260103T000000.000Z'))?.backupId).toBe(ids[1])
    expect(await store.previous('postgres', ids[0]!)).toBeUndefined()
  })
})
