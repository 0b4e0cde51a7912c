import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { deleteObjects, listObjects, openObject, putBytes } from '#catalog/objectStore.ts'
import { resetConfig } from '#core/config.ts'
import { ConfigError, PgRestoreError, StallError, TransientError, UntrustedInputError } from '#core/errors.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { parseLoadMarker } from '#engines/postgres/loadMarker.ts'
import { loadPostgresFromS3 } from '#engines/postgres/loadPostgresFromS3.ts'
import { restorePostgresFromS3 } from '#engines/postgres/restorePostgresFromS3.ts'
import { swapInRestoredPostgres } from '#engines/postgres/swapInRestoredPostgres.ts'
import { startFaultProxy } from '../../../support/faultProxy.ts'

const { postgres: server, s3 } = inject('servers')
const bucket = s3.bucket
const run = `${process.pid}_${Date.now().toString(36)}`
const prefix = `pgrestore-${run}/`
// A non-superuser with CREATEDB (like a managed database's application user) and a password full of URL syntax.
const role = `lsb_restorer_${run}`
const password = `p@ss:w/rd?#&%'" ${run}`
const binDir = server.binDir

function urlFor(database: string, user = role, secret = password): string {
  return `postgres://${user}:${encodeURIComponent(secret)}@127.0.0.1:${server.port}/${database}`
}

/** A superuser session, or with `asRole` one of the restoring role (like the application's own sessions). */
async function connect(database: string, asRole = false): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: asRole ? urlFor(database) : urlFor(database, 'postgres', server.password),
  })
  client.on('error', () => {})
  await client.connect()
  return client
}

async function sql(database: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = await connect(database)
  try {
    return await client.query(text, params)
  } finally {
    await client.end()
  }
}

async function databasesLike(pattern: string): Promise<string[]> {
  const { rows } = await sql('postgres', 'SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1', [
    pattern,
  ])
  return rows.map((r) => r.datname)
}

