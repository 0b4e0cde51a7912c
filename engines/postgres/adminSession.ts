import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { PgRestoreError } from '#core/errors.ts'
import { connectPostgres, describePgError, quoteIdent, serverInfo } from './connectPostgres.ts'
import { type PostgresTarget, withDatabase } from './postgresUrl.ts'

/** Runs one statement; a failure is a PgRestoreError `<context>: cannot <what>: <the server's words>`. */
export type Run = (what: string, sql: string, params?: unknown[]) => Promise<pg.QueryResult>

/** A session on the server's `postgres` database, for the statements a restore makes about databases. */
export interface AdminSession {
  client: pg.Client
  run: Run
  /** Drops a database if it exists, ending its sessions first. */
  drop(name: string): Promise<void>
  /** drop() tried a few times, never throwing: for cleaning up after a failure that is the error to report. */
  dropQuietly(name: string): Promise<void>
  end(): Promise<void>
}

/** Connects to `postgres` on the target's server; `context` starts every error message (`restore of … into …`). */
export async function openAdminSession(target: PostgresTarget, context: string): Promise<AdminSession> {
  const client = await connectPostgres(withDatabase(target, 'postgres'))
  const run: Run = async (what, sql, params = []) => {
    try {
      return await client.query(sql, params)
    } catch (error) {
      throw new PgRestoreError(`${context}: cannot ${what}: ${describePgError(error)}`, { cause: error })
    }
  }
  try {
    const { serverMajor } = await serverInfo(client, 'postgres')
    const drop = async (name: string) => {
      // WITH (FORCE) arrived in PostgreSQL 13; before, the sessions are ended first
      if (serverMajor < 13) await terminateSessions(run, name)
      const force = serverMajor >= 13 ? ' WITH (FORCE)' : ''
      await run(`drop database ${name}`, `DROP DATABASE IF EXISTS ${quoteIdent(name)}${force}`)
    }
    const dropQuietly = async (name: string) => {
      // a session of the database may still be closing: a few tries, then the next load drops it first anyway
      for (let attempt = 1; attempt <= 3; attempt++) {
        try {
          return await drop(name)
        } catch {
          await sleep(250)
        }
      }
    }
    return { client, run, drop, dropQuietly, end: () => client.end().catch(() => {}) }
  } catch (error) {
    await client.end().catch(() => {})
    throw error
  }
}

/**
 * Ends the other sessions of a database that we may end (a superuser: all; otherwise non-superuser
 * sessions of our roles, or any with pg_signal_backend) and returns how many others remain.
 */
export async function terminateSessions(run: Run, name: string): Promise<number> {
  const { rows } = await run(
    `disconnect the sessions of ${name}`,
    `WITH s AS (
       SELECT a.pid, me.rolsuper OR (NOT coalesce(r.rolsuper, false) AND (pg_has_role(me.oid, a.usesysid, 'MEMBER')
              OR pg_has_role(me.oid, 'pg_signal_backend', 'MEMBER'))) AS may
         FROM pg_stat_activity a JOIN pg_roles me ON me.rolname = current_user LEFT JOIN pg_roles r ON r.oid = a.usesysid
        WHERE a.datname = $1 AND a.pid <> pg_backend_pid())
     SELECT count(CASE WHEN may THEN pg_terminate_backend(pid) END)::int AS ended,
            count(*) FILTER (WHERE may IS NOT TRUE)::int AS kept
       FROM s`,
    [name],
  )
  return rows[0].kept
}
