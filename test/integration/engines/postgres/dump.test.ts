import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { deleteObjects, hashObject, listObjects, openObject } from '#catalog/objectStore.ts'
import { ConfigError, PgDumpError, PgVersionError, TransientError } from '#core/errors.ts'
import { inspectPostgres } from '#engines/postgres/connectPostgres.ts'
import { dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
import { assertDumpToolCompatible, pgToolVersion } from '#engines/postgres/pgTool.ts'
import { parsePostgresUrl } from '#engines/postgres/postgresUrl.ts'

const { postgres: server, s3 } = inject('servers')
const bucket = s3.bucket
const run = `${process.pid}_${Date.now().toString(36)}`
const prefix = `pgtest-${run}/`
const bigDb = `lsb_dump_big_${run}`
const smallDb = `lsb_dump_small_${run}`

function urlFor(database: string, password = server.password, query = ''): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${server.port}/${database}${query}`
}

async function sql(database: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: urlFor(database) })
  await client.connect()
  try {
    return await client.query(text, params)
  } finally {
    await client.end()
  }
}

async function keysAt(key: string): Promise<string[]> {
  const keys: string[] = []
  for await (const o of listObjects(bucket, key)) keys.push(o.key)
  return keys
}

/** pg_dump processes of this test run that work on `database`, with their argv and environment. */
function pgDumpProcesses(database: string): { pid: string; argv: string[]; env: string[] }[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .flatMap((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
        if (!argv[0]?.endsWith('pg_dump') || !argv.includes(`--dbname=${database}`)) return []
        const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)
        return [{ pid, argv, env }]
      } catch {
        return [] // exited while we looked
      }
    })
}

/** Every text an error exposes: its message and its causes' messages. */
function errorText(error: unknown): string {
  const parts: string[] = []
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    parts.push(String(e.message ?? e))
  }
  return parts.join('\n')
}

/** A pg_dump stand-in: a shell script in its own directory, passed as binDir. */
function fakePgDump(script: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'lsb-fake-pgdump-'))
  writeFileSync(join(dir, 'pg_dump'), `#!/bin/sh\n${script}\n`)
  chmodSync(join(dir, 'pg_dump'), 0o755)
  return dir
}

beforeAll(async () => {
  await sql('postgres', `CREATE DATABASE ${bigDb}`)
  await sql('postgres', `CREATE DATABASE ${smallDb}`)
  // ~80 MB of hex text (compresses about 2:1), generated server-side: a dump that is still running
  // when the first progress report (8 MiB) comes, so faults can be injected mid-dump.
  await sql(
    bigDb,
    `CREATE TABLE spans AS
       SELECT g AS id, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 32) i) AS body
         FROM generate_series(1, 80000) g`,
  )
  await sql(smallDb, 'CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g')
}, 300_000)

afterAll(async () => {
  for (const db of [bigDb, smallDb]) await sql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
  const keys: string[] = []
  for await (const o of listObjects(bucket, prefix)) keys.push(o.key)
  await deleteObjects(bucket, keys)
})

describe('Function: parsePostgresUrl', () => {
  it('decodes credentials with URL-special characters and keeps libpq parameters', () => {
    // Prepare
    const password = `p@ss:w/rd?#&%'" x`
    // Act
    const target = parsePostgresUrl(
      `postgresql://app:${encodeURIComponent(password)}@db.internal:6432/langsight?sslmode=require`,
    )
    // Assess
    expect(target).toMatchObject({
      host: 'db.internal',
      port: 6432,
      user: 'app',
      password,
      database: 'langsight',
    })
    expect(target.params).toEqual({ sslmode: 'require' })
    expect(target.location).toBe('db.internal:6432/langsight')
  })

  it('refuses odd database names, unknown parameters and bad sslmodes without quoting the password', () => {
    const bad = [
      'postgres://u:Sup3r-Secret@h/lang"sight',
      'postgres://u:Sup3r-Secret@h/a%20b',
      'postgres://u:Sup3r-Secret@h/-a',
      `postgres://u:Sup3r-Secret@h/${'x'.repeat(64)}`,
      'postgres://u:Sup3r-Secret@h/db?options=-c%20x',
      'postgres://u:Sup3r-Secret@h/db?sslmode=sometimes',
      'mysql://u:Sup3r-Secret@h/db',
      'postgres://u:Sup3r-Secret@h/',
    ]
    for (const url of bad) {
      const error = (() => {
        try {
          parsePostgresUrl(url)
        } catch (e) {
          return e
        }
      })()
      expect(error, url).toBeInstanceOf(ConfigError)
      expect(errorText(error)).not.toContain('Sup3r-Secret')
    }
  })
})

