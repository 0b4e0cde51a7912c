import { Command } from 'commander'
import { showStatus } from '../awsMode.ts'

export function statusCommand(): Command {
  return new Command('status')
    .argument('<executionArn>')
    .description('AWS: where an execution stands')
    .option('--json', 'print JSON')
    .action(async (arn: string, opts) => showStatus(arn, opts))
}
