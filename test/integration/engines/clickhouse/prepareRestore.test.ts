import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { manifestKey, tableDataKey } from '#core/backupKeys.ts'
import { UntrustedInputError } from '#core/errors.ts'
import { type ClickHouseTable, type Manifest, parseManifest } from '#core/manifest.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { parseDdl, retargetDdl } from '#engines/clickhouse/ddl.ts'
import { validateClickHouseManifest } from '#engines/clickhouse/restore/plan.ts'
import { prepareClickHouseRestore } from '#engines/clickhouse/restore/prepare.ts'

const { clickhouse } = inject('servers')
const suffix = randomBytes(3).toString('hex')
const source = 'lsb_src'
const target = `lsb_untrusted_${suffix}`
const backupId = '20261125T144226.123Z'
const prefix = 'untrusted'

const spans: ClickHouseTable = {
  name: 'spans',
  engine: 'MergeTree',
  kind: 'table',
  ddl: `CREATE TABLE ${source}.spans (id UInt64, note String DEFAULT 'a;b') ENGINE = MergeTree ORDER BY id`,
  rows: 1,
  dependsOn: [],
}
const errors: ClickHouseTable = {
  name: 'errors',
  engine: 'View',
  kind: 'view',
  ddl: `CREATE VIEW ${source}.errors AS SELECT id FROM ${source}.spans WHERE note = 'x;y'`,
  rows: 0,
  dependsOn: ['spans'],
}

function manifestWith(tables: ClickHouseTable[]): Manifest {
  return parseManifest(
    {
      formatVersion: 1,
      backupId,
      engine: 'clickhouse',
      prefix,
      startedAt: '2026-11-25T14:42:26.123Z',
      finishedAt: '2026-11-25T14:43:26.123Z',
      toolVersion: 'test',
      source: { serverVersion: '18.16.1', database: source },
      objects: tables
        .filter((t) => t.kind === 'table')
        .map((t) => ({
          key: tableDataKey(prefix, backupId, t.name, 'all'),
          bytes: 10,
          sha256: 'a'.repeat(64),
          rows: 1,
          table: t.name,
          part: 'all',
          compression: 'gzip',
        })),
      tables,
    },
    manifestKey(prefix, 'clickhouse', backupId),
  )
}

