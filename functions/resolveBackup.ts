import { createHash } from 'node:crypto'
import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { backupIdFor } from '#core/backupKeys.ts'
import { verifyBatches } from '#core/batches.ts'
import { loadSettings, type Settings } from '#core/config.ts'
import { ConfigError, UntrustedInputError } from '#core/errors.ts'
import type { Manifest } from '#core/manifest.ts'
import { drillDatabaseName } from '#core/names.ts'
import { backupIdSchema, databaseNameSchema, executionFields } from '#core/payloads.ts'
import { validateClickHouseManifest } from '#engines/clickhouse/restore/plan.ts'
import { stateHandler } from '#functions/middleware/stateHandler.ts'

const backupRef = z
  .union([z.literal('latest'), backupIdSchema])
  .nullable()
  .optional()

export const restoreRequestSchema = z.strictObject({
  postgres: backupRef,
  clickhouse: backupRef,
  /** Restore into other databases (a drill) instead of the configured ones. */
  targets: z
    .strictObject({
      postgresDatabase: databaseNameSchema.optional(),
      clickhouseDatabase: databaseNameSchema.optional(),
    })
    .default({}),
  /** "none" skips the migration (a drill into scratch databases must not run the app's migrations). */
  migrate: z.enum(['default', 'none']).default('default'),
  /**
   * drill: load into scratch databases, compare every table with the backup's fingerprints, drop
   * them; nothing live is touched and no writer stopped.
   */
  mode: z.enum(['restore', 'drill']).default('restore'),
})
export type RestoreRequest = z.input<typeof restoreRequestSchema>

const input = z.object({ input: restoreRequestSchema, ...executionFields })

function migratePlan(requested: 'default' | 'none') {
  const s = loadSettings()
  const strategy = requested === 'none' ? 'none' : s.LSB_MIGRATE_STRATEGY
  if (strategy === 'ecs' && !(s.LSB_MIGRATE_ECS_CLUSTER && s.LSB_MIGRATE_ECS_TASK_DEFINITION)) {
    throw new ConfigError(
      'LSB_MIGRATE_STRATEGY=ecs needs LSB_MIGRATE_ECS_CLUSTER and LSB_MIGRATE_ECS_TASK_DEFINITION',
    )
  }
  if (strategy === 'lambda' && !s.LSB_MIGRATE_FUNCTION) {
    throw new ConfigError('LSB_MIGRATE_STRATEGY=lambda needs LSB_MIGRATE_FUNCTION')
  }
  if (strategy === 'command' && !s.LSB_MIGRATE_COMMAND) {
    throw new ConfigError('LSB_MIGRATE_STRATEGY=command needs LSB_MIGRATE_COMMAND (a JSON argv array)')
  }
  return {
    strategy,
    ecs: {
      cluster: s.LSB_MIGRATE_ECS_CLUSTER ?? '',
      taskDefinition: s.LSB_MIGRATE_ECS_TASK_DEFINITION ?? '',
      container: s.LSB_MIGRATE_ECS_CONTAINER,
      subnets: s.LSB_MIGRATE_ECS_SUBNETS,
      securityGroups: s.LSB_MIGRATE_ECS_SECURITY_GROUPS,
      assignPublicIp: s.LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP,
      command: ['uv', 'run', 'alembic', 'upgrade', 'head'],
    },
    functionName: s.LSB_MIGRATE_FUNCTION ?? '',
  }
}

/** One VerifyChecksums item per batch of a backup's objects: the state stays small whatever their count. */
function verifyItems(manifest: Manifest | null, s: Settings) {
  if (!manifest) return []
  return verifyBatches(manifest, s).map((_, batch) => ({
    engine: manifest.engine,
    backupId: manifest.backupId,
    batch,
  }))
}

/**
 * Turns the request into a plan: each named backup resolved (`latest` = newest complete) and its
 * manifest validated, before anything else happens.
 */
export async function run({ input: request, startedAt, executionId }: z.output<typeof input>) {
  if (!request.postgres && !request.clickhouse) {
    throw new UntrustedInputError(
      'name at least one backup: {"postgres": "<id>|latest", "clickhouse": "<id>|latest"}',
    )
  }
  const s = loadSettings()
  const store = backupStore()
  const [pg, ch] = await Promise.all([
    request.postgres ? store.resolve('postgres', request.postgres) : null,
    request.clickhouse ? store.resolve('clickhouse', request.clickhouse) : null,
  ])
  // Table names and DDL are untrusted: refused here, before any checksum is read or database touched.
  if (ch) validateClickHouseManifest(ch)
  const drill = request.mode === 'drill'
  if (
    drill &&
    (request.targets.postgresDatabase || request.targets.clickhouseDatabase || request.migrate !== 'default')
  ) {
    throw new UntrustedInputError(
      'a drill picks its own scratch databases and runs no migration: give no targets or migrate',
    )
  }
  // a drill's scratch names: `<source>__lsb_drill_<8 hex of the execution>`, never a live name
  const token = createHash('sha256').update(executionId).digest('hex').slice(0, 8)
  const targets = drill
    ? {
        postgresDatabase: pg ? drillDatabaseName(pg.source.database, token) : undefined,
        clickhouseDatabase: ch ? drillDatabaseName(ch.source.database, token) : undefined,
      }
    : request.targets
  const migrate = migratePlan(drill ? 'none' : request.migrate)
  const otherDatabases = Boolean(targets.postgresDatabase || targets.clickhouseDatabase)
  return {
    startedAt,
    executionId,
    concurrency: s.LSB_MAP_CONCURRENCY,
    wantPostgres: pg !== null,
    wantClickHouse: ch !== null,
    postgres: pg && { backupId: pg.backupId, targetDatabase: targets.postgresDatabase ?? null },
    clickhouse: ch && { backupId: ch.backupId, targetDatabase: targets.clickhouseDatabase ?? null },
    verify: [...verifyItems(pg, s), ...verifyItems(ch, s)],
    // A restore into other databases (a drill) leaves the writers of the live ones running.
    quiesce: {
      ...(otherDatabases
        ? { enabled: false, services: [] }
        : { enabled: (s.LSB_QUIESCE_SERVICES ?? []).length > 0, services: s.LSB_QUIESCE_SERVICES ?? [] }),
      timeoutSeconds: s.LSB_QUIESCE_TIMEOUT_SECONDS,
      pollSeconds: s.LSB_QUIESCE_POLL_SECONDS,
    },
    migrate: { ...migrate, run: pg !== null && migrate.strategy !== 'none' },
    // A restore without migration restores an old schema on purpose: its head is not checked either.
    checkHead: pg !== null && Boolean(s.LSB_EXPECTED_SCHEMA_HEAD) && request.migrate !== 'none' && !drill,
    drill: drill
      ? {
          enabled: true,
          drillId: backupIdFor(startedAt),
          // CheckFingerprints's Map items, and what FinishDrill drops: one per engine
          engines: [
            ...(pg
              ? [{ engine: 'postgres', backupId: pg.backupId, database: targets.postgresDatabase! }]
              : []),
            ...(ch
              ? [{ engine: 'clickhouse', backupId: ch.backupId, database: targets.clickhouseDatabase! }]
              : []),
          ],
        }
      : { enabled: false },
  }
}

export const handler = stateHandler('ResolveBackup', input, run)
