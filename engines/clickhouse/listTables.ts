import { ClickHouseError, UntrustedInputError } from '#core/errors.ts'
import type { ClickHouseTable } from '#core/manifest.ts'
import type { ExportItem } from '#core/payloads.ts'
import { exportItemsFor } from './batches.ts'
import type { ClickHouseConnection } from './connection.ts'
import { type ParsedDdl, parseDdl } from './ddl.ts'
import { describeDatabase, innerTableOf, type LiveTable } from './describeDatabase.ts'
import { orderByDependencies } from './orderByDependencies.ts'

export interface ClickHouseListing {
  serverVersion: string
  database: string
  tables: ClickHouseTable[]
  items: ExportItem[]
}

/** `*` matches any run of characters; everything else is literal; the whole name must match. */
function globMatcher(patterns: string[]): (name: string) => boolean {
  const regexes = patterns.map(
    (p) =>
      new RegExp(
        `^${p
          .split('*')
          .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('.*')}$`,
      ),
  )
  return (name) => regexes.some((r) => r.test(name))
}

/**
 * Tables of the connection's database from system.tables, filtered by `include` / `exclude` (glob
 * patterns with `*` against the table name; default all), in dependency order: tables first, then
 * views and materialized views after everything they read from and write to. A materialized view
 * with an inner table brings its inner table along (filters never name inner tables). A view whose
 * source or a materialized view whose target the filters leave out is an error, not a silently
 * broken backup; so is a table the restore could not recreate (its DDL fails the restore checks).
 *
 * Also the export units: one item per table, or one per run of partitions of about `splitBytes`
 * for a table whose active parts take more than that on disk (batches.ts). Views and materialized views have no items: an MV's data is
 * its `TO` table's or its inner table's, exported once as that table.
 */
export async function listClickHouseTables(
  conn: ClickHouseConnection,
  opts: { include: string[]; exclude: string[]; splitBytes: number; parallelism?: number },
): Promise<ClickHouseListing> {
  const database = conn.database
  const [serverVersion, live] = await Promise.all([conn.serverVersion(), describeDatabase(conn, database)])
  const byName = new Map(live.map((t) => [t.name, t]))

  const innerOf = new Map<string, LiveTable>()
  const parsed = new Map<string, ParsedDdl>()
  const parse = (t: LiveTable) => {
    let p = parsed.get(t.name)
    if (!p) {
      try {
        p = parseDdl(t.ddl, { database, name: t.name, kind: t.kind })
      } catch (error) {
        if (!(error instanceof UntrustedInputError)) throw error
        throw new ClickHouseError(
          `${database}.${t.name} cannot be backed up because it could not be restored (${error.message}); exclude it`,
          { cause: error },
        )
      }
      parsed.set(t.name, p)
    }
    return p
  }
  for (const t of live) {
    const inner = t.kind === 'materialized_view' ? innerTableOf(t, live) : undefined
    if (inner) innerOf.set(t.name, inner)
  }
  const innerNames = new Set([...innerOf.values()].map((t) => t.name))

  const included = opts.include.length ? globMatcher(opts.include) : () => true
  const excluded = globMatcher(opts.exclude)
  const selected = live.filter((t) => !innerNames.has(t.name) && included(t.name) && !excluded(t.name))
  for (const t of selected) {
    if (t.kind === 'dictionary' || t.kind === 'unsupported') {
      throw new ClickHouseError(`${database}.${t.name} (${t.engine}) cannot be backed up; exclude it`)
    }
  }
  const names = new Set(selected.map((t) => t.name))

  const tables: ClickHouseTable[] = []
  for (const t of selected) {
    const p = parse(t)
    const entry: ClickHouseTable = {
      name: t.name,
      engine: t.engine,
      kind: p.kind,
      ddl: t.ddl,
      rows: p.kind === 'table' ? t.rows : 0,
      dependsOn: [],
    }
    if (p.kind !== 'table') {
      const target = p.to?.name ?? innerOf.get(t.name)?.name
      if (p.kind === 'materialized_view' && !target) {
        throw new ClickHouseError(
          `materialized view ${database}.${t.name} has no inner table; it cannot be backed up`,
        )
      }
      const reads = p.sources
        .filter((s) => s.database === database || (s.database === null && byName.has(s.name)))
        .map((s) => s.name)
      const dependsOn = [...new Set([...reads, ...(target ? [target] : [])])].sort()
      for (const dep of dependsOn) {
        if (!byName.has(dep)) {
          throw new ClickHouseError(
            `${p.kind.replace('_', ' ')} ${database}.${t.name} reads ${dep}, which does not exist`,
          )
        }
        if (!names.has(dep) && dep !== innerOf.get(t.name)?.name) {
          throw new ClickHouseError(
            `${p.kind.replace('_', ' ')} ${database}.${t.name} depends on ${dep}, which the include/exclude filters leave out: include ${dep} or exclude ${t.name}`,
          )
        }
      }
      entry.dependsOn = dependsOn
      if (target) entry.target = target
    }
    tables.push(entry)
    const inner = innerOf.get(t.name)
    if (inner) {
      parse(inner)
      tables.push({
        name: inner.name,
        engine: inner.engine,
        kind: 'table',
        ddl: inner.ddl,
        rows: inner.rows,
        dependsOn: [],
      })
    }
  }

  const ordered = orderByDependencies(tables)
  const items: ExportItem[] = []
  for (const t of ordered) {
    if (t.kind !== 'table') continue
    items.push(...exportItemsFor(t.name, byName.get(t.name)!, opts.splitBytes, opts.parallelism))
  }
  return { serverVersion, database, tables: ordered, items }
}
