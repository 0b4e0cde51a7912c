import type { Context } from 'aws-lambda'
import { requireSecret } from '#core/config.ts'
import { connectClickHouse } from '#engines/clickhouse/connectClickHouse.ts'
import type { ClickHouseConnection } from '#engines/clickhouse/connection.ts'
import type { StateMiddleware } from './stateHandler.ts'

/** What a state that talks to ClickHouse receives besides its input. */
export interface ClickHouseContext {
  clickhouse: ClickHouseConnection
}

/**
 * Opens the ClickHouse connection named by LSB_CLICKHOUSE_URL before the state runs and closes it
 * after, whether the state succeeded or failed.
 */
export function clickhouseConnection(): StateMiddleware {
  const close = async (context: Context) => {
    const conn = (context as Partial<ClickHouseContext>).clickhouse
    if (!conn) return
    delete (context as Partial<ClickHouseContext>).clickhouse
    await conn.close()
  }
  return {
    before: async (request) => {
      const conn = await connectClickHouse(await requireSecret('LSB_CLICKHOUSE_URL'))
      Object.assign(request.context, { clickhouse: conn })
    },
    after: async (request) => close(request.context),
    onError: async (request) => close(request.context),
  }
}
