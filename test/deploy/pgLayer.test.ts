import { execFile, execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const run = promisify(execFile)
const repo = resolve(import.meta.dirname, '../..')
const script = join(repo, 'scripts/build-pg-layer.sh')
const MAJOR = '17'
const GLIBC_FILES = /^(ld-linux.*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libanl|libnsl)\.so/
const { postgres } = inject('servers')

/** Lambda's Amazon Linux 2023 glibc; compared as version tuples. */
const LAMBDA_GLIBC = [2, 34]
const newer = (a: number[], b: number[]) => (a[0]! - b[0]! || a[1]! - b[1]!) > 0

/** The layer zip: reused when it is newer than the script that builds it, built otherwise. */
function layerZip(): string {
  const zip = join(repo, 'layer/build', `pgtools-${MAJOR}.zip`)
  const sources = [script, join(repo, 'scripts/build-postgres.sh')]
  if (!existsSync(zip) || sources.some((s) => statSync(zip).mtimeMs < statSync(s).mtimeMs)) {
    execFileSync('bash', [script, MAJOR], { stdio: ['ignore', 'pipe', 'inherit'] })
  }
  return zip
}

/** Runs a layer binary as Lambda would: no PATH, no HOME, nothing but the layer's library path. */
function runStripped(dir: string, tool: string, args: string[]) {
  return run(join(dir, 'bin', tool), args, { env: { LD_LIBRARY_PATH: join(dir, 'lib') } })
}

/** GLIBC_x.y versions a file requires (its version references, not the versions it defines). */
function glibcRequirements(file: string): number[][] {
  const out = execFileSync('objdump', ['-p', file]).toString()
  const refs = out.split('Version References:')[1]?.split('\n\n')[0] ?? ''
  return [...refs.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])])
}

let layerDir: string
let workDir: string

beforeAll(() => {
  workDir = mkdtempSync(join(tmpdir(), 'lsb-layer-test-'))
  layerDir = join(workDir, 'opt')
  execFileSync('unzip', ['-q', layerZip(), '-d', layerDir])
}, 300_000)

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true })
})

