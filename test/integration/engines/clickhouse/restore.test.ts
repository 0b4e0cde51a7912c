import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { backupIdFor, manifestKey, tableDataKey } from '#core/backupKeys.ts'
import { ChecksumMismatchError, ClickHouseError } from '#core/errors.ts'
import { type Manifest, parseManifest } from '#core/manifest.ts'
import { PREVIOUS_SUFFIX } from '#core/names.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import { storedColumns } from '#engines/clickhouse/describeDatabase.ts'
import { exportTableToS3 } from '#engines/clickhouse/exportTable.ts'
import { listClickHouseTables } from '#engines/clickhouse/listTables.ts'
import { commitClickHouseRestore } from '#engines/clickhouse/restore/commit.ts'
import { restoreClickHouseObject } from '#engines/clickhouse/restore/load.ts'
import { prepareClickHouseRestore } from '#engines/clickhouse/restore/prepare.ts'
import { qualifiedName, quoteIdentifier } from '#engines/clickhouse/sql.ts'
import { storedFile } from '../../../support/storedObjects.ts'

const { clickhouse, s3 } = inject('servers')
const bucket = s3.bucket
const suffix = randomBytes(3).toString('hex')
const chdbDir = mkdtempSync(join(tmpdir(), 'lsb-chdb-restore-'))

interface Engine {
  name: string
  url: (database: string) => string
  /** DDL of the source database `db`, in creation order. */
  schema: (db: string) => string[]
  /** One batch of rows; called several times so Summing/Replacing tables hold unmerged parts. */
  load: (db: string, batch: number) => string[]
  settings: Record<string, number>
}

const current: Engine = {
  name: 'chdb (ClickHouse 26)',
  url: (db) => `chdb://${chdbDir}?database=${db}`,
  settings: {},
  schema: (db) => [
    `CREATE TABLE ${db}.spans (
       span_id UUID, trace_id String, started_at DateTime64(3, 'UTC'), kind LowCardinality(String),
       cost Nullable(Float64), tags Array(String), attrs Map(String, String),
       status Enum8('ok' = 1, 'error' = 2), amount Decimal(18, 4),
       day Date MATERIALIZED toDate(started_at), trace_len UInt64 ALIAS length(trace_id)
     ) ENGINE = MergeTree PARTITION BY toYYYYMM(started_at) ORDER BY (trace_id, started_at)
     TTL toDateTime(started_at) + INTERVAL 50 YEAR`,
    `CREATE TABLE ${db}.sessions (session_id String, version UInt32, agent LowCardinality(String))
     ENGINE = ReplacingMergeTree(version) ORDER BY session_id`,
    `CREATE TABLE ${db}.cost_by_kind (kind LowCardinality(String), calls UInt64, cost Float64)
     ENGINE = SummingMergeTree ORDER BY kind`,
    `CREATE MATERIALIZED VIEW ${db}.cost_by_kind_mv TO ${db}.cost_by_kind AS
     SELECT kind, count() AS calls, sum(ifNull(cost, 0)) AS cost FROM ${db}.spans GROUP BY kind`,
    `CREATE MATERIALIZED VIEW ${db}.calls_by_day ENGINE = SummingMergeTree ORDER BY day AS
     SELECT toDate(started_at) AS day, count() AS calls FROM ${db}.spans GROUP BY day`,
    `CREATE VIEW ${db}.errors AS SELECT trace_id, started_at FROM ${db}.spans WHERE status = 'error'`,
    `CREATE VIEW ${db}.error_days AS SELECT toDate(started_at) AS d, count() AS n FROM ${db}.errors GROUP BY d`,
    `CREATE TABLE ${db}.empty_table (id UInt64, note String) ENGINE = MergeTree ORDER BY id`,
    `CREATE TABLE ${db}.notes (note String) ENGINE = Log`,
  ],
  load: (db, batch) => [
    `INSERT INTO ${db}.spans (span_id, trace_id, started_at, kind, cost, tags, attrs, status, amount)
     SELECT generateUUIDv4(), concat('t', toString(number % 500)),
            addSeconds(toDateTime64('2025-01-01 00:00:00', 3, 'UTC'), (number * 7919 + ${batch}) % 31536000),
            ['llm', 'tool', 'agent'][number % 3 + 1], if(number % 5 = 0, NULL, number / 100),
            arrayMap(i -> toString(i), range(number % 4)), map('model', toString(number % 7)),
            if(number % 11 = 0, 'error', 'ok'), toDecimal64(number, 4) / 3
     FROM numbers(${4000 + batch * 1000})`,
    `INSERT INTO ${db}.sessions SELECT concat('s', toString(number % 300)), ${batch}, ['a', 'b'][number % 2 + 1] FROM numbers(400)`,
    `INSERT INTO ${db}.notes VALUES ('batch ${batch}'), ('it''s \\'quoted\\'')`,
  ],
}

