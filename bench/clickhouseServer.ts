/**
 * Debian's clickhouse-server (18.16) for the benchmark: devtools/servers.ts's server, plus the
 * `clickhouse-client` arguments the runbook's commands need (it speaks only the native protocol,
 * while our pipeline speaks HTTP to the same server).
 */
import { type ClickHouseServer, startClickHouseServer } from '#devtools/servers.ts'

export interface BenchClickHouse extends ClickHouseServer {
  httpPort: number
  pid: number
  /** `clickhouse-client` argv up to (not including) `--query`. */
  clientArgs(database: string): string[]
}

/** Starts clickhouse-server with a throwaway data directory under `root` on free ports. */
export async function startBenchClickHouse(
  root: string,
  password = 'ch-Bench-5e21',
): Promise<BenchClickHouse> {
  const server = await startClickHouseServer({ password, parent: root })
  return {
    ...server,
    httpPort: server.port,
    pid: server.process.pid!,
    // The password goes on argv as the runbook's operator would pass it; this is a throwaway server.
    clientArgs: (database) => [
      '--host',
      '127.0.0.1',
      '--port',
      String(server.tcpPort),
      '--user',
      'default',
      '--password',
      password,
      '--database',
      database,
    ],
  }
}