describe('Function: inspectPostgres', () => {
  it('reads the server version and the database of the URL', async () => {
    const info = await inspectPostgres(urlFor(smallDb))
    expect(info).toMatchObject({ serverMajor: 15, database: smallDb })
    expect(info.serverVersion).toMatch(/^15\.\d+/)
  })

  it('honours sslmode: disable and prefer connect to a server without TLS, require fails', async () => {
    await expect(
      inspectPostgres(urlFor(smallDb, server.password, '?sslmode=disable')),
    ).resolves.toMatchObject({
      serverMajor: 15,
    })
    await expect(inspectPostgres(urlFor(smallDb, server.password, '?sslmode=prefer'))).resolves.toMatchObject(
      {
        serverMajor: 15,
      },
    )
    const failure = inspectPostgres(urlFor(smallDb, server.password, '?sslmode=require'))
    await expect(failure).rejects.toThrow(/does not support SSL/)
  })

  it('says where and why it cannot connect, never with the password', async () => {
    // Prepare: a wrong password, a missing database, a closed port
    const wrong = 'Wr0ng-Passw0rd!'
    // Act
    const badPassword = await inspectPostgres(urlFor(smallDb, wrong)).catch((e) => e)
    const missing = await inspectPostgres(urlFor(`lsb_missing_${run}`)).catch((e) => e)
    const closed = await inspectPostgres(`postgres://postgres:${wrong}@127.0.0.1:1/x`).catch((e) => e)
    // Assess
    expect(badPassword).toBeInstanceOf(ConfigError)
    expect(badPassword.message).toContain(`127.0.0.1:${server.port}/${smallDb}`)
    expect(missing).toBeInstanceOf(ConfigError)
    expect(missing.message).toContain('does not exist')
    expect(closed).toBeInstanceOf(TransientError)
    expect(closed.message).toContain('127.0.0.1:1/x')
    for (const e of [badPassword, missing, closed]) {
      expect(errorText(e)).not.toContain(wrong)
      expect(errorText(e)).not.toContain(server.password)
    }
  })
})

describe('Function: pgToolVersion', () => {
  it('reads the version of the tools in binDir', async () => {
    const tool = await pgToolVersion('pg_restore', server.binDir)
    expect(tool).toMatchObject({ major: 15, path: join(server.binDir, 'pg_restore') })
    expect(tool.version).toMatch(/^15\.\d+/)
  })

  it('names the directory when the tool is not there', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'lsb-empty-'))
    await expect(pgToolVersion('pg_dump', empty)).rejects.toThrow(ConfigError)
    await expect(pgToolVersion('pg_dump', empty)).rejects.toThrow(empty)
    rmSync(empty, { recursive: true })
  })
})

describe('Function: assertDumpToolCompatible', () => {
  it('accepts a newer pg_dump and refuses an older one', () => {
    const server15 = { serverVersion: '15.4', serverMajor: 15, database: 'langsight' }
    expect(() =>
      assertDumpToolCompatible({ version: '16.1', major: 16, path: '/x/pg_dump' }, server15),
    ).not.toThrow()
    expect(() =>
      assertDumpToolCompatible({ version: '14.9', major: 14, path: '/x/pg_dump' }, server15),
    ).toThrow(PgVersionError)
  })
})

