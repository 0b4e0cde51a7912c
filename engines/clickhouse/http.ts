/** A ClickHouse server over HTTP(S), through @clickhouse/client. */
import { finished } from 'node:stream/promises'
import { ClickHouseLogLevel, createClient } from '@clickhouse/client'
import { stallLimitMs } from '#core/deadline.ts'
import { redact } from '#core/redact.ts'
import {
  type ClickHouseConnection,
  clickHouseFailure,
  databaseFrom,
  probeCapabilities,
  runText,
} from './connection.ts'

export async function connectHttp(url: string, parsed: URL): Promise<ClickHouseConnection> {
  const database = databaseFrom(parsed.pathname.replace(/^\//, ''), url)
  const client = createClient({
    url: `${parsed.protocol}//${parsed.host}`,
    username: decodeURIComponent(parsed.username) || 'default',
    password: decodeURIComponent(parsed.password),
    // every statement names its database: the session stays on the server's default database,
    // so a database that does not exist yet (a restore target) is no error
    // a socket with no byte for the stall limit fails the request; the step's abort signal ends the rest
    request_timeout: stallLimitMs(),
    // the client would log each failed query with its text; our errors say what failed, redacted
    log: { level: ClickHouseLogLevel.OFF },
  })
  const capabilities = probeCapabilities(client, 'http')
  const where = `ClickHouse ${redact(url)}`
  const connection: ClickHouseConnection = {
    kind: 'http',
    database,
    serverVersion: async () => (await capabilities()).version,
    query: async <T>(sql: string, params?: Record<string, unknown>) => {
      try {
        return await runText(capabilities, sql, params, async (query, query_params) =>
          (await client.query({ query, query_params, format: 'JSONEachRow' })).json<T>(),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    command: async (sql, params, settings) => {
      try {
        await runText(capabilities, sql, params, (query, query_params) =>
          client.command({ query, query_params, clickhouse_settings: settings }),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    exportNative: async (sql, params, signal) => {
      try {
        const result = await runText(capabilities, sql, params, (query, query_params) =>
          client.exec({ query: `${query}\nFORMAT Native`, query_params, abort_signal: signal }),
        )
        return result.stream
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    insertNative: async (qualifiedTable, source, signal) => {
      try {
        const { insertSettings } = await capabilities()
        const result = await client.exec({
          query: `INSERT INTO ${qualifiedTable} FORMAT Native`,
          values: source,
          clickhouse_settings: insertSettings,
          abort_signal: signal,
        })
        result.stream.resume()
        await finished(result.stream)
      } catch (error) {
        source.destroy()
        throw clickHouseFailure(`${where}: insert into ${qualifiedTable}`, error)
      }
    },
    close: () => client.close(),
  }
  await connection.serverVersion().catch((error) => {
    void client.close()
    throw clickHouseFailure(`${where} is not reachable`, error)
  })
  return connection
}
