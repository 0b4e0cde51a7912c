/**
 * What every doctor check shares: its result, the four statuses and their symbols, and the
 * deadline each check runs under.
 */
import { withinLimit } from '#core/deadline.ts'
import { redact } from '#core/redact.ts'

/**
 * `ok` ✓; `warn` ! (works, but worth fixing: no Object Lock, versioning off); `fail` ✗ (a backup
 * or restore would fail); `skip` - (not checked: a check it needs failed, or a flag is missing).
 */
export type Status = 'ok' | 'warn' | 'fail' | 'skip'

export const SYMBOL: Record<Status, string> = { ok: '✓', warn: '!', fail: '✗', skip: '-' }

/** One line of the report. `ok` is false only for ✗: the command exits 1 when any is false. */
export interface CheckResult {
  check: string
  ok: boolean
  status: Status
  detail: string
  fix?: string
}

/** What a check's work returns; `fix` is required for `fail` (see {@link result}). */
export interface Outcome {
  status: Status
  detail: string
  fix?: string
}

export const ok = (detail: string): Outcome => ({ status: 'ok', detail })
export const warn = (detail: string, fix?: string): Outcome => ({ status: 'warn', detail, fix })
export const fail = (detail: string, fix: string): Outcome => ({ status: 'fail', detail, fix })
export const skip = (detail: string): Outcome => ({ status: 'skip', detail })

/** The report line of an outcome, redacted: no secret leaves through a detail or a fix. */
export function result(check: string, outcome: Outcome): CheckResult {
  const line: CheckResult = {
    check,
    ok: outcome.status !== 'fail',
    status: outcome.status,
    detail: redact(outcome.detail),
  }
  if (outcome.fix) line.fix = redact(outcome.fix)
  else if (outcome.status === 'fail') line.fix = 'see the detail above'
  return line
}

/** How every check runs. */
export interface CheckContext {
  /** Deadline of one check. */
  timeoutMs: number
  /** --local: the checks of the deployed stack are left out, and the local pg tools are the ones in use. */
  local: boolean
  sendTestMessage: boolean
}

/**
 * Runs one check under the deadline. `work` gets a signal that fires at the deadline; a late
 * check is ✗ whether or not it honoured the signal. A thrown error is ✗ with the fix
 * `fixFor` gives (its message is redacted).
 */
export async function runCheck(
  check: string,
  ctx: CheckContext,
  work: (signal: AbortSignal) => Promise<Outcome>,
  fixFor: (error: unknown) => string,
): Promise<CheckResult> {
  try {
    return result(check, await withinLimit(`check ${check}`, work, ctx.timeoutMs))
  } catch (error) {
    return result(check, fail(messageOf(error), fixFor(error)))
  }
}

/** An error's name and message, with the codes of its causes (ECONNREFUSED, 28P01, …). */
export function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const codes = causes(error)
    .map((e) => (e as { code?: unknown }).code)
    .filter((c): c is string => typeof c === 'string' && !error.message.includes(c))
  const suffix = codes.length ? ` (${[...new Set(codes)].join(', ')})` : ''
  return `${error.name === 'Error' ? '' : `${error.name}: `}${error.message}${suffix}`
}

/** The error and its causes, outermost first. */
export function causes(error: unknown): unknown[] {
  const chain: unknown[] = []
  for (let e = error; e !== undefined && e !== null && chain.length < 8; e = (e as Error).cause) chain.push(e)
  return chain
}

/** Whether the error or one of its causes has one of these codes or names. */
export function hasCode(error: unknown, ...codes: string[]): boolean {
  return causes(error).some((e) => {
    const { code, name, Code } = e as { code?: unknown; name?: unknown; Code?: unknown }
    return [code, name, Code].some((v) => typeof v === 'string' && codes.includes(v))
  })
}

/** "1 table", "2 tables". */
export const count = (n: number, noun: string, plural = `${noun}s`) => `${n} ${n === 1 ? noun : plural}`

/** "a, b, c … and 7 more". */
export function listOf(names: string[], max = 8): string {
  if (names.length <= max) return names.join(', ')
  return `${names.slice(0, max).join(', ')} … and ${names.length - max} more`
}

/** Waits for `work` (a close, a cleanup) at most `ms`; its failure is ignored. */
export async function settleWithin(work: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!work) return
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    work.catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    }),
  ])
  clearTimeout(timer)
}
