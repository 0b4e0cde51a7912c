/**
 * Restoring a ClickHouse backup (this folder), in phases so that a Step Functions Map can load
 * the objects in parallel:
 *
 * 0. plan (`plan.ts`) — reads the manifest as untrusted input.
 * 1. prepare (`prepare.ts`) — checks every table name and DDL of the manifest before touching anything, then
 *    creates `<target>__lsb_restore` with one staging table per data table (MV inner tables
 *    included), merges stopped so that row counts stay exact while loading.
 * 2. load (`load.ts`) — streams one object from S3 (sha256 checked, gunzipped, rows counted) into
 *    its staging table with INSERT … FORMAT Native. Retrying an object first removes its own
 *    earlier rows (its partition, or the whole table for a whole-table object).
 * 3. commit (`commit.ts`) — compares staging counts with the manifest, then swaps each table into the target
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

import { batchItems } from '#core/batches.ts'
import { UntrustedInputError } from '#core/errors.ts'
import type { ClickHouseTable, Manifest, StoredObject } from '#core/manifest.ts'
import { databaseNameProblem, MAX_IDENTIFIER_BYTES } from '#core/names.ts'
import type { RestoreItem } from '#core/payloads.ts'
import { PARTITION_PART_PREFIX, PARTITIONS_PART_PREFIX, WHOLE_TABLE_PART } from '../batches.ts'
import type { ClickHouseConnection } from '../connection.ts'
import { type ParsedDdl, parseTableDefinition } from '../ddl.ts'
import { orderByDependencies } from '../orderByDependencies.ts'

/** A partition id as it may appear in an object's part name. */
export const PARTITION_ID = /^[A-Za-z0-9_-]{1,128}$/

/** Settings a CREATE may need on the restoring server for types the source server allowed. */
export const DDL_SETTINGS = [
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

interface PlannedTable {
  table: ClickHouseTable
  parsed: ParsedDdl
}

interface PlannedView extends PlannedTable {
  /** The inner table this materialized view is restored from, or null. */
  inner: string | null
}

export interface RestorePlan {
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

export const isMergeTree = (p: ParsedDdl) => p.engines[0]?.endsWith('MergeTree') === true

/** Reads a manifest as untrusted input: every name, statement, dependency and object checked. */
export function planRestore(manifest: Manifest): RestorePlan {
  if (manifest.engine !== 'clickhouse')
    throw new UntrustedInputError(`backup ${manifest.backupId} is not ClickHouse`)
  const sourceDatabase = manifest.source.database
  const problem = databaseNameProblem(sourceDatabase, MAX_IDENTIFIER_BYTES)
  if (problem) throw new UntrustedInputError(`source database ${JSON.stringify(sourceDatabase)}: ${problem}`)
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
 * A manifest's restore items in batches, one per Map item of RestoreClickHouse: cut the same way
 * by PrepareClickHouse and by every LoadClickHouseBatch, from the manifest and the same settings.
 */
export function restoreBatches(
  manifest: Manifest,
  settings: {
    LSB_CLICKHOUSE_SPLIT_BYTES: number
    LSB_CLICKHOUSE_MAX_BATCHES: number
    LSB_MAP_CONCURRENCY: number
  },
): RestoreItem[][] {
  return batchItems(planRestore(manifest).items, {
    maxBatches: settings.LSB_CLICKHOUSE_MAX_BATCHES,
    minBatchBytes: settings.LSB_CLICKHOUSE_SPLIT_BYTES,
    parallelism: settings.LSB_MAP_CONCURRENCY,
  })
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
  let partitions: string[] | null = null
  if (part.startsWith(PARTITION_PART_PREFIX)) {
    partitions = [part.slice(PARTITION_PART_PREFIX.length)]
  } else if (
    part.startsWith(PARTITIONS_PART_PREFIX) &&
    /^\d{1,9}$/.test(part.slice(PARTITIONS_PART_PREFIX.length))
  ) {
    partitions = object.partitions ?? []
    if (partitions.length === 0)
      throw new UntrustedInputError(`object ${object.key}: ${part} lists no partitions`)
  } else if (part !== WHOLE_TABLE_PART) {
    throw new UntrustedInputError(`object ${object.key}: unknown part ${JSON.stringify(part)}`)
  }
  for (const id of partitions ?? []) {
    if (!PARTITION_ID.test(id))
      throw new UntrustedInputError(`object ${object.key}: bad partition ${JSON.stringify(id)}`)
  }
  // a whole-table object excludes every other; partitions may not appear in two objects
  const seen = parts.get(table) ?? new Set<string>()
  const claims = partitions ?? [WHOLE_TABLE_PART]
  if (
    claims.some((c) => seen.has(c)) ||
    (seen.size > 0 && (partitions === null || seen.has(WHOLE_TABLE_PART)))
  ) {
    throw new UntrustedInputError(`object ${object.key}: table ${table} has overlapping objects`)
  }
  for (const c of claims) seen.add(c)
  parts.set(table, seen)
  return {
    table,
    stagingTable: table,
    key: object.key,
    sha256: object.sha256,
    bytes: object.bytes,
    rows: object.rows,
    compression: object.compression,
    partitions,
  }
}

/** Which of `names` the server knows, each set to 1: settings differ between versions. */
export async function settingsThatExist(
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
