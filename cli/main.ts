/**
 * langsight-backup CLI. This file only maps arguments onto library functions; failures print the
 * message (the stack with --verbose) and set a non-zero exit code.
 */
import { Command, Option } from 'commander'
import { listBackups, readManifest } from '#catalog/backupStore.ts'
import { verifyObjectChecksum } from '#catalog/objectStore.ts'
import { ENGINES, type Engine } from '#core/backupKeys.ts'
import { loadSettings } from '#core/config.ts'
import { BackupNotFoundError } from '#core/errors.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { setProgressSink } from '#core/progress.ts'
import { redact } from '#core/redact.ts'
import { runAws, showStatus } from './awsMode.ts'
import { executionProgress } from './progress.ts'

const engineOption = () =>
  new Option('--engine <engine>', 'which engine').choices(['postgres', 'clickhouse', 'all']).default('all')

function engines(choice: string): Engine[] {
  return choice === 'all' ? [...ENGINES] : [choice as Engine]
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`)
}

async function runLocal(machine: 'backup' | 'restore', input: Record<string, unknown>) {
  const { runStateMachine } = await import('#cli/local/runStateMachine.ts')
  const progress = executionProgress()
  setProgressSink(progress.onProgress)
  try {
    return await runStateMachine(machine, input, { onEvent: progress.onEvent })
  } finally {
    progress.done()
    setProgressSink(undefined)
  }
}

interface BackupSummary {
  engine: Engine
  backupId: string
  bytes: number
  rows: number | null
  objects: number
}

export function buildProgram(): Command {
  const program = new Command('langsight-backup')
    .description("Back up and restore LangSight's PostgreSQL and ClickHouse through Step Functions")
    .option('--verbose', 'structured logs and stack traces')
    .showHelpAfterError()

  program
    .command('backup')
    .description('back up now: --local runs the real state machine here, otherwise starts the deployed one')
    .option('--local', 'run the state machine locally (aws-local-stepfunctions)')
    .addOption(engineOption())
    .option('--json', 'print one JSON object with the backup id per engine')
    .option('--wait', 'AWS: follow the execution to its end')
    .option('--state-machine-arn <arn>', 'AWS: the backup state machine (else LSB_BACKUP_STATE_MACHINE_ARN)')
    .action(async (opts) => {
      const input = { engines: engines(opts.engine) }
      if (!opts.local) return runAws('backup', input, opts)
      const { output } = await runLocal('backup', input)
      const backups = (output as { backups: BackupSummary[] }).backups
      print(opts.json, Object.fromEntries(backups.map((b) => [b.engine, b.backupId])), () =>
        backups
          .map(
            (b) =>
              `${b.engine} backup ${b.backupId}: ${b.objects} object(s), ${humanBytes(b.bytes)}${b.rows === null ? '' : `, ${b.rows} rows`}`,
          )
          .join('\n'),
      )
    })

  program
    .command('restore')
    .description(
      'restore backups: --local runs the real restore state machine here, otherwise starts the deployed one',
    )
    .option('--local', 'run the state machine locally')
    .option('--postgres <id>', 'Postgres backup id or "latest"')
    .option('--clickhouse <id>', 'ClickHouse backup id or "latest"')
    .option('--target-postgres-database <name>', 'restore into this database instead (a drill)')
    .option('--target-clickhouse-database <name>', 'restore into this database instead (a drill)')
    .option('--no-migrate', 'do not run the schema migration')
    .option('--json', 'print the result as JSON')
    .option('--wait', 'AWS: follow the execution to its end')
    .option(
      '--state-machine-arn <arn>',
      'AWS: the restore state machine (else LSB_RESTORE_STATE_MACHINE_ARN)',
    )
    .action(async (opts) => {
      const input = {
        postgres: opts.postgres ?? null,
        clickhouse: opts.clickhouse ?? null,
        targets: {
          ...(opts.targetPostgresDatabase ? { postgresDatabase: opts.targetPostgresDatabase } : {}),
          ...(opts.targetClickhouseDatabase ? { clickhouseDatabase: opts.targetClickhouseDatabase } : {}),
        },
        migrate: opts.migrate ? 'default' : 'none',
      }
      if (!opts.local) return runAws('restore', input, opts)
      const { output } = await runLocal('restore', input)
      const o = output as Record<string, { backupId?: string } | null> & { schema?: { head: string | null } }
      const result = {
        postgres: o.postgres?.backupId ?? null,
        clickhouse: o.clickhouse?.backupId ?? null,
        postgresRestore: o.postgresRestore ?? null,
        clickhouseRestore: o.clickhouseCommitted ?? null,
        schemaHead: o.schema?.head ?? null,
      }
      print(opts.json, result, () =>
        [
          result.postgres && `postgres restored from ${result.postgres}`,
          result.clickhouse && `clickhouse restored from ${result.clickhouse}`,
          result.schemaHead && `schema at ${result.schemaHead}`,
        ]
          .filter(Boolean)
          .join('\n'),
      )
    })

  program
    .command('list')
    .description('list backups in the bucket')
    .addOption(engineOption())
    .option('--all', 'include incomplete backups')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const { LSB_BUCKET: bucket, LSB_PREFIX: prefix } = loadSettings()
      const rows: { engine: Engine; backupId: string; complete: boolean; bytes: number; objects: number }[] =
        []
      for (const engine of engines(opts.engine)) {
        for (const b of await listBackups(bucket, prefix, engine)) {
          if (b.complete || opts.all)
            rows.push({
              engine,
              backupId: b.backupId,
              complete: b.complete,
              bytes: b.bytes,
              objects: b.keys.length,
            })
        }
      }
      print(opts.json, rows, () =>
        rows.length === 0
          ? `no backups under s3://${bucket}/${prefix}/`
          : rows
              .map(
                (r) =>
                  `${r.engine.padEnd(10)} ${r.backupId}  ${humanBytes(r.bytes).padStart(10)}  ${r.objects} object(s)${r.complete ? '' : '  INCOMPLETE'}`,
              )
              .join('\n'),
      )
    })

  program
    .command('verify <backupId>')
    .description('re-hash every object of a stored backup against its manifest')
    .addOption(engineOption())
    .option('--json', 'print JSON')
    .action(async (backupId: string, opts) => {
      const { LSB_BUCKET: bucket, LSB_PREFIX: prefix } = loadSettings()
      const results: { engine: Engine; backupId: string; objects: number; bytes: number }[] = []
      for (const engine of engines(opts.engine)) {
        const manifest = await readManifest(bucket, prefix, engine, backupId).catch((e) => {
          if (e instanceof BackupNotFoundError && opts.engine === 'all') return null
          throw e
        })
        if (!manifest) continue
        let done = 0
        for (const object of manifest.objects) {
          process.stderr.write(
            `  ${engine} ${++done}/${manifest.objects.length} ${object.key} (${humanBytes(object.bytes)})\n`,
          )
          await verifyObjectChecksum(bucket, object.key, object)
        }
        results.push({
          engine,
          backupId,
          objects: manifest.objects.length,
          bytes: manifest.objects.reduce((s, o) => s + o.bytes, 0),
        })
      }
      if (results.length === 0)
        throw new BackupNotFoundError(`no backup ${backupId} under s3://${bucket}/${prefix}/`)
      print(opts.json, { verified: results }, () =>
        results
          .map((r) => `${r.engine} ${r.backupId}: ${r.objects} object(s), ${humanBytes(r.bytes)} verified`)
          .join('\n'),
      )
    })

  program
    .command('status <executionArn>')
    .description('AWS: where an execution stands')
    .option('--json', 'print JSON')
    .action(async (arn: string, opts) => showStatus(arn, opts))

  return program
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
  } catch (error) {
    const e = error as Error & { error?: string }
    process.stderr.write(`langsight-backup: ${redact(e.message)}\n`)
    if (program.opts().verbose && e.stack) process.stderr.write(`${redact(e.stack)}\n`)
    process.exitCode = 1
  }
}
