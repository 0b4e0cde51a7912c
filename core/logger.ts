import { Logger } from '@aws-lambda-powertools/logger'

/**
 * The one structured logger. Handlers append keys per step (backupId, engine, table);
 * nothing secret is ever passed to it (connection strings go through `redact`).
 */
export const logger = new Logger({
  serviceName: 'langsight-backup',
  logLevel: (process.env.POWERTOOLS_LOG_LEVEL ?? process.env.LSB_LOG_LEVEL ?? 'INFO') as 'INFO',
})
