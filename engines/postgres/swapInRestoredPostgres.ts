import { PgRestoreError } from '#core/errors.ts'
import { type RestoreNames, restoreNames } from '#core/names.ts'
import { type AdminSession, openAdminSession, terminateSessions } from './adminSession.ts'
import { quoteIdent } from './connectPostgres.ts'
import { readLoadMarker } from './loadMarker.ts'
import { parsePostgresUrl } from './postgresUrl.ts'

export interface SwapOptions {
  /** The database to replace, `postgres://user:pass@host:port/<db>`, as given to loadPostgresFromS3(). */
  url: string
  /** The dump the load read: only a load of this very object is swapped in. */
  bucket: string
  key: string
}

export interface SwapResult {
  database: string
  /** The kept copy of the database the restore replaced, or null if there was none. */
  previousDatabase: string | null
  /** Tables in the database swapped in, as the load counted them. */
  tables: number
}

/** How often the swap is tried when a client reconnects to the live database between terminate and rename. */
const SWAP_ATTEMPTS = 3

/**
 * Swaps a finished load in place of the URL's database. First `<db>__lsb_restoring` must exist and
 * carry the marker loadPostgresFromS3() writes last, for this bucket and key: otherwise a
 * PgRestoreError says which of these is missing and nothing is changed (the restoring database is
 * kept, whatever it holds). Then an older `<db>__lsb_previous` is dropped, the live database's
 * sessions are terminated and, in one transaction, `<db>` is renamed to `<db>__lsb_previous` and
 * the restoring database to `<db>`, and the marker is removed. A failed swap leaves the live
 * database where it was and the restoring one in place, so the swap can be tried again.
 */
export async function swapInRestoredPostgres(options: SwapOptions): Promise<SwapResult> {
  const target = parsePostgresUrl(options.url)
  const names = restoreNames(target.database)
  const source = `s3://${options.bucket}/${options.key}`
  const admin = await openAdminSession(target, `swap of ${names.restoring} into ${target.location}`)
  try {
    const refuse = (why: string) =>
      new PgRestoreError(
        `cannot swap ${names.restoring} in place of ${target.location}: ${why}; nothing was changed`,
      )
    const { exists, marker } = await readLoadMarker(admin, names.restoring)
    if (!exists) throw refuse(`it does not exist (load ${source} with loadPostgresFromS3 first)`)
    if (!marker) {
      throw refuse(
        'it is not marked as completely loaded (a load that did not finish, or a database that is not ' +
          `a langsight-backup load): load ${source} again`,
      )
    }
    if (marker.source !== source) throw refuse(`it holds a load of ${marker.source}, not of ${source}`)
    const { rows } = await admin.run(
      `look for ${names.live}`,
      'SELECT 1 FROM pg_database WHERE datname = $1',
      [names.live],
    )
    const liveExists = rows.length > 0
    if (liveExists) await admin.drop(names.previous)
    await swapIn(admin, names, liveExists)
    return {
      database: names.live,
      previousDatabase: liveExists ? names.previous : null,
      tables: marker.tables,
    }
  } finally {
    await admin.end()
  }
}

/**
 * Terminates the live database's sessions, then renames live → previous and restoring → live in one
 * transaction, so a failure leaves the live database where it was. A client that reconnects in
 * between makes the rename fail (55006, after PostgreSQL's own 5 s wait); the swap is tried again.
 */
async function swapIn(admin: AdminSession, names: RestoreNames, liveExists: boolean): Promise<void> {
  const { run } = admin
  for (let attempt = 1; ; attempt++) {
    const kept = liveExists ? await terminateSessions(run, names.live) : 0
    try {
      await run('begin the swap', 'BEGIN')
      if (liveExists) {
        await run(
          `rename ${names.live} to ${names.previous}`,
          `ALTER DATABASE ${quoteIdent(names.live)} RENAME TO ${quoteIdent(names.previous)}`,
        )
      }
      await run(
        `rename ${names.restoring} to ${names.live}`,
        `ALTER DATABASE ${quoteIdent(names.restoring)} RENAME TO ${quoteIdent(names.live)}`,
      )
      // the marker belongs to the working name: a live database does not say "load complete"
      await run(`unmark ${names.live}`, `COMMENT ON DATABASE ${quoteIdent(names.live)} IS NULL`)
      await run('commit the swap', 'COMMIT')
      return
    } catch (error) {
      await run('roll back the swap', 'ROLLBACK').catch(() => {})
      const code = ((error as Error).cause as { code?: string } | undefined)?.code
      // Retrying helps against clients reconnecting in between, not against sessions we may not end.
      if (code !== '55006' || attempt >= SWAP_ATTEMPTS || kept > 0) {
        if (kept === 0) throw error
        throw new PgRestoreError(
          `${(error as Error).message}; ${kept} session(s) of ${names.live} belong to roles this user may not ` +
            'disconnect (stop those clients, or restore as their owner or a member of pg_signal_backend)',
          { cause: error },
        )
      }
    }
  }
}
