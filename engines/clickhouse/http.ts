/** A ClickHouse server over HTTP(S), through @clickhouse/client. */
import { finished } from 'node:stream/promises'
import { ClickHouseLogLevel, createClient } from '@clickhouse/client'
import { stallLimitMs } from '#core/deadline.ts'
import { isNetworkError, StallError, TransientError } from '#core/errors.ts'
import { redact } from '#core/redact.ts'
import {
  type ClickHouseConnection,
  databaseFrom,
  clickHouseFailure as namedFailure,
  probeCapabilities,
  runText,
} from './connection.ts'

/**
 * The client's own error when a request saw no byte for request_timeout ("Timeout error."): a
 * server that stopped answering is a StallError, which the state machines retry, like any stall.
 */
function clickHouseFailure(what: string, error: unknown): Error {
  if (error instanceof Error && error.message === 'Timeout error.') {
    return new StallError(redact(`${what}: no answer for ${Math.round(stallLimitMs() / 1000)} s`), {
      cause: error,
    })
  }
  // a connection reset or refused on the way (a query, not only a stream) is retried like any network failure
  if (isNetworkError(error) || isNetworkError((error as { cause?: unknown })?.cause)) {
    const message = error instanceof Error ? error.message : String(error)
    return new TransientError(redact(`${what}: ${message}`), { cause: error })
  }
  return namedFailure(what, error)
}

export async function connectHttp(url: string, parsed: URL): Promise<ClickHouseConnection> {
  const database = databaseFrom(parsed.pathname.replace(/^\//, ''), url)
  const client = createClient({
    url: `${parsed.protocol}//${parsed.host}`,
    username: decodeURIComponent(parsed.username) || 'default',
    password: decodeURIComponent(parsed.password),
    // every statement names its database: the session stays on the server's default database,
    // so a database that does not exist yet (a restore target) is no error
    // a socket with no byte for the stall limit fails the request; the step's abort signal ends the rest.
    // One second more than the limit: a stream that stops mid-way is named by the transfer's own stall
    // guard (a StallError), not reset by this timer first (ECONNRESET, "aborted").
    request_timeout: stallLimitMs() + 1000,
    // the client would log each failed query with its text; our errors say what failed, redacted
    log: { level: ClickHouseLogLevel.OFF },
  })
  // Statements that run for as long as a table takes (server-side exports and loads): no
  // request timeout; they are followed by query id (longStatement.ts) and bounded by the step.
  let longClient: ReturnType<typeof createClient> | undefined
  let longInFlight = 0
  let closed = false
  const long = () =>
    (longClient ??= createClient({
      url: `${parsed.protocol}//${parsed.host}`,
      username: decodeURIComponent(parsed.username) || 'default',
      password: decodeURIComponent(parsed.password),
      request_timeout: 24 * 3600 * 1000,
      log: { level: ClickHouseLogLevel.OFF },
    }))
  const capabilities = probeCapabilities(client, 'http')
  const where = `ClickHouse ${redact(url)}`
  const connection: ClickHouseConnection = {
    kind: 'http',
    database,
    serverVersion: async () => (await capabilities()).version,
    insertSettings: async () => (await capabilities()).insertSettings,
    query: async <T>(sql: string, params?: Record<string, unknown>) => {
      try {
        return await runText(capabilities, sql, params, async (query, query_params) =>
          (await client.query({ query, query_params, format: 'JSONEachRow' })).json<T>(),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      }
    },
    command: async (sql, params, settings, options) => {
      if (options?.longRunning) longInFlight++
      try {
        await runText(capabilities, sql, params, (query, query_params) =>
          (options?.longRunning ? long() : client).command({
            query,
            query_params,
            clickhouse_settings: settings,
            query_id: options?.queryId,
          }),
        )
      } catch (error) {
        throw clickHouseFailure(where, error)
      } finally {
        if (options?.longRunning && --longInFlight === 0 && closed) void longClient?.close()
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
    isRunning: async (queryId) => {
      const rows = await connection.query<{ n: string | number }>(
        'SELECT count() AS n FROM system.processes WHERE query_id = {id:String}',
        { id: queryId },
      )
      return Number(rows[0]?.n ?? 0) > 0
    },
    close: async () => {
      closed = true
      // a statement still running keeps its client: closing it could end the statement with the
      // invocation that started it (the next one follows it by query id)
      await Promise.all([client.close(), longInFlight === 0 ? longClient?.close() : undefined])
    },
  }
  await connection.serverVersion().catch((error) => {
    void client.close()
    throw clickHouseFailure(`${where} is not reachable`, error)
  })
  return connection
}
