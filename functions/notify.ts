import { z } from 'zod'
import { ENGINES } from '#core/backupKeys.ts'
import { getSecret, loadSettings, type Settings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { restoreNames } from '#core/names.ts'
import { backupIdSchema, engineSchema } from '#core/payloads.ts'
import { redact } from '#core/redact.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'
import { alarmMessage, parseAlarm, snsEventSchema } from '#notify/alarmMessage.ts'
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
          /** CommitManifest's warnings (a backup much smaller than the previous one). */
          warnings: z.array(z.string()).default([]),
        }),
      )
      .default([]),
    pruned: z.number().optional(),
  }),
])

/** A state's input, or an SNS delivery when the function is subscribed to the alarm topic. */
const event = z.union([snsEventSchema, input])

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

function settingsIfValid(): Settings | undefined {
  try {
    return loadSettings()
  } catch {
    return undefined
  }
}

/**
 * Tells Slack: always on failure and on a success with warnings, on a plain success only when
 * LSB_NOTIFY_SUCCESS is on; and each CloudWatch alarm SNS delivers. On failure it returns the error
 * and redacted cause for the Fail state, and a Slack outage does not hide them: the failure stays in
 * the execution's status either way.
 */
export async function run(received: z.output<typeof event>) {
  if ('Records' in received) return notifyAlarms(received.Records.map((r) => r.Sns.Message))
  const event: Input = received
  // a failure is reported even when the settings are what failed (a ConfigError): only its
  // message needs them, and only for the console link's region
  const settings = event.outcome === 'success' ? loadSettings() : settingsIfValid()
  const region = settings?.AWS_REGION ?? process.env.AWS_REGION ?? 'us-east-1'
  const executionArn = event.executionId.startsWith('arn:') ? event.executionId : undefined
  if (event.outcome === 'success') {
    const warnings = event.backups.flatMap((b) => b.warnings)
    if (!settings?.LSB_NOTIFY_SUCCESS && warnings.length === 0)
      return { sent: false, reason: 'success messages off' }
    const message = successMessage({
      ...event,
      warnings,
      finishedAt: new Date().toISOString(),
      executionArn,
      region,
    })
    return send(message, warnings.length ? 'warning' : 'success')
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

/**
 * Posts each alarm (all validated first). A Slack failure is thrown: Lambda retries an SNS
 * delivery, and an alarm must not be dropped quietly.
 */
async function notifyAlarms(messages: string[]) {
  const alarms = messages.map(parseAlarm)
  let sent = 0
  for (const alarm of alarms) {
    if ((await send(alarmMessage(alarm), 'alarm')).sent) sent++
  }
  return { sent: sent > 0, alarms: alarms.length }
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

export const handler = stateHandler('Notify', event, run)