const legacy: Engine = {
  name: `clickhouse-server ${clickhouse.version} (HTTP)`,
  url: (db) => `http://default:${encodeURIComponent(clickhouse.password)}@127.0.0.1:${clickhouse.port}/${db}`,
  settings: { allow_experimental_low_cardinality_type: 1 },
  schema: (db) => [
    `CREATE TABLE ${db}.spans (
       span_id String, trace_id String, started_at DateTime, kind LowCardinality(String),
       cost Nullable(Float64), tags Array(String), status Enum8('ok' = 1, 'error' = 2),
       day Date MATERIALIZED toDate(started_at), trace_len UInt64 ALIAS length(trace_id)
     ) ENGINE = MergeTree PARTITION BY toYYYYMM(started_at) ORDER BY (trace_id, started_at)`,
    `CREATE TABLE ${db}.sessions (session_id String, version UInt32, agent LowCardinality(String))
     ENGINE = ReplacingMergeTree(version) ORDER BY session_id`,
    `CREATE TABLE ${db}.cost_by_kind (kind LowCardinality(String), calls UInt64, cost Float64)
     ENGINE = SummingMergeTree ORDER BY kind`,
    `CREATE MATERIALIZED VIEW ${db}.cost_by_kind_mv TO ${db}.cost_by_kind AS
     SELECT kind, count() AS calls, sum(ifNull(cost, 0)) AS cost FROM ${db}.spans GROUP BY kind`,
    `CREATE MATERIALIZED VIEW ${db}.calls_by_day ENGINE = SummingMergeTree ORDER BY day AS
     SELECT toDate(started_at) AS day, count() AS calls FROM ${db}.spans GROUP BY day`,
    `CREATE VIEW ${db}.errors AS SELECT trace_id, started_at FROM ${db}.spans WHERE status = 'error'`,
    `CREATE VIEW ${db}.error_days AS SELECT toDate(started_at) AS d, count() AS n FROM ${db}.errors GROUP BY d`,
    `CREATE TABLE ${db}.empty_table (id UInt64, note String) ENGINE = MergeTree ORDER BY id`,
    `CREATE TABLE ${db}.notes (note String) ENGINE = Log`,
  ],
  load: (db, batch) => [
    `INSERT INTO ${db}.spans (span_id, trace_id, started_at, kind, cost, tags, status)
     SELECT toString(generateUUIDv4()), concat('t', toString(number % 500)),
            toDateTime('2025-01-01 00:00:00') + (number * 7919 + ${batch}) % 31536000,
            ['llm', 'tool', 'agent'][number % 3 + 1], if(number % 5 = 0, NULL, number / 100),
            arrayMap(i -> toString(i), range(number % 4)), if(number % 11 = 0, 'error', 'ok')
     FROM numbers(${4000 + batch * 1000})`,
    `INSERT INTO ${db}.sessions SELECT concat('s', toString(number % 300)), ${batch}, ['a', 'b'][number % 2 + 1] FROM numbers(400)`,
    `INSERT INTO ${db}.notes VALUES ('batch ${batch}'), ('it''s \\'quoted\\'')`,
  ],
}

