/** What every command shares: how it prints its result, and the --engine choice. */
import { Option } from 'commander'
import { ENGINES, type Engine } from '#core/backupKeys.ts'

/** The result on stdout: JSON with --json, else the text (built only when needed). */
export function print(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`)
}

export const engineOption = () =>
  new Option('--engine <engine>', 'which engine').choices(['postgres', 'clickhouse', 'all']).default('all')

export function engines(choice: string): Engine[] {
  return choice === 'all' ? [...ENGINES] : [choice as Engine]
}
