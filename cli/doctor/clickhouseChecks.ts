/**
 * ClickHouse: reachable with the URL the functions use, its version, the tables a backup would
 * take and those the include/exclude settings leave out, and whether the server can move the
 * bytes to S3 itself.
 */
import { loadSettings, requireSecret } from '#core/config.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { databaseEngine, describeDatabase } from '#engines/clickhouse/describeDatabase.ts'
import { listClickHouseTables } from '#engines/clickhouse/listTables.ts'
import { hasS3TableFunction } from '#engines/clickhouse/s3Transfer.ts'
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

/** Checks `clickhouse`, `clickhouse-tables` and `clickhouse-s3`, in that order. */
export async function clickhouseChecks(ctx: CheckContext): Promise<CheckResult[]> {
  let url: URL | undefined
  let connecting: Promise<ClickHouseConnection> | undefined
  let conn: ClickHouseConnection | undefined
  const results: CheckResult[] = []
  try {
    results.push(
      await runCheck(
        'clickhouse',
        ctx,
        async () => {
          const secret = await requireSecret('LSB_CLICKHOUSE_URL')
          connecting = connectClickHouse(secret)
          const connected = await connecting
          url = new URL(secret)
          const version = await connected.serverVersion()
          conn = connected
          return ok(`ClickHouse ${version} ${whereIs(url, connected)}`)
        },
        (error) => connectFix(error, ctx),
      ),
    )
    if (!conn) {
      const why = skip('not checked: ClickHouse is not reachable')
      return [...results, result('clickhouse-tables', why), result('clickhouse-s3', why)]
    }
    const c = conn
    results.push(
      await runCheck(
        'clickhouse-tables',
        ctx,
        () => tablesToBackUp(c),
        () => 'adjust LSB_CLICKHOUSE_INCLUDE / LSB_CLICKHOUSE_EXCLUDE as the detail says',
      ),
      await runCheck(
        'clickhouse-s3',
        ctx,
        () => serverSideS3(c),
        () => 'check that the role may read system.table_functions',
      ),
    )
    return results
  } finally {
    // An open connection is closed now (boundedly); one still being made at its deadline, once made.
    const closing = connecting?.then((c) => c.close())
    closing?.catch(() => {})
    if (conn) await settleWithin(closing, 2_000)
  }
}

/** "over HTTP at host:8123, database langsight" — never the user or password. */
function whereIs(url: URL, conn: ClickHouseConnection): string {
  return conn.kind === 'http'
    ? `over ${url.protocol === 'https:' ? 'HTTPS' : 'HTTP'} at ${url.host}, database ${conn.database}`
    : `(chdb, embedded) in ${url.pathname}, database ${conn.database}`
}

async function tablesToBackUp(conn: ClickHouseConnection) {
  const settings = loadSettings()
  const { database } = conn
  if (!(await databaseEngine(conn, database))) {
    return fail(
      `database ${database} does not exist`,
      'create it, or fix the database of LSB_CLICKHOUSE_URL (its path, or ?database= for chdb)',
    )
  }
  const listing = await listClickHouseTables(conn, {
    include: settings.LSB_CLICKHOUSE_INCLUDE,
    exclude: settings.LSB_CLICKHOUSE_EXCLUDE,
    splitBytes: settings.LSB_CLICKHOUSE_SPLIT_BYTES,
    parallelism: settings.LSB_MAP_CONCURRENCY,
  })
  const live = await describeDatabase(conn, database)
  const taken = new Set(listing.tables.map((t) => t.name))
  // inner tables of materialized views come with their view; filters never name them
  const leftOut = live.filter((t) => !taken.has(t.name) && !t.name.startsWith('.inner')).map((t) => t.name)
  const tables = listing.tables.filter((t) => t.kind === 'table')
  const views = listing.tables.length - tables.length
  const filters =
    [
      settings.LSB_CLICKHOUSE_INCLUDE.length
        ? `LSB_CLICKHOUSE_INCLUDE=${settings.LSB_CLICKHOUSE_INCLUDE}`
        : '',
      settings.LSB_CLICKHOUSE_EXCLUDE.length
        ? `LSB_CLICKHOUSE_EXCLUDE=${settings.LSB_CLICKHOUSE_EXCLUDE}`
        : '',
    ]
      .filter(Boolean)
      .join(', ') || 'no filters'
  if (tables.length === 0) {
    return fail(
      `nothing to back up in ${database} (${count(live.length, 'table')} there, ${filters})`,
      'check LSB_CLICKHOUSE_INCLUDE / LSB_CLICKHOUSE_EXCLUDE and the database of LSB_CLICKHOUSE_URL',
    )
  }
  const bytes = listing.items.reduce((sum, item) => sum + item.bytes, 0)
  return ok(
    `${count(tables.length, 'table')}${views ? ` and ${count(views, 'view')}` : ''} of ${database} to back up ` +
      `(${humanBytes(bytes)} on disk, ${count(listing.items.length, 'export object')}): ${listOf(tables.map((t) => t.name))}; ` +
      (leftOut.length ? `left out by ${filters}: ${listOf(leftOut)}` : `nothing left out (${filters})`),
  )
}

