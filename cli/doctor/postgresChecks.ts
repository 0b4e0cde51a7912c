/**
 * PostgreSQL: reachable with the URL the functions use, the connecting role may dump every table
 * and restore (create and rename databases), and the pg tools in use can dump this server.
 */
import { dirname } from 'node:path'
import type pg from 'pg'
import { requireSecret } from '#core/config.ts'
import { connectPostgres, type PostgresInfo, serverInfo } from '#engines/postgres/connectPostgres.ts'
import { assertDumpToolCompatible, pgToolVersion } from '#engines/postgres/pgTool.ts'
import { type PostgresTarget, parsePostgresUrl } from '#engines/postgres/postgresUrl.ts'
import {
  type CheckContext,
  type CheckResult,
  count,
  fail,
  hasCode,
  listOf,
  ok,
  result,
  runCheck,
  settleWithin,
  skip,
  warn,
} from './check.ts'

/** "15.18 (Debian 15.18-0+deb12u1)" → "15.18". */
const short = (version: string) => version.split(' ')[0]!

interface RoleFacts {
  user: string
  superuser: boolean
  createdb: boolean
  bypassrls: boolean
  read_all: boolean
  signal_backend: boolean
  owner: string
  owns: boolean
}

/** Membership of a predefined role that may not exist on this server (pg_read_all_data is 14+). */
const member = (role: string) =>
  `coalesce((SELECT pg_has_role(current_user, oid, 'USAGE') FROM pg_roles WHERE rolname = '${role}'), false)`

const ROLE_FACTS = `
  SELECT current_user AS user, r.rolsuper AS superuser, r.rolcreatedb AS createdb, r.rolbypassrls AS bypassrls,
         ${member('pg_read_all_data')} AS read_all, ${member('pg_signal_backend')} AS signal_backend,
         pg_get_userbyid(d.datdba) AS owner, pg_has_role(current_user, d.datdba, 'USAGE') AS owns
    FROM pg_roles r, pg_database d
   WHERE r.rolname = current_user AND d.datname = current_database()`

/** Tables and sequences pg_dump reads, and why this role could not read one (schema, SELECT, row security). */
const DUMPED_RELATIONS = `
  SELECT n.nspname AS schema, c.relname AS name,
         CASE WHEN NOT has_schema_privilege(n.oid, 'USAGE') THEN 'no USAGE on its schema'
              WHEN NOT has_table_privilege(c.oid, 'SELECT') THEN 'no SELECT'
              WHEN c.relrowsecurity AND NOT $1 AND NOT pg_has_role(c.relowner, 'USAGE') THEN 'row-level security'
         END AS problem
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
   ORDER BY 1, 2`

/** Checks `postgres`, `postgres-dump-privileges`, `postgres-restore-privileges` and `pg-tools`, in that order. */
export async function postgresChecks(ctx: CheckContext): Promise<CheckResult[]> {
  let target: PostgresTarget | undefined
  let connecting: Promise<pg.Client> | undefined
  let info: PostgresInfo | undefined
  const results: CheckResult[] = []
  try {
    results.push(
      await runCheck(
        'postgres',
        ctx,
        async () => {
          target = parsePostgresUrl(await requireSecret('LSB_POSTGRES_URL'))
          connecting = connectPostgres(target)
          info = await serverInfo(await connecting, target.database)
          return ok(`PostgreSQL ${short(info.serverVersion)} at ${target.location} as ${target.user}`)
        },
        (error) => connectFix(error, target),
      ),
    )
    if (!info || !connecting) {
      const why = skip('not checked: PostgreSQL is not reachable')
      return [
        ...results,
        ...['postgres-dump-privileges', 'postgres-restore-privileges', 'pg-tools'].map((c) => result(c, why)),
      ]
    }
    const client = await connecting
    const server = info
    let role: RoleFacts | undefined
    const roleFacts = async () => (role ??= (await client.query<RoleFacts>(ROLE_FACTS)).rows[0]!)
    const queryFix = (error: unknown) =>
      hasCode(error, 'StallError')
        ? 'PostgreSQL stopped answering: check its load and locks (pg_stat_activity)'
        : 'the role cannot read the catalog: check its privileges and the server log'
    results.push(
      await runCheck(
        'postgres-dump-privileges',
        ctx,
        async () => dumpPrivileges(client, await roleFacts(), server),
        queryFix,
      ),
      await runCheck(
        'postgres-restore-privileges',
        ctx,
        async () => restorePrivileges(client, await roleFacts(), server),
        queryFix,
      ),
      await runCheck('pg-tools', ctx, async () => pgTools(server, ctx), toolFix),
    )
    return results
  } finally {
    // An open connection is closed now (boundedly); one still being made at its deadline, once made.
    const closing = connecting?.then((c) => c.end())
    closing?.catch(() => {})
    if (info) await settleWithin(closing, 2_000)
  }
}