/**
 * What a table holds, independent of background merges: raw rows for plain tables, the merged
 * view (FINAL, or sums per key) for tables whose merges collapse rows.
 */
async function contents(conn: ClickHouseConnection, db: string): Promise<Record<string, string>> {
  const views: Record<string, string> = {
    sessions: `SELECT * FROM ${db}.sessions FINAL`,
    cost_by_kind: `SELECT kind, sum(calls) AS calls, round(sum(cost), 6) AS cost FROM ${db}.cost_by_kind GROUP BY kind`,
    calls_by_day: `SELECT day, sum(calls) AS calls FROM ${db}.calls_by_day GROUP BY day`,
    errors: `SELECT * FROM ${db}.errors`,
    error_days: `SELECT * FROM ${db}.error_days`,
  }
  const out: Record<string, string> = {}
  const present = new Set(
    (
      await conn.query<{ name: string }>('SELECT name FROM system.tables WHERE database = {d:String}', {
        d: db,
      })
    ).map((r) => r.name),
  )
  for (const table of ['spans', 'notes', 'empty_table', ...Object.keys(views)]) {
    if (!present.has(table)) {
      out[table] = 'missing'
      continue
    }
    const columns = views[table]
      ? (await conn.query<{ name: string }>(`DESCRIBE (${views[table]})`)).map((c) => c.name)
      : await storedColumns(conn, db, table)
    const source = views[table] ? `(${views[table]})` : qualifiedName(db, table)
    const hashed = columns.map((c) => `toString(${quoteIdentifier(c)})`).join(', ')
    const [row] = await conn.query<{ lsb_n: string; lsb_h: string }>(
      `SELECT toString(count()) AS lsb_n, toString(groupBitXor(cityHash64(${hashed}))) AS lsb_h FROM ${source}`,
    )
    out[table] = `${row!.lsb_n} rows, hash ${row!.lsb_h}`
  }
  return out
}

/** list → export every item → manifest, as the backup state machine does. */
async function backup(
  conn: ClickHouseConnection,
  prefix: string,
  splitBytes = 1 << 30,
  include: string[] = [],
): Promise<Manifest> {
  const startedAt = new Date().toISOString()
  const backupId = backupIdFor(startedAt)
  const listing = await listClickHouseTables(conn, { include, exclude: [], splitBytes })
  const objects = []
  for (const item of listing.items) {
    const key = tableDataKey(prefix, backupId, item.table, item.part)
    objects.push(await exportTableToS3(conn, { item, bucket, key, gzipLevel: 1 }))
  }
  return parseManifest(
    {
      formatVersion: 1,
      backupId,
      engine: 'clickhouse',
      prefix,
      startedAt,
      finishedAt: new Date().toISOString(),
      toolVersion: 'test',
      source: { serverVersion: listing.serverVersion, database: listing.database },
      objects,
      tables: listing.tables,
    },
    manifestKey(prefix, 'clickhouse', backupId),
  )
}

/** prepare → every object → commit, as the restore state machine does. */
async function restore(conn: ClickHouseConnection, manifest: Manifest, targetDatabase: string) {
  const { stagingDatabase, items } = await prepareClickHouseRestore(conn, { manifest, targetDatabase })
  for (const item of items) await restoreClickHouseObject(conn, { targetDatabase, item, bucket })
  expect(stagingDatabase).toBe(`${targetDatabase}__lsb_restore`)
  return commitClickHouseRestore(conn, { manifest, targetDatabase })
}

async function databases(conn: ClickHouseConnection, like: string): Promise<string[]> {
  const rows = await conn.query<{ name: string }>(
    'SELECT name FROM system.databases WHERE startsWith(name, {p:String}) ORDER BY name',
    { p: like },
  )
  return rows.map((r) => r.name)
}

