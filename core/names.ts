/**
 * Every naming rule of the project in one place: backup ids, checksums, execution ARNs, and the
 * databases a restore works with. Names read from a manifest, a state input or a URL are checked
 * here before any of them reaches SQL, a key or a shell.
 */
import { ConfigError, UntrustedInputError } from './errors.ts'

/** A backup id is the UTC start time, sortable as text: `20261125T144226.123Z`. */
export const BACKUP_ID = /^\d{8}T\d{6}\.\d{3}Z$/

/** A sha256 as the manifest records it. */
export const SHA256 = /^[0-9a-f]{64}$/

/**
 * A Step Functions execution ARN (standard or express): region, account, state machine and
 * execution name as groups 1–4.
 */
export const EXECUTION_ARN =
  /^arn:aws[a-z-]*:states:([a-z0-9-]+):(\d{12}):(?:execution|express):([A-Za-z0-9_-]{1,80}):([A-Za-z0-9_.:-]{1,160})$/

/** A state machine ARN: region, account and name as groups 1–3. */
export const STATE_MACHINE_ARN =
  /^arn:aws[a-z-]*:states:([a-z0-9-]+):(\d{12}):stateMachine:([A-Za-z0-9_-]{1,80})$/

/**
 * Letters, digits, `_` and `-`: enough for real database names, nothing SQL, libpq or a shell
 * could read as syntax. Both engines quote it anyway.
 */
const DATABASE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/

/** What a restore appends to a database name for its working databases. */
export const RESTORING_SUFFIX = '__lsb_restoring'
export const STAGING_SUFFIX = '__lsb_restore'
export const PREVIOUS_SUFFIX = '__lsb_previous'

/** PostgreSQL truncates identifiers longer than 63 bytes (NAMEDATALEN - 1), silently, hence the limits. */
export const MAX_IDENTIFIER_BYTES = 63
/** A database the tool may restore into: its longest working name still fits in 63 bytes. */
export const MAX_DATABASE_BYTES =
  MAX_IDENTIFIER_BYTES - Math.max(RESTORING_SUFFIX.length, STAGING_SUFFIX.length, PREVIOUS_SUFFIX.length)

const DRILL_INFIX = '__lsb_drill_'
const DRILL_NAME = /^(.+)__lsb_drill_[0-9a-f]{8}$/

/**
 * A drill's scratch database: `<source>__lsb_drill_<8 hex>`. No live database may contain `__lsb_`
 * (see databaseNameProblem), so a scratch name can never be a live one; `token` keeps two drills apart.
 */
export function drillDatabaseName(source: string, token: string): string {
  if (!/^[0-9a-f]{8}$/.test(token))
    throw new UntrustedInputError(`drill token ${JSON.stringify(token)}: 8 hex digits`)
  const room = MAX_DATABASE_BYTES - DRILL_INFIX.length - token.length
  return `${source.slice(0, room)}${DRILL_INFIX}${token}`
}

/** Whether `name` is a drill's scratch database (and so may be dropped by a drill). */
export function isDrillDatabase(name: string): boolean {
  const base = DRILL_NAME.exec(name)?.[1]
  return base !== undefined && !base.includes('__lsb_') && DATABASE_NAME.test(base)
}

type ErrorClass = new (message: string) => Error

/** The problem with a database name, or undefined when it is acceptable. */
export function databaseNameProblem(name: unknown, maxBytes = MAX_DATABASE_BYTES): string | undefined {
  if (typeof name !== 'string' || !DATABASE_NAME.test(name))
    return 'letters, digits, _ and - only, not starting with -'
  if (Buffer.byteLength(name) > maxBytes) return `longer than ${maxBytes} bytes`
  if (maxBytes === MAX_DATABASE_BYTES && name.includes('__lsb_') && !isDrillDatabase(name))
    return "a restore's working name"
  return undefined
}

/**
 * Throws (an UntrustedInputError unless told otherwise) when `name` is not a database this tool
 * may read or restore into.
 */
export function assertDatabaseName(
  name: unknown,
  what = 'database name',
  errorClass: ErrorClass = UntrustedInputError,
): asserts name is string {
  const problem = databaseNameProblem(name)
  if (problem) throw new errorClass(`${what} ${JSON.stringify(name)} is not accepted: ${problem}`)
}

/**
 * A database named in a connection URL: the same characters, reported as a configuration error.
 * It is only read from, so any identifier PostgreSQL keeps whole will do.
 */
export function assertConfiguredDatabase(name: unknown, where: string): asserts name is string {
  const problem = databaseNameProblem(name, MAX_IDENTIFIER_BYTES)
  if (problem) throw new ConfigError(`${where}: database ${JSON.stringify(name)} is not accepted: ${problem}`)
}

/** The working databases of a restore into `database`. */
export interface RestoreNames {
  live: string
  /** Postgres: the fresh database pg_restore writes into. */
  restoring: string
  /** ClickHouse: the database the staging tables are loaded into. */
  staging: string
  /** Where what the restore replaced is kept. */
  previous: string
}

export function restoreNames(database: string): RestoreNames {
  assertDatabaseName(database)
  return {
    live: database,
    restoring: `${database}${RESTORING_SUFFIX}`,
    staging: `${database}${STAGING_SUFFIX}`,
    previous: `${database}${PREVIOUS_SUFFIX}`,
  }
}
