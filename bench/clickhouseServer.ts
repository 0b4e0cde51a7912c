/**
 * Debian's clickhouse-server (18.16) for the benchmark, started like local/servers.ts does it but
 * also exposing its native TCP port: the runbook's commands are `clickhouse-client`, which speaks
 * only the native protocol, while our pipeline speaks HTTP to the same server.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../local/servers.ts'

export interface BenchClickHouse {
  httpPort: number
  tcpPort: number
  password: string
  version: string
  dataDir: string
  pid: number
  /** http://default:<password>@127.0.0.1:<httpPort>/<database> */
  url(database: string): string
  /** `clickhouse-client` argv up to (not including) `--query`. */
  clientArgs(database: string): string[]
  stop(): Promise<void>
}

/** Starts clickhouse-server with a throwaway data directory under `root` on free ports. */
export async function startBenchClickHouse(
  root: string,
  password = 'ch-Bench-5e21',
): Promise<BenchClickHouse> {
  const dir = mkdtempSync(join(root, 'ch-'))
  for (const d of ['data', 'tmp', 'user_files', 'format_schemas', 'log']) mkdirSync(join(dir, d))
  const [httpPort, tcpPort, interPort] = [await freePort(), await freePort(), await freePort()]
  writeFileSync(
    join(dir, 'config.xml'),
    `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/err.log</errorlog><console>0</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <interserver_http_port>${interPort}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <mark_cache_size>53687091</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
`,
  )
  writeFileSync(
    join(dir, 'users.xml'),
    `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password>${password}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`,
  )
  const child = spawn('clickhouse-server', [`--config-file=${join(dir, 'config.xml')}`], {
    cwd: dir,
    stdio: 'ignore',
  })
  const base = `http://127.0.0.1:${httpPort}`
  const auth = { Authorization: `Basic ${Buffer.from(`default:${password}`).toString('base64')}` }
  const deadline = Date.now() + 30_000
  for (;;) {
    const ok = await fetch(`${base}/ping`).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) break
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('clickhouse-server did not start')
    await sleep(100)
  }
  const version = (await (await fetch(`${base}/?query=SELECT%20version()`, { headers: auth })).text()).trim()
  return {
    httpPort,
    tcpPort,
    password,
    version,
    dataDir: join(dir, 'data'),
    pid: child.pid!,
    url: (database) => `http://default:${encodeURIComponent(password)}@127.0.0.1:${httpPort}/${database}`,
    // The password goes on argv as the runbook's operator would pass it; this is a throwaway server.
    clientArgs: (database) => [
      '--host',
      '127.0.0.1',
      '--port',
      String(tcpPort),
      '--user',
      'default',
      '--password',
      password,
      '--database',
      database,
    ],
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise((r) => child.once('exit', r))
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
