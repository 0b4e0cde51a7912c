/**
 * The doctor's checks, in report order. Independent groups (PostgreSQL, ClickHouse, the bucket,
 * Slack, the stack) run at the same time; checks within a group run one after the other, each
 * under its own deadline, and a check whose prerequisite failed is reported as not checked.
 */
import { loadSettings } from '#core/config.ts'
import { awsChecks } from './awsChecks.ts'
import { bucketChecks } from './bucketChecks.ts'
import { type CheckContext, type CheckResult, fail, messageOf, ok, result, skip } from './check.ts'
import { clickhouseChecks } from './clickhouseChecks.ts'
import { postgresChecks } from './postgresChecks.ts'
import { slackCheck } from './slackCheck.ts'

/** Every check a group reports, so that a group that cannot run still has its lines. */
const GROUPS = {
  postgres: ['postgres', 'postgres-dump-privileges', 'postgres-restore-privileges', 'pg-tools'],
  clickhouse: ['clickhouse', 'clickhouse-tables', 'clickhouse-s3'],
  bucket: ['bucket', 'bucket-versioning', 'bucket-object-lock'],
  slack: ['slack'],
  aws: ['aws-backup-state-machine', 'aws-restore-state-machine', 'aws-schedules', 'aws-alarms'],
} as const

/**
 * Runs every check and returns one line per check. `onLines` receives the lines group by group,
 * in report order, as soon as a group and all before it are done (the text output streams).
 */
export async function runDoctor(
  options: CheckContext,
  onLines: (lines: CheckResult[]) => void = () => {},
): Promise<CheckResult[]> {
  const settings = settingsCheck()
  const run = (group: keyof typeof GROUPS, checks: () => Promise<CheckResult[]>, needsSettings = true) => {
    if (needsSettings && !settings.ok) {
      return Promise.resolve(
        GROUPS[group].map((c) => result(c, skip('not checked: the settings do not parse'))),
      )
    }
    // A group's checks catch their own errors; this is for a bug in the doctor itself.
    return checks().catch((error: unknown) => [
      result(GROUPS[group][0], fail(messageOf(error), 'unexpected: run again with --verbose and report it')),
    ])
  }
  const groups = [
    Promise.resolve([settings]),
    run('postgres', () => postgresChecks(options)),
    run('clickhouse', () => clickhouseChecks(options)),
    run('bucket', () => bucketChecks(options)),
    run('slack', async () => [await slackCheck(options)], false),
    ...(options.local ? [] : [run('aws', () => awsChecks(options), false)]),
  ]
  const lines: CheckResult[] = []
  for (const group of groups) {
    const done = await group
    onLines(done)
    lines.push(...done)
  }
  return lines
}

/** Every setting parses (core/config.ts); a failure names the variables. */
function settingsCheck(): CheckResult {
  try {
    const s = loadSettings()
    return result(
      'settings',
      ok(
        `valid: backups in s3://${s.LSB_BUCKET}/${s.LSB_PREFIX}/, retention ${s.LSB_RETENTION_POSTGRES_DAYS} d (postgres) ` +
          `and ${s.LSB_RETENTION_CLICKHOUSE_DAYS} d (clickhouse), keep last ${s.LSB_KEEP_LAST}, migration ${s.LSB_MIGRATE_STRATEGY}`,
      ),
    )
  } catch (error) {
    const names = [...new Set(String((error as Error).message).match(/\b(?:LSB|AWS)_[A-Z0-9_]+/g) ?? [])]
    return result(
      'settings',
      fail(
        messageOf(error),
        names.length ? `fix ${names.join(', ')} (README.md, Configuration)` : 'see README.md, Configuration',
      ),
    )
  }
}
