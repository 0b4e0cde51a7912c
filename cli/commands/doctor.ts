import { Command, InvalidArgumentError, Option } from 'commander'
import { type CheckResult, SYMBOL } from '../doctor/check.ts'
import { runDoctor } from '../doctor/runDoctor.ts'
import { print } from '../output.ts'

const NAME_WIDTH = 28

/** `✓ name   detail`, and under a ✗ or ! its `fix:`. */
export function formatLine(line: CheckResult): string {
  const head = `${SYMBOL[line.status]} ${line.check.padEnd(NAME_WIDTH)} ${line.detail}\n`
  return line.fix && line.status !== 'ok' ? `${head}  ${' '.repeat(NAME_WIDTH)} fix: ${line.fix}\n` : head
}

function summary(lines: CheckResult[]): string {
  const count = (status: CheckResult['status']) => lines.filter((l) => l.status === status).length
  return (
    `\n${count('ok')} ok (✓), ${count('warn')} warnings (!), ${count('fail')} failed (✗), ` +
    `${count('skip')} not checked (-)\n`
  )
}

function seconds(value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0 || n > 600) throw new InvalidArgumentError('seconds between 0 and 600')
  return n
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check settings, PostgreSQL, ClickHouse, the bucket, Slack and (without --local) the deployed stack; exit 1 when any check fails',
    )
    .option('--local', 'leave out the deployed stack (state machines, schedules, alarms)')
    .option('--json', 'print an array of {check, ok, status, detail, fix?}')
    .option('--send-test-message', 'post one labelled test message to the Slack webhook')
    .addOption(new Option('--timeout <seconds>', 'deadline of each check').default(10).argParser(seconds))
    .action(async (opts) => {
      const lines = await runDoctor(
        {
          local: Boolean(opts.local),
          sendTestMessage: Boolean(opts.sendTestMessage),
          timeoutMs: opts.timeout * 1000,
        },
        (group) => {
          if (!opts.json) process.stdout.write(group.map(formatLine).join(''))
        },
      )
      if (opts.json) print(true, lines, () => '')
      else process.stdout.write(summary(lines))
      if (lines.some((l) => !l.ok)) process.exitCode = 1
    })
}