describe('Function: build-pg-layer.sh', () => {
  it('packs pg_dump and pg_restore that run with an empty environment and only the layer libraries', async () => {
    // Act
    const dump = await runStripped(layerDir, 'pg_dump', ['--version'])
    const restore = await runStripped(layerDir, 'pg_restore', ['--version'])
    // Assess
    expect(dump.stdout).toMatch(new RegExp(`^pg_dump \\(PostgreSQL\\) ${MAJOR}\\.\\d+`))
    expect(restore.stdout).toMatch(new RegExp(`^pg_restore \\(PostgreSQL\\) ${MAJOR}\\.\\d+`))
  })

  it('resolves every non-glibc library from the layer itself, none from the system', async () => {
    // Prepare: the loader's own view of what it would map, with the same stripped environment
    const loader = '/lib64/ld-linux-x86-64.so.2'
    for (const tool of ['pg_dump', 'pg_restore']) {
      // Act
      const { stdout } = await run(loader, ['--list', join(layerDir, 'bin', tool)], {
        env: { LD_LIBRARY_PATH: join(layerDir, 'lib') },
      })
      // Assess
      const resolved = [...stdout.matchAll(/^\s*(\S+) => (\S+)/gm)].map((m) => ({ name: m[1]!, path: m[2]! }))
      expect(resolved.length).toBeGreaterThan(5)
      for (const { name, path } of resolved) {
        if (GLIBC_FILES.test(name))
          expect(path.startsWith(layerDir), `${name} must come from Lambda`).toBe(false)
        else expect(path, `${tool} loads ${name}`).toBe(join(layerDir, 'lib', name))
      }
    }
  })

  it('needs no glibc newer than 2.34 and carries none of glibc’s own libraries', () => {
    // Prepare
    const files = [
      ...readdirSync(join(layerDir, 'bin')).map((f) => join(layerDir, 'bin', f)),
      ...readdirSync(join(layerDir, 'lib')).map((f) => join(layerDir, 'lib', f)),
    ]
    // Act
    const required = files.flatMap((file) => glibcRequirements(file).map((v) => ({ file, v })))
    // Assess
    const max = required.reduce((m, r) => (newer(r.v, m) ? r.v : m), [0, 0])
    console.info(`layer: ${files.length} files, highest requirement GLIBC_${max.join('.')}`)
    expect(required.length).toBeGreaterThan(0)
    expect(required.filter((r) => newer(r.v, LAMBDA_GLIBC))).toEqual([])
    expect(readdirSync(join(layerDir, 'lib')).filter((f) => GLIBC_FILES.test(f))).toEqual([])
  })

  it('dumps the test cluster into a custom-format archive that pg_restore of the layer can list', async () => {
    // Prepare: a database with a table, a sequence and an enum
    const database = `layer_${process.pid}_${Date.now()}`
    const admin = new pg.Client({ connectionString: urlOf('postgres') })
    await admin.connect()
    await admin.query(`CREATE DATABASE ${database}`)
    await admin.end()
    const db = new pg.Client({ connectionString: urlOf(database) })
    await db.connect()
    await db.query(`CREATE TYPE mood AS ENUM ('ok', 'down');
      CREATE TABLE health_checks (id bigserial PRIMARY KEY, server text NOT NULL, state mood, at timestamptz);
      INSERT INTO health_checks (server, state, at)
        SELECT 'srv-' || g, 'ok', now() FROM generate_series(1, 1000) g;`)
    await db.end()
    const file = join(workDir, `${database}.dump`)
    // Act: the URL carries the password because the environment may carry nothing else
    await runStripped(layerDir, 'pg_dump', [
      '--format=custom',
      `--file=${file}`,
      `--dbname=${urlOf(database)}`,
    ])
    const { stdout: listing } = await runStripped(layerDir, 'pg_restore', ['--list', file])
    // Assess
    expect(listing).toMatch(/TABLE public health_checks postgres/)
    expect(listing).toMatch(/TABLE DATA public health_checks postgres/)
    expect(listing).toMatch(/TYPE public mood postgres/)
    expect(listing).toMatch(/SEQUENCE public health_checks_id_seq/)
  })
})

describe('Function: build-pg-layer.sh (refusals)', () => {
  it('fails naming the file and the symbols when a binary needs a glibc newer than Lambda’s', async () => {
    // Prepare: an unpacked "package" whose pg_dump is this machine's bash (Debian 12's needs GLIBC_2.36)
    const fake = join(workDir, 'fake-pkg')
    const bin = join(fake, 'usr/lib/postgresql', MAJOR, 'bin')
    mkdirSync(bin, { recursive: true })
    copyFileSync('/bin/bash', join(bin, 'pg_dump'))
    copyFileSync(join(layerDir, 'bin/pg_restore'), join(bin, 'pg_restore'))
    // Act
    const build = run('bash', [script, MAJOR, join(workDir, 'fake-out')], {
      env: { ...process.env, LSB_PG_DEB_DIR: fake },
    })
    // Assess
    await expect(build).rejects.toMatchObject({
      stderr: expect.stringMatching(/bin\/pg_dump needs GLIBC_2\.3[5-9] \(\w+/),
    })
    expect(existsSync(join(workDir, 'fake-out', `pgtools-${MAJOR}.zip`))).toBe(false)
  })

  it('says how to get a major version that apt cannot provide here', async () => {
    // Act
    const build = run('bash', [script, '99', join(workDir, 'none')], {
      env: { ...process.env, LSB_PG_DEB_DIR: '' },
    })
    // Assess
    await expect(build).rejects.toMatchObject({
      stderr: expect.stringMatching(/postgresql-client-99 is not available[\s\S]*PGDG[\s\S]*LSB_PG_DEB_DIR=/),
    })
  })
})

function urlOf(database: string): string {
  return `postgres://postgres:${encodeURIComponent(postgres.password)}@127.0.0.1:${postgres.port}/${database}`
}
