import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { UntrustedInputError } from '#core/errors.ts'
import { registerSecret } from '#core/redact.ts'
import {
  CAUSE_MAX_CHARS,
  causeSummary,
  consoleUrl,
  type FailureNotice,
  failureMessage,
  formatDuration,
  postToSlack,
  type SlackMessage,
  type SuccessNotice,
  successMessage,
} from '#notify/slack.ts'

const ARN = 'arn:aws:states:eu-west-1:123456789012:execution:langsight-backup-backup:run-42'
const PASSWORD = 'hunter2-Sup3rS3cret'
const PG_URL = `postgres://backup:${PASSWORD}@db.internal:5432/langsight`

/** Everything a reader of the message could see. */
const everything = (m: SlackMessage) => JSON.stringify(m)

function failure(overrides: Partial<FailureNotice> = {}): FailureNotice {
  return {
    stateMachine: 'backup',
    failedState: 'SnapshotPostgres',
    error: 'PgDumpError',
    cause: 'pg_dump exited 1',
    backupIds: { postgres: '20261125T020000.000Z' },
    executionArn: ARN,
    region: 'eu-west-1',
    ...overrides,
  }
}

describe('Function: consoleUrl', () => {
  it('links to the execution in the Step Functions console of its region', () => {
    expect(consoleUrl(ARN, 'eu-west-1')).toBe(
      `https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${ARN}`,
    )
  })

  it.each([
    ['arn:aws:states:eu-west-1:123456789012:execution:sm:x|<evil>', 'eu-west-1'],
    ['not an arn', 'eu-west-1'],
    [ARN, 'eu-west-1.evil.com/'],
  ])('refuses %s in %s', (arn, region) => {
    expect(() => consoleUrl(arn, region)).toThrow(UntrustedInputError)
  })
})

