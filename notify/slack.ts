import { setTimeout as sleep } from 'node:timers/promises'
import type { Engine } from '#core/backupKeys.ts'
import { NotifyError, UntrustedInputError } from '#core/errors.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { EXECUTION_ARN } from '#core/names.ts'
import { redact, registerSecret } from '#core/redact.ts'

export interface FailureNotice {
  stateMachine: 'backup' | 'restore'
  failedState: string
  error: string
  /** Step Functions' Cause: often a JSON string `{errorType, errorMessage, trace}` from Lambda. */
  cause: string
  backupIds: Record<string, string>
  executionArn?: string
  region: string
  /** A restore that failed after it had changed a live database: where each engine's data is now. */
  mixed?: MixedRestore
}

/**
 * A restore that failed at CommitClickHouse after Postgres was swapped, or part-way through the
 * ClickHouse swap: the databases are from different points in time, and the writers it stopped are
 * left stopped (starting them would write into that mix).
 */
export interface MixedRestore {
  /** Restored by this execution (absent for a ClickHouse-only restore). */
  postgres?: { database: string; previousDatabase: string | null; backupId: string }
  clickhouse: {
    database: string
    backupId: string
    /** `unchanged`: not one table swapped yet; `partial`: the swap stopped part-way. */
    state: 'unchanged' | 'partial'
    previousDatabase: string
    stagingDatabase: string
  }
  /** The services this restore stopped and did not start again. */
  writersLeftStopped: { cluster: string; service: string }[]
  /** The command that finishes the restore. */
  finish: string
}

export interface SuccessNotice {
  stateMachine: 'backup' | 'restore'
  backups: { engine: Engine; backupId: string; bytes: number; rows: number | null; objects: number }[]
  startedAt: string
  finishedAt: string
  executionArn?: string
  region: string
  pruned?: number
  /** Things worth a look although it succeeded (a backup much smaller than the previous one). */
  warnings?: string[]
}

type Text = { type: 'mrkdwn' | 'plain_text'; text: string }
export type SlackBlock =
  | { type: 'header'; text: Text }
  | { type: 'section'; text?: Text; fields?: Text[] }
  | { type: 'context'; elements: Text[] }

/** An incoming-webhook payload: `text` is the notification fallback, `blocks` the message. */
export interface SlackMessage {
  text: string
  blocks: SlackBlock[]
}

/** Longest cause shown; Slack's section text limit is 3000 characters. */
export const CAUSE_MAX_CHARS = 1500

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/

/** The Step Functions console page of an execution. */
export function consoleUrl(executionArn: string, region: string): string {
  if (!REGION.test(region)) throw new UntrustedInputError(`not an AWS region: ${JSON.stringify(region)}`)
  if (!EXECUTION_ARN.test(executionArn) || executionArn.length > 2048)
    throw new UntrustedInputError(`not a Step Functions execution ARN: ${JSON.stringify(executionArn)}`)
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`
}

/**
 * The readable part of a Step Functions Cause: Lambda's `errorMessage` (the trace dropped), or
 * the text itself. Redacted BEFORE it is shortened, so a cut can never leave half a secret.
 */
export function causeSummary(cause: string): string {
  let text = cause.trim()
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed && typeof parsed === 'object') {
      const { errorMessage, trace, stackTrace, stack, ...rest } = parsed as Record<string, unknown>
      text = typeof errorMessage === 'string' ? errorMessage : JSON.stringify(rest)
    } else if (typeof parsed === 'string') {
      text = parsed
    }
  } catch {
    // plain text
  }
  return truncate(redact(text), CAUSE_MAX_CHARS)
}

/** The failure message: state machine, failed state, error, cause, backup ids and a link to the execution. */
export function failureMessage(n: FailureNotice): SlackMessage {
  const what = n.stateMachine === 'backup' ? 'Backup' : 'Restore'
  const link = executionLink(n.executionArn, n.region)
  const ids = Object.entries(n.backupIds)
  const cause = causeSummary(n.cause)
  const blocks: SlackBlock[] = [
    { type: 'header', text: plain(`${what} failed in ${n.failedState}`) },
    {
      type: 'section',
      fields: [
        md(`*State*\n${esc(n.failedState)}`),
        md(`*Error*\n\`${esc(truncate(redact(n.error), 200)).replaceAll('`', "'")}\``),
        md(
          `*Backup ids*\n${ids.length ? ids.map(([k, v]) => `${esc(k)}: \`${esc(v)}\``).join('\n') : 'none'}`,
        ),
        md(`*Region*\n${esc(n.region)}`),
      ],
    },
    {
      type: 'section',
      text: md(
        cause ? `*Cause*\n\`\`\`${esc(cause).replaceAll('```', "'''")}\`\`\`` : '*Cause*\n(none given)',
      ),
    },
  ]
  if (n.mixed) blocks.push(...mixedBlocks(n.mixed))
  if (link) blocks.push({ type: 'section', text: md(link) })
  const left = n.mixed
    ? ` (databases left mixed${n.mixed.writersLeftStopped.length ? ', writers left stopped' : ''})`
    : ''
  return {
    text: truncate(
      redact(
        `:rotating_light: langsight-backup: ${n.stateMachine} failed in ${n.failedState}: ${n.error}${left}`,
      ),
      300,
    ),
    blocks,
  }
}

