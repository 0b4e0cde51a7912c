/**
 * Table names and `CREATE` statements read from a manifest are untrusted: a manifest in S3 can
 * be edited by anyone who can write the bucket. Before any database is changed, each statement
 * must be exactly one CREATE TABLE / VIEW / MATERIALIZED VIEW of `<sourceDb>.<its table name>`,
 * with an engine that keeps its data local, and views that read only tables of the same
 * database (no table functions: url(), file(), remote(), s3() … would reach outside). The same
 * checks run on a live server's DDL when a backup is listed, so a table that could not be
 * restored fails the backup instead of the restore.
 */
import { UntrustedInputError } from '#core/errors.ts'
import type { ClickHouseTable } from '#core/manifest.ts'
import { quoteIdentifier, type Token, tokenizeSql } from './sql.ts'

export type DdlKind = 'table' | 'view' | 'materialized_view'

export interface TableReference {
  database: string | null
  name: string
}

export interface ParsedDdl {
  kind: DdlKind
  database: string
  name: string
  /** A materialized view's `TO` table; null when the view has an inner table (an ENGINE clause). */
  to: TableReference | null
  /** Engines named by top-level `ENGINE =` clauses (a table's, an implicit MV inner table's). */
  engines: string[]
  /** Tables a view or materialized view reads (FROM, JOIN, IN). */
  sources: TableReference[]
}

/** `name`, `.inner.<name>` (MV inner tables of ClickHouse before 20.x), `.inner_id.<uuid>` (Atomic). */
const TABLE_NAME =
  /^(?:[A-Za-z0-9_][A-Za-z0-9_-]{0,205}|\.inner\.[A-Za-z0-9_][A-Za-z0-9_-]{0,199}|\.inner_id\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/

/** Engines whose data lives in the server's own storage. Replicated*, Distributed, Kafka, URL … are refused. */
export const RESTORABLE_ENGINES = new Set([
  'MergeTree',
  'ReplacingMergeTree',
  'SummingMergeTree',
  'AggregatingMergeTree',
  'CollapsingMergeTree',
  'VersionedCollapsingMergeTree',
  'GraphiteMergeTree',
  'CoalescingMergeTree',
  'Log',
  'TinyLog',
  'StripeLog',
  'Memory',
  'Null',
])

/** Functions that read or write outside the server's own tables (table functions and their kin). */
const OUTSIDE_FUNCTIONS = new Set(
  [
    'url',
    'urlCluster',
    'file',
    'fileCluster',
    'remote',
    'remoteSecure',
    'cluster',
    'clusterAllReplicas',
    's3',
    's3Cluster',
    's3queue',
    'gcs',
    'oss',
    'cosn',
    'hdfs',
    'hdfsCluster',
    'azureBlobStorage',
    'azureBlobStorageCluster',
    'mysql',
    'postgresql',
    'mongodb',
    'redis',
    'sqlite',
    'jdbc',
    'odbc',
    'executable',
    'input',
    'merge',
    'deltaLake',
    'deltaLakeCluster',
    'iceberg',
    'icebergS3',
    'icebergAzure',
    'icebergHDFS',
    'icebergLocal',
    'hudi',
    'hudiCluster',
    'disk',
    'dictionary',
    'mergeTreeIndex',
    'mergeTreeProjection',
    'arrowFlight',
    'ytsaurus',
    'paimon',
  ].map((f) => f.toLowerCase()),
)

/** Words that change what a CREATE does (fill it from a query, refresh it, run it as someone else). */
const FORBIDDEN_HEAD_WORDS = new Set([
  'POPULATE',
  'EMPTY',
  'REFRESH',
  'DEFINER',
  'SECURITY',
  'APPEND',
  'CLONE',
])

/** Checks a table name from a manifest or a server: a plain name, or an MV inner table's. */
export function assertTableName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !TABLE_NAME.test(name)) {
    throw new UntrustedInputError(
      `table name ${JSON.stringify(name)} is not acceptable (letters, digits, _ and -, or an MV inner table name)`,
    )
  }
}

const isIdent = (t: Token | undefined) => t?.kind === 'word' || t?.kind === 'quoted'
const isWord = (t: Token | undefined, word: string) => t?.kind === 'word' && t.value.toUpperCase() === word

/** Reads `[db.]name` at `i`; returns the reference and the index after it. */
function readReference(sig: Token[], i: number): { ref: TableReference; next: number } | undefined {
  if (!isIdent(sig[i])) return undefined
  if (sig[i + 1]?.text === '.' && isIdent(sig[i + 2])) {
    return { ref: { database: sig[i]!.value, name: sig[i + 2]!.value }, next: i + 3 }
  }
  return { ref: { database: null, name: sig[i]!.value }, next: i + 1 }
}