async function dumpPrivileges(client: pg.Client, role: RoleFacts, server: PostgresInfo) {
  const bypass = role.superuser || role.bypassrls
  const { rows } = await client.query<{ schema: string; name: string; problem: string | null }>(
    DUMPED_RELATIONS,
    [bypass],
  )
  const blocked = rows.filter((r) => r.problem !== null)
  const how = role.superuser ? 'superuser' : role.read_all ? 'member of pg_read_all_data' : 'granted'
  if (blocked.length === 0) {
    return ok(
      `${role.user} can read the ${count(rows.length, 'table and sequence', 'tables and sequences')} of ${server.database} (${how})`,
    )
  }
  const user = client.escapeIdentifier(role.user)
  const grants: string[] = []
  if (blocked.some((r) => r.problem !== 'row-level security')) {
    if (server.serverMajor >= 14) grants.push(`GRANT pg_read_all_data TO ${user}`)
    else {
      for (const schema of [...new Set(blocked.map((r) => client.escapeIdentifier(r.schema)))]) {
        grants.push(
          `GRANT USAGE ON SCHEMA ${schema} TO ${user}`,
          `GRANT SELECT ON ALL TABLES IN SCHEMA ${schema} TO ${user}`,
          `GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${schema} TO ${user}`,
        )
      }
    }
  }
  if (blocked.some((r) => r.problem === 'row-level security')) grants.push(`ALTER ROLE ${user} BYPASSRLS`)
  return fail(
    `pg_dump as ${role.user} would fail: it cannot read ${blocked.length} of ${rows.length} tables and sequences: ` +
      listOf(blocked.map((r) => `${r.schema}.${r.name} (${r.problem})`)),
    `as a superuser, connected to ${server.database}: ${grants.join('; ')}`,
  )
}

async function restorePrivileges(client: pg.Client, role: RoleFacts, server: PostgresInfo) {
  const user = client.escapeIdentifier(role.user)
  const problems: string[] = []
  const fixes: string[] = []
  if (!role.superuser && !role.createdb) {
    problems.push(`${role.user} cannot create databases (the restore loads into a fresh one)`)
    fixes.push(`ALTER ROLE ${user} CREATEDB`)
  }
  if (!role.superuser && !role.owns) {
    problems.push(
      `${role.user} does not own ${server.database} (owner ${role.owner}), so it cannot rename it in the swap`,
    )
    fixes.push(`ALTER DATABASE ${client.escapeIdentifier(server.database)} OWNER TO ${user}`)
  }
  if (problems.length > 0)
    return fail(`a restore would fail: ${problems.join('; ')}`, `as a superuser: ${fixes.join('; ')}`)
  const how = role.superuser ? 'superuser' : `CREATEDB, owns ${server.database}`
  if (!role.superuser && !role.signal_backend) {
    return warn(
      `${role.user} may restore (${how}) but cannot end other roles' sessions of ${server.database}: ` +
        'the swap fails while they stay connected',
      `stop the writers during a restore (LSB_QUIESCE_SERVICES), or as a superuser: GRANT pg_signal_backend TO ${user}`,
    )
  }
  return ok(`${role.user} may restore into a fresh database and swap it in (${how})`)
}

/** pg_dump must not be older than the server (pgTool's rule), nor pg_restore older than pg_dump (the archive). */
async function pgTools(server: PostgresInfo, ctx: CheckContext) {
  const [dump, restore] = await Promise.all([pgToolVersion('pg_dump'), pgToolVersion('pg_restore')])
  const where = dirname(dump.path)
  let problem: string | undefined
  try {
    assertDumpToolCompatible(dump, server)
    if (restore.major < dump.major) {
      problem = `pg_restore ${restore.version} (${restore.path}) cannot read archives of pg_dump ${dump.version}`
    }
  } catch (error) {
    problem = (error as Error).message
  }
  const fix = `point LSB_PG_BIN_DIR at PostgreSQL ${Math.max(server.serverMajor, dump.major)}+ client tools (pg_dump and pg_restore of one version)`
  if (problem === undefined) {
    return ok(
      `pg_dump ${short(dump.version)} and pg_restore ${short(restore.version)} (${where}) for PostgreSQL ${short(server.serverVersion)}`,
    )
  }
  // On AWS the functions run the pg tools layer's binaries, not these.
  if (!ctx.local) {
    return warn(
      `${problem}. These are the tools here (what --local runs); the deployed functions use the pg tools layer (parameter pgMajor, 17 by default)`,
      fix,
    )
  }
  return fail(problem, fix)
}

function connectFix(error: unknown, target: PostgresTarget | undefined): string {
  const at = target ? `${target.host}:${target.port}` : 'the host and port'
  const message = String((error as Error)?.message)
  if (!target) {
    return /not set/.test(message)
      ? 'set LSB_POSTGRES_URL=postgres://user:password@host:5432/database (on AWS: LSB_POSTGRES_URL_SSM, an SSM parameter name)'
      : 'fix LSB_POSTGRES_URL: postgres://user:password@host:5432/database[?sslmode=require]'
  }
  if (hasCode(error, '28P01', '28000'))
    return 'check the user and password in LSB_POSTGRES_URL, and that pg_hba.conf admits this host'
  if (hasCode(error, '3D000'))
    return `create database ${target.database}, or fix the database name in LSB_POSTGRES_URL`
  if (hasCode(error, 'ECONNREFUSED'))
    return `nothing accepts connections at ${at}: start PostgreSQL, or fix the host and port in LSB_POSTGRES_URL`
  if (hasCode(error, 'ENOTFOUND', 'EAI_AGAIN'))
    return `the host ${target.host} does not resolve: fix LSB_POSTGRES_URL`
  if (hasCode(error, 'StallError', 'ETIMEDOUT') || /timeout/i.test(message)) {
    return `${at} does not answer: check the host and port, firewalls and security groups (on AWS the functions connect from their VPC)`
  }
  return `check LSB_POSTGRES_URL and that PostgreSQL at ${at} accepts connections from here`
}

function toolFix(error: unknown): string {
  if (hasCode(error, 'StallError')) return 'pg_dump --version did not answer: check LSB_PG_BIN_DIR'
  return 'install the PostgreSQL client tools, or point LSB_PG_BIN_DIR at the directory holding pg_dump and pg_restore'
}
