import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { postgresDumpKey } from '#core/backupKeys.ts'
import { loadSettings, pgDumpCompression, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, type EngineBackup } from '#core/payloads.ts'
import { progressReporter } from '#core/progress.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, startedAt: z.iso.datetime() })

/** pg_dump --format=custom streamed into S3; the backup id is the execution's start time. */
export async function run(
  { backupId, startedAt }: z.output<typeof input>,
  { signal }: StateContext,
): Promise<EngineBackup> {
  const settings = loadSettings()
  const store = backupStore()
  const key = postgresDumpKey(store.prefix, backupId)
  logger.appendKeys({ engine: 'postgres', backupId })
  const dump = await dumpPostgresToS3({
    url: await requireSecret('LSB_POSTGRES_URL'),
    bucket: store.bucket,
    key,
    compression: pgDumpCompression(settings),
    binDir: settings.LSB_PG_BIN_DIR,
    signal,
    onProgress: progressReporter('SnapshotPostgres', 'pg_dump'),
  })
  logger.info('postgres dump stored', { key, bytes: dump.bytes, compression: dump.compression })
  return {
    engine: 'postgres',
    backupId,
    startedAt,
    source: {
      serverVersion: dump.serverVersion,
      database: dump.database,
      dumpToolVersion: dump.dumpToolVersion,
    },
    objects: [{ key, bytes: dump.bytes, sha256: dump.sha256, rows: null, table: null, compression: 'none' }],
    tables: [],
  }
}

export const handler = stateHandler('SnapshotPostgres', input, run)
