import { z } from 'zod'
import { UntrustedInputError } from '#core/errors.ts'
import { redact } from '#core/redact.ts'
import type { SlackMessage } from './slack.ts'

/** The JSON CloudWatch publishes to an alarm's SNS topic (the fields the message uses). */
export const cloudWatchAlarmSchema = z.looseObject({
  AlarmName: z.string().min(1).max(255),
  AlarmDescription: z.string().nullable().optional(),
  NewStateValue: z.enum(['ALARM', 'OK', 'INSUFFICIENT_DATA']),
  NewStateReason: z.string().max(10_000),
  StateChangeTime: z.string().optional(),
  /** A region's name ("US East (N. Virginia)"), not its code. */
  Region: z.string().optional(),
})
export type CloudWatchAlarm = z.output<typeof cloudWatchAlarmSchema>

/** An SNS delivery to a Lambda function: each record's Message is one alarm's JSON. */
export const snsEventSchema = z.object({
  Records: z
    .array(z.object({ EventSource: z.literal('aws:sns'), Sns: z.object({ Message: z.string() }) }))
    .min(1),
})

/** Parses an SNS record's Message as a CloudWatch alarm; anything else is an UntrustedInputError. */
export function parseAlarm(message: string): CloudWatchAlarm {
  let json: unknown
  try {
    json = JSON.parse(message)
  } catch {
    throw new UntrustedInputError('the SNS message is not JSON: not a CloudWatch alarm')
  }
  const parsed = cloudWatchAlarmSchema.safeParse(json)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    throw new UntrustedInputError(`the SNS message is not a CloudWatch alarm: ${problems.join('; ')}`)
  }
  return parsed.data
}

const ICON = { ALARM: ':rotating_light:', OK: ':white_check_mark:', INSUFFICIENT_DATA: ':grey_question:' }

/** "ALARM: <AlarmName> — <NewStateReason>", with the description, time and region below it. */
export function alarmMessage(alarm: CloudWatchAlarm): SlackMessage {
  const line = `${alarm.NewStateValue}: ${alarm.AlarmName} — ${alarm.NewStateReason}`
  const details = [alarm.AlarmDescription, alarm.StateChangeTime, alarm.Region].filter((d): d is string =>
    Boolean(d),
  )
  return {
    text: truncate(redact(`${ICON[alarm.NewStateValue]} ${line}`), 300),
    blocks: [
      {
        type: 'header',
        text: {
          type: 'plain_text',
          text: truncate(redact(`${alarm.NewStateValue}: ${alarm.AlarmName}`), 150),
        },
      },
      { type: 'section', text: { type: 'mrkdwn', text: esc(truncate(redact(line), 2900)) } },
      ...(details.length
        ? [
            {
              type: 'context' as const,
              elements: [{ type: 'mrkdwn' as const, text: esc(truncate(redact(details.join(' · ')), 2000)) }],
            },
          ]
        : []),
    ],
  }
}

const truncate = (s: string, max: number) => (s.length <= max ? s : `${s.slice(0, max - 1)}…`)
/** Slack mrkdwn treats &, < and > as control characters; everything shown is redacted first. */
const esc = (s: string) => redact(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
