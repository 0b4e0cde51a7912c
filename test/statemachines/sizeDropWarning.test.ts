import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runStateMachine } from '#cli/local/runStateMachine.ts'
import { seedPostgres } from '#devtools/sampleData.ts'
import { createPostgresDatabase, uniquePrefix, useEnv } from '../support/env.ts'
import { startSlackSink } from '../support/slackSink.ts'

/**
 * LSB_SIZE_DROP_RATIO through the real backup state machine: a backup much smaller than the
 * previous one of its engine still succeeds, and Slack gets it as a warning even with success
 * messages off.
 */
let pgUrl: string
let slack: Awaited<ReturnType<typeof startSlackSink>>

type Output = { backups: { engine: string; backupId: string; bytes: number; warnings: string[] }[] }
const backup = async () => (await runStateMachine('backup', { engines: ['postgres'] })).output as Output

beforeAll(async () => {
  slack = await startSlackSink()
  pgUrl = (await createPostgresDatabase('sm_sizedrop')).url
  await seedPostgres(pgUrl, 0.5)
})
afterAll(() => slack?.close())

function configure(extra: Record<string, string | undefined>) {
  useEnv({
    LSB_PREFIX: uniquePrefix('sizedrop'),
    LSB_POSTGRES_URL: pgUrl,
    LSB_CLICKHOUSE_URL: undefined,
    LSB_SLACK_WEBHOOK_URL: slack.url,
    LSB_NOTIFY_SUCCESS: 'false',
    LSB_PG_BIN_DIR: undefined,
    ...extra,
  })
}

async function emptyTheDatabase() {
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  await client.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public')
  await client.end()
}

describe('State machine: backup (size drop warning)', () => {
  it('warns in Slack, naming both backups, when a backup is below the ratio of the previous one', async () => {
    // Prepare: a full backup, then the data is lost
    configure({ LSB_SIZE_DROP_RATIO: '0.5' })
    const first = await backup()
    expect(first.backups[0]!.warnings).toEqual([])
    expect(slack.messages).toEqual([]) // success messages are off: the first one says nothing
    await emptyTheDatabase()
    // Act
    const second = await backup()
    // Assess: it succeeded, with the warning in its output and in Slack
    const [was, now] = [first.backups[0]!, second.backups[0]!]
    const percent = Math.round((100 * now.bytes) / was.bytes)
    expect(percent).toBeLessThan(50)
    const warning = expect.stringMatching(
      new RegExp(
        `^postgres backup ${now.backupId} is ${percent}% of the previous one \\(.* in ${was.backupId}\\) — was data lost\\?$`,
      ),
    )
    expect(now.warnings).toEqual([warning])
    expect(slack.messages).toHaveLength(1)
    expect(slack.messages[0]!.text).toMatch(/^:warning: langsight-backup: backup succeeded/)
    expect(slack.messages[0]!.raw).toContain(`is ${percent}% of the previous one`)
    expect(slack.messages[0]!.raw).not.toContain(slack.url)
  })

  it('says nothing with LSB_SIZE_DROP_RATIO=0, and refuses a ratio outside 0..1 naming the variable', async () => {
    // a fresh prefix: the previous backup is the big one of this prefix
    configure({ LSB_SIZE_DROP_RATIO: '0' })
    await seedPostgres(pgUrl, 0.5)
    await backup()
    await emptyTheDatabase()
    slack.messages.length = 0
    const quiet = await backup()
    expect(quiet.backups[0]!.warnings).toEqual([])
    expect(slack.messages).toEqual([])
    // a bad value fails the run at its first state, with the variable named
    configure({ LSB_SIZE_DROP_RATIO: '1.5' })
    await expect(backup()).rejects.toThrow(/LSB_SIZE_DROP_RATIO/)
  })
})
