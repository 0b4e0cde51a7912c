/**
 * The PostgreSQL adapter: version preflight, pg_dump streamed to S3, and a restore from S3 that
 * swaps a freshly restored database in place of the live one. Implementation in `postgres/`.
 */
export { inspectPostgres, type PostgresInfo } from './postgres/connectPostgres.ts'
export {
  assertDatabaseName,
  PREVIOUS_SUFFIX,
  RESTORING_SUFFIX,
  restoreNames,
} from './postgres/databaseName.ts'
export { type DumpOptions, type DumpResult, dumpPostgresToS3 } from './postgres/dumpPostgresToS3.ts'
export { assertDumpToolCompatible, type PgToolVersion, pgToolVersion } from './postgres/pgTool.ts'
export { type PostgresTarget, parsePostgresUrl } from './postgres/postgresUrl.ts'
export {
  type RestoreOptions,
  type RestoreResult,
  restorePostgresFromS3,
} from './postgres/restorePostgresFromS3.ts'
