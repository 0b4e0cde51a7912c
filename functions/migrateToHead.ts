import { z } from 'zod'
import { loadSettings, requireSecret } from '#core/config.ts'
import { ConfigError } from '#core/errors.ts'
import { logger } from '#core/logger.ts'
import { databaseNameSchema } from '#core/payloads.ts'
import { assertSchemaHead, currentSchemaHead, runMigrateCommand } from '#engines/postgres/migrate.ts'
import { urlForDatabase } from '#engines/postgres/postgresUrl.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  /** run: apply the configured strategy (command or none) then check; check: only compare the head. */
  mode: z.enum(['run', 'check']),
  strategy: z.enum(['none', 'command', 'lambda', 'ecs']),
  targetDatabase: databaseNameSchema.nullable(),
  /** Compare with LSB_EXPECTED_SCHEMA_HEAD (off for a drill that skips the migration). */
  check: z.boolean(),
})

/** Brings the restored schema to the application's head (`alembic upgrade head`) and checks it. */
export async function run(
  { mode, strategy, targetDatabase, check }: z.output<typeof input>,
  { signal }: StateContext,
) {
  const s = loadSettings()
  const url = urlForDatabase(await requireSecret('LSB_POSTGRES_URL'), targetDatabase)
  if (mode === 'run' && strategy === 'command') {
    const argv = s.LSB_MIGRATE_COMMAND
    if (!argv)
      throw new ConfigError('LSB_MIGRATE_STRATEGY=command needs LSB_MIGRATE_COMMAND (a JSON argv array)')
    logger.info('running migration command', { command: argv[0] })
    await runMigrateCommand(argv, url, { timeoutSeconds: s.LSB_MIGRATE_TIMEOUT_SECONDS, signal })
  }
  const head =
    check && s.LSB_EXPECTED_SCHEMA_HEAD
      ? await assertSchemaHead(url, s.LSB_EXPECTED_SCHEMA_HEAD)
      : await currentSchemaHead(url)
  logger.info('schema head', { head })
  return { strategy, head }
}

export const handler = stateHandler('MigrateToHead', input, run)
