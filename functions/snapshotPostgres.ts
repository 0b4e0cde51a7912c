import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { postgresDumpKey } from '#core/backupKeys.ts'
import { loadSettings, pgDumpCompression, requireSecret } from '#core/config.ts'
import { logger } from '#core/logger.ts'
import { backupIdSchema, type EngineBackup } from '#core/payloads.ts'
import { progressReporter } from '#core/progress.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { exportSnapshot } from '#engines/postgres/fingerprint.ts'
import { parsePostgresUrl } from '#engines/postgres/postgresUrl.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({ backupId: backupIdSchema, startedAt: z.iso.datetime() })

/** pg_dump --format=custom streamed into S3; the backup id is the execution's start time. */
export async function run(
  { backupId, startedAt }: z.output<typeof input>,
  { signal, deadlineMs }: StateContext,
): Promise<EngineBackup> {
  const settings = loadSettings()
  const store = backupStore()
  const key = postgresDumpKey(store.prefix, backupId)
  logger.appendKeys({ engine: 'postgres', backupId })
  const url = await requireSecret('LSB_POSTGRES_URL')
  const mode = settings.LSB_POSTGRES_FINGERPRINT
  // the fingerprints are read in the very snapshot pg_dump dumps, while it dumps
  const snapshot = mode === 'off' ? null : await exportSnapshot(parsePostgresUrl(url), { deadlineMs, signal })
  const stop = new AbortController()
  const settled = await Promise.allSettled([
    dumpPostgresToS3({
      url,
      bucket: store.bucket,
      key,
      compression: pgDumpCompression(settings),
      binDir: settings.LSB_PG_BIN_DIR,
      signal: AbortSignal.any([signal, stop.signal]),
      onProgress: progressReporter('SnapshotPostgres', 'pg_dump'),
      ...(snapshot ? { snapshot: snapshot.id } : {}),
    }).catch((error: unknown) => {
      void snapshot?.close() // a failed dump ends the fingerprint reads too
      throw error
    }),
    snapshot && mode !== 'off'
      ? snapshot.fingerprints(mode).catch((error: unknown) => {
          stop.abort(error) // no dump is kept without the fingerprints asked for
          throw error
        })
      : null,
  ])
  await snapshot?.close()
  const [dumped, fingerprinted] = settled
  // the fingerprints' failure first: it is why the dump was stopped
  if (fingerprinted.status === 'rejected') throw fingerprinted.reason
  if (dumped.status === 'rejected') throw dumped.reason
  const dump = dumped.value
  // the manifest keeps what a drill compares; the time each read took is only logged
  const fingerprints = fingerprinted.value?.map(({ seconds: _, ...table }) => table)
  logger.info('postgres dump stored', {
    key,
    bytes: dump.bytes,
    compression: dump.compression,
    fingerprintSeconds: fingerprinted.value?.map((t) => `${t.table} ${t.seconds.toFixed(1)}`),
  })
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
    ...(fingerprints ? { fingerprints } : {}),
  }
}

export const handler = stateHandler('SnapshotPostgres', input, run)
