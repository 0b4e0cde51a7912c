/**
 * The server-side path: ClickHouse moves its own bytes. An export is one
 * `INSERT INTO FUNCTION s3(…, 'Native', …, 'zstd') SELECT …` and a load one
 * `INSERT INTO <staging> SELECT … FROM s3(…)`, run by the server in its own threads; the function
 * only starts the statement, follows it, and reads the stored object back for its sha256 and rows.
 * Servers without the `s3` table function (18.16 here) keep the streaming path (`exportTable.ts`,
 * `restore/load.ts`), chosen by {@link chooseTransfer}.
 *
 * Credentials reach the server in one of three ways (LSB_CLICKHOUSE_S3_AUTH): `function` passes
 * the function's own (temporary, role) credentials as s3() arguments; `server` passes none, so the
 * server uses its own role or environment; `collection:<name>` names a server-side named
 * collection that holds them. Passed keys are registered as secrets, so `redact` masks them in
 * every log line, error and Slack message of ours; ClickHouse itself masks s3() credentials in
 * system.query_log and its own logs (see docs/DEPLOY.md).
 */
import { randomUUID } from 'node:crypto'
import { backupStore } from '#catalog/backupStore.ts'
import { hashObject, objectExists, s3Client } from '#catalog/objectStore.ts'
import { loadSettings } from '#core/config.ts'
import { ChecksumMismatchError, ClickHouseError, ConfigError } from '#core/errors.ts'
import type { StoredObject } from '#core/manifest.ts'
import type { ExportItem, RestoreItem } from '#core/payloads.ts'
import { registerSecret } from '#core/redact.ts'
import { type ClickHouseConnection, clickHouseFailure } from './connection.ts'
import { assertTableName } from './ddl.ts'
import { type Column, storedColumnTypes } from './describeDatabase.ts'
import { partitionFilter } from './exportTable.ts'
import { type FingerprintMode, fingerprintOf } from './fingerprint.ts'
import { type Followed, followStatement } from './longStatement.ts'
import { clearEarlierAttempt } from './restore/load.ts'
import { bindQueryParams, qualifiedName, quoteIdentifier, quoteString } from './sql.ts'

export type TransferSetting = 'auto' | 'server' | 'stream'
export type Transfer = 'server' | 'stream'

export type S3Auth =
  | { kind: 'server' }
  | { kind: 'collection'; name: string }
  | { kind: 'keys'; accessKeyId: string; secretAccessKey: string; sessionToken?: string }

/** Where the server finds the bucket, and with which credentials. */
export interface ServerS3 {
  /** The bucket's URL as the ClickHouse server reaches it, without a trailing slash. */
  bucketUrl: string
  auth: S3Auth
}

/** Whether the server has the `s3` table function (ClickHouse ≥ 20.x, chdb). */
export async function hasS3TableFunction(conn: ClickHouseConnection): Promise<boolean> {
  const [row] = await conn.query<{ n: string | number }>(
    "SELECT count() AS n FROM system.table_functions WHERE name = 's3'",
  )
  return Number(row?.n ?? 0) > 0
}

/** The path a run takes: `auto` picks the server-side one where the server can, `server` insists on it. */
export async function chooseTransfer(
  conn: ClickHouseConnection,
  setting: TransferSetting,
): Promise<Transfer> {
  if (setting === 'stream') return 'stream'
  const capable = await hasS3TableFunction(conn)
  if (capable) return 'server'
  if (setting === 'server') {
    throw new ConfigError(
      `LSB_CLICKHOUSE_TRANSFER=server, but ClickHouse ${await conn.serverVersion()} has no s3 table function; ` +
        'set LSB_CLICKHOUSE_TRANSFER=auto or stream',
    )
  }
  return 'stream'
}

/** A bucket URL as the server should see it: `bucketUrl` when set, else the endpoint's or AWS's. */
export function bucketUrlFor(opts: {
  bucket: string
  region: string
  endpoint?: string
  bucketUrl?: string
}): string {
  if (opts.bucketUrl) return opts.bucketUrl.replace(/\/+$/, '')
  if (opts.endpoint) return `${opts.endpoint.replace(/\/+$/, '')}/${opts.bucket}`
  return `https://${opts.bucket}.s3.${opts.region}.amazonaws.com`
}

const COLLECTION = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Parses LSB_CLICKHOUSE_S3_AUTH (`function` is resolved by the caller, which has the credentials). */
export function parseAuthSetting(value: string): 'function' | S3Auth {
  if (value === 'function') return 'function'
  if (value === 'server') return { kind: 'server' }
  const name = value.startsWith('collection:') ? value.slice('collection:'.length) : undefined
  if (name !== undefined && COLLECTION.test(name)) return { kind: 'collection', name }
  throw new ConfigError(
    `LSB_CLICKHOUSE_S3_AUTH=${JSON.stringify(value)}: expected function, server or collection:<name>`,
  )
}

