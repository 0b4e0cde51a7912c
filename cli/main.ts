/**
 * langsight-backup CLI. This file only maps commands onto their modules (`commands/`); failures
 * print the message (the stack with --verbose) and set a non-zero exit code.
 */
import { Command } from 'commander'
import { redact } from '#core/redact.ts'
import { backupCommand } from './commands/backup.ts'
import { doctorCommand } from './commands/doctor.ts'
import { drillCommand } from './commands/drill.ts'
import { listCommand } from './commands/list.ts'
import { restoreCommand } from './commands/restore.ts'
import { statusCommand } from './commands/status.ts'
import { verifyCommand } from './commands/verify.ts'

export function buildProgram(): Command {
  const program = new Command('langsight-backup')
    .description("Back up and restore LangSight's PostgreSQL and ClickHouse through Step Functions")
    .option('--verbose', 'structured logs and stack traces')
    .showHelpAfterError()
  for (const command of [
    backupCommand(),
    restoreCommand(),
    drillCommand(),
    listCommand(),
    verifyCommand(),
    statusCommand(),
    doctorCommand(),
  ]) {
    // as program.command() would: showHelpAfterError and the like hold for every command
    program.addCommand(command.copyInheritedSettings(program))
  }
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
