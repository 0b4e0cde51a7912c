import middy from '@middy/core'
import type { Context } from 'aws-lambda'
import type { z } from 'zod'
import { NETWORK_ERROR_CODES, TransientError, UntrustedInputError } from '#core/errors.ts'
import { logger } from '#core/logger.ts'
import { flushMetrics } from '#core/metrics.ts'
import { redact } from '#core/redact.ts'

export interface StateContext {
  /** Fires shortly before the Lambda timeout (and on a local abort): stop children, abort uploads. */
  signal: AbortSignal
  /** When `signal` fires (epoch ms): work that can stop early and be continued returns before it. */
  deadlineMs: number
}

/** A middleware of a state's handler; it may add to the Lambda context what `run` receives. */
export type StateMiddleware = middy.MiddlewareObj<unknown, unknown, Error, Context>

/** Network and throttling failures that a Retry in the ASL should retry, by error name or code. */
const TRANSIENT = new Set([
  ...NETWORK_ERROR_CODES,
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'ThrottlingException',
  'TooManyRequestsException',
])

/**
 * Makes an error safe and matchable for Step Functions: the message is redacted (no secret can
 * reach the execution history), and network or throttling failures become TransientError so the
 * ASL's Retry can name them.
 */
export function classifyError(error: unknown): Error {
  const e = error instanceof Error ? error : new Error(String(error))
  const code = (e as { code?: string }).code ?? ''
  if (e.name === 'Error' && (TRANSIENT.has(code) || TRANSIENT.has(e.name))) {
    return new TransientError(redact(`${code}: ${e.message}`))
  }
  if (TRANSIENT.has(e.name)) return new TransientError(redact(`${e.name}: ${e.message}`))
  const safe = new Error(redact(e.message))
  safe.name = e.name
  return safe
}

/** Parses a state's input with its zod schema; a bad input names the state and each problem. */
export function parseStateInput<S extends z.ZodType>(state: string, schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input)
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`)
      .join('; ')
    throw new UntrustedInputError(`${state}: invalid input: ${problems}`)
  }
  return parsed.data
}

/**
 * One Lambda handler for one state: parses the input (before any middleware opens a connection),
 * runs `run` with an abort signal that fires 10 s before the Lambda timeout and whatever the
 * middlewares put in the context, logs with the state's name, and rethrows errors redacted and
 * named (see {@link classifyError}).
 */
export function stateHandler<S extends z.ZodType, Out, Extra extends object = object>(
  state: string,
  schema: S,
  run: (input: z.output<S>, context: StateContext & Extra) => Promise<Out>,
  ...middlewares: StateMiddleware[]
) {
  const handler = middy<unknown, Out, Error, Context>({ timeoutEarlyInMillis: 10_000 })
    .before(async (request) => {
      // Keys appended by an earlier invocation of a warm container must not leak into this one.
      logger.resetKeys()
      logger.addContext(request.context)
      logger.appendKeys({ state })
      request.event = parseStateInput(state, schema, request.event)
    })
    // metrics recorded by `run` go out once per invocation, also when it failed after recording
    .after(async () => flushMetrics())
    .onError(async (request) => {
      flushMetrics()
      request.error = classifyError(request.error)
      logger.error(`${state} failed`, { errorName: request.error.name, errorMessage: request.error.message })
    })
  for (const middleware of middlewares)
    handler.use(middleware as middy.MiddlewareObj<unknown, Out, Error, Context>)
  return handler.handler(async (event, context, { signal }) =>
    run(event as z.output<S>, {
      ...(context as unknown as Extra),
      signal,
      deadlineMs: Date.now() + context.getRemainingTimeInMillis() - 10_000,
    }),
  )
}
