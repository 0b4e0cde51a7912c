import type { ClickHouseConnection } from './connection.ts'
import { qualifiedName, quoteIdentifier } from './sql.ts'

export type LiveKind = 'table' | 'view' | 'materialized_view' | 'dictionary' | 'unsupported'

export interface LivePartition {
  id: string
  rows: number
  bytes: number
}

/** One entry of system.tables with what a backup or a restore needs to know about it. */
export interface LiveTable {
  name: string
  engine: string
  kind: LiveKind
  /** create_table_query as the server prints it. */
  ddl: string
  /** The table's UUID on Atomic databases (an MV's inner table is `.inner_id.<uuid>`), else null. */
  uuid: string | null
  rows: number
  /** Bytes on disk of the active parts (0 for engines without parts). */
  bytes: number
  partitions: LivePartition[]
}

const KINDS: Record<string, LiveKind> = {
  View: 'view',
  MaterializedView: 'materialized_view',
  Dictionary: 'dictionary',
  LiveView: 'unsupported',
  WindowView: 'unsupported',
}

const toNumber = (v: unknown) => Number(v ?? 0)
const COUNTABLE_WITHOUT_PARTS = new Set(['Log', 'TinyLog', 'StripeLog', 'Memory'])

/** Columns a system table has on this server (18.16's system.tables has no uuid or total_rows). */
async function systemColumns(conn: ClickHouseConnection, table: string): Promise<Set<string>> {
  const rows = await conn.query<{ name: string }>(
    "SELECT name FROM system.columns WHERE database = 'system' AND table = {t:String}",
    { t: table },
  )
  return new Set(rows.map((r) => r.name))
}

/** The engine of a database (Atomic, Ordinary, …), or undefined when it does not exist. */
export async function databaseEngine(
  conn: ClickHouseConnection,
  database: string,
): Promise<string | undefined> {
  const rows = await conn.query<{ engine: string }>(
    'SELECT engine FROM system.databases WHERE name = {d:String}',
    {
      d: database,
    },
  )
  return rows[0]?.engine
}

/** Every table, view and materialized view of `database`, with row and byte counts per partition. */
export async function describeDatabase(conn: ClickHouseConnection, database: string): Promise<LiveTable[]> {
  const has = await systemColumns(conn, 'tables')
  const optional = ['uuid', 'total_rows', 'total_bytes'].filter((c) => has.has(c))
  const tables = await conn.query<Record<string, unknown>>(
    `SELECT name, engine, create_table_query${optional.map((c) => `, ${quoteIdentifier(c)}`).join('')}
     FROM system.tables WHERE database = {d:String} ORDER BY name`,
    { d: database },
  )
  const parts = await conn.query<{ table: string; partition_id: string; rows: unknown; bytes: unknown }>(
    `SELECT table, partition_id, sum(rows) AS rows, sum(bytes_on_disk) AS bytes
     FROM system.parts WHERE database = {d:String} AND active
     GROUP BY table, partition_id ORDER BY table, partition_id`,
    { d: database },
  )
  const partitionsOf = new Map<string, LivePartition[]>()
  for (const p of parts) {
    const list = partitionsOf.get(p.table) ?? []
    list.push({ id: p.partition_id, rows: toNumber(p.rows), bytes: toNumber(p.bytes) })
    partitionsOf.set(p.table, list)
  }
  const described: LiveTable[] = []
  for (const t of tables) {
    const name = String(t.name)
    const engine = String(t.engine)
    const kind = KINDS[engine] ?? 'table'
    const partitions = partitionsOf.get(name) ?? []
    let rows = partitions.reduce((n, p) => n + p.rows, 0)
    if (kind === 'table' && partitions.length === 0 && COUNTABLE_WITHOUT_PARTS.has(engine)) {
      // engines without parts (Log, Memory): total_rows where the server has it, else count();
      // never count() a table whose data is elsewhere (URL, Kafka, …): that would reach out to it
      rows =
        t.total_rows !== undefined && t.total_rows !== null
          ? toNumber(t.total_rows)
          : toNumber(
              (
                await conn.query<{ c: unknown }>(`SELECT count() AS c FROM ${qualifiedName(database, name)}`)
              )[0]?.c,
            )
    }
    const uuid = typeof t.uuid === 'string' && !/^0{8}-/.test(t.uuid) ? t.uuid : null
    described.push({
      name,
      engine,
      kind,
      ddl: String(t.create_table_query),
      uuid,
      rows,
      bytes: partitions.reduce((n, p) => n + p.bytes, 0),
      partitions,
    })
  }
  return described
}

/** The inner table of a materialized view without `TO`, among `tables` of the same database. */
export function innerTableOf(view: LiveTable, tables: LiveTable[]): LiveTable | undefined {
  const names = [view.uuid ? `.inner_id.${view.uuid}` : undefined, `.inner.${view.name}`]
  return tables.find((t) => names.includes(t.name))
}

export interface Column {
  name: string
  type: string
}

/** Physical columns in table order, with their types: what `SELECT *` misses (MATERIALIZED) included, ALIAS/EPHEMERAL left out. */
export async function storedColumnTypes(
  conn: ClickHouseConnection,
  database: string,
  table: string,
): Promise<Column[]> {
  const rows = await conn.query<{ name: string; type: string; default_kind: string }>(
    // in table order, as system.columns lists them (18.16 has no `position` column to sort by)
    'SELECT name, type, default_kind FROM system.columns WHERE database = {d:String} AND table = {t:String}',
    { d: database, t: table },
  )
  return rows
    .filter((r) => r.default_kind !== 'ALIAS' && r.default_kind !== 'EPHEMERAL')
    .map(({ name, type }) => ({ name, type }))
}

/** The names of {@link storedColumnTypes}. */
export async function storedColumns(
  conn: ClickHouseConnection,
  database: string,
  table: string,
): Promise<string[]> {
  return (await storedColumnTypes(conn, database, table)).map((c) => c.name)
}