/** Words that may follow a table in FROM and are not its alias. */
const AFTER_TABLE = new Set([
  'FINAL',
  'SAMPLE',
  'WHERE',
  'PREWHERE',
  'GROUP',
  'ORDER',
  'LIMIT',
  'HAVING',
  'UNION',
  'JOIN',
  'INNER',
  'LEFT',
  'RIGHT',
  'FULL',
  'CROSS',
  'ANY',
  'ALL',
  'ASOF',
  'SEMI',
  'ANTI',
  'ARRAY',
  'GLOBAL',
  'ON',
  'USING',
  'SETTINGS',
  'WINDOW',
  'QUALIFY',
  'EXCEPT',
  'INTERSECT',
  'FORMAT',
  'PASTE',
  'OFFSET',
  'WITH',
  'INTO',
])

/**
 * Parses and checks one CREATE statement. `expected` is what the manifest (or the server)
 * says it is; every disagreement is an UntrustedInputError naming the table.
 */
export function parseDdl(ddl: string, expected: { database: string; name: string; kind: string }): ParsedDdl {
  const refuse = (why: string) =>
    new UntrustedInputError(`table ${JSON.stringify(expected.name)}: DDL refused: ${why}`)
  assertTableName(expected.name)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(ddl)) throw refuse('control characters')
  let tokens: Token[]
  try {
    tokens = tokenizeSql(ddl)
  } catch (error) {
    throw refuse((error as Error).message)
  }
  for (const t of tokens) {
    if (t.kind === 'comment') throw refuse('comments are not part of a server-printed CREATE')
    if (t.text === ';') throw refuse('more than one statement (;)')
    if (t.kind === 'punct' && /[$#\\]/.test(t.text)) throw refuse(`unexpected ${t.text}`)
  }
  const sig = tokens.filter((t) => t.kind !== 'space')

  if (!isWord(sig[0], 'CREATE')) throw refuse('not a CREATE statement')
  let kind: DdlKind
  let i: number
  if (isWord(sig[1], 'TABLE')) [kind, i] = ['table', 2]
  else if (isWord(sig[1], 'VIEW')) [kind, i] = ['view', 2]
  else if (isWord(sig[1], 'MATERIALIZED') && isWord(sig[2], 'VIEW')) [kind, i] = ['materialized_view', 3]
  else throw refuse(`CREATE ${sig[1]?.text ?? ''} is not CREATE TABLE, VIEW or MATERIALIZED VIEW`)
  if (kind !== expected.kind) throw refuse(`it creates a ${kind}, the manifest says ${expected.kind}`)

  const head = readReference(sig, i)
  if (!head?.ref.database) throw refuse('the created table is not qualified with its database')
  if (head.ref.database !== expected.database || head.ref.name !== expected.name) {
    throw refuse(
      `it creates ${head.ref.database}.${head.ref.name}, not ${expected.database}.${expected.name}`,
    )
  }
  i = head.next

  let to: TableReference | null = null
  if (kind === 'materialized_view' && isWord(sig[i], 'TO')) {
    const target = readReference(sig, i + 1)
    if (!target?.ref.database) throw refuse('TO target is not qualified with its database')
    if (target.ref.database !== expected.database)
      throw refuse(`it writes to database ${target.ref.database}`)
    assertTableName(target.ref.name)
    to = target.ref
    i = target.next
  }
  const allowedNext =
    kind === 'table'
      ? sig[i]?.text === '('
      : sig[i]?.text === '(' ||
        isWord(sig[i], 'AS') ||
        (kind === 'materialized_view' && isWord(sig[i], 'ENGINE'))
  if (!allowedNext) throw refuse(`unexpected ${JSON.stringify(sig[i]?.text ?? 'end')} after the table name`)

  // Depth and query contexts: a parenthesis opens a query when it starts with SELECT or WITH.
  const engines: string[] = []
  const sources: TableReference[] = []
  let bodyStart = -1
  const contexts: boolean[] = []
  let depth = 0
  const inQuery = () => (depth === 0 ? bodyStart >= 0 : contexts[contexts.length - 1] === true)
  for (let j = i; j < sig.length; j++) {
    const t = sig[j]!
    if (t.text === '(') {
      depth++
      contexts.push(isWord(sig[j + 1], 'SELECT') || isWord(sig[j + 1], 'WITH'))
      continue
    }
    if (t.text === ')') {
      depth--
      contexts.pop()
      if (depth < 0) throw refuse('unbalanced parentheses')
      continue
    }
    if (t.kind !== 'word') continue
    const word = t.value.toUpperCase()
    if (sig[j + 1]?.text === '(' && OUTSIDE_FUNCTIONS.has(t.value.toLowerCase())) {
      throw refuse(`${t.value}() reaches outside the database`)
    }
    if (word === 'OUTFILE' || word === 'INFILE') throw refuse(`${word} is not allowed`)
    if (depth === 0 && bodyStart < 0) {
      if (word === 'ENGINE' && sig[j + 1]?.text === '=') {
        const engine = sig[j + 2]
        if (!isIdent(engine)) throw refuse('ENGINE without a name')
        engines.push(engine!.value)
      }
      if (kind !== 'table' && FORBIDDEN_HEAD_WORDS.has(word)) throw refuse(`${word} is not allowed`)
      if (word === 'AS') {
        if (kind === 'table') throw refuse('CREATE TABLE … AS is not a server-printed table definition')
        bodyStart = j + 1
        if (!isWord(sig[j + 1], 'SELECT') && !isWord(sig[j + 1], 'WITH') && sig[j + 1]?.text !== '(') {
          throw refuse('AS is not followed by a query')
        }
      }
      continue
    }
    if (!inQuery()) continue
    const isJoin = word === 'JOIN' && !isWord(sig[j - 1], 'ARRAY')
    if (word === 'FROM' || isJoin || (word === 'IN' && sig[j + 1]?.text !== '(')) {
      let k = j + 1
      for (;;) {
        if (sig[k]?.text === '(') break // a subquery: scanned as its own context
        const read = readReference(sig, k)
        if (!read) break
        if (sig[read.next]?.text === '(') throw refuse(`table function ${read.ref.name}() in a view`)
        if (read.ref.database !== null && read.ref.database !== expected.database) {
          throw refuse(
            `it reads ${read.ref.database}.${read.ref.name}, outside database ${expected.database}`,
          )
        }
        sources.push(read.ref)
        if (word !== 'FROM') break
        // FROM a, b: skip an alias and modifiers, continue after a comma
        k = read.next
        if (isWord(sig[k], 'AS')) k += 2
        else if (sig[k]?.kind === 'word' && !AFTER_TABLE.has(sig[k]!.value.toUpperCase())) k += 1
        else if (sig[k]?.kind === 'quoted') k += 1
        if (isWord(sig[k], 'FINAL')) k += 1
        if (sig[k]?.text !== ',') break
        k += 1
      }
    }
  }
  if (depth !== 0) throw refuse('unbalanced parentheses')
  if (kind !== 'table' && bodyStart < 0) throw refuse('a view without AS SELECT')

  for (const engine of engines) {
    if (!RESTORABLE_ENGINES.has(engine)) throw refuse(`engine ${engine} is not restorable`)
  }
  const wantsEngine = kind === 'table' || (kind === 'materialized_view' && to === null)
  if (wantsEngine && engines.length !== 1) throw refuse(`expected one ENGINE clause, found ${engines.length}`)
  if (!wantsEngine && engines.length > 0) throw refuse('an ENGINE clause where none belongs')
  return { kind, database: head.ref.database, name: head.ref.name, to, engines, sources }
}

/** Parses a manifest (or listing) entry: name, kind and DDL checked together. */
export function parseTableDefinition(table: ClickHouseTable, sourceDatabase: string): ParsedDdl {
  assertTableName(table.name)
  if (table.kind === 'dictionary') {
    throw new UntrustedInputError(`table ${JSON.stringify(table.name)}: dictionaries are not restored`)
  }
  return parseDdl(table.ddl, { database: sourceDatabase, name: table.name, kind: table.kind })
}

/**
 * Rewrites the database of a checked CREATE statement: the created table's always, and for
 * views every `<from>.` qualifier as well (FROM, JOIN, TO). Literals are never touched.
 * A column or alias spelled exactly like the source database and followed by a dot would be
 * rewritten too; server-printed DDL qualifies tables, so that is the only ambiguity.
 */
export function retargetDdl(ddl: string, from: string, to: string, scope: 'head' | 'all'): string {
  const tokens = tokenizeSql(ddl)
  const sigIndex = tokens.flatMap((t, n) => (t.kind === 'space' ? [] : [n]))
  const headAt = tokens[sigIndex[1]!] && isWord(tokens[sigIndex[1]!], 'MATERIALIZED') ? 3 : 2
  const replaced = new Set<number>()
  sigIndex.forEach((n, s) => {
    const t = tokens[n]!
    const next = tokens[sigIndex[s + 1] ?? -1]
    const previous = tokens[sigIndex[s - 1] ?? -1]
    if (!isIdent(t) || t.value !== from || next?.text !== '.' || previous?.text === '.') return
    if (scope === 'head' && s !== headAt) return
    replaced.add(n)
  })
  return tokens.map((t, n) => (replaced.has(n) ? quoteIdentifier(to) : t.text)).join('')
}
