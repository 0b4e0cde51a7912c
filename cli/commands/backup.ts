import { Command } from 'commander'
import type { Engine } from '#core/backupKeys.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { runAws } from '../awsMode.ts'
import { runLocal } from '../local/runLocal.ts'
import { engineOption, engines, print } from '../output.ts'

interface BackupSummary {
  engine: Engine
  backupId: string
  bytes: number
  rows: number | null
  objects: number
}

export function backupCommand(): Command {
  return new Command('backup')
    .description('back up now: --local runs the real state machine here, otherwise starts the deployed one')
    .option('--local', 'run the state machine locally (aws-local-stepfunctions)')
    .addOption(engineOption())
    .option('--json', 'print one JSON object with the backup id per engine')
    .option('--wait', 'AWS: follow the execution to its end')
    .option('--state-machine-arn <arn>', 'AWS: the backup state machine (else LSB_BACKUP_STATE_MACHINE_ARN)')
    .action(async (opts, command: Command) => {
      const input = { engines: engines(opts.engine) }
      if (!opts.local) return void (await runAws('backup', input, opts))
      const { output } = await runLocal('backup', input, { verbose: command.optsWithGlobals().verbose })
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
}
