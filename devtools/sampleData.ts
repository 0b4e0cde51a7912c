/**
 * Deterministic LangSight-like data for the demo, the tests and the benchmarks: the Postgres
 * config tables (users, API keys, projects, alert and SLO config) and the ClickHouse trace tables
 * (health checks, agent sessions, tool-call spans, schema snapshots, a daily cost MV). Same scale,
 * same data: rows are derived from their row number, never from a random source.
 */
import pg from 'pg'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'

/** Postgres rows per table at scale 1 (spans-like bulk lives in ClickHouse). */
const PG_ROWS = 2_000

export async function seedPostgres(url: string, scale = 1): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const n = Math.max(10, Math.round(PG_ROWS * scale))
  try {
    await client.query(`
      CREATE TYPE user_role AS ENUM ('admin', 'member', 'viewer');
      CREATE TABLE users (
        id bigserial PRIMARY KEY,
        email text NOT NULL UNIQUE CHECK (position('@' in email) > 1),
        role user_role NOT NULL DEFAULT 'member',
        created_at timestamptz NOT NULL DEFAULT now(),
        preferences jsonb NOT NULL DEFAULT '{}'
      );
      CREATE TABLE projects (
        id bigserial PRIMARY KEY,
        owner_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name text NOT NULL,
        tags text[] NOT NULL DEFAULT '{}',
        mcp_servers jsonb NOT NULL DEFAULT '[]'
      );
      CREATE INDEX projects_owner ON projects(owner_id);
      CREATE TABLE api_keys (
        id bigserial PRIMARY KEY,
        project_id bigint NOT NULL REFERENCES projects(id),
        key_hash bytea NOT NULL,
        prefix text NOT NULL,
        revoked boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL
      );
      CREATE UNIQUE INDEX api_keys_hash ON api_keys(key_hash);
      CREATE TABLE alert_configs (
        id serial PRIMARY KEY,
        project_id bigint NOT NULL REFERENCES projects(id),
        rule jsonb NOT NULL,
        threshold numeric(12,4) NOT NULL CHECK (threshold >= 0),
        notes text
      );
      CREATE TABLE slo_definitions (
        id serial PRIMARY KEY,
        project_id bigint NOT NULL REFERENCES projects(id),
        target double precision NOT NULL CHECK (target > 0 AND target <= 100),
        window_days integer[] NOT NULL
      );
      CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
      INSERT INTO alembic_version VALUES ('0007_slo_windows');
      CREATE VIEW active_keys AS SELECT id, project_id, prefix FROM api_keys WHERE NOT revoked;
    `)
    await client.query(
      `INSERT INTO users (email, role, created_at, preferences)
       SELECT 'user' || i || '@example.com', (ARRAY['admin','member','viewer'])[1 + i % 3]::user_role,
              timestamptz '2026-01-01 00:00:00+00' + i * interval '37 minutes',
              jsonb_build_object('theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END, 'tz', 'UTC', 'n', i)
       FROM generate_series(1, $1) i`,
      [n],
    )
    await client.query(
      `INSERT INTO projects (owner_id, name, tags, mcp_servers)
       SELECT 1 + i % $1, 'project ' || i, ARRAY['env:' || (i % 3), 'team:' || (i % 7)],
              jsonb_build_array(jsonb_build_object('name', 'mcp-' || i, 'url', 'https://mcp' || i || '.internal'))
       FROM generate_series(1, $1) i`,
      [n],
    )
    await client.query(
      `INSERT INTO api_keys (project_id, key_hash, prefix, revoked, created_at)
       SELECT 1 + i % $1, sha256(('key-' || i)::bytea), 'ls_' || substr(md5(i::text), 1, 8), i % 11 = 0,
              timestamptz '2026-02-01 00:00:00+00' + i * interval '1 hour'
       FROM generate_series(1, $1) i`,
      [n],
    )
    await client.query(
      `INSERT INTO alert_configs (project_id, rule, threshold, notes)
       SELECT 1 + i % $1, jsonb_build_object('metric', 'error_rate', 'op', '>', 'window', '5m'), (i % 100) / 7.0,
              repeat('note ' || i || ' ', 1 + i % 50)
       FROM generate_series(1, $1) i`,
      [n],
    )
    await client.query(
      `INSERT INTO slo_definitions (project_id, target, window_days)
       SELECT 1 + i % $1, 90 + (i % 10), ARRAY[1, 7, 30]
       FROM generate_series(1, $1) i`,
      [n],
    )
  } finally {
    await client.end()
  }
}