/** Whether the server can move its own bytes, judged against LSB_CLICKHOUSE_TRANSFER. */
async function serverSideS3(conn: ClickHouseConnection) {
  const version = await conn.serverVersion()
  const transfer = loadSettings().LSB_CLICKHOUSE_TRANSFER
  const available = await hasS3TableFunction(conn)
  if (transfer === 'stream') {
    return ok(
      `not used: LSB_CLICKHOUSE_TRANSFER=stream (ClickHouse ${version} ${available ? 'has' : 'has no'} s3 table function)`,
    )
  }
  if (available) {
    return ok(`available: ClickHouse ${version} has the s3 table function, so it moves the bytes itself`)
  }
  if (transfer === 'server') {
    return fail(
      `LSB_CLICKHOUSE_TRANSFER=server, but ClickHouse ${version} has no s3 table function: every backup would fail`,
      'set LSB_CLICKHOUSE_TRANSFER=auto (streams through langsight-backup) or upgrade ClickHouse to 20.x or newer',
    )
  }
  return warn(
    `not available: ClickHouse ${version} has no s3 table function; tables stream through langsight-backup instead`,
    'ClickHouse 20.x and newer have it (the server-side path is faster for large tables)',
  )
}

function connectFix(error: unknown, ctx: CheckContext): string {
  const message = String((error as Error)?.message)
  if (/LSB_CLICKHOUSE_URL is not set/.test(message)) {
    return 'set LSB_CLICKHOUSE_URL=http(s)://user:password@host:8123/database or chdb:///absolute/dir?database=langsight (on AWS: LSB_CLICKHOUSE_URL_SSM)'
  }
  if (hasCode(error, 'ConfigError'))
    return 'fix LSB_CLICKHOUSE_URL: http(s)://user:password@host:8123/database'
  if (hasCode(error, 'ECONNREFUSED')) {
    return 'nothing accepts connections there: start ClickHouse, or fix the host and port in LSB_CLICKHOUSE_URL (the HTTP interface, 8123 by default)'
  }
  if (hasCode(error, 'ENOTFOUND', 'EAI_AGAIN')) return 'the host does not resolve: fix LSB_CLICKHOUSE_URL'
  if (hasCode(error, '516', '192', '193')) return 'check the user and password in LSB_CLICKHOUSE_URL'
  if (hasCode(error, 'StallError', 'ETIMEDOUT')) {
    return (
      `the server accepted the connection but did not answer within ${ctx.timeoutMs / 1000} s: is that ` +
      "ClickHouse's HTTP port (not the native 9000)? is the server overloaded? (a firewall dropping packets looks the same)"
    )
  }
  return 'check LSB_CLICKHOUSE_URL and that ClickHouse accepts connections from here'
}
