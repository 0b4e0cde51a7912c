/**
 * Bounded waits. Every transfer is watched for progress: no byte for the stall limit is a
 * StallError (retryable), never a silent wait. The step's own deadline is middy's abort signal,
 * fired before the Lambda timeout (functions/middleware/stateHandler.ts).
 */
import { Transform } from 'node:stream'
import { loadSettings } from './config.ts'
import { StallError } from './errors.ts'

const span = (ms: number) => (ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`)

/** How long a transfer may go without a byte (LSB_STALL_SECONDS). */
export function stallLimitMs(): number {
  return loadSettings().LSB_STALL_SECONDS * 1000
}

/**
 * A pass-through stream that fails with a StallError naming `what` when no chunk has passed for
 * `limitMs`. Put it in a pipeline: the error then destroys every stream of it, children's pipes
 * and uploads included.
 */
export function stallGuard(what: string, limitMs = stallLimitMs()): Transform {
  let timer: NodeJS.Timeout | undefined
  const arm = () => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      guard.destroy(new StallError(`${what}: no progress for ${span(limitMs)}`))
    }, limitMs)
  }
  const guard: Transform = new Transform({
    transform(chunk, _encoding, callback) {
      arm()
      callback(null, chunk)
    },
    flush(callback) {
      clearTimeout(timer)
      callback()
    },
    destroy(error, callback) {
      clearTimeout(timer)
      callback(error)
    },
  })
  arm()
  return guard
}

/**
 * Runs `work` with a signal that fires after `limitMs` (or when `parent` fires); a late finish
 * is a StallError naming `what`, whether or not `work` honoured the signal.
 */
export async function withinLimit<T>(
  what: string,
  work: (signal: AbortSignal) => Promise<T>,
  limitMs = stallLimitMs(),
  parent?: AbortSignal,
): Promise<T> {
  const controller = new AbortController()
  const abort = () => controller.abort(parent?.reason)
  parent?.addEventListener('abort', abort, { once: true })
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new StallError(`${what}: no answer within ${span(limitMs)}`)
      controller.abort(error)
      reject(error)
    }, limitMs)
  })
  try {
    return await Promise.race([work(controller.signal), late])
  } finally {
    clearTimeout(timer)
    parent?.removeEventListener('abort', abort)
  }
}

/** Time a step that can stop early keeps back before its deadline: enough to record what is done and return. */
export function reserveMs(deadlineMs: number, startedMs: number): number {
  return Math.min(30_000, Math.max(500, (deadlineMs - startedMs) / 5))
}