/** md5 of every table's rows in key order, plus each sequence's last value: equal hashes, equal data. */
export async function postgresContentHash(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const tables = await client.query<{ name: string }>(
      `SELECT quote_ident(table_name) AS name FROM information_schema.tables
       WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
    )
    const out: Record<string, string> = {}
    for (const { name } of tables.rows) {
      const r = await client.query<{ h: string; n: string }>(
        `SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS h, count(*) AS n FROM ${name} t`,
      )
      out[name] = `${r.rows[0]!.n}:${r.rows[0]!.h}`
    }
    const seqs = await client.query<{ name: string; last: string | null }>(
      `SELECT sequencename AS name, last_value::text AS last FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1`,
    )
    for (const s of seqs.rows) out[`sequence ${s.name}`] = s.last ?? 'unset'
    return out
  } finally {
    await client.end()
  }
}

export type ClickHouseFlavor = 'modern' | 'legacy'

/** ClickHouse rows of the spans table at scale 1; the other tables are derived from it. */
const CH_SPANS = 200_000

/**
 * The ClickHouse trace tables. `modern` (chdb, current servers) uses DateTime64, LowCardinality,
 * Map and TTL; `legacy` (18.16) the same shapes in the syntax that server knows.
 */
export async function seedClickHouse(
  conn: ClickHouseConnection,
  database: string,
  options: { scale?: number; flavor: ClickHouseFlavor },
): Promise<void> {
  const spans = Math.max(100, Math.round(CH_SPANS * (options.scale ?? 1)))
  const modern = options.flavor === 'modern'
  const db = `\`${database}\``
  const ts = modern ? 'DateTime64(3)' : 'DateTime'
  const lc = (t: string) => (modern ? `LowCardinality(${t})` : t)
  const toTs = (expr: string) => (modern ? `toDateTime64(${expr}, 3)` : `toDateTime(${expr})`)
  await conn.command(`CREATE DATABASE IF NOT EXISTS ${db}`)
  await conn.command(`CREATE TABLE ${db}.tool_call_spans (
      span_id UInt64, session_id UInt64, project_id UInt32, server_name ${lc('String')}, tool_name ${lc('String')},
      started_at ${ts}, latency_ms Float64, status Enum8('ok' = 1, 'error' = 2, 'timeout' = 3),
      error Nullable(String), cost_usd Float64, tags Array(String)${modern ? ', attributes Map(String, String)' : ''}
    ) ENGINE = MergeTree() PARTITION BY toYYYYMM(started_at) ORDER BY (project_id, started_at, span_id)`)
  await conn.command(`CREATE TABLE ${db}.agent_sessions (
      session_id UInt64, project_id UInt32, agent ${lc('String')}, started_at ${ts}, ended_at Nullable(${ts}),
      spans UInt32, total_cost_usd Float64, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(started_at) ORDER BY (project_id, session_id)`)
  await conn.command(`CREATE TABLE ${db}.health_checks (
      server_name ${lc('String')}, checked_at ${ts}, status Enum8('UP' = 1, 'DOWN' = 2, 'DEGRADED' = 3), latency_ms UInt32
    ) ENGINE = MergeTree() PARTITION BY toYYYYMM(checked_at) ORDER BY (server_name, checked_at)
    ${modern ? 'TTL toDateTime(checked_at) + INTERVAL 5 YEAR' : ''}`)
  await conn.command(`CREATE TABLE ${db}.mcp_schema_snapshots (
      server_name String, tool_name String, captured_at DateTime, description String, schema_hash FixedString(16)
    ) ENGINE = MergeTree() ORDER BY (server_name, tool_name, captured_at)`)
  await conn.command(
    `CREATE TABLE ${db}.drift_alerts (server_name String, raised_at DateTime) ENGINE = MergeTree() ORDER BY raised_at`,
  )
  await conn.command(`CREATE TABLE ${db}.daily_costs (
      day Date, project_id UInt32, spans UInt64, cost_usd Float64
    ) ENGINE = SummingMergeTree() ORDER BY (day, project_id)`)
  await conn.command(`CREATE MATERIALIZED VIEW ${db}.daily_costs_mv TO ${db}.daily_costs AS
      SELECT toDate(started_at) AS day, project_id, count() AS spans, sum(cost_usd) AS cost_usd
      FROM ${db}.tool_call_spans GROUP BY day, project_id`)
  // Deterministic pseudo-random values: hashes of the row number. Spread over 14 months of partitions.
  const base = 1767225600 // 2026-01-01T00:00:00Z
  await conn.command(`INSERT INTO ${db}.tool_call_spans SELECT
      number AS span_id, intDiv(number, 8) AS session_id, toUInt32(intDiv(number, 8) % 50) AS project_id,
      concat('mcp-', toString(cityHash64(number, 1) % 20)) AS server_name,
      concat('tool_', toString(cityHash64(number, 2) % 60)) AS tool_name,
      ${toTs(`${base} + intDiv(number * 36000000, ${spans})`)} AS started_at,
      (cityHash64(number, 3) % 100000) / 100.0 AS latency_ms,
      CAST(1 + (cityHash64(number, 4) % 3) AS Enum8('ok' = 1, 'error' = 2, 'timeout' = 3)) AS status,
      if(cityHash64(number, 5) % 10 = 0, concat('upstream error ', toString(number)), NULL) AS error,
      (cityHash64(number, 6) % 1000) / 100000.0 AS cost_usd,
      [concat('env:', toString(number % 3)), 'agent']${modern ? ", map('model', concat('m', toString(number % 5)), 'region', 'eu')" : ''}
    FROM numbers(${spans})`)
  await conn.command(`INSERT INTO ${db}.agent_sessions SELECT
      number AS session_id, toUInt32(number % 50), concat('agent-', toString(number % 9)),
      ${toTs(`${base} + intDiv(number * 8 * 36000000, ${spans})`)},
      if(number % 13 = 0, NULL, ${toTs(`${base} + intDiv(number * 8 * 36000000, ${spans}) + 600`)}),
      8, (cityHash64(number) % 1000) / 1000.0, 1
    FROM numbers(${Math.ceil(spans / 8)})`)
  await conn.command(`INSERT INTO ${db}.health_checks SELECT
      concat('mcp-', toString(number % 20)), ${toTs(`${base} + number * 60`)},
      CAST(1 + (cityHash64(number) % 3) AS Enum8('UP' = 1, 'DOWN' = 2, 'DEGRADED' = 3)), toUInt32(cityHash64(number, 9) % 5000)
    FROM numbers(${Math.ceil(spans / 4)})`)
  await conn.command(`INSERT INTO ${db}.mcp_schema_snapshots SELECT
      concat('mcp-', toString(number % 20)), concat('tool_', toString(number % 60)), toDateTime(${base} + number * 3600),
      concat('Reads ', toString(number), ' things; "quoted", back\\\\slash and newline\\nhere'), toFixedString(substring(MD5(toString(number)), 1, 16), 16)
    FROM numbers(${Math.ceil(spans / 100)})`)
}

/** Per table: row count and an order-independent hash of every row. */
export async function clickhouseContentHash(
  conn: ClickHouseConnection,
  database: string,
): Promise<Record<string, string>> {
  const tables = await conn.query<{ name: string }>(
    `SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT IN ('View', 'MaterializedView') AND NOT startsWith(name, '.inner') ORDER BY name`,
    { db: database },
  )
  const out: Record<string, string> = {}
  for (const { name } of tables) {
    const [row] = await conn.query<{ n: string; h: string }>(
      `SELECT count() AS n, toString(groupBitXor(cityHash64(*))) AS h FROM \`${database}\`.\`${name}\``,
    )
    out[name] = `${row!.n}:${row!.h}`
  }
  // Aggregates as the application reads them: a SummingMergeTree collapsed by a GROUP BY.
  const [costs] = await conn.query<{ h: string }>(
    `SELECT toString(groupBitXor(cityHash64(day, project_id, spans, round(cost_usd, 6)))) AS h FROM
       (SELECT day, project_id, sum(spans) AS spans, sum(cost_usd) AS cost_usd FROM \`${database}\`.daily_costs GROUP BY day, project_id)`,
  )
  out['daily_costs (aggregated)'] = costs!.h
  return out
}
