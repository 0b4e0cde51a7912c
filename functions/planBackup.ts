import { z } from 'zod'
import { backupIdFor } from '#core/backupKeys.ts'
import { loadSettings } from '#core/config.ts'
import { executionFields } from '#core/payloads.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  /** The execution input as the operator or the schedule gave it. */
  input: z.object({
    engines: z
      .array(z.enum(['postgres', 'clickhouse', 'all']))
      .min(1, 'name at least one engine: ["postgres"], ["clickhouse"] or both'),
  }),
  ...executionFields,
})

/** Validates the execution input and lays out the state the rest of the machine fills in. */
export async function run({ input: { engines }, startedAt, executionId }: z.output<typeof input>) {
  const all = engines.includes('all')
  return {
    engines: [
      ...(all || engines.includes('postgres') ? ['postgres' as const] : []),
      ...(all || engines.includes('clickhouse') ? ['clickhouse' as const] : []),
    ],
    postgres: all || engines.includes('postgres'),
    clickhouse: all || engines.includes('clickhouse'),
    // The backup id is the execution's start time: derived here, once, and carried by the state.
    backupId: backupIdFor(startedAt),
    startedAt,
    executionId,
    concurrency: loadSettings().LSB_MAP_CONCURRENCY,
    results: { postgres: null, clickhouse: null },
  }
}

export const handler = stateHandler('PlanBackup', input, run)
