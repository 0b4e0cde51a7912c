/**
 * Real servers on loopback for tests, the demo and the benchmarks: a throwaway PostgreSQL
 * cluster (initdb + pg_ctl), Debian's clickhouse-server over HTTP, and an S3 API endpoint
 * (s3rver). Each gets a free port and a fresh data directory, and stops cleanly.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return
    await sleep(100)
  }
  throw new Error(`${what} did not become ready within ${timeoutMs} ms`)
}

/** The directory of the newest installed PostgreSQL server binaries. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql'
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a))
    if (versions[0]) return join(root, versions[0], 'bin')
  }
  throw new Error('no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)')
}

/**
 * The PostgreSQL 17 that scripts/build-postgres.sh compiled (server prefix and Lambda layer), or
 * undefined when it has not been built on this machine.
 */
export function builtPostgres17(): { serverBinDir: string; layerBinDir: string } | undefined {
  const script = join(import.meta.dirname, '..', 'scripts', 'build-postgres.sh')
  try {
    const dir = execFileSync('bash', [script, '--cached-only'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim()
    return { serverBinDir: join(dir, 'server', 'bin'), layerBinDir: join(dir, 'layer', 'bin') }
  } catch {
    return undefined
  }
}

export interface PostgresServer {
  port: number
  password: string
  /** postgres://postgres:<password>@127.0.0.1:<port>/<database> */
  url(database: string): string
  binDir: string
  dataDir: string
  pid(): number
  stop(): Promise<void>
}

/** Runs a binary as the `postgres` OS user when we are root (initdb refuses root). */
function asPostgresUser(bin: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]
}

export async function startPostgres(
  options: { password?: string; binDir?: string } = {},
): Promise<PostgresServer> {
  const binDir = options.binDir ?? postgresBinDir()
  const password = options.password ?? 'pg-Secret-7f3a'
  const root = mkdtempSync(join(tmpdir(), 'lsb-pg-'))
  const dataDir = join(root, 'data')
  const pwFile = join(root, 'pw')
  writeFileSync(pwFile, `${password}\n`)
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
    chownSync(root, uid, gid)
    chownSync(pwFile, uid, gid)
  }
  chmodSync(root, 0o700)
  const port = await freePort()
  const run = (bin: string, args: string[]) => {
    const [cmd, argv] = asPostgresUser(join(binDir, bin), args)
    execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  }
  run('initdb', [
    '-D',
    dataDir,
    '-U',
    'postgres',
    '--pwfile',
    pwFile,
    '--auth=scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C.UTF-8',
  ])
  run('pg_ctl', [
    '-D',
    dataDir,
    '-l',
    join(root, 'server.log'),
    '-w',
    '-o',
    `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100`,
    'start',
  ])
  const { readFileSync } = await import('node:fs')
  const server: PostgresServer = {
    port,
    password,
    binDir,
    dataDir,
    url: (database) => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    pid: () => Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]),
    stop: async () => {
      try {
        run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop'])
      } catch {
        // already stopped
      }
      rmSync(root, { recursive: true, force: true })
    },
  }
  return server
}

export interface ClickHouseServer {
  port: number
  /** The native protocol port, for clickhouse-client (the runbook's commands). */
  tcpPort: number
  password: string
  /** http://default:<password>@127.0.0.1:<port>/<database> */
  url(database: string): string
  version: string
  /** Where the server keeps its tables (for measuring data size on disk). */
  dataDir: string
  process: ChildProcess
  stop(): Promise<void>
}

/** Debian's clickhouse-server (18.16) with its own config, on free ports, below `parent` (default tmpdir). */
export async function startClickHouseServer(
  options: { password?: string; parent?: string } = {},
): Promise<ClickHouseServer> {
  const password = options.password ?? 'ch-Secret-91bd'
  const root = mkdtempSync(join(options.parent ?? tmpdir(), 'lsb-ch-'))
  for (const d of ['data', 'tmp', 'user_files', 'format_schemas', 'log']) mkdirSync(join(root, d))
  const [httpPort, tcpPort, interPort] = [await freePort(), await freePort(), await freePort()]
  writeFileSync(
    join(root, 'config.xml'),
    `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${root}/log/server.log</log><errorlog>${root}/log/err.log</errorlog><console>0</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <interserver_http_port>${interPort}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${root}/data/</path>
  <tmp_path>${root}/tmp/</tmp_path>
  <user_files_path>${root}/user_files/</user_files_path>
  <format_schema_path>${root}/format_schemas/</format_schema_path>
  <mark_cache_size>53687091</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
`,
  )
  writeFileSync(
    join(root, 'users.xml'),
    `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password>${password}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`,
  )
  const child = spawn('clickhouse-server', [`--config-file=${join(root, 'config.xml')}`], {
    cwd: root,
    stdio: 'ignore',
    detached: false,
  })
  const base = `http://127.0.0.1:${httpPort}`
  const auth = { Authorization: `Basic ${Buffer.from(`default:${password}`).toString('base64')}` }
  await waitFor('clickhouse-server', async () => (await fetch(`${base}/ping`)).ok)
  const version = (await (await fetch(`${base}/?query=SELECT%20version()`, { headers: auth })).text()).trim()
  return {
    port: httpPort,
    tcpPort,
    password,
    version,
    dataDir: join(root, 'data'),
    process: child,
    url: (database) => `http://default:${encodeURIComponent(password)}@127.0.0.1:${httpPort}/${database}`,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise((r) => child.once('exit', r))
      }
      rmSync(root, { recursive: true, force: true })
    },
  }
}

export interface S3Server {
  endpoint: string
  bucket: string
  directory: string
  stop(): Promise<void>
}

/**
 * An S3 API endpoint on loopback (s3rver) with one bucket, in a process of its own: it gets its own
 * core, and it needs OpenSSL's legacy provider (its listing continuation tokens use DES, which
 * OpenSSL 3 refuses: without it any listing past 1000 keys fails with InternalError).
 */
export async function startS3(bucket = 'langsight-backup-test'): Promise<S3Server> {
  const directory = mkdtempSync(join(tmpdir(), 'lsb-s3-'))
  const port = await freePort()
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js')
  const child = spawn(
    process.execPath,
    [
      '--openssl-legacy-provider',
      bin,
      '-d',
      directory,
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '--silent',
      '--configure-bucket',
      bucket,
    ],
    { stdio: 'ignore' },
  )
  const endpoint = `http://127.0.0.1:${port}`
  await waitFor('s3rver', async () => (await fetch(`${endpoint}/${bucket}?max-keys=1`)).ok)
  return {
    endpoint,
    bucket,
    directory,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise((r) => child.once('exit', r))
      }
      rmSync(directory, { recursive: true, force: true })
    },
  }
}
