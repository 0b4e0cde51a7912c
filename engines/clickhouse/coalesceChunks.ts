import { Transform } from 'node:stream'

/** Chunks of at least this size: per-chunk costs (zlib calls, hashing, stream hops) stop mattering. */
export const COALESCE_BYTES = 256 * 1024

/**
 * Joins the small chunks of a network stream (ClickHouse 18.16 answers in ~4 KiB HTTP chunks) into
 * chunks of at least `size` bytes, so every later stage is called a few times per MiB, not hundreds.
 */
export function coalesceChunks(size = COALESCE_BYTES): Transform {
  let parts: Buffer[] = []
  let buffered = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      parts.push(chunk)
      buffered += chunk.length
      if (buffered < size) return callback()
      const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts, buffered)
      parts = []
      buffered = 0
      callback(null, joined)
    },
    flush(callback) {
      callback(null, buffered ? Buffer.concat(parts, buffered) : undefined)
    },
  })
}
