import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { deleteObjects, listObjects, openObject } from '#catalog/objectStore.ts'
import { loadSettings, pgDumpCompression } from '#core/config.ts'
import { ConfigError } from '#core/errors.ts'
import { postgresContentHash, seedPostgres } from '#devtools/sampleData.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { libraryPathFor } from '#engines/postgres/pgTool.ts'
import { restorePostgresFromS3 } from '#engines/postgres/restorePostgresFromS3.ts'

/**
 * LSB_PG_COMPRESSION with real tools: the pg tools layer (pg_dump 17, built with zstd and lz4)
 * against the PostgreSQL 17 server, and Debian's pg_dump 15, which knows only gzip levels.
 */
const servers = inject('servers')
const NOT_BUILT = 'PostgreSQL 17 is not built on this machine: run `bash scripts/setup.sh` once (README.md)'
if (!servers.postgres17 || !servers.pgLayerBinDir) throw new Error(NOT_BUILT)
const postgres17 = servers.postgres17
const layer = servers.pgLayerBinDir
const bucket = process.env.LSB_BUCKET!
const prefix = `t-compression-${randomUUID().slice(0, 8)}/`
const scratch: string[] = []

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

async function storedKeys(key: string): Promise<string[]> {
  const keys: string[] = []
  for await (const o of listObjects(bucket, key)) keys.push(o.key)
  return keys
}

/** The compression pg_restore --list reads from an archive's header. */
async function archiveCompression(key: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lsb-archive-'))
  scratch.push(dir)
  const file = join(dir, 'dump')
  const chunks: Buffer[] = []
  for await (const chunk of await openObject(bucket, key)) chunks.push(chunk as Buffer)
  writeFileSync(file, Buffer.concat(chunks))
  const pgRestore = join(layer, 'pg_restore')
  const list = execFileSync(pgRestore, ['--list', file], {
    env: { LD_LIBRARY_PATH: libraryPathFor(pgRestore), LC_ALL: 'C' },
  }).toString()
  return /^;\s+Compression: (\S+)/m.exec(list)?.[1] ?? list.slice(0, 500)
}

/**
 * A pg_dump 17 like one built without zstd: it refuses zstd as a build without it does, before
 * connecting, and hands everything else to the layer's pg_dump.
 */
function pgDumpWithoutZstd(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lsb-nozstd-'))
  scratch.push(dir)
  const script = join(dir, 'pg_dump')
  writeFileSync(
    script,
    `#!/bin/sh
for arg in "$@"; do
  case "$arg" in --compress=zstd*) echo 'pg_dump: error: this build does not support compression with zstd' >&2; exit 1 ;; esac
done
LD_LIBRARY_PATH='${join(layer, '..', 'lib')}' exec '${join(layer, 'pg_dump')}' "$@"
`,
  )
  chmodSync(script, 0o755)
  return dir
}

afterAll(async () => {
  for (const path of scratch) rmSync(path, { recursive: true, force: true })
  await deleteObjects(bucket, await storedKeys(prefix))
})

describe('Function: dumpPostgresToS3 — compression', () => {
  it.each([
    ['zstd:3', 'zstd'],
    ['lz4:1', 'lz4'],
    ['gzip:6', 'gzip'],
    ['none', 'none'],
  ])(
    'dumps with LSB_PG_COMPRESSION=%s and pg_dump 17, and restores identical data',
    async (setting, header) => {
      // Prepare
      const run = randomUUID().slice(0, 8)
      const sourceUrl = await createDatabase(postgres17, `lsb_cmp_src_${run}`)
      await seedPostgres(sourceUrl, 0.2)
      const targetUrl = urlFor(postgres17, `lsb_cmp_dst_${run}`)
      const key = `${prefix}${setting.replace(':', '-')}-${run}.dump`
      const compression = pgDumpCompression(loadSettings({ LSB_BUCKET: bucket, LSB_PG_COMPRESSION: setting }))
      // Act
      const dump = await dumpPostgresToS3({ url: sourceUrl, bucket, key, compression, binDir: layer })
      const restored = await restorePostgresFromS3({ url: targetUrl, bucket, key, binDir: layer })
      // Assess
      expect(dump.compression).toBe(setting)
      expect(await archiveCompression(key)).toBe(header)
      expect(restored.tables).toBeGreaterThan(0)
      expect(await postgresContentHash(targetUrl)).toEqual(await postgresContentHash(sourceUrl))
    },
    120_000,
  )

  it("refuses zstd with PostgreSQL 15's pg_dump before any work, naming the setting and the version", async () => {
    // Prepare
    const run = randomUUID().slice(0, 8)
    const url = await createDatabase(servers.postgres, `lsb_cmp_old_${run}`)
    const key = `${prefix}refused-${run}.dump`
    const compression = pgDumpCompression(loadSettings({ LSB_BUCKET: bucket, LSB_PG_COMPRESSION: 'zstd:1' }))
    // Act
    const error = await dumpPostgresToS3({
      url,
      bucket,
      key,
      compression,
      binDir: servers.postgres.binDir,
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toMatch(/^LSB_PG_COMPRESSION=zstd:1 needs pg_dump 16 or newer, but pg_dump 15\.\d+/)
    expect(error.message).toContain(join(servers.postgres.binDir, 'pg_dump'))
    expect(error.message).toContain('LSB_PG_BIN_DIR')
    expect(await storedKeys(key)).toEqual([])
  })

  it('picks gzip:1 for auto with pg_dump 15, which restores identical data', async () => {
    // Prepare
    const run = randomUUID().slice(0, 8)
    const sourceUrl = await createDatabase(servers.postgres, `lsb_cmp_auto_${run}`)
    await seedPostgres(sourceUrl, 0.1)
    const targetUrl = urlFor(servers.postgres, `lsb_cmp_autodst_${run}`)
    const key = `${prefix}auto15-${run}.dump`
    const binDir = servers.postgres.binDir
    // Act
    const dump = await dumpPostgresToS3({ url: sourceUrl, bucket, key, compression: 'auto', binDir })
    await restorePostgresFromS3({ url: targetUrl, bucket, key, binDir })
    // Assess
    expect(dump.compression).toBe('gzip:1')
    expect(await postgresContentHash(targetUrl)).toEqual(await postgresContentHash(sourceUrl))
  }, 120_000)

  it('falls back to gzip:1 for auto with a pg_dump 17 built without zstd, and refuses an explicit zstd', async () => {
    // Prepare
    const run = randomUUID().slice(0, 8)
    const url = await createDatabase(postgres17, `lsb_cmp_nozstd_${run}`)
    await seedPostgres(url, 0.05)
    const binDir = pgDumpWithoutZstd()
    const key = `${prefix}nozstd-${run}.dump`
    // Act
    const auto = await dumpPostgresToS3({ url, bucket, key, compression: 'auto', binDir })
    const explicit = await dumpPostgresToS3({
      url,
      bucket,
      key: `${key}.zstd`,
      compression: { method: 'zstd', level: 1 },
      binDir,
    }).catch((e) => e)
    // Assess
    expect(auto.compression).toBe('gzip:1')
    expect(await archiveCompression(key)).toBe('gzip')
    expect(explicit).toBeInstanceOf(ConfigError)
    expect(explicit.message).toMatch(/^LSB_PG_COMPRESSION=zstd:1: pg_dump 17\.\S+ .* was built without zstd/)
    expect(await storedKeys(`${key}.zstd`)).toEqual([])
  }, 120_000)
})
