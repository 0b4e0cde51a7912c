import { ClickHouseError, UntrustedInputError } from '#core/errors.ts'
import type { Manifest } from '#core/manifest.ts'
import { type RestoreNames, restoreNames } from '#core/names.ts'
import { type ClickHouseConnection, clickHouseFailure } from '../connection.ts'
import { parseDdl, retargetDdl } from '../ddl.ts'
import { databaseEngine, describeDatabase, innerTableOf, storedColumns } from '../describeDatabase.ts'
import { qualifiedName, quoteIdentifier } from '../sql.ts'
import { DDL_SETTINGS, isMergeTree, planRestore, type RestorePlan, settingsThatExist } from './plan.ts'

type ViewStatement = RestorePlan['views'][number] & { ddl: string }

/**
 * The swap failed part-way: the target database may hold some restored tables and some old ones,
 * views may be missing. The state machine tells this apart from a failure that left the target
 * untouched (it then keeps the writers stopped), hence a name of its own.
 */
export class ClickHouseSwapError extends ClickHouseError {}

/**
 * The swap's progress: each step names itself before it runs, so a failure says exactly how far
 * the target got, and `previous` is created the first time something has to be kept.
 */
class Swap {
  step = ''
  /** Set once a step may have changed the target database (its tables, views or MVs). */
  touchedLive = false
  private previousCreated = false

  constructor(
    readonly conn: ClickHouseConnection,
    readonly names: RestoreNames,
  ) {}

  async run<T>(step: string, work: () => Promise<T>): Promise<T> {
    this.step = step
    return work()
  }

  async keep(): Promise<void> {
    if (this.previousCreated) return
    await this.conn.command(`CREATE DATABASE ${quoteIdentifier(this.names.previous)}`)
    this.previousCreated = true
  }

  async rename(table: string, from: string, to: string): Promise<void> {
    await this.conn.command(`RENAME TABLE ${qualifiedName(from, table)} TO ${qualifiedName(to, table)}`)
  }
}

async function count(conn: ClickHouseConnection, database: string, table: string): Promise<number> {
  const [row] = await conn.query<{ c: unknown }>(`SELECT count() AS c FROM ${qualifiedName(database, table)}`)
  return Number(row?.c ?? 0)
}

/** Every staging table's row count, checked against the manifest before the target is touched. */
async function checkStaged(
  conn: ClickHouseConnection,
  plan: RestorePlan,
  staging: string,
): Promise<Map<string, number>> {
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
  return stagedRows
}

/** The views' DDL rewritten to the target, each checked to read nothing outside it. */
function viewStatements(plan: RestorePlan, target: string): ViewStatement[] {
  return plan.views.map((v) => {
    const ddl = retargetDdl(v.table.ddl, plan.sourceDatabase, target, 'all')
    const reparsed = parseDdl(ddl, { database: target, name: v.table.name, kind: v.parsed.kind })
    if (reparsed.sources.some((s) => s.database !== null && s.database !== target)) {
      throw new UntrustedInputError(`view ${v.table.name}: rewritten DDL reads outside ${target}`)
    }
    return { ...v, ddl }
  })
}

/** Views and MVs of the target that the backup replaces go to `previous` first; an MV's inner table is kept. */
async function moveReplacedViews(swap: Swap, plan: RestorePlan): Promise<void> {
  const { conn, names } = swap
  const live = await describeDatabase(conn, names.live)
  const restoredNames = new Set([
    ...plan.dataTables.map((d) => d.table.name),
    ...plan.views.map((v) => v.table.name),
  ])
  for (const existing of live) {
    if (!restoredNames.has(existing.name) || existing.kind === 'table') continue
    await swap.run(`move ${names.live}.${existing.name} to ${names.previous}`, async () => {
      await swap.keep()
      if (existing.kind === 'materialized_view') {
        const inner = innerTableOf(existing, live)
        if (inner) await swap.rename(inner.name, names.live, names.previous)
        // neither ClickHouse 18.16 nor an Atomic database moves a view with an inner table: drop it
        await conn.command(`DROP TABLE ${qualifiedName(names.live, existing.name)}`)
      } else {
        await swap.rename(existing.name, names.live, names.previous)
      }
    })
  }
}

/** Each staging data table into the target: EXCHANGE on Atomic databases, else one double RENAME. */
async function swapTables(swap: Swap, plan: RestorePlan, views: ViewStatement[]): Promise<void> {
  const { conn, names } = swap
  // databases created by us get the server's default engine: staging's tells previous's
  const exchange =
    (await databaseEngine(conn, names.live)) === 'Atomic' &&
    (await databaseEngine(conn, names.staging)) === 'Atomic'
  const liveNames = new Set((await describeDatabase(conn, names.live)).map((t) => t.name))
  for (const { table } of plan.dataTables) {
    if (plan.innerTables.has(table.name)) continue
    await swap.run(`swap table ${table.name}`, async () => {
      const [t, s, p] = [names.live, names.staging, names.previous].map((d) => qualifiedName(d, table.name))
      if (!liveNames.has(table.name)) {
        await conn.command(`RENAME TABLE ${s} TO ${t}`)
      } else if (exchange) {
        await swap.keep()
        await conn.command(`EXCHANGE TABLES ${s} AND ${t}`)
        await conn.command(`RENAME TABLE ${s} TO ${p}`)
      } else {
        await swap.keep()
        await conn.command(`RENAME TABLE ${t} TO ${p}, ${s} TO ${t}`)
      }
    })
  }
  // an inner table left behind by a view dropped outside of us would block its re-creation (18.16 names)
  for (const v of views) {
    const orphan = `.inner.${v.table.name}`
    if (v.inner && liveNames.has(orphan)) {
      await swap.run(`move ${orphan} to ${names.previous}`, async () => {
        await swap.keep()
        await swap.rename(orphan, names.live, names.previous)
      })
    }
  }
}