describe('Function: dumpPostgresToS3', () => {
  it('stores a custom-format dump whose sha256 S3 serves back', async () => {
    // Prepare
    const key = `${prefix}ok/small.dump`
    const progress: number[] = []
    // Act
    const result = await dumpPostgresToS3({
      url: urlFor(smallDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 6 },
      binDir: server.binDir,
      onProgress: (bytes) => progress.push(bytes),
    })
    // Assess
    expect(result).toMatchObject({ database: smallDb, bytes: progress.at(-1) })
    expect(result.serverVersion).toMatch(/^15\./)
    expect(result.dumpToolVersion).toMatch(/^15\./)
    expect(await hashObject(bucket, key)).toEqual({ bytes: result.bytes, sha256: result.sha256 })
    const head = await (await openObject(bucket, key)).take(1).toArray()
    expect(Buffer.from(head[0]).subarray(0, 5).toString('latin1')).toBe('PGDMP')
    expect(JSON.stringify(result)).not.toContain(server.password)
  })

  it('stores nothing and says pg_dump was killed when something outside SIGKILLs it mid-dump', async () => {
    // Prepare
    const key = `${prefix}fault/sigkilled.dump`
    let killed: string | undefined
    // Act: once bytes flow, kill the pg_dump process itself (the OOM killer, an operator's kill -9)
    const outcome = await dumpPostgresToS3({
      url: urlFor(bigDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir: server.binDir,
      onProgress: (bytes) => {
        if (killed || bytes === 0) return
        const [victim] = pgDumpProcesses(bigDb)
        if (!victim) return
        killed = victim.pid
        process.kill(Number(victim.pid), 'SIGKILL')
      },
    }).catch((e) => e)
    // Assess
    expect(killed).toBeDefined()
    expect(outcome).toBeInstanceOf(PgDumpError)
    expect(outcome.message).toContain(`pg_dump of 127.0.0.1:${server.port}/${bigDb} to s3://${bucket}/${key}`)
    expect(outcome.message).toMatch(/failed, killed by SIGKILL/)
    expect(errorText(outcome)).not.toContain(server.password)
    expect(await keysAt(key)).toEqual([])
    expect(pgDumpProcesses(bigDb)).toEqual([])
  }, 120_000)

  it("aborts the upload and names pg_dump's error when its server session is terminated mid-dump", async () => {
    // Prepare
    const key = `${prefix}fault/terminated.dump`
    let seen: ReturnType<typeof pgDumpProcesses> = []
    let terminated: Promise<unknown> | undefined
    // Act: once bytes flow, kill the dump's backend from another session
    const error = await dumpPostgresToS3({
      url: urlFor(bigDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir: server.binDir,
      onProgress: (bytes) => {
        if (terminated || bytes === 0) return
        seen = pgDumpProcesses(bigDb)
        terminated = sql(
          'postgres',
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = $1 AND application_name = 'langsight-backup pg_dump'`,
          [bigDb],
        )
      },
    }).catch((e) => e)
    await terminated
    // Assess
    expect(error).toBeInstanceOf(PgDumpError)
    expect(error.message).toContain(`127.0.0.1:${server.port}/${bigDb}`)
    expect(error.message).toMatch(/pg_dump: error:/)
    expect(errorText(error)).not.toContain(server.password)
    expect(await keysAt(key)).toEqual([])
    // The child ran with the password only in its (minimal) environment, never on argv.
    expect(seen).toHaveLength(1)
    expect(seen[0]!.argv.join(' ')).not.toContain(server.password)
    expect(seen[0]!.argv).toContain('--username=postgres')
    const expectedEnv = ['LC_ALL', 'PATH', 'PGAPPNAME', 'PGCONNECT_TIMEOUT', 'PGPASSWORD']
    if (process.env.LD_LIBRARY_PATH) expectedEnv.unshift('LD_LIBRARY_PATH')
    expect(seen[0]!.env.map((v) => v.split('=')[0]).sort()).toEqual(expectedEnv)
    expect(pgDumpProcesses(bigDb)).toEqual([])
  }, 120_000)

  it('kills pg_dump and stores nothing when the abort signal fires', async () => {
    // Prepare
    const key = `${prefix}fault/aborted.dump`
    const controller = new AbortController()
    // Act
    const error = await dumpPostgresToS3({
      url: urlFor(bigDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 1 },
      binDir: server.binDir,
      signal: controller.signal,
      onProgress: (bytes) => {
        if (bytes > 0) controller.abort(new Error('Lambda timeout approaching'))
      },
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(PgDumpError)
    expect(error.message).toContain('aborted (Error: Lambda timeout approaching)')
    expect(await keysAt(key)).toEqual([])
    expect(pgDumpProcesses(bigDb)).toEqual([])
  }, 120_000)

  it('refuses a pg_dump older than the server before running it, storing nothing', async () => {
    // Prepare: a pg_dump 12.3 that leaves a mark if it is ever asked to dump
    const dir = fakePgDump(
      `if [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) 12.3"; exit 0; fi\ntouch "$0.ran"; exit 0`,
    )
    const key = `${prefix}preflight/old.dump`
    // Act
    const error = await dumpPostgresToS3({
      url: urlFor(smallDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 6 },
      binDir: dir,
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(PgVersionError)
    expect(error.message).toMatch(/pg_dump 12\.3/)
    expect(error.message).toMatch(/PostgreSQL 15\.\d+/)
    expect(error.message).toMatch(/pg_dump 15 or newer is required/)
    expect(existsSync(join(dir, 'pg_dump.ran'))).toBe(false)
    expect(await keysAt(key)).toEqual([])
    rmSync(dir, { recursive: true })
  })

  it('refuses output that is not a custom-format archive even when pg_dump exits 0', async () => {
    const dir = fakePgDump(
      `if [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) 15.0"; exit 0; fi\necho "-- plain SQL"; exit 0`,
    )
    const key = `${prefix}fault/not-an-archive.dump`
    const error = await dumpPostgresToS3({
      url: urlFor(smallDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 6 },
      binDir: dir,
    }).catch((e) => e)
    expect(error).toBeInstanceOf(PgDumpError)
    expect(error.message).toContain('produced no custom-format archive')
    expect(await keysAt(key)).toEqual([])
    rmSync(dir, { recursive: true })
  })

  it('refuses a complete archive when pg_dump printed an error line, even with exit status 0', async () => {
    // Prepare: the real pg_dump, followed by an error line and a clean exit
    const real = join(server.binDir, 'pg_dump')
    const dir = fakePgDump(`"${real}" "$@"\necho "pg_dump: error: query failed: simulated" >&2\nexit 0`)
    const key = `${prefix}fault/error-line.dump`
    // Act
    const error = await dumpPostgresToS3({
      url: urlFor(smallDb),
      bucket,
      key,
      compression: { method: 'gzip', level: 6 },
      binDir: dir,
    }).catch((e) => e)
    // Assess
    expect(error).toBeInstanceOf(PgDumpError)
    expect(error.message).toContain('exited 0: pg_dump: error: query failed: simulated')
    expect(await keysAt(key)).toEqual([])
    rmSync(dir, { recursive: true })
  })
})