/** md5 of every table's rows (and the view's), sequence positions, and the definitions of indexes and constraints. */
async function fingerprint(database: string): Promise<Record<string, unknown>> {
  const client = await connect(database)
  try {
    const out: Record<string, unknown> = {}
    const relations = await client.query(
      `SELECT quote_ident(table_name) AS name FROM information_schema.tables
        WHERE table_schema = 'public' ORDER BY 1`,
    )
    for (const { name } of relations.rows) {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS md5 FROM ${name} t`,
      )
      out[`rows:${name}`] = rows[0]
    }
    const sequences = await client.query(
      "SELECT quote_ident(sequencename) AS name, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    )
    for (const { name, last_value } of sequences.rows) out[`seq:${name}`] = last_value
    const { rows: definitions } = await client.query(
      `SELECT indexdef AS def FROM pg_indexes WHERE schemaname = 'public'
       UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
       ORDER BY 1`,
    )
    out.definitions = definitions.map((r) => r.def)
    return out
  } finally {
    await client.end()
  }
}

/** A database shaped like LangSight's: enum, jsonb, arrays, bytea, timestamptz, a few MB of text, FKs, checks, a view. */
async function createLangSightLike(database: string): Promise<void> {
  await sql('postgres', `CREATE DATABASE ${database} OWNER ${role}`)
  const client = new pg.Client({ connectionString: urlFor(database) })
  await client.connect()
  try {
    await client.query(`
      CREATE TYPE alert_severity AS ENUM ('info', 'warning', 'critical');
      CREATE TABLE users (
        id bigserial PRIMARY KEY,
        email text NOT NULL UNIQUE CHECK (email LIKE '%_@_%'),
        roles text[] NOT NULL DEFAULT '{viewer}',
        created_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE api_keys (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        key_hash bytea NOT NULL CHECK (octet_length(key_hash) = 32),
        scopes text[] NOT NULL,
        last_used_at timestamptz);
      CREATE TABLE projects (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL,
        owner_id bigint NOT NULL REFERENCES users (id),
        config jsonb NOT NULL DEFAULT '{}');
      CREATE INDEX projects_config ON projects USING gin (config);
      CREATE TABLE alert_configs (
        id serial PRIMARY KEY,
        project_id uuid NOT NULL REFERENCES projects (id),
        severity alert_severity NOT NULL,
        threshold numeric(12, 4) NOT NULL CHECK (threshold >= 0),
        rule jsonb NOT NULL);
      CREATE TABLE fired_alerts (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        alert_id int NOT NULL REFERENCES alert_configs (id),
        fired_at timestamptz NOT NULL,
        payload text NOT NULL);
      CREATE INDEX fired_alerts_recent ON fired_alerts (alert_id, fired_at DESC);
      CREATE VIEW critical_alerts AS
        SELECT a.id, p.name, count(f.id) AS fired FROM alert_configs a
          JOIN projects p ON p.id = a.project_id LEFT JOIN fired_alerts f ON f.alert_id = a.id
         WHERE a.severity = 'critical' GROUP BY a.id, p.name;
      CREATE SEQUENCE invite_token_seq START 1000;

      INSERT INTO users (email, roles, created_at)
        SELECT 'user' || g || '@example.com', ARRAY['viewer', CASE WHEN g % 10 = 0 THEN 'admin' END],
               timestamptz '2026-01-01 00:00:00+00' + g * interval '37 min 13.123456 s'
          FROM generate_series(1, 1000) g;
      DELETE FROM users WHERE id = 1000; -- the sequence is now past max(id)
      INSERT INTO api_keys (user_id, key_hash, scopes, last_used_at)
        SELECT g, sha256(('key' || g)::bytea), '{read,write}', CASE WHEN g % 3 = 0 THEN now() END
          FROM generate_series(1, 999) g;
      INSERT INTO projects (name, owner_id, config)
        SELECT 'project ' || g, g, jsonb_build_object('servers', jsonb_build_array('mcp-' || g, 'mcp-x'),
               'label', 'naïve ✓ 日本 "quoted" \\ back', 'limits', jsonb_build_object('n', g, 'f', g * 1.5, 'none', null))
          FROM generate_series(1, 50) g;
      INSERT INTO alert_configs (project_id, severity, threshold, rule)
        SELECT p.id, (ARRAY['info', 'warning', 'critical']::alert_severity[])[1 + g % 3], g / 7.0,
               jsonb_build_object('metric', 'latency_p99', 'gt', g)
          FROM generate_series(1, 200) g JOIN LATERAL (SELECT id FROM projects ORDER BY name OFFSET g % 50 LIMIT 1) p ON true;
      INSERT INTO fired_alerts (alert_id, fired_at, payload)
        SELECT 1 + g % 200, timestamptz '2026-02-01 12:00:00+05:30' + g * interval '1 s', 'line 1' || E'\\n\\t' || md5(g::text)
          FROM generate_series(1, 5000) g;
      -- a few MB of text in one value (TOASTed)
      INSERT INTO fired_alerts (alert_id, fired_at, payload)
        SELECT 1, now(), string_agg(md5(g::text), '') FROM generate_series(1, 131072) g;
      SELECT nextval('invite_token_seq') FROM generate_series(1, 5);
    `)
  } finally {
    await client.end()
  }
}

async function databaseComment(database: string): Promise<string | null> {
  const { rows } = await sql(
    'postgres',
    "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
    [database],
  )
  return rows[0].comment
}

async function storedKeys(key: string): Promise<string[]> {
  const keys: string[] = []
  for await (const o of listObjects(bucket, key)) keys.push(o.key)
  return keys
}

async function objectBytes(key: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of await openObject(bucket, key)) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

function errorText(error: unknown): string {
  const parts: string[] = []
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    parts.push(String(e.message ?? e))
  }
  return parts.join('\n')
}

beforeAll(async () => {
  const client = await connect('postgres')
  try {
    await client.query(`CREATE ROLE ${role} LOGIN CREATEDB PASSWORD ${client.escapeLiteral(password)}`)
  } finally {
    await client.end()
  }
})

afterAll(async () => {
  for (const db of await databasesLike(`%${run}%`))
    await sql('postgres', `DROP DATABASE "${db}" WITH (FORCE)`)
  await sql('postgres', `DROP ROLE IF EXISTS ${role}`)
  await deleteObjects(bucket, await storedKeys(prefix))
})

// Both ways pg_restore reads the dump: streamed from S3 (one job), and a local copy with -j 2.
describe.each([1, 2])('Function: restorePostgresFromS3 — LSB_PG_RESTORE_JOBS=%i', (jobs) => {
  const tag = `${run}_j${jobs}`
  const keyPrefix = `${prefix}j${jobs}/`
  beforeAll(() => {
    process.env.LSB_PG_RESTORE_JOBS = String(jobs)
    resetConfig()
  })
  afterAll(() => {
    delete process.env.LSB_PG_RESTORE_JOBS
    resetConfig()
  })

  it('round-trips a LangSight-like database and swaps it in place of the changed one', async () => {
    // Prepare: dump, then change, delete and drop things in the live database while a client stays connected
    const db = `lsb_rt_${tag}`
    const key = `${keyPrefix}roundtrip.dump`
    await createLangSightLike(db)
    const before = await fingerprint(db)
    const dump = await dumpPostgresToS3({
      url: urlFor(db),
      bucket,
      key,
      compression: { method: 'gzip', level: 6 },
      binDir,
    })
    await sql(
      db,
      `DELETE FROM fired_alerts WHERE id % 2 = 0; UPDATE users SET email = 'changed' || email WHERE id < 10;
       DROP VIEW critical_alerts; DROP TABLE api_keys; INSERT INTO users (email) VALUES ('late@example.com');
       SELECT setval('invite_token_seq', 5000)`,
    )
    const lingering = await connect(db, true)
    let progress = 0
    // Act
    const result = await restorePostgresFromS3({
      url: urlFor(db),
      bucket,
      key,
      binDir,
      onProgress: (bytes) => {
        progress = bytes
      },
    })
    // Assess: same content, sequences, indexes and constraints as when dumped
    expect(result).toEqual({ database: db, previousDatabase: `${db}__lsb_previous`, tables: 5 })
    expect(progress).toBe(dump.bytes)
    expect(await fingerprint(db)).toEqual(before)
    expect(JSON.stringify(result)).not.toContain(password)
    const { rows: next } = await sql(
      db,
      "INSERT INTO users (email) VALUES ('new@example.com') RETURNING id, nextval('invite_token_seq') AS invite",
    )
    expect(next[0]).toEqual({ id: '1001', invite: '1005' })
    const violations: Record<string, string> = {
      "INSERT INTO users (email) VALUES ('not-an-email')": '23514',
      "INSERT INTO users (email) VALUES ('user1@example.com')": '23505',
      "INSERT INTO api_keys (user_id, key_hash, scopes) VALUES (999999, sha256('x'), '{}')": '23503',
      "INSERT INTO api_keys (user_id, key_hash, scopes) VALUES (1, 'short', '{}')": '23514',
      "INSERT INTO alert_configs (project_id, severity, threshold, rule) SELECT id, 'fatal', 1, '{}' FROM projects LIMIT 1":
        '22P02',
    }
    for (const [statement, code] of Object.entries(violations)) {
      await expect(sql(db, statement), statement).rejects.toMatchObject({ code })
    }
    // The session on the replaced database was ended; the replaced data is kept under the previous name.
    await expect(lingering.query('SELECT 1')).rejects.toThrow()
    await lingering.end().catch(() => {})
    const { rows: previousTables } = await sql(
      `${db}__lsb_previous`,
      "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'api_keys'",
    )
    expect(previousTables[0].n).toBe(0)
    expect(await databasesLike(`${db}__lsb_restoring`)).toEqual([])
  }, 120_000)

  it('leaves the live database intact when the dump breaks half-way, then restores a good one', async () => {
    // Prepare: a dump, a truncated copy and a copy with corrupted bytes in the middle; a leftover from an earlier failure
    const db = `lsb_fail_${tag}`
    await createLangSightLike(db)
    const goodKey = `${keyPrefix}fail/good.dump`
    await dumpPostgresToS3({
      url: urlFor(db),
      bucket,
      key: goodKey,
      compression: { method: 'gzip', level: 6 },
      binDir,
    })
    const good = await objectBytes(goodKey)
    const truncatedKey = `${keyPrefix}fail/truncated.dump`
    await putBytes(
      bucket,
      truncatedKey,
      good.subarray(0, Math.floor(good.length / 2)),
      'application/octet-stream',
    )
    const corrupted = Buffer.from(good)
    corrupted.fill(0x5a, Math.floor(corrupted.length / 2), Math.floor(corrupted.length / 2) + 64)
    const corruptedKey = `${keyPrefix}fail/corrupted.dump`
    await putBytes(bucket, corruptedKey, corrupted, 'application/octet-stream')
    await sql(db, "UPDATE users SET roles = '{changed}' WHERE id = 1; DROP VIEW critical_alerts")
    const live = await fingerprint(db)
    await sql('postgres', `CREATE DATABASE ${db}__lsb_restoring OWNER ${role}`)
    await sql(`${db}__lsb_restoring`, 'CREATE TABLE half_restored (x int)')
    // Act
    const truncated = await restorePostgresFromS3({
      url: urlFor(db),
      bucket,
      key: truncatedKey,
      binDir,
    }).catch((e) => e)
    const broken = await restorePostgresFromS3({ url: urlFor(db), bucket, key: corruptedKey, binDir }).catch(
      (e) => e,
    )
    // Assess: each failure names pg_restore's complaint, and nothing changed
    expect(truncated).toBeInstanceOf(PgRestoreError)
    expect(truncated.message).toContain(`s3://${bucket}/${truncatedKey}`)
    expect(truncated.message).toContain(`127.0.0.1:${server.port}/${db}__lsb_restoring`)
    expect(truncated.message).toMatch(/pg_restore: error: could not read from input file: end of file/)
    expect(broken).toBeInstanceOf(PgRestoreError)
    expect(broken.message).toMatch(/pg_restore: error: /)
    for (const e of [truncated, broken]) expect(errorText(e)).not.toContain(password)
    expect(await fingerprint(db)).toEqual(live)
    expect(await databasesLike(`${db}__lsb_%`)).toEqual([])
    // Act again: the good dump
    const result = await restorePostgresFromS3({ url: urlFor(db), bucket, key: goodKey, binDir })
    // Assess
    expect(result).toEqual({ database: db, previousDatabase: `${db}__lsb_previous`, tables: 5 })
    const { rows } = await sql(db, 'SELECT roles FROM users WHERE id = 1')
    expect(rows[0].roles).toEqual(['viewer', null])
    expect(await fingerprint(`${db}__lsb_previous`)).toEqual(live)
  }, 120_000)

  it('restores into a database that does not exist yet, and again over it, keeping one previous copy', async () => {
    // Prepare
    const source = `lsb_src_${tag}`
    const target = `lsb_new_${tag}`
    const key = `${keyPrefix}new.dump`
    await createLangSightLike(source)
    await dumpPostgresToS3({
      url: urlFor(source),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir,
    })
    // Act
    const first = await restorePostgresFromS3({ url: urlFor(target), bucket, key, binDir })
    await sql(target, "INSERT INTO users (email) VALUES ('between@example.com')")
    const second = await restorePostgresFromS3({ url: urlFor(target), bucket, key, binDir })
    const third = await restorePostgresFromS3({ url: urlFor(target), bucket, key, binDir })
    // Assess
    expect(first).toEqual({ database: target, previousDatabase: null, tables: 5 })
    expect(second.previousDatabase).toBe(`${target}__lsb_previous`)
    expect(third.previousDatabase).toBe(`${target}__lsb_previous`)
    expect(await databasesLike(`${target}%`)).toEqual([target, `${target}__lsb_previous`])
    expect(await fingerprint(target)).toEqual(await fingerprint(source))
    const { rows } = await sql(
      `${target}__lsb_previous`,
      "SELECT count(*)::int AS n FROM users WHERE email = 'between@example.com'",
    )
    expect(rows[0].n).toBe(0) // the third restore replaced the copy that had it
  }, 120_000)

  it('keeps the live database when a session it may not end blocks the swap', async () => {
    // Prepare: a superuser stays connected; the restoring role may not disconnect it
    const db = `lsb_busy_${tag}`
    const key = `${keyPrefix}busy.dump`
    await createLangSightLike(db)
    await dumpPostgresToS3({
      url: urlFor(db),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir,
    })
    await sql(db, 'DELETE FROM fired_alerts')
    const live = await fingerprint(db)
    const admin = await connect(db)
    // Act
    const error = await restorePostgresFromS3({ url: urlFor(db), bucket, key, binDir }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(PgRestoreError)
    expect(error.message).toContain(`is being accessed by other users`)
    expect(error.message).toContain(`1 session(s) of ${db} belong to roles this user may not disconnect`)
    expect(errorText(error)).not.toContain(password)
    await expect(admin.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] })
    await admin.end()
    expect(await fingerprint(db)).toEqual(live)
    expect(await databasesLike(`${db}%`)).toEqual([db])
  }, 120_000)

  it('stops on the abort signal, drops the half-restored database and keeps the live one', async () => {
    // Prepare: a database large enough that pg_restore is still running when the signal fires
    const db = `lsb_abort_${tag}`
    const key = `${keyPrefix}abort.dump`
    await sql('postgres', `CREATE DATABASE ${db} OWNER ${role}`)
    await sql(
      db,
      `CREATE TABLE spans AS SELECT g AS id, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 16) i) AS body
         FROM generate_series(1, 100000) g; ALTER TABLE spans OWNER TO ${role}`,
    )
    await dumpPostgresToS3({
      url: urlFor(db),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir,
    })
    await sql(db, 'DELETE FROM spans WHERE id > 10')
    const controller = new AbortController()
    // Act
    const error = await restorePostgresFromS3({
      url: urlFor(db),
      bucket,
      key,
      binDir,
      signal: controller.signal,
      onProgress: (bytes) => {
        if (bytes > 0) controller.abort(new Error('Lambda timeout approaching'))
      },
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(PgRestoreError)
    expect(error.message).toContain('aborted (Error: Lambda timeout approaching)')
    expect(await databasesLike(`${db}%`)).toEqual([db])
    const { rows } = await sql(db, 'SELECT count(*)::int AS n FROM spans')
    expect(rows[0].n).toBe(10)
  }, 120_000)

  it('refuses names that cannot take the suffixes, and a missing object, before touching anything', async () => {
    // Prepare
    const long = `l${'x'.repeat(48)}` // 49 bytes: with __lsb_restoring that is 64 > 63
    const missingKey = `${keyPrefix}missing.dump`
    const db = `lsb_missing_${tag}`
    // Act
    const tooLong = await restorePostgresFromS3({ url: urlFor(long), bucket, key: missingKey, binDir }).catch(
      (e) => e,
    )
    const working = await restorePostgresFromS3({
      url: urlFor(`x__lsb_previous`),
      bucket,
      key: missingKey,
      binDir,
    }).catch((e) => e)
    const missing = await restorePostgresFromS3({ url: urlFor(db), bucket, key: missingKey, binDir }).catch(
      (e) => e,
    )
    // Assess
    expect(tooLong).toBeInstanceOf(UntrustedInputError)
    expect(tooLong.message).toContain('longer than 48 bytes')
    expect(working).toBeInstanceOf(UntrustedInputError)
    expect(missing).toBeInstanceOf(PgRestoreError)
    expect(missing.message).toContain(`s3://${bucket}/${missingKey}`)
    expect(await databasesLike(`%${long}%`)).toEqual([])
    expect(await databasesLike(`${db}%`)).toEqual([])
    expect(await storedKeys(missingKey)).toEqual([])
  })

  it('accepts a 48-byte name whose working names are exactly 63 bytes', async () => {
    const db = `lsb_${tag}_`.padEnd(48, 'y')
    const key = `${keyPrefix}long-name.dump`
    await createLangSightLike(`lsb_ln_${tag}`)
    await dumpPostgresToS3({
      url: urlFor(`lsb_ln_${tag}`),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir,
    })
    await sql('postgres', `CREATE DATABASE "${db}" OWNER ${role}`)
    const result = await restorePostgresFromS3({ url: urlFor(db), bucket, key, binDir })
    expect(result.previousDatabase).toHaveLength(62)
    expect(await databasesLike(`${db}%`)).toEqual([db, `${db}__lsb_previous`])
  })
})

describe('Function: loadPostgresFromS3 and swapInRestoredPostgres', () => {
  const gzip1 = { method: 'gzip', level: 1 } as const

  it('loads into <db>__lsb_restoring, marked complete, leaving the live database and its sessions alone; the swap then puts it in place', async () => {
    // Prepare: dump, then change the live database while a client stays connected
    const db = `lsb_load_${run}`
    const key = `${prefix}load.dump`
    await createLangSightLike(db)
    const dumped = await fingerprint(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    await sql(db, 'DELETE FROM fired_alerts WHERE id % 3 = 0; DROP VIEW critical_alerts')
    const live = await fingerprint(db)
    const lingering = await connect(db, true)
    // Act
    const loaded = await loadPostgresFromS3({ url: urlFor(db), bucket, key, binDir })
    // Assess: the load is complete and marked; nothing of the live database changed
    expect(loaded).toEqual({
      database: db,
      restoringDatabase: `${db}__lsb_restoring`,
      tables: 5,
      pgRestore: { from: 'file', jobs: 2 }, // LSB_PG_RESTORE_JOBS's default
    })
    expect(await databasesLike(`${db}%`)).toEqual([db, `${db}__lsb_restoring`])
    expect(await fingerprint(db)).toEqual(live)
    await expect(lingering.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] })
    expect(await fingerprint(`${db}__lsb_restoring`)).toEqual(dumped)
    expect(parseLoadMarker(await databaseComment(`${db}__lsb_restoring`))).toMatchObject({
      source: `s3://${bucket}/${key}`,
      tables: 5,
    })
    // Act again: the swap
    const swapped = await swapInRestoredPostgres({ url: urlFor(db), bucket, key })
    // Assess: as restorePostgresFromS3 always did, and the marker went with the working name
    expect(swapped).toEqual({ database: db, previousDatabase: `${db}__lsb_previous`, tables: 5 })
    expect(await databasesLike(`${db}%`)).toEqual([db, `${db}__lsb_previous`])
    expect(await fingerprint(db)).toEqual(dumped)
    expect(await fingerprint(`${db}__lsb_previous`)).toEqual(live)
    expect(await databaseComment(db)).toBeNull()
    await expect(lingering.query('SELECT 1')).rejects.toThrow()
    await lingering.end().catch(() => {})
  }, 120_000)

  it('refuses to swap a restoring database that is absent, unmarked or the load of another dump, and changes nothing', async () => {
    // Prepare
    const db = `lsb_refuse_${run}`
    const key = `${prefix}refuse.dump`
    const otherKey = `${prefix}refuse-other.dump`
    await createLangSightLike(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    await sql(db, 'DELETE FROM users WHERE id > 900')
    const live = await fingerprint(db)
    const swap = (k = key) => swapInRestoredPostgres({ url: urlFor(db), bucket, key: k }).catch((e) => e)
    // Act / Assess: no restoring database
    const absent = await swap()
    expect(absent).toBeInstanceOf(PgRestoreError)
    expect(absent.message).toBe(
      `cannot swap ${db}__lsb_restoring in place of 127.0.0.1:${server.port}/${db}: it does not exist ` +
        `(load s3://${bucket}/${key} with loadPostgresFromS3 first); nothing was changed`,
    )
    expect(await databasesLike(`${db}%`)).toEqual([db])
    // Act / Assess: a half-restored database without the marker (a load that died with its Lambda)
    await sql('postgres', `CREATE DATABASE ${db}__lsb_restoring OWNER ${role}`)
    await sql(`${db}__lsb_restoring`, 'CREATE TABLE half_restored (x int)')
    await sql('postgres', `COMMENT ON DATABASE ${db}__lsb_restoring IS 'an operator''s note'`)
    const unmarked = await swap()
    expect(unmarked).toBeInstanceOf(PgRestoreError)
    expect(unmarked.message).toContain(`cannot swap ${db}__lsb_restoring in place of`)
    expect(unmarked.message).toContain('it is not marked as completely loaded')
    expect(unmarked.message).toContain('nothing was changed')
    expect(await databasesLike(`${db}%`)).toEqual([db, `${db}__lsb_restoring`])
    const { rows } = await sql(
      `${db}__lsb_restoring`,
      "SELECT to_regclass('half_restored') IS NOT NULL AS kept",
    )
    expect(rows[0].kept).toBe(true)
    // Act / Assess: a complete load, but of another dump than the one asked for
    await loadPostgresFromS3({ url: urlFor(db), bucket, key, binDir })
    const other = await swap(otherKey)
    expect(other).toBeInstanceOf(PgRestoreError)
    expect(other.message).toContain(
      `it holds a load of s3://${bucket}/${key}, not of s3://${bucket}/${otherKey}`,
    )
    expect(await databasesLike(`${db}%`)).toEqual([db, `${db}__lsb_restoring`])
    expect(await fingerprint(db)).toEqual(live)
    for (const e of [absent, unmarked, other]) expect(errorText(e)).not.toContain(password)
  }, 120_000)

  it('keeps the load when a session it may not end blocks the swap, and swaps on the next try', async () => {
    // Prepare
    const db = `lsb_retry_${run}`
    const key = `${prefix}retry.dump`
    await createLangSightLike(db)
    const dumped = await fingerprint(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    await sql(db, 'DELETE FROM fired_alerts')
    const live = await fingerprint(db)
    await loadPostgresFromS3({ url: urlFor(db), bucket, key, binDir })
    const superuser = await connect(db)
    // Act
    const blocked = await swapInRestoredPostgres({ url: urlFor(db), bucket, key }).catch((e) => e)
    // Assess
    expect(blocked).toBeInstanceOf(PgRestoreError)
    expect(blocked.message).toContain(`1 session(s) of ${db} belong to roles this user may not disconnect`)
    expect(await databasesLike(`${db}%`)).toEqual([db, `${db}__lsb_restoring`])
    expect(await fingerprint(db)).toEqual(live)
    // Act again, once that client has gone
    await superuser.end()
    const swapped = await swapInRestoredPostgres({ url: urlFor(db), bucket, key })
    // Assess
    expect(swapped.previousDatabase).toBe(`${db}__lsb_previous`)
    expect(await fingerprint(db)).toEqual(dumped)
  }, 120_000)

  it('load then swap ends where restorePostgresFromS3 ends', async () => {
    // Prepare: two identical databases (one a template copy of the other), both changed since the dump
    const one = `lsb_same1_${run}`
    const two = `lsb_same2_${run}`
    const key = `${prefix}same.dump`
    await createLangSightLike(one)
    await dumpPostgresToS3({ url: urlFor(one), bucket, key, compression: gzip1, binDir })
    await sql(one, "UPDATE projects SET name = 'renamed' WHERE name = 'project 7'")
    await sql('postgres', `CREATE DATABASE ${two} TEMPLATE ${one} OWNER ${role}`)
    // Act
    const restored = await restorePostgresFromS3({ url: urlFor(one), bucket, key, binDir })
    const loaded = await loadPostgresFromS3({ url: urlFor(two), bucket, key, binDir })
    const swapped = await swapInRestoredPostgres({ url: urlFor(two), bucket, key })
    // Assess
    expect(loaded.tables).toBe(restored.tables)
    expect(swapped).toEqual({
      database: two,
      previousDatabase: `${two}__lsb_previous`,
      tables: restored.tables,
    })
    expect(restored).toEqual({ database: one, previousDatabase: `${one}__lsb_previous`, tables: 5 })
    expect(await fingerprint(two)).toEqual(await fingerprint(one))
    expect(await fingerprint(`${two}__lsb_previous`)).toEqual(await fingerprint(`${one}__lsb_previous`))
    expect(await databasesLike(`${one}%`)).toEqual([one, `${one}__lsb_previous`])
    expect(await databasesLike(`${two}%`)).toEqual([two, `${two}__lsb_previous`])
    expect([await databaseComment(one), await databaseComment(two)]).toEqual([null, null])
  }, 120_000)
})

describe('Function: loadPostgresFromS3 — the local copy for pg_restore --jobs', () => {
  const gzip1 = { method: 'gzip', level: 1 } as const
  const tempDirs: string[] = []
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'lsb-restore-temp-'))
    tempDirs.push(dir)
    return dir
  }
  afterAll(() => {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  })

  /** A database big enough that pg_restore is still running a second after it started. */
  async function createSpans(db: string): Promise<void> {
    await sql('postgres', `CREATE DATABASE ${db} OWNER ${role}`)
    await sql(
      db,
      `CREATE TABLE spans AS SELECT g AS id, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 16) i) AS body
         FROM generate_series(1, 150000) g;
       ALTER TABLE spans ADD PRIMARY KEY (id); CREATE INDEX spans_body ON spans (body); ALTER TABLE spans OWNER TO ${role}`,
    )
  }

  /** The processes whose command line mentions `text` (pg_restore reading a copy under a test's own directory). */
  function processesMentioning(text: string): number[] {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)
        } catch {
          return false
        }
      })
      .map(Number)
  }

  it('restores from a copy in the temp dir with pg_restore -j 2 and removes the copy afterwards', async () => {
    // Prepare
    const db = `lsb_copy_${run}`
    const key = `${prefix}copy.dump`
    await createLangSightLike(db)
    const dumped = await fingerprint(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    const dir = tempDir()
    const seenDuringCopy: string[][] = []
    // Act
    const loaded = await loadPostgresFromS3({
      url: urlFor(db),
      bucket,
      key,
      binDir,
      jobs: 2,
      tempDir: dir,
      onProgress: () => seenDuringCopy.push(readdirSync(dir)),
    })
    // Assess
    expect(loaded.pgRestore).toEqual({ from: 'file', jobs: 2 })
    expect(seenDuringCopy.at(-1)).toEqual([expect.stringMatching(/^lsb-pgrestore-\d+-/)])
    expect(readdirSync(dir)).toEqual([])
    expect(await fingerprint(`${db}__lsb_restoring`)).toEqual(dumped)
  }, 120_000)

  it('removes the copy and drops the load when pg_restore is killed, leaving the live database', async () => {
    // Prepare
    const db = `lsb_kill_${run}`
    const key = `${prefix}kill.dump`
    await createSpans(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    await sql(db, 'DELETE FROM spans WHERE id > 10')
    const dir = tempDir()
    let killed: number[] = []
    const killer = setInterval(() => {
      const found = processesMentioning(dir)
      if (found.length === 0 || killed.length > 0) return
      killed = found
      for (const pid of found) process.kill(pid, 'SIGKILL')
    }, 20)
    // Act
    const error = await loadPostgresFromS3({ url: urlFor(db), bucket, key, binDir, jobs: 2, tempDir: dir })
      .catch((e) => e)
      .finally(() => clearInterval(killer))
    // Assess
    expect(killed.length).toBeGreaterThan(0)
    expect(error).toBeInstanceOf(PgRestoreError)
    expect(error.message).toContain(
      `pg_restore --jobs=2 of s3://${bucket}/${key} (copied to ${dir}/lsb-pgrestore-`,
    )
    expect(error.message).toContain('the live database is untouched')
    expect(readdirSync(dir)).toEqual([])
    expect(await databasesLike(`${db}%`)).toEqual([db])
    const { rows } = await sql(db, 'SELECT count(*)::int AS n FROM spans')
    expect(rows[0].n).toBe(10)
  }, 120_000)

  it.each([
    ['cut', 'a TransientError', TransientError, /lost its connection/],
    ['stall', 'a StallError', StallError, /no progress between pg_restore and the server for 5 s/],
  ] as const)(
    'a connection %s between pg_restore -j 2 and the server fails the load as %s, removing the copy',
    async (kind, _name, errorClass, message) => {
      // Prepare: pg_restore's connections pass a fault proxy, which breaks them 50 kB into the data
      const db = `lsb_${kind}_${run}`
      const key = `${prefix}${kind}.dump`
      await createSpans(db)
      await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
      const dir = tempDir()
      const proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port })
      const through = new URL(urlFor(db))
      through.port = String(proxy.port)
      process.env.LSB_STALL_SECONDS = '5'
      resetConfig()
      proxy.setFault({ kind, direction: 'upstream', afterBytes: 50_000 })
      // Act
      const started = performance.now()
      const error = await loadPostgresFromS3({
        url: through.toString(),
        bucket,
        key,
        binDir,
        jobs: 2,
        tempDir: dir,
      })
        .catch((e) => e)
        .finally(async () => {
          delete process.env.LSB_STALL_SECONDS
          resetConfig()
          await proxy.close()
        })
      // Assess
      expect(error).toBeInstanceOf(errorClass)
      expect(error.message).toMatch(message)
      expect(error.message).toContain(`pg_restore --jobs=2 of s3://${bucket}/${key}`)
      if (kind === 'stall') expect(performance.now() - started).toBeLessThan(30_000)
      expect(readdirSync(dir)).toEqual([])
      expect(await databasesLike(`${db}%`)).toEqual([db])
    },
    120_000,
  )

  it('streams when the copy would not fit, and says why', async () => {
    // Prepare: /proc reports no free space at all
    const db = `lsb_nofit_${run}`
    const key = `${prefix}nofit.dump`
    await createLangSightLike(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    // Act
    const loaded = await loadPostgresFromS3({
      url: urlFor(db),
      bucket,
      key,
      binDir,
      jobs: 2,
      tempDir: '/proc',
    })
    // Assess
    expect(loaded.pgRestore).toEqual({
      from: 'stream',
      reason: expect.stringMatching(
        /^the dump \(\d+\.\d [KM]iB\) does not fit in \/proc \(0 B free, 64\.0 MiB kept free;/,
      ),
    })
    expect(loaded.tables).toBe(5)
  }, 120_000)

  it('refuses a temp dir that does not exist, naming the setting, and drops the load', async () => {
    // Prepare
    const db = `lsb_nodir_${run}`
    const key = `${prefix}nodir.dump`
    await createLangSightLike(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    // Act
    const error = await loadPostgresFromS3({
      url: urlFor(db),
      bucket,
      key,
      binDir,
      jobs: 2,
      tempDir: '/nonexistent/lsb-restore',
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toContain(
      'the restore temp dir /nonexistent/lsb-restore (LSB_PG_RESTORE_TEMP_DIR) is not usable: ENOENT',
    )
    expect(await databasesLike(`${db}%`)).toEqual([db])
  }, 120_000)

  it('removes what a killed process left in the temp dir, and nothing of a running one', async () => {
    // Prepare: a leftover of a process that is gone, and a copy of one that runs (this one's parent)
    const db = `lsb_left_${run}`
    const key = `${prefix}left.dump`
    await createLangSightLike(db)
    await dumpPostgresToS3({ url: urlFor(db), bucket, key, compression: gzip1, binDir })
    const dir = tempDir()
    const gone = spawnSync('true').pid!
    for (const name of [`lsb-pgrestore-${gone}-abc123`, `lsb-pgrestore-${process.ppid}-def456`, 'other']) {
      mkdirSync(join(dir, name))
      writeFileSync(join(dir, name, 'dump'), 'x')
    }
    // Act
    await loadPostgresFromS3({ url: urlFor(db), bucket, key, binDir, jobs: 2, tempDir: dir })
    // Assess
    expect(readdirSync(dir).sort()).toEqual([`lsb-pgrestore-${process.ppid}-def456`, 'other'])
  }, 120_000)
})