/** Views and MVs in dependency order; an MV's inner table is filled from staging without running its query. */
async function createViews(
  swap: Swap,
  views: ViewStatement[],
  stagedRows: Map<string, number>,
): Promise<{ name: string; rows: number }[]> {
  const { conn, names } = swap
  const ddlSettings = await settingsThatExist(conn, DDL_SETTINGS)
  const insertSettings = await settingsThatExist(conn, ['insert_allow_materialized_columns'])
  const noCollapse = await settingsThatExist(conn, ['optimize_on_insert'])
  for (const name of Object.keys(noCollapse)) noCollapse[name] = 0
  const filled: { name: string; rows: number }[] = []
  for (const v of views) {
    await swap.run(`create ${v.parsed.kind.replace('_', ' ')} ${v.table.name}`, () =>
      conn.command(v.ddl, undefined, ddlSettings),
    )
    const inner = v.inner
    if (!inner) continue
    await swap.run(`fill materialized view ${v.table.name}`, async () => {
      const columns = (await storedColumns(conn, names.staging, inner)).map(quoteIdentifier).join(', ')
      await conn.command(
        `INSERT INTO ${qualifiedName(names.live, v.table.name)} (${columns}) SELECT ${columns} FROM ${qualifiedName(names.staging, inner)}`,
        undefined,
        { ...insertSettings, ...noCollapse },
      )
    })
    filled.push({ name: v.table.name, rows: stagedRows.get(inner)! })
  }
  return filled
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
  opts: { manifest: Manifest; targetDatabase: string },
): Promise<{ tables: { name: string; rows: number }[] }> {
  // 1. Checks: nothing below runs unless every staging table holds what the manifest says.
  const { plan, names, stagedRows, views } = await checked(conn, opts)
  for (const { table, parsed } of plan.dataTables) {
    if (isMergeTree(parsed))
      await conn.command(`SYSTEM START MERGES ${qualifiedName(names.staging, table.name)}`)
  }

  // 2. The swap. From here on a failure leaves the target partly restored: say where the old data is.
  const swap = new Swap(conn, names)
  try {
    await swap.run(`create database ${names.live}`, () =>
      conn.command(`CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(names.live)}`),
    )
    await swap.run(`drop ${names.previous}`, () =>
      conn.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(names.previous)}`),
    )
    swap.touchedLive = true
    await moveReplacedViews(swap, plan)
    await swapTables(swap, plan, views)
    const restored = plan.dataTables
      .filter((d) => !plan.innerTables.has(d.table.name))
      .map((d) => ({ name: d.table.name, rows: stagedRows.get(d.table.name)! }))
    restored.push(...(await createViews(swap, views, stagedRows)))
    await swap.run(`drop ${names.staging}`, () =>
      conn.command(`DROP DATABASE ${quoteIdentifier(names.staging)}`),
    )
    return { tables: restored }
  } catch (error) {
    // the context goes in front of the server's words even when they are a ClickHouseError already
    const { message, code } = clickHouseFailure('', error) as ClickHouseError & { code?: string }
    const Failure = swap.touchedLive ? ClickHouseSwapError : ClickHouseError
    const failure = new Failure(
      `restore into ${names.live} failed at "${swap.step}"; ` +
        (swap.touchedLive
          ? `tables it replaced are in ${names.previous}, the loaded data in ${names.staging}`
          : `${names.live} is unchanged, the loaded data in ${names.staging}`) +
        `: ${message.replace(/^: /, '')}`,
      { cause: error },
    )
    if (code !== undefined) Object.assign(failure, { code })
    throw failure
  }
}

/**
 * The checks of {@link commitClickHouseRestore} alone: every staging table holds the rows the
 * manifest says (a ClickHouseError naming the table otherwise) and the views' DDL is acceptable.
 * Run before any live database changes, so that a bad load never leaves one engine restored.
 */
export async function checkClickHouseStaging(
  conn: ClickHouseConnection,
  opts: { manifest: Manifest; targetDatabase: string },
): Promise<{ tables: { name: string; rows: number }[] }> {
  const { stagedRows } = await checked(conn, opts)
  return { tables: [...stagedRows].map(([name, rows]) => ({ name, rows })) }
}

/** The plan, the staging counts checked against the manifest, and the views' rewritten DDL. */
async function checked(conn: ClickHouseConnection, opts: { manifest: Manifest; targetDatabase: string }) {
  const plan = planRestore(opts.manifest)
  const names = restoreNames(opts.targetDatabase)
  const stagedRows = await checkStaged(conn, plan, names.staging)
  return { plan, names, stagedRows, views: viewStatements(plan, names.live) }
}
