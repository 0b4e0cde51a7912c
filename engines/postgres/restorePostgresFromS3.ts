import { restoreNames } from '#core/names.ts'
import { openAdminSession } from './adminSession.ts'
import { type LoadOptions, loadPostgresFromS3 } from './loadPostgresFromS3.ts'
import { parsePostgresUrl } from './postgresUrl.ts'
import { type SwapResult, swapInRestoredPostgres } from './swapInRestoredPostgres.ts'

export type RestoreOptions = LoadOptions
export type RestoreResult = SwapResult

/**
 * loadPostgresFromS3() then swapInRestoredPostgres(): the dump goes into a fresh
 * `<db>__lsb_restoring`, and only once pg_restore succeeded is it swapped in place of `<db>`, the
 * replaced database kept as `<db>__lsb_previous`. On any failure, the swap's included, the
 * restoring database is dropped and the live one is untouched.
 */
export async function restorePostgresFromS3(options: RestoreOptions): Promise<RestoreResult> {
  await loadPostgresFromS3(options)
  try {
    return await swapInRestoredPostgres(options)
  } catch (error) {
    await discardRestoredPostgres(options.url)
    throw error
  }
}

/**
 * Drops `<db>__lsb_restoring`, a load that will not be swapped in (another engine's load failed).
 * Never throws: a leftover is dropped by the next load anyway.
 */
export async function discardRestoredPostgres(url: string): Promise<void> {
  const target = parsePostgresUrl(url)
  const { restoring } = restoreNames(target.database)
  const admin = await openAdminSession(target, `discard of ${restoring}`).catch(() => undefined)
  if (!admin) return
  try {
    await admin.dropQuietly(restoring)
  } finally {
    await admin.end()
  }
}
