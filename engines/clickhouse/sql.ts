/**
 * ClickHouse SQL text: a tokenizer precise about literals, quoted identifiers and comments
 * (what DDL validation and rewriting stand on), identifier and literal quoting, and
 * client-side binding of `{name:Type}` parameters for engines that cannot bind them
 * (ClickHouse before 19.x over HTTP, chdb's streaming cursor).
 */
import { ClickHouseError, UntrustedInputError } from '#core/errors.ts'

export type TokenKind = 'word' | 'quoted' | 'string' | 'number' | 'punct' | 'space' | 'comment'

export interface Token {
  kind: TokenKind
  /** The exact source text of the token. */
  text: string
  /** Identifiers and strings: the unquoted, unescaped value; otherwise the text. */
  value: string
  start: number
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/
const WORD_CHAR = /[A-Za-z0-9_\u0080-\uffff]/
const SPACE = /[ \t\n\r\f\v]/

/** Reads a quoted run starting at `start` (the opening quote); backslash escapes and doubled quotes. */
function readQuoted(sql: string, start: number, quote: string): { end: number; value: string } {
  let value = ''
  let i = start + 1
  while (i < sql.length) {
    const c = sql[i]!
    if (c === '\\') {
      if (i + 1 >= sql.length) break
      const n = sql[i + 1]!
      value += { n: '\n', t: '\t', r: '\r', '0': '\0', b: '\b', f: '\f' }[n] ?? n
      i += 2
    } else if (c === quote) {
      if (sql[i + 1] === quote) {
        value += quote
        i += 2
      } else {
        return { end: i + 1, value }
      }
    } else {
      value += c
      i++
    }
  }
  throw new UntrustedInputError(`unterminated ${quote} quote starting at offset ${start}`)
}

/** Splits SQL text into tokens. An unterminated literal, identifier or comment is an UntrustedInputError. */
export function tokenizeSql(sql: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < sql.length) {
    const c = sql[i]!
    const start = i
    if (SPACE.test(c)) {
      while (i < sql.length && SPACE.test(sql[i]!)) i++
      tokens.push({ kind: 'space', text: sql.slice(start, i), value: ' ', start })
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < sql.length && sql[i] !== '\n') i++
      tokens.push({ kind: 'comment', text: sql.slice(start, i), value: '', start })
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2)
      if (end < 0) throw new UntrustedInputError(`unterminated comment starting at offset ${start}`)
      i = end + 2
      tokens.push({ kind: 'comment', text: sql.slice(start, i), value: '', start })
    } else if (c === "'") {
      const { end, value } = readQuoted(sql, i, "'")
      i = end
      tokens.push({ kind: 'string', text: sql.slice(start, i), value, start })
    } else if (c === '`' || c === '"') {
      const { end, value } = readQuoted(sql, i, c)
      i = end
      tokens.push({ kind: 'quoted', text: sql.slice(start, i), value, start })
    } else if (/[0-9]/.test(c)) {
      while (i < sql.length && /[0-9A-Za-z_.]/.test(sql[i]!)) {
        // an exponent sign belongs to the number: 1e-5
        if ((sql[i] === 'e' || sql[i] === 'E') && /[+-]/.test(sql[i + 1] ?? '')) i++
        i++
      }
      tokens.push({ kind: 'number', text: sql.slice(start, i), value: sql.slice(start, i), start })
    } else if (WORD_START.test(c)) {
      while (i < sql.length && WORD_CHAR.test(sql[i]!)) i++
      tokens.push({ kind: 'word', text: sql.slice(start, i), value: sql.slice(start, i), start })
    } else {
      i++
      tokens.push({ kind: 'punct', text: c, value: c, start })
    }
  }
  return tokens
}

/** Backtick-quotes an identifier (table, database, column), escaping backslashes and backticks. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replaceAll('\\', '\\\\').replaceAll('`', '\\`')}\``
}

/** `db`.`table` */
export function qualifiedName(database: string, table: string): string {
  return `${quoteIdentifier(database)}.${quoteIdentifier(table)}`
}

/** A single-quoted string literal; every backslash and quote escaped, so any text is safe inside. */
export function quoteString(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
}

const INTEGER_TYPE = /^U?Int(8|16|32|64|128|256)$/
const FLOAT_TYPE = /^(Float32|Float64)$/

/** Renders one parameter value as a literal of ClickHouse type `type`. */
function literalFor(name: string, type: string, value: unknown): string {
  const t = type.trim()
  const array = /^Array\((.*)\)$/s.exec(t)
  if (array) {
    if (!Array.isArray(value)) throw new ClickHouseError(`query parameter ${name} must be an array for ${t}`)
    return `[${value.map((v) => literalFor(name, array[1]!, v)).join(', ')}]`
  }
  if (t === 'String') {
    if (typeof value !== 'string') throw new ClickHouseError(`query parameter ${name} must be a string`)
    return quoteString(value)
  }
  if (t === 'Identifier') {
    if (typeof value !== 'string') throw new ClickHouseError(`query parameter ${name} must be a string`)
    return quoteIdentifier(value)
  }
  if (INTEGER_TYPE.test(t)) {
    const text = typeof value === 'bigint' ? value.toString() : String(value)
    if (!/^-?\d+$/.test(text)) throw new ClickHouseError(`query parameter ${name} must be an integer`)
    return `to${t}(${quoteString(text)})`
  }
  if (FLOAT_TYPE.test(t)) {
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new ClickHouseError(`query parameter ${name} must be a finite number`)
    return `to${t}(${quoteString(String(value))})`
  }
  throw new ClickHouseError(`query parameter ${name}: type ${t} cannot be bound on this server`)
}

/**
 * Replaces `{name:Type}` placeholders (outside literals) with literals, for engines that do not
 * bind parameters server-side. Values are quoted by type, never spliced raw.
 */
export function bindQueryParams(sql: string, params: Record<string, unknown> | undefined): string {
  if (!params || Object.keys(params).length === 0) return sql
  const tokens = tokenizeSql(sql)
  let out = ''
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    const name = tokens[i + 1]
    if (t.text === '{' && name?.kind === 'word' && tokens[i + 2]?.text === ':') {
      let j = i + 3
      let type = ''
      while (j < tokens.length && tokens[j]!.text !== '}') type += tokens[j++]!.text
      if (j >= tokens.length) throw new ClickHouseError(`unterminated query parameter {${name.value}`)
      if (!Object.hasOwn(params, name.value))
        throw new ClickHouseError(`query parameter ${name.value} has no value`)
      out += literalFor(name.value, type, params[name.value])
      i = j
    } else {
      out += t.text
    }
  }
  return out
}