describe('Function: prepareClickHouseRestore', () => {
  let conn: ClickHouseConnection

  beforeAll(async () => {
    conn = await connectClickHouse(
      `http://default:${encodeURIComponent(clickhouse.password)}@127.0.0.1:${clickhouse.port}/${target}`,
    )
  })

  afterEach(async () => {
    await conn.command(`DROP DATABASE IF EXISTS ${target}__lsb_restore`)
  })

  afterAll(async () => {
    await conn.close()
  })

  async function databasesLike(): Promise<string[]> {
    const rows = await conn.query<{ name: string }>(
      'SELECT name FROM system.databases WHERE startsWith(name, {p:String})',
      { p: target },
    )
    return rows.map((r) => r.name)
  }

  it('creates the staging tables of a valid manifest (a ; inside a literal is fine) and touches no target', async () => {
    const result = await prepareClickHouseRestore(conn, {
      manifest: manifestWith([spans, errors]),
      targetDatabase: target,
    })
    expect(result.stagingDatabase).toBe(`${target}__lsb_restore`)
    expect(result.items).toEqual([
      expect.objectContaining({ table: 'spans', stagingTable: 'spans', partitions: null }),
    ])
    expect(await databasesLike()).toEqual([`${target}__lsb_restore`])
    const [staged] = await conn.query<{ name: string }>(
      'SELECT name FROM system.tables WHERE database = {d:String}',
      { d: `${target}__lsb_restore` },
    )
    expect(staged?.name).toBe('spans')
  })

  const cases: [string, ClickHouseTable[], RegExp][] = [
    [
      'a quote in a table name',
      [{ ...spans, name: "spans'x", ddl: spans.ddl.replace('.spans', ".`spans'x`") }],
      /spans'x/,
    ],
    ['a backtick in a table name', [{ ...spans, name: 'sp`ans' }], /sp`ans/],
    ['.. in a table name', [{ ...spans, name: 'a..b' }], /a\.\.b/],
    [
      'DDL creating a table in another database',
      [{ ...spans, ddl: spans.ddl.replace(`${source}.spans`, 'default.spans') }],
      /table "spans".*default\.spans/,
    ],
    [
      'two statements',
      [{ ...spans, ddl: `${spans.ddl}; DROP DATABASE ${source}` }],
      /table "spans".*more than one statement/,
    ],
    [
      'an ATTACH instead of a CREATE',
      [{ ...spans, ddl: spans.ddl.replace('CREATE', 'ATTACH') }],
      /not a CREATE/,
    ],
    [
      'url() in a view',
      [
        spans,
        {
          ...errors,
          ddl: `CREATE VIEW ${source}.errors AS SELECT * FROM url('http://127.0.0.1:1/x', CSV, 'id UInt64')`,
        },
      ],
      /table "errors".*url\(\)/,
    ],
    [
      'a view reading another database',
      [spans, { ...errors, ddl: `CREATE VIEW ${source}.errors AS SELECT name FROM system.users` }],
      /table "errors".*reads system\.users/,
    ],
    [
      'an engine sending data elsewhere',
      [
        {
          ...spans,
          ddl: `CREATE TABLE ${source}.spans (id UInt64) ENGINE = URL('http://127.0.0.1:1/', CSV)`,
        },
      ],
      /table "spans".*URL\(\)/,
    ],
    [
      'a materialized view with POPULATE',
      [
        spans,
        {
          ...errors,
          name: 'mv',
          kind: 'materialized_view',
          engine: 'MaterializedView',
          target: '.inner.mv',
          ddl: `CREATE MATERIALIZED VIEW ${source}.mv ENGINE = Memory POPULATE AS SELECT id FROM ${source}.spans`,
        },
      ],
      /POPULATE is not allowed/,
    ],
  ]

  it.each(cases)('refuses %s before creating anything', async (_what, tables, message) => {
    // Prepare
    const manifest = manifestWith(tables)
    // Act
    const failure = prepareClickHouseRestore(conn, { manifest, targetDatabase: target })
    // Assess
    await expect(failure).rejects.toBeInstanceOf(UntrustedInputError)
    await expect(failure).rejects.toThrow(message)
    expect(await databasesLike()).toEqual([])
  })
})

describe('Function: validateClickHouseManifest', () => {
  it('accepts a valid manifest and refuses a damaged one without any database', () => {
    expect(() => validateClickHouseManifest(manifestWith([spans, errors]))).not.toThrow()
    const noObject = { ...manifestWith([spans, errors]), objects: [] }
    expect(() => validateClickHouseManifest(noObject)).toThrow(/table spans has no data object/)
    const dangling = manifestWith([
      errors,
      { ...spans, name: 'other', ddl: spans.ddl.replace('.spans', '.other') },
    ])
    expect(() => validateClickHouseManifest(dangling)).toThrow(
      /errors reads spans, which is not in the backup/,
    )
  })
})

describe('Function: parseDdl', () => {
  const expected = { database: 'db', name: 't', kind: 'view' }

  it('finds the tables a view reads through FROM, JOIN, IN and subqueries, not through EXTRACT(… FROM …)', () => {
    const parsed = parseDdl(
      `CREATE VIEW db.t (a String) AS SELECT EXTRACT(DAY FROM x.ts) AS d FROM db.a AS x
       LEFT JOIN (SELECT * FROM db.b) AS y USING k ARRAY JOIN x.tags AS tag
       WHERE k IN db.c AND k IN (SELECT k FROM \`db\`.\`d-1\`)`,
      expected,
    )
    expect(parsed.sources.map((s) => `${s.database}.${s.name}`)).toEqual(['db.a', 'db.b', 'db.c', 'db.d-1'])
  })

  it.each([
    ['a table function in a JOIN', 'CREATE VIEW db.t AS SELECT 1 FROM db.a JOIN numbers(10) AS n ON 1'],
    ['remote() in a subquery', "CREATE VIEW db.t AS SELECT (SELECT count() FROM remote('h', db.a))"],
    ['file() as a scalar function', "CREATE VIEW db.t AS SELECT file('/etc/passwd')"],
    ['a comment', 'CREATE VIEW db.t AS SELECT 1 -- hi'],
    ['a heredoc', 'CREATE VIEW db.t AS SELECT $$x$$'],
    ['OR REPLACE', 'CREATE OR REPLACE VIEW db.t AS SELECT 1'],
    ['an unterminated literal', "CREATE VIEW db.t AS SELECT 'x"],
    ['a control character', 'CREATE VIEW db.t AS SELECT 1\u0000'],
  ])('refuses %s', (_what, ddl) => {
    expect(() => parseDdl(ddl, expected)).toThrow(UntrustedInputError)
  })

  it('rewrites database qualifiers but never literals or other identifiers', () => {
    const ddl = "CREATE VIEW db.t AS SELECT 'db.a' AS s, x.db FROM db.a AS x JOIN `db`.b USING k"
    expect(retargetDdl(ddl, 'db', 'new', 'all')).toBe(
      "CREATE VIEW `new`.t AS SELECT 'db.a' AS s, x.db FROM `new`.a AS x JOIN `new`.b USING k",
    )
    expect(retargetDdl(ddl, 'db', 'new', 'head')).toBe(
      "CREATE VIEW `new`.t AS SELECT 'db.a' AS s, x.db FROM db.a AS x JOIN `db`.b USING k",
    )
  })
})
