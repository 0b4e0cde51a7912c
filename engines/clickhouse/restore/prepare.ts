import type { Manifest } from '#core/manifest.ts'
import { restoreNames } from '#core/names.ts'
import type { RestoreItem } from '#core/payloads.ts'
import type { ClickHouseConnection } from '../connection.ts'
import { parseDdl, retargetDdl } from '../ddl.ts'
import { qualifiedName, quoteIdentifier } from '../sql.ts'
import { DDL_SETTINGS, isMergeTree, planRestore, settingsThatExist } from './plan.ts'

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
  const { staging } = restoreNames(opts.targetDatabase)
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