/** Where each engine's data is after a restore that stopped between the two swaps, and how to finish. */
function mixedBlocks(m: MixedRestore): SlackBlock[] {
  const code = (s: string) => `\`${esc(s)}\``
  const ch = m.clickhouse
  const lines = [
    m.postgres
      ? `• *PostgreSQL* ${code(m.postgres.database)} is *restored* from ${code(m.postgres.backupId)}; ` +
        (m.postgres.previousDatabase
          ? `the data it replaced is in ${code(m.postgres.previousDatabase)}.`
          : 'there was no database before.')
      : undefined,
    ch.state === 'unchanged'
      ? `• *ClickHouse* ${code(ch.database)} is *not restored*: it holds what it held before the restore; ` +
        `the backup ${code(ch.backupId)} is loaded in ${code(ch.stagingDatabase)}.`
      : `• *ClickHouse* ${code(ch.database)} is *partly restored*: the swap did not finish (the cause says where it stopped); ` +
        `the tables it replaced are in ${code(ch.previousDatabase)}, the loaded tables of ${code(ch.backupId)} ` +
        `not swapped in yet are in ${code(ch.stagingDatabase)}; views and materialized views are created ` +
        'only once every table is in, so some may be missing.',
    m.writersLeftStopped.length
      ? `• *Writers left stopped*: ${m.writersLeftStopped.map((w) => `${esc(w.service)} (${esc(w.cluster)})`).join(', ')}. ` +
        'They were stopped for the restore and are not started again: they would write into databases from different points in time.'
      : '• No writers were stopped by this restore: whatever writes to these databases now writes into that mix.',
  ].filter((l): l is string => l !== undefined)
  const finish =
    `*To finish*: restore ClickHouse alone from the same backup: ${code(m.finish)}. It loads the backup again, ` +
    `swaps every table in${m.writersLeftStopped.length ? ' and then starts the writers' : ''}. It replaces ` +
    `${code(ch.previousDatabase)}: copy out of it first anything you need. To go back instead, what the ` +
    `restore replaced is in the ${code('__lsb_previous')} databases named above.`
  return [
    { type: 'section', text: md(`*Where the data is now*\n${lines.join('\n')}`) },
    { type: 'section', text: md(finish) },
  ]
}

/**
 * The success summary: per backup its id, size, rows and objects; the duration; what was pruned;
 * and any warnings, which then lead the message.
 */
export function successMessage(n: SuccessNotice): SlackMessage {
  const what = n.stateMachine === 'backup' ? 'Backup' : 'Restore'
  const warnings = n.warnings ?? []
  const duration = formatDuration(Date.parse(n.finishedAt) - Date.parse(n.startedAt))
  const total = n.backups.reduce((sum, b) => sum + b.bytes, 0)
  const lines = n.backups.map(
    (b) =>
      `• *${b.engine}* \`${esc(b.backupId)}\`: ${humanBytes(b.bytes)}, ` +
      `${b.rows === null ? 'rows not counted' : `${formatCount(b.rows)} rows`}, ${formatCount(b.objects)} object(s)`,
  )
  const blocks: SlackBlock[] = [
    { type: 'header', text: plain(`${what} succeeded${warnings.length ? ' with a warning' : ''}`) },
    ...warnings.map(
      (w): SlackBlock => ({ type: 'section', text: md(`:warning: ${esc(truncate(redact(w), 2900))}`) }),
    ),
    { type: 'section', text: md(lines.length ? lines.join('\n') : 'no backups') },
    {
      type: 'context',
      elements: [
        md(
          `took ${duration} · ${humanBytes(total)} in total` +
            (n.pruned === undefined ? '' : ` · ${formatCount(n.pruned)} old backup(s) pruned`) +
            ` · ${esc(n.region)}`,
        ),
      ],
    },
  ]
  const link = executionLink(n.executionArn, n.region)
  if (link) blocks.push({ type: 'section', text: md(link) })
  const summary = `${n.stateMachine} succeeded (${humanBytes(total)}, ${duration})`
  return {
    text: truncate(
      redact(
        warnings.length
          ? `:warning: langsight-backup: ${summary}, with a warning: ${warnings.join(' · ')}`
          : `:white_check_mark: langsight-backup: ${summary}`,
      ),
      300,
    ),
    blocks,
  }
}

