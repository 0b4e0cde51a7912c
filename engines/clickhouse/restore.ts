/**
 * Restoring a ClickHouse backup, in three phases so that a Step Functions Map can load the
 * objects in parallel:
 *
 * 1. prepare — checks every table name and DDL of the manifest before touching anything, then
 *    creates `<target>__lsb_restore` with one staging table per data table (MV inner tables
 *    included), merges stopped so that row counts stay exact while loading.
 * 2. restore object — streams one object from S3 (sha256 checked, gunzipped, rows counted) into
 *    its staging table with INSERT … FORMAT Native. Retrying an object first removes its own
 *    earlier rows (its partition, or the whole table for a whole-table object).
 * 3. commit — compares staging counts with the manifest, then swaps each table into the target
 *    (EXCHANGE TABLES on Atomic databases, else RENAME), keeping what it replaces in
 *    `<target>__lsb_previous`, and creates views and materialized views last, in dependency order.
 *
 * Materialized views never see the restored source rows: they are created only after every
 * table holds its data, so no insert of the restore fires them. Their data is restored once, as
 * it was backed up: a `TO` table is an ordinary table of the backup; an inner table is loaded into
 * staging like any table and, once the view has been recreated with its own DDL (which creates a
 * fresh inner table), copied into it with `INSERT INTO <view> SELECT … FROM <staging inner>`, an
 * insert that goes straight to the inner table without running the view's query. The view comes
 * back exactly as it was defined (still with an inner table), holding exactly the backed-up rows.
 *
 * Objects of the target database that are not in the backup are left alone. Writers should be
 * stopped meanwhile (the Quiesce state): rows written to a table between its swap and the
 * re-creation of the views reading it do not reach those views.
 */
