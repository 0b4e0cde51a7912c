/**
 * The PostgreSQL adapter: version preflight, pg_dump streamed to S3, and a restore from S3 that
 * swaps a freshly restored database in place of the live one. Implementation in `postgres/`.
 */
export { inspectPostgres, type PostgresInfo } from '#engines/postgres/connectPostgres.ts'
export {
  assertDatabaseName,
  PREVIOUS_SUFFIX,
  RESTORING_SUFFIX,
  restoreNames,
} from '#engines/postgres/databaseName.ts'
export { type DumpOptions, type DumpResult, dumpPostgresToS3 } from '#engines/postgres/dumpPostgresToS3.ts'
export { assertDumpToolCompatible, type PgToolVersion, pgToolVersion } from '#engines/postgres/pgTool.ts'
export { type PostgresTarget, parsePostgresUrl } from '#engines/postgres/postgresUrl.ts'
export {
  type RestoreOptions,
  type RestoreResult,
  restorePostgresFromS3,
} from '#engines/postgres/restorePostgresFromS3.ts'
