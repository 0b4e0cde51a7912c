import { z } from 'zod'
import { ENGINES } from '#core/backupKeys.ts'
import { getSecret, loadSettings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { restoreNames } from '#core/names.ts'
import { backupIdSchema, engineSchema } from '#core/payloads.ts'
import { redact } from '#core/redact.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'
import {
  causeSummary,
  failureMessage,
  type MixedRestore,
  postToSlack,
  type SlackMessage,
  successMessage,
} from '#notify/slack.ts'

const stateMachine = z.enum(['backup', 'restore'])

/** What the restore machine's state says about a failure after a live database changed. */
const restoreState = z.object({
  /** Set by the failure path after CommitClickHouse: ClickHouse untouched or partly swapped. */
  leftMixed: z.object({ clickhouse: z.enum(['unchanged', 'partial']) }).optional(),
  postgres: z.object({ backupId: z.string() }).nullable().optional(),
  /** SwapPostgres's result: present once Postgres was swapped. */
  postgresRestore: z.object({ database: z.string(), previousDatabase: z.string().nullable() }).optional(),
  clickhouse: z.object({ backupId: z.string(), targetDatabase: z.string().nullable() }).nullable().optional(),
  clickhouseRestore: z.object({ targetDatabase: z.string() }).optional(),
  quiesce: z
    .object({
      enabled: z.boolean(),
      services: z.array(z.object({ cluster: z.string(), service: z.string() })),
    })
    .optional(),
})

const input = z.discriminatedUnion('outcome', [
  z.object({
    outcome: z.literal('failure'),
    stateMachine,
    failedState: z.string(),
    /** The backup being written (null when PlanBackup, which derives it, failed). */
    backupId: backupIdSchema.nullable().optional(),
    /** What a Catch put in ResultPath: {Error, Cause}; Cause is often a JSON string from Lambda. */
    failure: z.looseObject({ Error: z.string().optional(), Cause: z.string().optional() }).default({}),
    executionId: z.string(),
    startedAt: z.iso.datetime(),
    /** The execution input ($$.Execution.Input): a restore names the backups it was asked for. */
    request: z.unknown().optional(),
    /** The restore's state when it failed ($): where the data is when it left the databases mixed. */
    execution: restoreState.optional().catch(undefined),
  }),
  z.object({
    outcome: z.literal('success'),
    stateMachine,
    startedAt: z.iso.datetime(),
    executionId: z.string(),
    backups: z
      .array(
        z.object({
          engine: engineSchema,
          backupId: z.string(),
          bytes: z.number(),
          rows: z.number().nullable(),
          objects: z.number(),
        }),
      )
      .default([]),
    pruned: z.number().optional(),
  }),
])

type Input = z.output<typeof input>
type Failure = Extract<Input, { outcome: 'failure' }>

/** The backup ids a failure concerns: the one being written, or the ones a restore was asked for. */
function backupIdsOf(event: Failure): Record<string, string> {
  if (event.stateMachine === 'backup') return event.backupId ? { backup: event.backupId } : {}
  const request = (event.request ?? {}) as Record<string, unknown>
  return Object.fromEntries(
    ENGINES.flatMap((engine) =>
      typeof request[engine] === 'string' ? [[engine, request[engine] as string]] : [],
    ),
  )
}

/**
 * Where the data is after a restore that failed between the two engines' swaps (the state machine
 * marks those with `leftMixed`), or undefined for a failure that left the databases as they were.
 */
function mixedOutcome(event: Failure): MixedRestore | undefined {
  const x = event.execution
  const database = x?.clickhouseRestore?.targetDatabase
  if (!x?.leftMixed || !x.clickhouse || !database) return undefined
  let names: ReturnType<typeof restoreNames>
  try {
    names = restoreNames(database)
  } catch {
    return undefined // a name no restore could have used: the message goes out without the section
  }
  const drill = x.clickhouse.targetDatabase
    ? ` --target-clickhouse-database ${x.clickhouse.targetDatabase}`
    : ''
  return {
    postgres:
      x.postgresRestore && x.postgres ? { ...x.postgresRestore, backupId: x.postgres.backupId } : undefined,
    clickhouse: {
      database,
      backupId: x.clickhouse.backupId,
      state: x.leftMixed.clickhouse,
      previousDatabase: names.previous,
      stagingDatabase: names.staging,
    },
    writersLeftStopped: x.quiesce?.enabled ? x.quiesce.services : [],
    finish: `langsight-backup restore --clickhouse ${x.clickhouse.backupId}${drill}`,
  }
}

/**
 * Tells Slack: always on failure, on success only when LSB_NOTIFY_SUCCESS is on. On failure it
 * returns the error and redacted cause for the Fail state, and a Slack outage does not hide them:
 * the failure stays in the execution's status either way.
 */
export async function run(event: Input) {
  const settings = loadSettings()
  const region = settings.AWS_REGION
  const executionArn = event.executionId.startsWith('arn:') ? event.executionId : undefined
  if (event.outcome === 'success') {
    if (!settings.LSB_NOTIFY_SUCCESS) return { sent: false, reason: 'success messages off' }
    const message = successMessage({ ...event, finishedAt: new Date().toISOString(), executionArn, region })
    return send(message, 'success')
  }
  const error = event.failure.Error ?? 'UnknownError'
  const cause = causeSummary(event.failure.Cause ?? '')
  const message = failureMessage({
    stateMachine: event.stateMachine,
    failedState: event.failedState,
    error,
    cause,
    backupIds: backupIdsOf(event),
    executionArn,
    region,
    mixed: mixedOutcome(event),
  })
  return {
    ...(await send(message, 'failure').catch((e: Error) => ({ sent: false, reason: redact(e.message) }))),
    error,
    cause,
  }
}

async function send(message: SlackMessage, outcome: string): Promise<{ sent: boolean; reason?: string }> {
  const webhook = await getSecret('LSB_SLACK_WEBHOOK_URL')
  if (!webhook) {
    logger.warn('LSB_SLACK_WEBHOOK_URL is not set: notification not sent', { outcome, text: message.text })
    return { sent: false, reason: 'no webhook configured' }
  }
  await postToSlack(webhook, message)
  return { sent: true }
}

export const handler = stateHandler('Notify', input, run)
