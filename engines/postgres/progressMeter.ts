import { Transform } from 'node:stream'

/** How often progress is reported: callers log it, and one log line per 64 KiB chunk would be noise. */
export const PROGRESS_EVERY_BYTES = 8 * 1024 * 1024

/**
 * A pass-through that counts bytes and calls `onProgress(total)` every {@link PROGRESS_EVERY_BYTES}
 * and once at the end. `checkStart` sees the first bytes (at least `startBytes` of them, or all
 * there are) and may throw to stop the stream.
 */
export function progressMeter(options: {
  onProgress?: (bytes: number) => void
  startBytes?: number
  checkStart?: (start: Buffer) => void
}): Transform {
  const { onProgress, startBytes = 0, checkStart } = options
  let total = 0
  let reported = 0
  let head: Buffer | undefined = checkStart ? Buffer.alloc(0) : undefined
  const inspectHead = () => {
    if (head) checkStart!(head)
    head = undefined
  }
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      try {
        if (head) {
          head = Buffer.concat([head, chunk.subarray(0, startBytes)])
          if (head.length >= startBytes) inspectHead()
        }
        total += chunk.length
        if (onProgress && total - reported >= PROGRESS_EVERY_BYTES) {
          reported = total
          onProgress(total)
        }
        callback(null, chunk)
      } catch (error) {
        callback(error as Error)
      }
    },
    flush(callback) {
      try {
        inspectHead()
        onProgress?.(total)
        callback()
      } catch (error) {
        callback(error as Error)
      }
    },
  })
}
