import { UntrustedInputError } from '#core/errors.ts'

/** PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1) — silently, hence the check. */
export const MAX_IDENTIFIER_BYTES = 63
/** The database a restore is written into before it replaces the live one. */
export const RESTORING_SUFFIX = '__lsb_restoring'
/** The database the live one is renamed to when a restore replaces it. */
export const PREVIOUS_SUFFIX = '__lsb_previous'

/** Letters, digits, `_` and `-`: enough for real database names, nothing libpq or SQL could read as syntax. */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/

type ErrorClass = new (message: string) => Error

/** Throws (an UntrustedInputError unless told otherwise) when `name` is not a plain database name of at most `maxBytes`. */
export function assertDatabaseName(
  name: unknown,
  errorClass: ErrorClass = UntrustedInputError,
  maxBytes = MAX_IDENTIFIER_BYTES,
): asserts name is string {
  if (typeof name !== 'string' || !SAFE_NAME.test(name)) {
    throw new errorClass(
      `database name ${JSON.stringify(name)} is not accepted (letters, digits, _ and - only, not starting with -)`,
    )
  }
  if (Buffer.byteLength(name) > maxBytes) {
    throw new errorClass(`database name ${JSON.stringify(name)} is longer than ${maxBytes} bytes`)
  }
}

/** A validated name as an SQL identifier. */
export function quoteIdent(name: string): string {
  assertDatabaseName(name)
  return `"${name}"`
}

export interface RestoreNames {
  live: string
  restoring: string
  previous: string
}

/** The three databases of a restore; the live name leaves room for the longer suffix within 63 bytes. */
export function restoreNames(database: string): RestoreNames {
  const room = MAX_IDENTIFIER_BYTES - Math.max(RESTORING_SUFFIX.length, PREVIOUS_SUFFIX.length)
  assertDatabaseName(database, UntrustedInputError, room)
  if (database.includes('__lsb_')) {
    throw new UntrustedInputError(`database name ${JSON.stringify(database)} is a restore's working name`)
  }
  return {
    live: database,
    restoring: `${database}${RESTORING_SUFFIX}`,
    previous: `${database}${PREVIOUS_SUFFIX}`,
  }
}