/** The object's URL: each key segment percent-encoded as S3 expects it in a path. */
export function objectUrl(target: ServerS3, key: string): string {
  return `${target.bucketUrl}/${key.split('/').map(encodeURIComponent).join('/')}`
}

/** `s3(…)`'s structure argument: `name Type, …`, names quoted. */
export function structureOf(columns: Column[]): string {
  return columns.map((c) => `${quoteIdentifier(c.name)} ${c.type}`).join(', ')
}

/**
 * `s3(…)` for one Native object, every argument positional and present (format, structure,
 * compression) so no server guesses which is which. Credentials go in as string literals:
 * ClickHouse masks s3() credentials in its logs; registered here, ours mask them too.
 */
export function s3Function(
  target: ServerS3,
  key: string,
  columns: Column[],
  compression: 'zstd' | 'gzip' | 'none',
): string {
  const url = quoteString(objectUrl(target, key))
  const tail = `'Native', ${quoteString(structureOf(columns))}, ${quoteString(compression)}`
  const { auth } = target
  if (auth.kind === 'collection') {
    return `s3(${quoteIdentifier(auth.name)}, url = ${url}, format = 'Native', structure = ${quoteString(structureOf(columns))}, compression_method = ${quoteString(compression)})`
  }
  if (auth.kind === 'server') return `s3(${url}, ${tail})`
  registerSecret(auth.secretAccessKey)
  registerSecret(auth.sessionToken)
  const keys = [auth.accessKeyId, auth.secretAccessKey, ...(auth.sessionToken ? [auth.sessionToken] : [])]
  return `s3(${url}, ${keys.map(quoteString).join(', ')}, ${tail})`
}

/** A statement's query id: unique per attempt, so following one never finds another. */
export function newQueryId(): string {
  return `lsb-${randomUUID()}`
}

export type Step<T> = { state: 'running'; queryId: string } | { state: 'done'; result: T }

/**
 * Exports one item with `INSERT INTO FUNCTION s3(…) SELECT …`: the server writes the object (Native,
 * zstd) itself. Started, or followed when `queryId` names the statement an earlier invocation
 * left running, until `untilMs`. Once written, the object is read back: its row count by the
 * server (`count()` of the stored Native), its sha256 by us. An object already in place from an
 * earlier attempt is complete (S3 shows an object only once its upload completed) and is used.
 */
export async function exportThroughS3(
  conn: ClickHouseConnection,
  opts: {
    item: ExportItem
    bucket: string
    key: string
    target: ServerS3
    queryId: string | null
    untilMs: number
    signal?: AbortSignal
    /** `full`: the stored rows' hash is recorded too (core/fingerprint.ts). */
    fingerprint?: FingerprintMode
  },
): Promise<Step<StoredObject>> {
  const { item } = opts
  assertTableName(item.table)
  const what = `export of ${conn.database}.${item.table} (${item.part}) to ${opts.key}`
  // a statement left running is followed before anything else: on an engine that runs one
  // statement at a time (chdb), any other query would wait behind it
  const columnsOf = async () => {
    const columns = await storedColumnTypes(conn, conn.database, item.table)
    if (columns.length === 0) throw new ClickHouseError(`table ${conn.database}.${item.table} does not exist`)
    return columns
  }
  let columns: Column[] | undefined
  if (opts.queryId !== null || !(await objectExists(opts.bucket, opts.key))) {
    let sql = ''
    if (opts.queryId === null) {
      columns = await columnsOf()
      const params: Record<string, unknown> = {}
      const where = item.partitions === null ? '' : ` WHERE ${partitionFilter(item.partitions, params)}`
      sql = bindQueryParams(
        `INSERT INTO FUNCTION ${s3Function(opts.target, opts.key, columns, 'zstd')} ` +
          `SELECT ${columns.map((c) => quoteIdentifier(c.name)).join(', ')} FROM ${qualifiedName(conn.database, item.table)}${where}`,
        params,
      )
    }
    const queryId = opts.queryId ?? newQueryId()
    const followed = await followStatement(conn, {
      sql,
      queryId,
      started: opts.queryId !== null,
      untilMs: opts.untilMs,
    }).catch((error: unknown) => {
      throw clickHouseFailure(what, error)
    })
    if (followed === 'running') return { state: 'running', queryId }
    if (followed === 'gone' && !(await objectExists(opts.bucket, opts.key))) {
      throw new ClickHouseError(
        `${what}: statement ${queryId} ended in an earlier invocation without writing the object (see the server's system.query_log)`,
      )
    }
    // reading the object back takes time too: without enough left, the next invocation does it
    // (it finds the statement gone and the object in place)
    if (followed === 'finished' && Date.now() >= opts.untilMs) return { state: 'running', queryId }
  }
  columns ??= await columnsOf()
  // rows (and the fingerprint) of exactly what was stored: the server reads the object back
  const counted = await fingerprintOf(conn, {
    source: s3Function(opts.target, opts.key, columns, 'zstd'),
    columns,
    mode: opts.fingerprint === 'full' ? 'full' : 'rows',
    what: `${what}: reading the stored rows`,
  })
  const digest = await hashObject(opts.bucket, opts.key, opts.signal)
  return {
    state: 'done',
    result: {
      key: opts.key,
      bytes: digest.bytes,
      sha256: digest.sha256,
      rows: counted.rows,
      table: item.table,
      part: item.part,
      ...(item.partitions && item.partitions.length > 1 ? { partitions: item.partitions } : {}),
      compression: 'zstd',
      ...(counted.hash !== null ? { fingerprint: counted.hash } : {}),
    },
  }
}