describe.each([current, legacy])('Function: commitClickHouseRestore — $name', (engine) => {
  const db = `lsb_restore_${engine === current ? 'chdb' : 'http'}_${suffix}`
  const prefix = `ch-restore/${db}`
  let conn: ClickHouseConnection
  let manifest: Manifest
  let before: Record<string, string>

  beforeAll(async () => {
    conn = await connectClickHouse(engine.url(db))
    await conn.command(`CREATE DATABASE ${db}`)
    for (const sql of engine.schema(db)) await conn.command(sql, undefined, engine.settings)
    for (const batch of [1, 2, 3]) for (const sql of engine.load(db, batch)) await conn.command(sql)
    // merges would change the raw rows of the Summing/Replacing tables between backup and check
    for (const t of ['sessions', 'cost_by_kind', 'spans']) await conn.command(`SYSTEM STOP MERGES ${db}.${t}`)
    before = await contents(conn, db)
    manifest = await backup(conn, prefix, 64 * 1024)
  })

  afterAll(async () => {
    for (const d of await databases(conn, db)) await conn.command(`DROP DATABASE ${quoteIdentifier(d)}`)
    await conn.close()
    if (engine === current) rmSync(chdbDir, { recursive: true, force: true })
  })

  it('records kinds, dependencies and an object per partition of a big table', () => {
    const byName = Object.fromEntries(manifest.tables.map((t) => [t.name, t]))
    expect(byName.cost_by_kind_mv).toMatchObject({ kind: 'materialized_view', target: 'cost_by_kind' })
    expect(byName.cost_by_kind_mv!.dependsOn).toEqual(['cost_by_kind', 'spans'])
    expect(byName.calls_by_day!.target).toMatch(/^\.inner(_id)?\./)
    expect(byName.error_days!.dependsOn).toEqual(['errors'])
    const order = manifest.tables.map((t) => t.name)
    expect(order.indexOf('error_days')).toBeGreaterThan(order.indexOf('errors'))
    expect(manifest.objects.filter((o) => o.table === 'spans').length).toBe(12)
    expect(manifest.objects.find((o) => o.table === 'empty_table')).toMatchObject({ rows: 0, part: 'all' })
    const spansRows = manifest.objects.filter((o) => o.table === 'spans').reduce((n, o) => n + o.rows!, 0)
    expect(`${spansRows} rows`).toBe(before.spans!.split(',')[0])
  })

  it('restores into a new database with the same content, aggregates included', async () => {
    // Prepare
    const target = `${db}_copy`
    // Act
    const result = await restore(conn, manifest, target)
    // Assess
    expect(await contents(conn, target)).toEqual(before)
    expect(result.tables.map((t) => t.name).sort()).toEqual(
      ['calls_by_day', 'cost_by_kind', 'empty_table', 'notes', 'sessions', 'spans'].sort(),
    )
    expect(await databases(conn, target)).toEqual([target])
  })

  it('restores in place: changed data is replaced and kept in __lsb_previous; MVs fire once afterwards', async () => {
    // Prepare: the live database drifts after the backup
    for (const sql of engine.load(db, 9)) await conn.command(sql)
    await conn.command(`DROP TABLE ${db}.notes`)
    const drifted = await contents(conn, db)
    expect(drifted).not.toEqual(before)
    // Act
    await restore(conn, manifest, db)
    // Assess
    expect(await contents(conn, db)).toEqual(before)
    const previous = await conn.query<{ name: string }>(
      'SELECT name FROM system.tables WHERE database = {d:String} ORDER BY name',
      { d: `${db}${PREVIOUS_SUFFIX}` },
    )
    expect(previous.map((r) => r.name)).toEqual(
      expect.arrayContaining(['cost_by_kind', 'errors', 'sessions', 'spans']),
    )
    const [spansBefore] = await conn.query<{ n: string }>(
      `SELECT toString(count()) AS n FROM ${db}${PREVIOUS_SUFFIX}.spans`,
    )
    expect(`${spansBefore!.n} rows`).toBe(drifted.spans!.split(',')[0])
    // the recreated views are live again: one new span reaches both aggregates exactly once
    const [callsBefore] = await conn.query<{ n: string }>(
      `SELECT toString(sum(calls)) AS n FROM ${db}.cost_by_kind`,
    )
    await conn.command(
      engine === current
        ? `INSERT INTO ${db}.spans (span_id, trace_id, started_at, kind, status) VALUES (generateUUIDv4(), 'x', now64(3), 'llm', 'ok')`
        : `INSERT INTO ${db}.spans (span_id, trace_id, started_at, kind, status) VALUES ('x', 'x', now(), 'llm', 'ok')`,
    )
    const [callsAfter] = await conn.query<{ n: string }>(
      `SELECT toString(sum(calls)) AS n FROM ${db}.cost_by_kind`,
    )
    const [daysAfter] = await conn.query<{ n: string }>(
      `SELECT toString(sum(calls)) AS n FROM ${db}.calls_by_day`,
    )
    expect(Number(callsAfter!.n)).toBe(Number(callsBefore!.n) + 1)
    expect(Number(daysAfter!.n)).toBe(Number(callsBefore!.n) + 1)
  })

  it('a truncated object fails its restore, leaves the target unchanged, and a second restore succeeds', async () => {
    // Prepare: the target holds the backup; cut one stored object in half
    const target = `${db}_fault`
    await restore(conn, manifest, target)
    for (const sql of engine.load(db, 7)) await conn.command(sql.replaceAll(`${db}.`, `${target}.`))
    const live = await contents(conn, target)
    const victim = manifest.objects.find((o) => o.table === 'spans')!
    const file = storedFile(victim.key)
    const original = readFileSync(file)
    writeFileSync(file, original.subarray(0, Math.floor(original.length / 2)))
    try {
      // Act
      const { items } = await prepareClickHouseRestore(conn, {
        manifest,
        targetDatabase: target,
      })
      const failures: unknown[] = []
      for (const item of items) {
        await restoreClickHouseObject(conn, { targetDatabase: target, item, bucket }).catch((e) =>
          failures.push(e),
        )
      }
      // Assess
      expect(failures).toHaveLength(1)
      expect(failures[0]).toBeInstanceOf(ChecksumMismatchError)
      expect(String((failures[0] as Error).message)).toContain(victim.key)
      expect(await contents(conn, target)).toEqual(live)
      // a commit attempted anyway refuses: the staging counts do not match the manifest
      const commit = commitClickHouseRestore(conn, { manifest, targetDatabase: target })
      await expect(commit).rejects.toThrow(/table spans: staging holds \d+ rows, the backup \d+/)
      expect(await contents(conn, target)).toEqual(live)
    } finally {
      writeFileSync(file, original)
    }
    await restore(conn, manifest, target)
    expect(await contents(conn, target)).toEqual(before)
  })

  it('a Native stream cut inside a block (checksums consistent) fails the insert, not silently short', async () => {
    // Prepare: a well-formed gzip of half the Native bytes, and a manifest whose checksum matches it
    const target = `${db}_cut`
    const victim = manifest.objects.find((o) => o.table === 'sessions')!
    const file = storedFile(victim.key)
    const original = readFileSync(file)
    const native = gunzipSync(original)
    const cut = gzipSync(native.subarray(0, Math.floor(native.length / 2)))
    writeFileSync(file, cut)
    const tampered = structuredClone(manifest)
    Object.assign(tampered.objects.find((o) => o.key === victim.key)!, {
      bytes: cut.length,
      sha256: createHash('sha256').update(cut).digest('hex'),
    })
    try {
      const { stagingDatabase, items } = await prepareClickHouseRestore(conn, {
        manifest: tampered,
        targetDatabase: target,
      })
      const item = items.find((i) => i.key === victim.key)!
      // Act
      const failure = restoreClickHouseObject(conn, { targetDatabase: target, item, bucket })
      // Assess
      await expect(failure).rejects.toBeInstanceOf(ClickHouseError)
      await expect(failure).rejects.toThrow(/invalid Native stream: it ends inside block/)
      expect(await databases(conn, target)).toEqual([stagingDatabase])
    } finally {
      writeFileSync(file, original)
    }
  })

  it('a retried object replaces its own earlier rows instead of doubling them', async () => {
    // Prepare: one partition of spans and the whole sessions table, each loaded twice
    const { stagingDatabase, items } = await prepareClickHouseRestore(conn, {
      manifest,
      targetDatabase: `${db}_retry`,
    })
    const targetDatabase = `${db}_retry`
    const partition = items.find((i) => i.table === 'spans')!
    const whole = items.find((i) => i.table === 'sessions')!
    for (const item of [partition, whole, partition, whole]) {
      // Act
      await restoreClickHouseObject(conn, { targetDatabase, item, bucket })
    }
    // Assess
    const [p] = await conn.query<{ n: string }>(
      `SELECT toString(count()) AS n FROM ${stagingDatabase}.spans WHERE _partition_id = {p:String}`,
      { p: partition.partitions?.[0] },
    )
    const [w] = await conn.query<{ n: string }>(
      `SELECT toString(count()) AS n FROM ${stagingDatabase}.sessions`,
    )
    expect([Number(p!.n), Number(w!.n)]).toEqual([partition.rows, whole.rows])
    await conn.command(`DROP DATABASE ${stagingDatabase}`)
  })

  /** Restores one object of `manifest` with one of its stored bytes flipped; returns what it threw. */
  async function restoreCorrupted(m: Manifest, key: string, at: (length: number) => number) {
    const file = storedFile(key)
    const original = readFileSync(file)
    const corrupted = Buffer.from(original)
    corrupted[at(corrupted.length)]! ^= 0x01
    writeFileSync(file, corrupted)
    try {
      const targetDatabase = `${db}_corrupt`
      const { items } = await prepareClickHouseRestore(conn, { manifest: m, targetDatabase })
      const item = items.find((i) => i.key === key)!
      return await restoreClickHouseObject(conn, { targetDatabase, item, bucket }).then(
        () => undefined,
        (e: unknown) => e,
      )
    } finally {
      writeFileSync(file, original)
    }
  }

  it('a corrupted byte in the gzip trailer is a ChecksumMismatchError naming the object', async () => {
    const victim = manifest.objects.find((o) => o.table === 'sessions')!
    // in the gzip CRC: only a checksum notices
    const failure = await restoreCorrupted(manifest, victim.key, (n) => n - 5)
    expect(failure).toBeInstanceOf(ChecksumMismatchError)
    expect((failure as Error).message).toContain(`s3 object ${victim.key}:`)
    expect((failure as Error).message).toContain(`expected ${victim.bytes} bytes sha256 ${victim.sha256}`)
  })

  it('a corrupted byte anywhere in a large object is a ChecksumMismatchError, not the gunzip or parse error it causes first', async () => {
    // Prepare: a table whose object spans many reads (~1 MB of gzip), backed up on its own
    const table = 'lsb_blobs'
    await conn.command(`CREATE TABLE ${db}.${table} (id UInt64, body String) ENGINE = MergeTree ORDER BY id`)
    try {
      await conn.command(
        `INSERT INTO ${db}.${table} SELECT number, concat(hex(MD5(toString(number))), hex(MD5(toString(number + 1000000000)))) FROM numbers(40000)`,
      )
      const blobs = await backup(conn, `${prefix}-blobs`, 1 << 30, [table])
      const victim = blobs.objects[0]!
      expect(victim.bytes).toBeGreaterThan(4 * 256 * 1024)
      // Act: at each of these places the flipped byte breaks gunzip or the Native parser first
      const failures = []
      for (const at of [0.01, 0.1, 0.3, 0.5, 0.9]) {
        failures.push(await restoreCorrupted(blobs, victim.key, (n) => Math.floor(n * at)))
      }
      // Assess
      for (const failure of failures) {
        expect(failure).toBeInstanceOf(ChecksumMismatchError)
        expect((failure as Error).message).toContain(`s3 object ${victim.key}:`)
        expect((failure as Error).message).toContain(`expected ${victim.bytes} bytes sha256 ${victim.sha256}`)
      }
    } finally {
      await conn.command(`DROP TABLE IF EXISTS ${db}.${table}`)
    }
  })
})