describe('Function: failureMessage', () => {
  it('names the state machine, the failed state, the error, the backup ids and links the execution', () => {
    // Act
    const message = failureMessage(
      failure({ backupIds: { postgres: '20261125T020000.000Z', clickhouse: '20261122T030000.000Z' } }),
    )
    // Assess
    expect(message.text).toBe(
      ':rotating_light: langsight-backup: backup failed in SnapshotPostgres: PgDumpError',
    )
    const shown = everything(message)
    expect(shown).toContain('Backup failed in SnapshotPostgres')
    expect(shown).toContain('`PgDumpError`')
    expect(shown).toContain('pg_dump exited 1')
    expect(shown).toContain('postgres: `20261125T020000.000Z`')
    expect(shown).toContain('clickhouse: `20261122T030000.000Z`')
    expect(shown).toContain(
      `<${consoleUrl(ARN, 'eu-west-1')}|Open the execution in the Step Functions console>`,
    )
  })

  it('unwraps a Lambda-style JSON cause: shows errorMessage, drops the trace', () => {
    // Prepare
    const cause = JSON.stringify({
      errorType: 'PgDumpError',
      errorMessage: 'pg_dump: error: connection to server failed: FATAL: password authentication failed',
      trace: [
        'PgDumpError: pg_dump: error',
        '    at snapshot (/var/task/functions/snapshotPostgres.mjs:12:9)',
      ],
    })
    // Act
    const shown = everything(failureMessage(failure({ cause })))
    // Assess
    expect(shown).toContain('password authentication failed')
    expect(shown).not.toContain('snapshotPostgres.mjs')
    expect(shown).not.toContain('errorType')
  })

  it('never shows a registered secret, in the cause or anywhere else', () => {
    // Prepare: the secret as it was read from SSM, then echoed by a failing tool
    registerSecret(PG_URL)
    const cause = JSON.stringify({
      errorType: 'PgDumpError',
      errorMessage: `pg_dump: could not connect to ${PG_URL}; retried with password=${PASSWORD}`,
      trace: [`at ${PG_URL}`],
    })
    // Act
    const message = failureMessage(
      failure({ cause, error: `PgDumpError ${PASSWORD}`, failedState: 'Snapshot' }),
    )
    // Assess
    expect(everything(message)).not.toContain(PASSWORD)
    expect(everything(message)).toContain('postgres://backup:***@db.internal:5432/langsight')
  })

  it('masks a password in a URL even when the secret was never registered', () => {
    const shown = everything(
      failureMessage(failure({ cause: 'connect postgres://u:NeverSeen99@h/db failed' })),
    )
    expect(shown).not.toContain('NeverSeen99')
  })

  it('caps a long cause, redacting before it cuts so no half secret is left', () => {
    // Prepare: the secret straddles the cap
    registerSecret(PG_URL)
    const cause = `${'x'.repeat(CAUSE_MAX_CHARS - 10)} ${PG_URL} ${'y'.repeat(5000)}`
    // Act
    const summary = causeSummary(cause)
    const message = failureMessage(failure({ cause }))
    // Assess
    expect(summary).toHaveLength(CAUSE_MAX_CHARS)
    expect(summary.endsWith('…')).toBe(true)
    expect(everything(message)).not.toContain(PASSWORD.slice(0, 6))
    for (const block of message.blocks) {
      if (block.type === 'section' && block.text) expect(block.text.text.length).toBeLessThanOrEqual(3000)
    }
  })

  it('escapes Slack control characters and keeps a code fence in the cause from closing the block', () => {
    const shown = failureMessage(failure({ cause: 'bad <!channel> & ```rm -rf```' })).blocks
    const text = JSON.stringify(shown)
    expect(text).toContain('bad &lt;!channel&gt; &amp;')
    expect(text).not.toContain('<!channel>')
    expect(text.match(/```/g)).toHaveLength(2)
  })

  it('shows a JSON cause without errorMessage without its stack, and an empty cause as none', () => {
    const noMessage = everything(
      failureMessage(failure({ cause: JSON.stringify({ Error: 'States.Timeout', stack: 'at x.js:1' }) })),
    )
    expect(noMessage).toContain('States.Timeout')
    expect(noMessage).not.toContain('x.js')
    expect(everything(failureMessage(failure({ cause: '' })))).toContain('(none given)')
  })

  it('still notifies, without a link, when the execution ARN is malformed or missing', () => {
    const bad = everything(failureMessage(failure({ executionArn: 'local-run-1 <x>' })))
    expect(bad).toContain('execution: local-run-1 &lt;x&gt;')
    expect(bad).not.toContain('console.aws.amazon.com')
    const none = failureMessage(failure({ executionArn: undefined, backupIds: {} }))
    expect(everything(none)).not.toContain('console.aws.amazon.com')
    expect(everything(none)).toContain('*Backup ids*\\nnone')
  })
})

describe('Function: successMessage', () => {
  it('summarises sizes, rows, objects, duration and what was pruned', () => {
    // Prepare
    const notice: SuccessNotice = {
      stateMachine: 'backup',
      backups: [
        { engine: 'postgres', backupId: '20261125T020000.000Z', bytes: 1536, rows: null, objects: 1 },
        {
          engine: 'clickhouse',
          backupId: '20261125T020000.000Z',
          bytes: 3 * 1024 ** 3,
          rows: 12_345_678,
          objects: 42,
        },
      ],
      startedAt: '2026-11-25T02:00:00.000Z',
      finishedAt: '2026-11-25T02:04:12.400Z',
      executionArn: ARN,
      region: 'eu-west-1',
      pruned: 2,
    }
    // Act
    const message = successMessage(notice)
    // Assess
    const shown = everything(message)
    expect(message.text).toBe(':white_check_mark: langsight-backup: backup succeeded (3.0 GiB, 4m 12s)')
    expect(shown).toContain('*postgres* `20261125T020000.000Z`: 1.5 KiB, rows not counted, 1 object(s)')
    expect(shown).toContain('*clickhouse* `20261125T020000.000Z`: 3.0 GiB, 12,345,678 rows, 42 object(s)')
    expect(shown).toContain('took 4m 12s')
    expect(shown).toContain('2 old backup(s) pruned')
    expect(shown).toContain(consoleUrl(ARN, 'eu-west-1'))
  })
})

describe('Function: postToSlack honours Retry-After', () => {
  /**
   * A webhook on loopback that answers the first post 429 with `retryAfter` and every later one 200,
   * noting when each post arrived.
   */
  async function rateLimitedOnce(retryAfter: string) {
    const arrivals: number[] = []
    const server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        arrivals.push(performance.now())
        if (arrivals.length === 1) res.writeHead(429, { 'retry-after': retryAfter }).end('rate_limited')
        else res.writeHead(200).end('ok')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    return {
      url: `http://127.0.0.1:${port}/services/T000/B000/${'x'.repeat(24)}`,
      /** Milliseconds between the first and the second post. */
      gap: () => {
        expect(arrivals).toHaveLength(2)
        return arrivals[1]! - arrivals[0]!
      },
      close: () => new Promise((resolve) => server.close(resolve)),
    }
  }

  // Without a Retry-After the retry comes after 1 s: each wait below is told apart from that.
  it('waits the seconds Retry-After asks for before the second post', async () => {
    const slack = await rateLimitedOnce('2')
    try {
      await postToSlack(slack.url, failureMessage(failure()))
      expect(slack.gap()).toBeGreaterThanOrEqual(1990)
      expect(slack.gap()).toBeLessThan(4000)
    } finally {
      await slack.close()
    }
  })

  it('waits until an HTTP-date Retry-After', async () => {
    // HTTP dates have whole seconds: 3 s ahead is 2 to 3 s ahead
    const slack = await rateLimitedOnce(new Date(Date.now() + 3000).toUTCString())
    try {
      await postToSlack(slack.url, failureMessage(failure()))
      expect(slack.gap()).toBeGreaterThanOrEqual(1990)
      expect(slack.gap()).toBeLessThan(4000)
    } finally {
      await slack.close()
    }
  })

  it('waits no longer than maxRetryAfterMs when Retry-After asks for an hour', async () => {
    const slack = await rateLimitedOnce('3600')
    try {
      await postToSlack(slack.url, failureMessage(failure()), { maxRetryAfterMs: 1500 })
      expect(slack.gap()).toBeGreaterThanOrEqual(1490)
      expect(slack.gap()).toBeLessThan(3000)
    } finally {
      await slack.close()
    }
  })
})

describe('Function: formatDuration', () => {
  it.each([
    [0, '0s'],
    [999, '1s'],
    [61_000, '1m 1s'],
    [3_603_000, '1h 0m 3s'],
    [-5, 'unknown time'],
    [Number.NaN, 'unknown time'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text)
  })
})