export interface PostOptions {
  signal?: AbortSignal
  /** Per attempt; default 10 s. */
  timeoutMs?: number
  /** Longest wait honoured from a Retry-After header; default 5 s. */
  maxRetryAfterMs?: number
}

/**
 * Posts a message to a Slack incoming webhook, retrying once on 429, 5xx or a dropped
 * connection (honouring Retry-After up to a cap). Any failure is a NotifyError whose message
 * never contains the webhook URL: the URL is the credential.
 */
export async function postToSlack(
  webhookUrl: string,
  message: SlackMessage,
  opts: PostOptions = {},
): Promise<void> {
  registerSecret(webhookUrl)
  let url: URL
  try {
    url = new URL(webhookUrl)
  } catch {
    // The TypeError carries the input: it is not attached.
    throw new NotifyError('the Slack webhook URL is not a valid URL')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new NotifyError(`the Slack webhook URL must be https, not ${url.protocol}`)
  const timeoutMs = opts.timeoutMs ?? 10_000
  const maxRetryAfterMs = opts.maxRetryAfterMs ?? 5_000
  const body = JSON.stringify(message)
  for (let attempt = 1; ; attempt++) {
    const outcome = await attemptPost(url, body, timeoutMs, opts.signal)
    if (outcome.ok) return
    if (!outcome.retryable || attempt >= 2) throw new NotifyError(redact(outcome.problem))
    const waitMs = Math.min(outcome.retryAfterMs ?? 1_000, maxRetryAfterMs)
    await sleep(waitMs, undefined, { signal: opts.signal }).catch(() => {
      throw new NotifyError(`aborted while waiting to retry after: ${redact(outcome.problem)}`)
    })
  }
}

type Attempt = { ok: true } | { ok: false; retryable: boolean; problem: string; retryAfterMs?: number }

async function attemptPost(
  url: URL,
  body: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Attempt> {
  const timeout = AbortSignal.timeout(timeoutMs)
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      // A webhook does not redirect; following one would send the message somewhere else.
      redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    })
  } catch (error) {
    if (signal?.aborted) return { ok: false, retryable: false, problem: 'posting to Slack was aborted' }
    if (timeout.aborted)
      return { ok: false, retryable: false, problem: `Slack did not answer within ${timeoutMs} ms` }
    // fetch's own messages name the host at most; only the code of the cause is kept.
    const cause = (error as { cause?: { code?: string } }).cause
    return {
      ok: false,
      retryable: true,
      problem: `cannot reach Slack at ${url.host}: ${cause?.code ?? (error as Error).name}`,
    }
  }
  const text = await response.text().catch(() => '')
  if (response.ok) return { ok: true }
  const problem = `Slack answered ${response.status} ${response.statusText}${text ? `: ${truncate(text, 200)}` : ''}`
  const retryable = response.status === 429 || response.status >= 500
  return { ok: false, retryable, problem, retryAfterMs: retryAfter(response.headers.get('retry-after')) }
}

/** Retry-After in seconds or as an HTTP date, in milliseconds. */
function retryAfter(header: string | null): number | undefined {
  if (!header) return undefined
  if (/^\d+$/.test(header.trim())) return Number(header) * 1000
  const at = Date.parse(header)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

function executionLink(executionArn: string | undefined, region: string): string | undefined {
  if (!executionArn) return undefined
  try {
    return `<${consoleUrl(executionArn, region)}|Open the execution in the Step Functions console>`
  } catch {
    // A malformed ARN must not cost the notification; it still shows as text.
    return `execution: ${esc(redact(executionArn))}`
  }
}

/** 3_723_000 ms → "1h 2m 3s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return 'unknown time'
  const s = Math.round(ms / 1000)
  const parts = [
    [Math.floor(s / 3600), 'h'],
    [Math.floor((s % 3600) / 60), 'm'],
    [s % 60, 's'],
  ] as const
  const first = parts.findIndex(([n]) => n > 0)
  return parts
    .slice(first === -1 ? 2 : first)
    .map(([n, u]) => `${n}${u}`)
    .join(' ')
}

const formatCount = (n: number) => n.toLocaleString('en-US')
const truncate = (s: string, max: number) => (s.length <= max ? s : `${s.slice(0, max - 1)}…`)
/** Slack mrkdwn treats &, < and > as control characters; everything shown is redacted first. */
const esc = (s: string) => redact(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
const md = (text: string): Text => ({ type: 'mrkdwn', text })
const plain = (text: string): Text => ({ type: 'plain_text', text: truncate(redact(text), 150) })
