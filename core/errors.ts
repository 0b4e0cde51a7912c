/**
 * Named errors. The state machines match on `name` (Step Functions' `ErrorEquals`),
 * so each failure a Retry or Catch must tell apart has a class of its own.
 */
class NamedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }
}

/** Configuration is missing or malformed. Never retried. */
export class ConfigError extends NamedError {}
/** pg_dump exited non-zero, was killed, or wrote an error: the dump is not trustworthy. */
export class PgDumpError extends NamedError {}
/** pg_dump is older than the server it would dump. */
export class PgVersionError extends NamedError {}
/** pg_restore failed; the previous database is untouched. */
export class PgRestoreError extends NamedError {}
/** A ClickHouse export or import failed. */
export class ClickHouseError extends NamedError {}
/** A stored object's sha256 or size differs from the value recorded while it was written. */
export class ChecksumMismatchError extends NamedError {}
/** A manifest is missing, unreadable, or fails its schema. */
export class ManifestError extends NamedError {}
/** No backup matches the requested id (or there is no complete backup for `latest`). */
export class BackupNotFoundError extends NamedError {}
/** Input read from a manifest, an S3 key or a state input is not acceptable. */
export class UntrustedInputError extends NamedError {}
/** The schema migration failed or ended at an unexpected head. */
export class MigrationError extends NamedError {}
/** A transient I/O failure worth retrying (S3 throttling, a dropped connection). */
export class TransientError extends NamedError {}
/** Slack refused or could not be reached. */
export class NotifyError extends NamedError {}
/**
 * A transfer made no progress for the stall limit (LSB_STALL_SECONDS): a connection cut without a
 * reset, a server that stopped answering. Retried by the state machine; never waited out.
 */
export class StallError extends NamedError {}

/** The error codes of a connection that broke or could not be made: another attempt may work. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
])

/** Whether `error` carries one of {@link NETWORK_ERROR_CODES}. */
export function isNetworkError(error: unknown): boolean {
  return NETWORK_ERROR_CODES.has(String((error as { code?: unknown } | undefined)?.code))
}
/** A drill restored a backup whose content differs from the fingerprints it recorded. */
export class DrillMismatchError extends NamedError {}
/**
 * A conditional write (`If-None-Match: *`) found another object at its key: backups are never
 * overwritten. A retry that finds the very bytes it would write is not this error.
 */
export class ObjectExistsError extends NamedError {}