import { createHash } from 'node:crypto'
import { PassThrough, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { openObject } from '#catalog/objectStore.ts'
import { ChecksumMismatchError, ClickHouseError, UntrustedInputError } from '#core/errors.ts'
import type { ClickHouseTable, Manifest, StoredObject } from '#core/manifest.ts'
import { COALESCE_BYTES, coalesceChunks } from './coalesceChunks.ts'
import { type ClickHouseConnection, clickHouseFailure } from './connection.ts'
import { assertTableName, type ParsedDdl, parseDdl, parseTableDefinition, retargetDdl } from './ddl.ts'
import { databaseEngine, describeDatabase, innerTableOf, storedColumns } from './describeDatabase.ts'
import { PARTITION_PART_PREFIX, WHOLE_TABLE_PART } from './listTables.ts'
import { nativeRowCounter } from './nativeRowCounter.ts'
import { orderByDependencies } from './orderByDependencies.ts'
import { qualifiedName, quoteIdentifier, quoteString } from './sql.ts'

export interface RestoreItem {
  table: string
  stagingTable: string
  key: string
  sha256: string
  bytes: number
  rows: number | null
  compression: 'none' | 'gzip'
  /** The partition the object holds, or null for a whole table: what a retry clears first. */
  partitionId?: string | null
}

export const STAGING_SUFFIX = '__lsb_restore'
export const PREVIOUS_SUFFIX = '__lsb_previous'
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/
const PARTITION_ID = /^[A-Za-z0-9_-]{1,128}$/
const SHA256 = /^[0-9a-f]{64}$/

/** Settings a CREATE may need on the restoring server for types the source server allowed. */
const DDL_SETTINGS = [
  'allow_experimental_low_cardinality_type',
  'allow_suspicious_low_cardinality_types',
  'allow_experimental_map_type',
  'allow_experimental_object_type',
  'allow_experimental_json_type',
  'allow_experimental_variant_type',
  'allow_experimental_dynamic_type',
  'allow_experimental_time_time64_type',
  'allow_suspicious_codecs',
  'allow_suspicious_ttl_expressions',
]

function assertDatabaseName(name: unknown, what: string): asserts name is string {
  if (typeof name !== 'string' || !DATABASE_NAME.test(name)) {
    throw new UntrustedInputError(`${what} ${JSON.stringify(name)} is not a plain database name`)
  }
}

interface PlannedTable {
  table: ClickHouseTable
  parsed: ParsedDdl
}

interface PlannedView extends PlannedTable {
  /** The inner table this materialized view is restored from, or null. */
  inner: string | null
}

interface RestorePlan {
  sourceDatabase: string
  /** Tables with data, MV inner tables included. */
  dataTables: PlannedTable[]
  /** Views and materialized views in creation order. */
  views: PlannedView[]
  innerTables: Set<string>
  items: RestoreItem[]
  /** Rows the manifest says each data table holds; null when an object's count is unknown. */
  expectedRows: Map<string, number | null>
}

const isMergeTree = (p: ParsedDdl) => p.engines[0]?.endsWith('MergeTree') === true

/** Reads a manifest as untrusted input: every name, statement, dependency and object checked. */
function planRestore(manifest: Manifest): RestorePlan {
  if (manifest.engine !== 'clickhouse')
    throw new UntrustedInputError(`backup ${manifest.backupId} is not ClickHouse`)
  const sourceDatabase = manifest.source.database
  assertDatabaseName(sourceDatabase, 'source database')
  const byName = new Map<string, PlannedTable>()
  for (const table of manifest.tables) {
    const parsed = parseTableDefinition(table, sourceDatabase)
    if (byName.has(table.name))
      throw new UntrustedInputError(`table ${table.name} appears twice in the manifest`)
    byName.set(table.name, { table, parsed })
  }
  const isDataTable = (name: string) => byName.get(name)?.parsed.kind === 'table'

  const innerTables = new Set<string>()
  const views: PlannedView[] = []
  for (const planned of byName.values()) {
    const { table, parsed } = planned
    if (parsed.kind === 'table') continue
    let inner: string | null = null
    if (parsed.kind === 'materialized_view') {
      const target = parsed.to?.name ?? table.target
      if (!target || (parsed.to && table.target !== undefined && table.target !== parsed.to.name)) {
        throw new UntrustedInputError(`materialized view ${table.name}: target does not match its DDL`)
      }
      if (!isDataTable(target)) {
        throw new UntrustedInputError(
          `materialized view ${table.name} writes to ${target}, which is not in the backup`,
        )
      }
      if (!parsed.to) {
        if (!target.startsWith('.inner') || innerTables.has(target)) {
          throw new UntrustedInputError(
            `materialized view ${table.name}: ${target} is not its own inner table`,
          )
        }
        innerTables.add(target)
        inner = target
      }
    }
    const dependsOn = new Set(table.dependsOn.filter((d) => byName.has(d)))
    for (const s of parsed.sources) {
      if (s.database === sourceDatabase && !byName.has(s.name)) {
        throw new UntrustedInputError(
          `${parsed.kind.replace('_', ' ')} ${table.name} reads ${s.name}, which is not in the backup`,
        )
      }
      if (byName.has(s.name)) dependsOn.add(s.name)
    }
    if (parsed.to) dependsOn.add(parsed.to.name)
    views.push({ ...planned, table: { ...table, dependsOn: [...dependsOn] }, inner })
  }

  const expectedRows = new Map<string, number | null>()
  const parts = new Map<string, Set<string>>()
  const items: RestoreItem[] = []
  for (const object of manifest.objects) {
    items.push(restoreItemFor(object, isDataTable, parts))
    const table = object.table!
    const sum = expectedRows.has(table) ? expectedRows.get(table)! : 0
    expectedRows.set(table, sum === null || object.rows === null ? null : sum + object.rows)
  }
  const dataTables = [...byName.values()].filter((p) => p.parsed.kind === 'table')
  for (const { table } of dataTables) {
    // an export writes an object even for an empty table: a missing one is a damaged manifest
    if (!expectedRows.has(table.name)) throw new UntrustedInputError(`table ${table.name} has no data object`)
  }
  const ordered = orderByDependencies(
    views.map((v) => ({ ...v, name: v.table.name, kind: v.parsed.kind, dependsOn: v.table.dependsOn })),
  )
  return { sourceDatabase, dataTables, views: ordered, innerTables, items, expectedRows }
}

/**
 * Checks a ClickHouse manifest as untrusted input — table names, DDL, dependencies, objects —
 * without touching any database or object: an UntrustedInputError names the first problem.
 * prepare runs the same checks; this lets a restore refuse a bad manifest before anything else.
 */
export function validateClickHouseManifest(manifest: Manifest): void {
  planRestore(manifest)
}

function restoreItemFor(
  object: StoredObject,
  isDataTable: (name: string) => boolean,
  parts: Map<string, Set<string>>,
): RestoreItem {
  const table = object.table
  if (table === null || !isDataTable(table)) {
    throw new UntrustedInputError(
      `object ${object.key} belongs to ${JSON.stringify(table)}, not a table of the backup`,
    )
  }
  const part = object.part ?? WHOLE_TABLE_PART
  let partitionId: string | null = null
  if (part.startsWith(PARTITION_PART_PREFIX)) {
    partitionId = part.slice(PARTITION_PART_PREFIX.length)
    if (!PARTITION_ID.test(partitionId))
      throw new UntrustedInputError(`object ${object.key}: bad partition ${part}`)
  } else if (part !== WHOLE_TABLE_PART) {
    throw new UntrustedInputError(`object ${object.key}: unknown part ${JSON.stringify(part)}`)
  }
  const seen = parts.get(table) ?? new Set<string>()
  if (seen.has(part) || (seen.size > 0 && (part === WHOLE_TABLE_PART || seen.has(WHOLE_TABLE_PART)))) {
    throw new UntrustedInputError(`object ${object.key}: table ${table} has overlapping objects`)
  }
  seen.add(part)
  parts.set(table, seen)
  return {
    table,
    stagingTable: table,
    key: object.key,
    sha256: object.sha256,
    bytes: object.bytes,
    rows: object.rows,
    compression: object.compression,
    partitionId,
  }
}

async function settingsThatExist(
  conn: ClickHouseConnection,
  names: string[],
): Promise<Record<string, number>> {
  const rows = await conn.query<{ name: string }>(
    'SELECT name FROM system.settings WHERE has({names:Array(String)}, name)',
    {
      names,
    },
  )
  return Object.fromEntries(rows.map((r) => [r.name, 1]))
}

/** `<target>__lsb_restore`. */
export function stagingDatabaseFor(targetDatabase: string): string {
  assertDatabaseName(targetDatabase, 'target database')
  return `${targetDatabase}${STAGING_SUFFIX}`
}

/**
 * Validates every table and DDL of the manifest (untrusted input: an UntrustedInputError names
 * the table, before any database is changed), creates the staging database `<target>__lsb_restore`
 * (dropped first if a failed restore left it) and the staging tables in it — the DDL rewritten to
 * the staging database; the target database is not touched — and returns one RestoreItem per object.
 */
export async function prepareClickHouseRestore(
  conn: ClickHouseConnection,
  opts: { manifest: Manifest; targetDatabase: string },
): Promise<{ stagingDatabase: string; items: RestoreItem[] }> {
  const plan = planRestore(opts.manifest)
  const staging = stagingDatabaseFor(opts.targetDatabase)
  const statements = plan.dataTables.map(({ table, parsed }) => {
    const ddl = retargetDdl(table.ddl, plan.sourceDatabase, staging, 'head')
    // the rewritten statement must still create exactly the staging table
    parseDdl(ddl, { database: staging, name: table.name, kind: 'table' })
    return { table, parsed, ddl }
  })
  const settings = await settingsThatExist(conn, DDL_SETTINGS)
  await conn.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(staging)}`)
  await conn.command(`CREATE DATABASE ${quoteIdentifier(staging)}`)
  for (const { table, parsed, ddl } of statements) {
    await conn.command(ddl, undefined, settings)
    // merges would collapse rows of Replacing/Summing/… tables and make the count check inexact
    if (isMergeTree(parsed)) await conn.command(`SYSTEM STOP MERGES ${qualifiedName(staging, table.name)}`)
  }
  return { stagingDatabase: staging, items: plan.items }
}

/** Passes bytes through and, at the end, fails unless they have the recorded sha256 and size. */
function verifyingDigest(item: RestoreItem): Transform {
  const hash = createHash('sha256')
  let bytes = 0
  return new Transform({
    transform(chunk: Buffer, _e, callback) {
      hash.update(chunk)
      bytes += chunk.length
      callback(null, chunk)
    },
    flush(callback) {
      const sha256 = hash.digest('hex')
      if (sha256 === item.sha256 && bytes === item.bytes) return callback()
      callback(
        new ChecksumMismatchError(
          `s3 object ${item.key}: read ${bytes} bytes sha256 ${sha256}, expected ${item.bytes} bytes sha256 ${item.sha256}`,
        ),
      )
    },
  })
}

function assertRestoreItem(stagingDatabase: string, item: RestoreItem): void {
  if (!stagingDatabase.endsWith(STAGING_SUFFIX)) {
    throw new UntrustedInputError(`${JSON.stringify(stagingDatabase)} is not a staging database`)
  }
  assertDatabaseName(stagingDatabase, 'staging database')
  assertTableName(item.table)
  assertTableName(item.stagingTable)
  if (!SHA256.test(item.sha256))
    throw new UntrustedInputError(`object ${item.key}: sha256 is not 64 hex digits`)
  if (item.partitionId != null && !PARTITION_ID.test(item.partitionId)) {
    throw new UntrustedInputError(`object ${item.key}: bad partition id`)
  }
}

/**
 * Streams one object from S3 into its staging table with INSERT … FORMAT Native: sha256 and size
 * checked as it streams, gunzipped, rows counted against the manifest. Rows an earlier attempt
 * of the same object left behind are removed first, so a retry does not double them.
 */
export async function restoreClickHouseObject(
  conn: ClickHouseConnection,
  opts: { stagingDatabase: string; item: RestoreItem; bucket: string; signal?: AbortSignal },
): Promise<{ table: string; rows: number | null }> {
  const { item, stagingDatabase } = opts
  assertRestoreItem(stagingDatabase, item)
  const target = qualifiedName(stagingDatabase, item.stagingTable)
  const columns = await storedColumns(conn, stagingDatabase, item.stagingTable)
  if (columns.length === 0)
    throw new ClickHouseError(`staging table ${stagingDatabase}.${item.stagingTable} does not exist`)

  const partition = item.partitionId ?? null
  const [{ c: left } = { c: 0 }] = await conn.query<{ c: unknown }>(
    `SELECT count() AS c FROM ${target}${partition === null ? '' : ' WHERE _partition_id = {p:String}'}`,
    partition === null ? undefined : { p: partition },
  )
  if (Number(left) > 0) {
    await conn.command(
      partition === null
        ? `TRUNCATE TABLE ${target}`
        : `ALTER TABLE ${target} DROP PARTITION ID ${quoteString(partition)}`,
    )
  }

  const counter = nativeRowCounter(columns)
  const stages: (Transform | PassThrough)[] = [coalesceChunks(), verifyingDigest(item)]
  if (item.compression === 'gzip') stages.push(createGunzip({ chunkSize: COALESCE_BYTES }))
  stages.push(counter.stream)
  const object = await openObject(opts.bucket, item.key, opts.signal)
  const body = new PassThrough({ highWaterMark: 1 << 20 })
  // An empty object (an empty table) is still read to the end for its checksum; there is nothing to insert.
  const sink = item.rows === 0 ? new Writable({ write: (_c, _e, cb) => cb() }) : body
  const feeding = pipeline([object, ...stages, sink], { signal: opts.signal })
  const inserting =
    item.rows === 0
      ? Promise.resolve()
      : conn.insertNative(target, body, opts.signal).catch((error) => {
          // an insert that gave up stops reading: unblock the feeding pipeline
          object.destroy()
          throw error
        })
  const [fed, inserted] = await Promise.allSettled([feeding, inserting])
  if (fed.status === 'rejected' || inserted.status === 'rejected') {
    object.destroy()
    body.destroy()
    // the stream's own error (checksum, truncation) says more than the server's parse error it caused
    const reason = fed.status === 'rejected' ? fed.reason : (inserted as PromiseRejectedResult).reason
    if (reason instanceof ChecksumMismatchError) throw reason
    throw clickHouseFailure(`restore of ${item.table} from ${item.key}`, reason)
  }
  const rows = counter.rows()
  if (rows !== null && item.rows !== null && rows !== item.rows) {
    throw new ClickHouseError(
      `restore of ${item.table} from ${item.key}: the object holds ${rows} rows, the manifest says ${item.rows}`,
    )
  }
  return { table: item.table, rows: rows ?? item.rows }
}

async function count(conn: ClickHouseConnection, database: string, table: string): Promise<number> {
  const [row] = await conn.query<{ c: unknown }>(`SELECT count() AS c FROM ${qualifiedName(database, table)}`)
  return Number(row?.c ?? 0)
}

/**
 * Compares every staging table's row count with the manifest (a ClickHouseError naming the table
 * on a mismatch, before the target is touched), then swaps each staging table into the target
 * database — EXCHANGE TABLES where both databases are Atomic, else one RENAME of the target table
 * to `<target>__lsb_previous` and the staging table to the target — keeping every replaced table,
 * view and MV inner table in `<target>__lsb_previous` (dropped first if present), and finally
 * creates views and materialized views in dependency order, filling MV inner tables from staging.
 * The target database is created if missing. Objects of the target that are not in the backup are
 * left as they are.
 */
export async function commitClickHouseRestore(
  conn: ClickHouseConnection,
  opts: { manifest: Manifest; targetDatabase: string; stagingDatabase: string },
): Promise<{ tables: { name: string; rows: number }[] }> {
  const plan = planRestore(opts.manifest)
  const target = opts.targetDatabase
  const staging = stagingDatabaseFor(target)
  if (opts.stagingDatabase !== staging) {
    throw new UntrustedInputError(
      `staging database ${JSON.stringify(opts.stagingDatabase)} is not ${staging}`,
    )
  }
  const previous = `${target}${PREVIOUS_SUFFIX}`
  const q = quoteIdentifier

  // 1. Checks: nothing below runs unless every staging table holds what the manifest says.
  if (!(await databaseEngine(conn, staging))) {
    throw new ClickHouseError(`staging database ${staging} does not exist: run the prepare step first`)
  }
  const stagedRows = new Map<string, number>()
  for (const { table } of plan.dataTables) {
    const actual = await count(conn, staging, table.name).catch((error) => {
      throw clickHouseFailure(
        `table ${table.name}: staging table ${staging}.${table.name} is not readable`,
        error,
      )
    })
    const expected = plan.expectedRows.get(table.name)
    if (expected !== null && expected !== undefined && actual !== expected) {
      throw new ClickHouseError(
        `table ${table.name}: staging holds ${actual} rows, the backup ${expected}; the target database is unchanged`,
      )
    }
    stagedRows.set(table.name, actual)
  }
  const viewStatements = plan.views.map((v) => {
    const ddl = retargetDdl(v.table.ddl, plan.sourceDatabase, target, 'all')
    const reparsed = parseDdl(ddl, { database: target, name: v.table.name, kind: v.parsed.kind })
    if (reparsed.sources.some((s) => s.database !== null && s.database !== target)) {
      throw new UntrustedInputError(`view ${v.table.name}: rewritten DDL reads outside ${target}`)
    }
    return { ...v, ddl }
  })
  const ddlSettings = await settingsThatExist(conn, DDL_SETTINGS)
  const insertSettings = await settingsThatExist(conn, ['insert_allow_materialized_columns'])
  const noCollapse = await settingsThatExist(conn, ['optimize_on_insert'])
  for (const name of Object.keys(noCollapse)) noCollapse[name] = 0
  for (const { table, parsed } of plan.dataTables) {
    if (isMergeTree(parsed)) await conn.command(`SYSTEM START MERGES ${qualifiedName(staging, table.name)}`)
  }

  // 2. The swap. From here on a failure leaves the target partly restored: say where the old data is.
  let step = `create database ${target}`
  try {
    await conn.command(`CREATE DATABASE IF NOT EXISTS ${q(target)}`)
    step = `drop ${previous}`
    await conn.command(`DROP DATABASE IF EXISTS ${q(previous)}`)
    let previousCreated = false
    const keep = async () => {
      if (previousCreated) return
      await conn.command(`CREATE DATABASE ${q(previous)}`)
      previousCreated = true
    }
    // databases created by us get the server's default engine: staging's tells previous's
    const exchange =
      (await databaseEngine(conn, target)) === 'Atomic' && (await databaseEngine(conn, staging)) === 'Atomic'

    // Views and MVs of the target that the backup replaces go first; an MV's inner table is kept.
    let live = await describeDatabase(conn, target)
    const restoredNames = new Set([
      ...plan.dataTables.map((d) => d.table.name),
      ...plan.views.map((v) => v.table.name),
    ])
    for (const existing of live) {
      if (!restoredNames.has(existing.name) || existing.kind === 'table') continue
      step = `move ${target}.${existing.name} to ${previous}`
      await keep()
      if (existing.kind === 'materialized_view') {
        const inner = innerTableOf(existing, live)
        if (inner)
          await conn.command(
            `RENAME TABLE ${qualifiedName(target, inner.name)} TO ${qualifiedName(previous, inner.name)}`,
          )
        // neither ClickHouse 18.16 nor an Atomic database moves a view with an inner table: drop it
        await conn.command(`DROP TABLE ${qualifiedName(target, existing.name)}`)
      } else {
        await conn.command(
          `RENAME TABLE ${qualifiedName(target, existing.name)} TO ${qualifiedName(previous, existing.name)}`,
        )
      }
    }
    live = await describeDatabase(conn, target)
    const liveNames = new Set(live.map((t) => t.name))

    for (const { table } of plan.dataTables) {
      if (plan.innerTables.has(table.name)) continue
      step = `swap table ${table.name}`
      const [t, s, p] = [
        qualifiedName(target, table.name),
        qualifiedName(staging, table.name),
        qualifiedName(previous, table.name),
      ]
      if (!liveNames.has(table.name)) {
        await conn.command(`RENAME TABLE ${s} TO ${t}`)
      } else if (exchange) {
        await keep()
        await conn.command(`EXCHANGE TABLES ${s} AND ${t}`)
        await conn.command(`RENAME TABLE ${s} TO ${p}`)
      } else {
        await keep()
        await conn.command(`RENAME TABLE ${t} TO ${p}, ${s} TO ${t}`)
      }
    }
    // an inner table left behind by a view dropped outside of us would block its re-creation (18.16 names)
    for (const v of viewStatements) {
      const orphan = `.inner.${v.table.name}`
      if (v.inner && liveNames.has(orphan)) {
        await keep()
        await conn.command(
          `RENAME TABLE ${qualifiedName(target, orphan)} TO ${qualifiedName(previous, orphan)}`,
        )
      }
    }

    const restored: { name: string; rows: number }[] = plan.dataTables
      .filter((d) => !plan.innerTables.has(d.table.name))
      .map((d) => ({ name: d.table.name, rows: stagedRows.get(d.table.name)! }))
    for (const v of viewStatements) {
      step = `create ${v.parsed.kind.replace('_', ' ')} ${v.table.name}`
      await conn.command(v.ddl, undefined, ddlSettings)
      if (v.inner) {
        step = `fill materialized view ${v.table.name}`
        const columns = (await storedColumns(conn, staging, v.inner)).map(q).join(', ')
        await conn.command(
          `INSERT INTO ${qualifiedName(target, v.table.name)} (${columns}) SELECT ${columns} FROM ${qualifiedName(staging, v.inner)}`,
          undefined,
          { ...insertSettings, ...noCollapse },
        )
        restored.push({ name: v.table.name, rows: stagedRows.get(v.inner)! })
      }
    }
    step = `drop ${staging}`
    await conn.command(`DROP DATABASE ${q(staging)}`)
    return { tables: restored }
  } catch (error) {
    throw clickHouseFailure(
      `restore into ${target} failed at "${step}"; tables it replaced are in ${previous}, the loaded data in ${staging}`,
      error,
    )
  }
}
