import { Command } from 'commander'
import { runAws } from '../awsMode.ts'
import { runLocal } from '../local/runLocal.ts'
import { print } from '../output.ts'

export function restoreCommand(): Command {
  return new Command('restore')
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
    .action(async (opts, command: Command) => {
      const input = {
        postgres: opts.postgres ?? null,
        clickhouse: opts.clickhouse ?? null,
        targets: {
          ...(opts.targetPostgresDatabase ? { postgresDatabase: opts.targetPostgresDatabase } : {}),
          ...(opts.targetClickhouseDatabase ? { clickhouseDatabase: opts.targetClickhouseDatabase } : {}),
        },
        migrate: opts.migrate ? 'default' : 'none',
      }
      if (!opts.local) return void (await runAws('restore', input, opts))
      const { output } = await runLocal('restore', input, { verbose: command.optsWithGlobals().verbose })
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
}
