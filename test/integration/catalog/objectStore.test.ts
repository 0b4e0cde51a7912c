import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { describe, expect, inject, it } from 'vitest'
import { hashObject, listObjects, uploadStream, verifyObjectChecksum } from '#catalog/objectStore.ts'
import { ChecksumMismatchError } from '#core/errors.ts'
import { corruptStoredObject } from '../../support/storedObjects.ts'

const { s3 } = inject('servers')
const bucket = s3.bucket

function chunks(total: number, size = 1 << 20): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= total) return this.push(null)
      const n = Math.min(size, total - sent)
      sent += n
      this.push(randomBytes(n))
    },
  })
}

describe('Function: uploadStream', () => {
  it('stores a multipart object whose recorded sha256 and size match what S3 serves back', async () => {
    // Prepare: 40 MiB, more than two parts
    const key = `objstore/${Date.now()}/big.bin`
    const source = chunks(40 << 20)
    // Act
    const digest = await uploadStream(source, { bucket, key })
    // Assess
    expect(digest.bytes).toBe(40 << 20)
    expect(await hashObject(bucket, key)).toEqual(digest)
  })

  it('aborts the multipart upload when beforeComplete fails, leaving no object', async () => {
    const key = `objstore/${Date.now()}/aborted.bin`
    const failing = uploadStream(chunks(20 << 20), {
      bucket,
      key,
      beforeComplete: async () => {
        throw new Error('child exited 1')
      },
    })
    await expect(failing).rejects.toThrow('child exited 1')
    const left = []
    for await (const o of listObjects(bucket, key)) left.push(o)
    expect(left).toEqual([])
  })

  it('aborts when the source stream errors half-way', async () => {
    const key = `objstore/${Date.now()}/broken.bin`
    const source = chunks(30 << 20)
    let n = 0
    source.on('data', () => {
      if (++n === 10) source.destroy(new Error('connection reset'))
    })
    await expect(uploadStream(source, { bucket, key })).rejects.toThrow('connection reset')
    const left = []
    for await (const o of listObjects(bucket, key)) left.push(o)
    expect(left).toEqual([])
  })
})

describe('Function: verifyObjectChecksum', () => {
  it('names the object when one stored byte is corrupted', async () => {
    const key = `objstore/${Date.now()}/corrupt.bin`
    const payload = randomBytes(3 << 20)
    const digest = await uploadStream(Readable.from([payload]), { bucket, key })
    expect(digest.sha256).toBe(createHash('sha256').update(payload).digest('hex'))
    await expect(verifyObjectChecksum(bucket, key, digest)).resolves.toEqual(digest)
    corruptStoredObject(key)
    const failure = verifyObjectChecksum(bucket, key, digest)
    await expect(failure).rejects.toBeInstanceOf(ChecksumMismatchError)
    await expect(failure).rejects.toThrow(key)
  })
})
