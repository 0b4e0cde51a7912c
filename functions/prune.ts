import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { loadSettings } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { engineSchema } from '#core/payloads.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ engines: z.array(engineSchema).min(1), dryRun: z.boolean().optional() })

/** Retention per engine, never below the newest complete backups. Only reached after a successful commit. */
export async function run({ engines, dryRun }: z.output<typeof input>) {
  const settings = loadSettings()
  const reports = []
  for (const engine of engines) {
    const report = await backupStore().prune(engine, {
      policy: {
        maxAgeDays:
          engine === 'postgres'
            ? settings.LSB_RETENTION_POSTGRES_DAYS
            : settings.LSB_RETENTION_CLICKHOUSE_DAYS,
        keepLast: settings.LSB_KEEP_LAST,
        keepProven: settings.LSB_KEEP_PROVEN,
        incompleteGraceHours: settings.LSB_INCOMPLETE_GRACE_HOURS,
        lockDays: settings.LSB_OBJECT_LOCK_DAYS || undefined,
      },
      now: new Date(),
      dryRun: dryRun ?? settings.LSB_PRUNE_DRY_RUN,
    })
    logger.info('pruned', { engine, dryRun: report.dryRun, removed: report.removed.map((r) => r.backupId) })
    reports.push(report)
  }
  return reports
}

export const handler = stateHandler('Prune', input, run)
