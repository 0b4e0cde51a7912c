// A stand-in for `alembic upgrade head`: brings the sample schema from 0007 to 0008, idempotently.
// It reads the database from LSB_POSTGRES_URL, exactly as the configured command would.
import pg from 'pg'

const client = new pg.Client({ connectionString: process.env.LSB_POSTGRES_URL })
await client.connect()
const { rows } = await client.query('SELECT version_num FROM alembic_version')
if (rows[0]?.version_num === '0007_slo_windows') {
  await client.query('BEGIN')
  await client.query(
    'CREATE TABLE feature_flags (name text PRIMARY KEY, enabled boolean NOT NULL DEFAULT false)',
  )
  await client.query(`UPDATE alembic_version SET version_num = '0008_feature_flags'`)
  await client.query('COMMIT')
}
await client.end()
