import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { deleteObjects, listObjects } from '#catalog/objectStore.ts'
import { PgVersionError } from '#core/errors.ts'
import { postgresContentHash, seedPostgres } from '#devtools/sampleData.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { pgToolVersion } from '#engines/postgres/pgTool.ts'
import { restorePostgresFromS3 } from '#engines/postgres/restorePostgresFromS3.ts'

/**
 * The pg tools layer (PostgreSQL 17, scripts/build-postgres.sh) against servers of two majors:
 * the 15 of Debian 12 and a 17 built from the same source package. The layer's binaries run as
 * Lambda runs them: an environment of their own (engines/postgres/pgTool.ts toolEnv) with the
 * layer's lib/ as the only library path.
 */
const servers = inject('servers')
const NOT_BUILT = 'PostgreSQL 17 is not built on this machine: run `bash scripts/setup.sh` once (README.md)'
if (!servers.postgres17 || !servers.pgLayerBinDir) throw new Error(NOT_BUILT)
const postgres17 = servers.postgres17
const layer = servers.pgLayerBinDir
const bucket = process.env.LSB_BUCKET!
const prefix = `t-versions-${randomUUID().slice(0, 8)}/`

const SERVERS = [
  { name: 'PostgreSQL 15', major: 15, ...servers.postgres },
  { name: 'PostgreSQL 17', major: 17, ...postgres17 },
]

function urlFor(server: { port: number; password: string }, database: string): string {
  return `postgres://postgres:${encodeURIComponent(server.password)}@127.0.0.1:${server.port}/${database}`
}

async function createDatabase(server: { port: number; password: string }, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: urlFor(server, 'postgres') })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.end()
  }
  return urlFor(server, name)
}

afterAll(async () => {
  const keys: string[] = []
  for await (const o of listObjects(bucket, prefix)) keys.push(o.key)
  await deleteObjects(bucket, keys)
})

describe('Function: the pg tools layer', () => {
  it('is PostgreSQL 17, built here', async () => {
    // Act
    const [dump, restore] = await Promise.all([
      pgToolVersion('pg_dump', layer),
      pgToolVersion('pg_restore', layer),
    ])
    // Assess
    expect(dump.major).toBe(17)
    expect(restore.major).toBe(17)
    expect(dump.version).toContain('langsight-backup build of Debian')
  })
})

describe.each(SERVERS)('Function: dump and restore with the 17 layer — $name', (server) => {
  it('backs up and restores into a server of the same major, pg_restore --exit-on-error included', async () => {
    // Prepare
    const run = randomUUID().slice(0, 8)
    const sourceUrl = await createDatabase(server, `lsb_ver_src_${run}`)
    await seedPostgres(sourceUrl, 0.2)
    const targetUrl = await createDatabase(server, `lsb_ver_dst_${run}`)
    const key = `${prefix}pg${server.major}-${run}.dump`
    // Act
    const dump = await dumpPostgresToS3({
      url: sourceUrl,
      bucket,
      key,
      compression: 'auto',
      binDir: layer,
    })
    const restored = await restorePostgresFromS3({ url: targetUrl, bucket, key, binDir: layer })
    // Assess
    expect(dump.dumpToolVersion).toMatch(/^17\./)
    expect(dump.compression).toBe('zstd:1') // what auto picks with pg_dump 17
    expect(dump.serverVersion).toMatch(new RegExp(`^${server.major}\\.`))
    expect(restored.tables).toBeGreaterThan(0)
    expect(await postgresContentHash(targetUrl)).toEqual(await postgresContentHash(sourceUrl))
  }, 120_000)
})

describe('Function: the version preflight', () => {
  it('refuses pg_dump 15 against a 17 server before any work, naming both versions and what to change', async () => {
    // Prepare
    const run = randomUUID().slice(0, 8)
    const url = await createDatabase(postgres17, `lsb_ver_old_${run}`)
    const key = `${prefix}refused-${run}.dump`
    // Act
    const error = await dumpPostgresToS3({
      url,
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir: servers.postgres.binDir,
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(PgVersionError)
    expect(error.message).toMatch(/pg_dump 15\.\d+/)
    expect(error.message).toContain('PostgreSQL 17.')
    expect(error.message).toContain('LSB_PG_BIN_DIR')
    expect(error.message).toContain('pg tools layer')
    const stored: string[] = []
    for await (const o of listObjects(bucket, key)) stored.push(o.key)
    expect(stored).toEqual([])
  })
})