/**
 * Loads one object into its staging table with `INSERT INTO … SELECT … FROM s3(…)`: the server
 * reads and parses the object. Its sha256 is checked first (we read it once); rows an earlier
 * attempt left are removed; the row count in staging is checked after. Started, or followed by
 * `queryId`, until `untilMs`. `lost`: the statement of an earlier invocation ended without
 * loading the rows; the caller starts the item again.
 */
export async function loadThroughS3(
  conn: ClickHouseConnection,
  opts: {
    item: RestoreItem
    stagingDatabase: string
    bucket: string
    target: ServerS3
    queryId: string | null
    untilMs: number
    signal?: AbortSignal
  },
): Promise<Step<{ rows: number }> | { state: 'lost' }> {
  const { item } = opts
  const staging = qualifiedName(opts.stagingDatabase, item.stagingTable)
  const columns = await storedColumnTypes(conn, opts.stagingDatabase, item.stagingTable)
  if (columns.length === 0) throw new ClickHouseError(`staging table ${staging} does not exist`)
  const what = `restore of ${item.table} from ${item.key}`
  const params: Record<string, unknown> = {}
  const where = item.partitions === null ? '' : ` WHERE ${partitionFilter(item.partitions, params)}`
  const countRows = async () => {
    const [{ n } = { n: 0 }] = await conn.query<{ n: string | number }>(
      `SELECT count() AS n FROM ${staging}${where}`,
      params,
    )
    return Number(n)
  }
  let followed: Followed = 'finished'
  if (item.rows !== 0 || opts.queryId !== null) {
    const queryId = opts.queryId ?? newQueryId()
    if (opts.queryId === null) {
      const stored = await hashObject(opts.bucket, item.key, opts.signal)
      if (stored.sha256 !== item.sha256 || stored.bytes !== item.bytes) {
        throw new ChecksumMismatchError(
          `s3 object ${item.key}: read ${stored.bytes} bytes sha256 ${stored.sha256}, expected ${item.bytes} bytes sha256 ${item.sha256}`,
        )
      }
      await clearEarlierAttempt(conn, staging, item.partitions)
    }
    const names = columns.map((c) => quoteIdentifier(c.name)).join(', ')
    const compression = item.compression === 'none' ? 'none' : item.compression
    followed = await followStatement(conn, {
      sql: `INSERT INTO ${staging} (${names}) SELECT ${names} FROM ${s3Function(opts.target, item.key, columns, compression)}`,
      queryId,
      started: opts.queryId !== null,
      settings: await conn.insertSettings(),
      untilMs: opts.untilMs,
    }).catch((error: unknown) => {
      throw clickHouseFailure(what, error)
    })
    if (followed === 'running') return { state: 'running', queryId }
  }
  const rows = await countRows()
  if (item.rows !== null && rows !== item.rows) {
    if (followed === 'gone') return { state: 'lost' }
    throw new ClickHouseError(`${what}: staging holds ${rows} rows of it, the manifest says ${item.rows}`)
  }
  return { state: 'done', result: { rows } }
}

/** Where and how the ClickHouse server reaches the backup bucket, from the settings. */
export async function serverS3FromSettings(): Promise<ServerS3> {
  const s = loadSettings()
  const { bucket } = backupStore()
  const parsed = parseAuthSetting(s.LSB_CLICKHOUSE_S3_AUTH)
  let auth: S3Auth
  if (parsed === 'function') {
    // the function's own credentials (its role's, temporary on Lambda), as the SDK resolved them
    const c = await s3Client().config.credentials()
    auth = {
      kind: 'keys',
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      sessionToken: c.sessionToken,
    }
  } else auth = parsed
  return {
    bucketUrl: bucketUrlFor({
      bucket,
      region: s.AWS_REGION,
      endpoint: s.AWS_ENDPOINT_URL_S3,
      bucketUrl: s.LSB_CLICKHOUSE_S3_BUCKET_URL,
    }),
    auth,
  }
}
