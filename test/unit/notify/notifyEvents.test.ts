import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { lambdaContext } from '#cli/local/lambdaContext.ts'
import { UntrustedInputError } from '#core/errors.ts'
import { handler, run } from '#functions/notify.ts'
import { alarmMessage, parseAlarm } from '#notify/alarmMessage.ts'
import { useEnv } from '../../support/env.ts'
import { startSlackSink } from '../../support/slackSink.ts'

const PASSWORD = 'hunter2-Sup3rS3cret'

/** What CloudWatch publishes to the alarm topic for the infra's "no Postgres backup for 26 h" alarm. */
const alarm = {
  AlarmName: 'langsight-backup-prod-postgres-backup-missing',
  AlarmDescription: 'No successful PostgreSQL backup for 26 hours',
  AWSAccountId: '123456789012',
  AlarmConfigurationUpdatedTimestamp: '2026-11-20T10:00:00.000+0000',
  NewStateValue: 'ALARM',
  NewStateReason:
    'Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as [Breaching].',
  StateChangeTime: '2026-11-26T04:00:00.000+0000',
  Region: 'EU (Ireland)',
  AlarmArn: 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:langsight-backup-prod-postgres-backup-missing',
  OldStateValue: 'OK',
  OKActions: [],
  AlarmActions: ['arn:aws:sns:eu-west-1:123456789012:langsight-backup-prod-alarms'],
  InsufficientDataActions: [],
  Trigger: {
    MetricName: 'BackupSucceeded',
    Namespace: 'LangSightBackup',
    StatisticType: 'Statistic',
    Statistic: 'SUM',
    Unit: null,
    Dimensions: [
      { value: 'postgres', name: 'Engine' },
      { value: 'langsight-backup', name: 'service' },
    ],
    Period: 93600,
    EvaluationPeriods: 1,
    ComparisonOperator: 'LessThanThreshold',
    Threshold: 1.0,
    TreatMissingData: 'breaching',
    EvaluateLowSampleCountPercentile: '',
  },
}

/** An SNS delivery to Lambda, as the service sends it. */
function snsEvent(message: string) {
  return {
    Records: [
      {
        EventSource: 'aws:sns',
        EventVersion: '1.0',
        EventSubscriptionArn: 'arn:aws:sns:eu-west-1:123456789012:langsight-backup-prod-alarms:0b1c',
        Sns: {
          Type: 'Notification',
          MessageId: '95df01b4-ee98-5cb9-9903-4c221d41eb5e',
          TopicArn: 'arn:aws:sns:eu-west-1:123456789012:langsight-backup-prod-alarms',
          Subject: `ALARM: "${alarm.AlarmName}" in EU (Ireland)`,
          Message: message,
          Timestamp: '2026-11-26T04:00:01.123Z',
          SignatureVersion: '1',
          Signature: 'EXAMPLE',
          SigningCertUrl: 'https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem',
          UnsubscribeUrl: 'https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe',
          MessageAttributes: {},
        },
      },
    ],
  }
}

let slack: Awaited<ReturnType<typeof startSlackSink>>
beforeAll(async () => {
  slack = await startSlackSink()
})
afterAll(() => slack?.close())
beforeEach(() => {
  slack.messages.length = 0
  useEnv({ LSB_SLACK_WEBHOOK_URL: slack.url, LSB_NOTIFY_SUCCESS: undefined })
})

describe('Function: notify (SNS alarm events)', () => {
  it('posts "ALARM: <AlarmName> — <NewStateReason>" for a CloudWatch alarm delivered by SNS', async () => {
    // Act: through the deployed handler (middy, input validation)
    const result = await handler(snsEvent(JSON.stringify(alarm)), lambdaContext('notify', 60_000))
    // Assess
    expect(result).toEqual({ sent: true, alarms: 1 })
    expect(slack.messages.map((m) => m.text)).toEqual([
      `:rotating_light: ALARM: ${alarm.AlarmName} — ${alarm.NewStateReason}`,
    ])
    const raw = slack.messages[0]!.raw
    expect(raw).toContain('No successful PostgreSQL backup for 26 hours')
    expect(raw).not.toContain(slack.url)
  })

  it('says OK when the alarm clears, and masks a credential that found its way into the reason', async () => {
    const cleared = {
      ...alarm,
      NewStateValue: 'OK',
      OldStateValue: 'ALARM',
      NewStateReason: `Threshold Crossed: recovered; probe postgres://backup:${PASSWORD}@db.internal/app`,
    }
    await run({ Records: [{ EventSource: 'aws:sns', Sns: { Message: JSON.stringify(cleared) } }] })
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toMatch(
      /^:white_check_mark: OK: langsight-backup-prod-postgres-backup-missing — /,
    )
    expect(slack.messages[0]!.raw).not.toContain(PASSWORD)
  })

  it('refuses an SNS message that is not a CloudWatch alarm, naming what is wrong, and posts nothing', async () => {
    const notAnAlarm = handler(snsEvent('{"hello":"world"}'), lambdaContext('notify', 60_000))
    // the handler rethrows it redacted, under the same name (what a Retry or a DLQ sees)
    await expect(notAnAlarm).rejects.toMatchObject({ name: 'UntrustedInputError' })
    expect(() => parseAlarm('{}')).toThrow(UntrustedInputError)
    await expect(handler(snsEvent('{"hello":"world"}'), lambdaContext('notify', 60_000))).rejects.toThrow(
      /not a CloudWatch alarm: AlarmName: .*NewStateValue/,
    )
    await expect(handler(snsEvent('not json'), lambdaContext('notify', 60_000))).rejects.toThrow(
      'the SNS message is not JSON',
    )
    expect(slack.messages).toEqual([])
  })
})

describe('Function: alarmMessage', () => {
  it('has a header with state and name, the line in a section, and description, time and region as context', () => {
    const message = alarmMessage(parseAlarm(JSON.stringify(alarm)))
    expect(message.blocks).toEqual([
      { type: 'header', text: { type: 'plain_text', text: `ALARM: ${alarm.AlarmName}` } },
      {
        type: 'section',
        text: { type: 'mrkdwn', text: `ALARM: ${alarm.AlarmName} — ${alarm.NewStateReason}` },
      },
      {
        type: 'context',
        elements: [
          {
            type: 'mrkdwn',
            text: 'No successful PostgreSQL backup for 26 hours · 2026-11-26T04:00:00.000+0000 · EU (Ireland)',
          },
        ],
      },
    ])
  })
})

describe('Function: notify (success with warnings)', () => {
  const success = (warnings: string[]) => ({
    outcome: 'success' as const,
    stateMachine: 'backup' as const,
    startedAt: '2026-11-26T02:00:00.000Z',
    executionId: 'local-execution',
    backups: [
      {
        engine: 'clickhouse' as const,
        backupId: '20261126T020000.000Z',
        bytes: 1024,
        rows: 10,
        objects: 1,
        warnings,
      },
    ],
  })

  it('posts a success with a warning even when success messages are off', async () => {
    const warning = 'clickhouse backup 20261126T020000.000Z is 31% of the previous one — was data lost?'
    const result = await run(success([warning]))
    expect(result).toEqual({ sent: true })
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toMatch(/^:warning: langsight-backup: backup succeeded .*with a warning/)
    expect(slack.messages[0]!.raw).toContain('31% of the previous one')
  })

  it('stays quiet on a plain success when success messages are off', async () => {
    expect(await run(success([]))).toEqual({ sent: false, reason: 'success messages off' })
    expect(slack.messages).toEqual([])
  })
})
