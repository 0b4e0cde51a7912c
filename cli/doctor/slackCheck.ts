/** The Slack webhook: whether one is set, and with --send-test-message whether a message gets through. */

import { hostname } from 'node:os'
import { getSecret } from '#core/config.ts'
import { postToSlack, type SlackMessage } from '#notify/slack.ts'
import { type CheckContext, type CheckResult, fail, hasCode, ok, runCheck, skip, warn } from './check.ts'

/** A message nobody can take for an alert. */
export function testMessage(host = hostname()): SlackMessage {
  const text = `:wrench: langsight-backup doctor: test message from ${host}. Nothing failed; no action needed.`
  return {
    text,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: 'langsight-backup: test message' } },
      {
        type: 'section',
        text: {
          type: 'mrkdwn',
          text: `Sent by \`langsight-backup doctor --send-test-message\` on ${host}. Nothing failed; no action needed. Failures of backups and restores will be posted here.`,
        },
      },
    ],
  }
}

/** Checks `slack`: set or not; with `sendTestMessage`, one labelled test message posted through notify/slack.ts. */
export async function slackCheck(ctx: CheckContext): Promise<CheckResult> {
  let configured = false
  return runCheck(
    'slack',
    ctx,
    async (signal) => {
      const webhook = await getSecret('LSB_SLACK_WEBHOOK_URL')
      configured = Boolean(webhook)
      if (!webhook) {
        const unset = 'LSB_SLACK_WEBHOOK_URL is not set: failures are only logged, nobody is told'
        const fix =
          'set LSB_SLACK_WEBHOOK_URL to a Slack incoming webhook (on AWS: LSB_SLACK_WEBHOOK_URL_SSM)'
        return ctx.sendTestMessage ? fail(unset, fix) : warn(unset, fix)
      }
      if (!ctx.sendTestMessage)
        return skip('webhook set, not tried (--send-test-message posts a test message)')
      await postToSlack(webhook, testMessage(), { signal, timeoutMs: ctx.timeoutMs })
      return ok('test message delivered (look for "langsight-backup: test message" in the channel)')
    },
    (error) =>
      !configured
        ? 'check LSB_SLACK_WEBHOOK_URL_SSM names a SecureString parameter these credentials may read'
        : hasCode(error, 'StallError')
          ? 'Slack did not answer: check the network (a proxy, an egress rule)'
          : 'the webhook may be revoked or mistyped: create a new incoming webhook and set LSB_SLACK_WEBHOOK_URL',
  )
}
