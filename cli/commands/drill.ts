import { Command } from 'commander'
import { backupStore } from '#catalog/backupStore.ts'
import { type DrillRecord, readDrillRecords } from '#catalog/drillRecords.ts'
import type { Engine } from '#core/backupKeys.ts'
import { runAws } from '../awsMode.ts'
import { runLocal } from '../local/runLocal.ts'
import { print } from '../output.ts'

/** What `drill --json` prints: per engine and table, the rows and whether the fingerprint matched. */
interface DrillReport {
  passed: boolean
  executionArn: string
  error?: string
  engines: Pick<
    DrillRecord,
    'engine' | 'backupId' | 'passed' | 'fingerprints' | 'seconds' | 'tables' | 'error'
  >[]
}

function text(report: DrillReport): string {
  const lines = report.engines.flatMap((e) => [
    `${e.engine} ${e.backupId}: ${e.passed ? 'PROVEN restorable' : 'FAILED'} (${e.fingerprints} fingerprints, ${e.seconds.toFixed(1)} s)`,
    ...e.tables.map(
      (t) =>
        `  ${t.match ? '✓' : '✗'} ${t.table.padEnd(32)} ${String(t.rows ?? '-').padStart(10)} rows` +
        (t.match
          ? ''
          : `  (backup: ${t.expectedRows ?? '-'} rows${t.rows === t.expectedRows ? ', content differs' : ''})`),
    ),
    ...(e.error ? [`  ${e.error}`] : []),
  ])
  if (report.error && report.engines.length === 0) lines.push(report.error)
  return lines.join('\n')
}

export function drillCommand(): Command {
  return new Command('drill')
    .description(
      'prove backups restorable: restore into scratch databases, compare every table with the fingerprints taken at backup time, drop them',
    )
    .option('--local', 'run the restore state machine here')
    .option('--postgres <id>', 'Postgres backup id or "latest" (default: latest of both engines)')
    .option('--clickhouse <id>', 'ClickHouse backup id or "latest"')
    .option('--json', 'print the result as JSON')
    .option('--wait', 'AWS: follow the execution to its end (implied by --json)')
    .option(
      '--state-machine-arn <arn>',
      'AWS: the restore state machine (else LSB_RESTORE_STATE_MACHINE_ARN)',
    )
    .action(async (opts, command: Command) => {
      const store = backupStore()
      const wanted: Partial<Record<Engine, string>> =
        opts.postgres || opts.clickhouse
          ? {
              ...(opts.postgres ? { postgres: opts.postgres } : {}),
              ...(opts.clickhouse ? { clickhouse: opts.clickhouse } : {}),
            }
          : { postgres: 'latest', clickhouse: 'latest' }
      // resolved here, so the records read afterwards are those of the very backups drilled
      const backups = await Promise.all(
        Object.entries(wanted).map(
          async ([engine, id]) => (await store.resolve(engine as Engine, id)).backupId,
        ),
      )
      const ids = Object.fromEntries(Object.keys(wanted).map((engine, i) => [engine, backups[i]]))
      const input = { mode: 'drill', postgres: ids.postgres ?? null, clickhouse: ids.clickhouse ?? null }
      let executionArn: string
      let error: string | undefined
      try {
        executionArn = opts.local
          ? (await runLocal('restore', input, { verbose: command.optsWithGlobals().verbose })).executionArn
          : (await runAws('restore', input, { ...opts, wait: opts.wait || opts.json, quiet: true }))
              .executionArn
      } catch (e) {
        const arn = (e as { executionArn?: string }).executionArn
        if (!arn) throw e
        executionArn = arn
        error = (e as Error).message
      }
      if (!opts.local && !(opts.wait || opts.json)) return void process.stdout.write(`${executionArn}\n`)
      const engines = []
      for (const [engine, backupId] of Object.entries(ids) as [Engine, string][]) {
        const mine = (await readDrillRecords(store, engine, backupId)).filter(
          (r) => r.executionId === executionArn,
        )
        if (mine.length > 0) engines.push(mine.at(-1)!)
      }
      const report: DrillReport = {
        passed: error === undefined && engines.every((e) => e.passed),
        executionArn,
        ...(error ? { error } : {}),
        engines: engines.map(({ engine, backupId, passed, fingerprints, seconds, tables, error: why }) => ({
          engine,
          backupId,
          passed,
          fingerprints,
          seconds,
          tables,
          ...(why ? { error: why } : {}),
        })),
      }
      print(opts.json, report, () => text(report))
      if (!report.passed) process.exitCode = 1
    })
}
