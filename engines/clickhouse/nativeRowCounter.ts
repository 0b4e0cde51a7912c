/**
 * Counts the rows of a ClickHouse `Native` stream as it passes through, without copying it:
 * each block is `columns, rows` then, per column, name, type and data. Skipping a column's data
 * needs its byte length, so the column types are parsed and their data skipped by structure.
 *
 * This is what makes the row count of an exported object exact — it is the count of the very
 * bytes that were stored, not of a second query that may see other parts — and it proves the
 * stream ends on a block boundary (a truncated body or an exception text appended mid-stream
 * by the server is an error, not a short backup).
 */
import { Transform } from 'node:stream'
import { ClickHouseError } from '#core/errors.ts'

type NativeType =
  | { kind: 'fixed'; size: number }
  | { kind: 'string' }
  | { kind: 'nullable'; inner: NativeType }
  | { kind: 'array'; inner: NativeType }
  | { kind: 'tuple'; elements: NativeType[] }
  | { kind: 'lowCardinality'; keys: NativeType }
  | { kind: 'opaque'; name: string }

const FIXED_SIZES: Record<string, number> = {
  UInt8: 1,
  Int8: 1,
  Bool: 1,
  Enum8: 1,
  Nothing: 1,
  UInt16: 2,
  Int16: 2,
  Date: 2,
  Enum16: 2,
  BFloat16: 2,
  UInt32: 4,
  Int32: 4,
  Float32: 4,
  DateTime: 4,
  Date32: 4,
  IPv4: 4,
  Decimal32: 4,
  Time: 4,
  UInt64: 8,
  Int64: 8,
  Float64: 8,
  DateTime64: 8,
  Decimal64: 8,
  Time64: 8,
  UInt128: 16,
  Int128: 16,
  UUID: 16,
  IPv6: 16,
  Decimal128: 16,
  UInt256: 32,
  Int256: 32,
  Decimal256: 32,
}

/** Splits `a, b(c, d), 'e,f'` at top-level commas. */
function splitArguments(text: string): string[] {
  const parts: string[] = []
  let depth = 0
  let current = ''
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === "'" || c === '`' || c === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1
      current += text.slice(i, j + 1)
      i = j
      continue
    }
    if (c === '(') depth++
    if (c === ')') depth--
    if (c === ',' && depth === 0) {
      parts.push(current.trim())
      current = ''
    } else {
      current += c
    }
  }
  if (current.trim()) parts.push(current.trim())
  return parts
}

/** Tuple elements may be named: `a String`, `` `a b` String``. */
function stripElementName(arg: string): string {
  const named = /^(?:`(?:[^`\\]|\\.)*`|[A-Za-z_][A-Za-z0-9_]*)\s+(?=[A-Za-z])/.exec(arg)
  return named ? arg.slice(named[0].length) : arg
}

/**
 * Parses a type name as printed in a Native header. Malformed text throws; a name without a known
 * layout (AggregateFunction, JSON, Dynamic, Variant, a type newer than this code) is opaque.
 */
export function parseNativeType(text: string): NativeType {
  const m = /^([A-Za-z][A-Za-z0-9_]*)\s*(?:\((.*)\))?$/s.exec(text.trim())
  if (!m)
    throw new ClickHouseError(
      `invalid Native stream: unreadable column type ${JSON.stringify(text.slice(0, 80))}`,
    )
  const name = m[1]!
  const args = m[2] === undefined ? [] : splitArguments(m[2])
  const arg = (i: number) => {
    const a = args[i]
    if (a === undefined) throw new ClickHouseError(`invalid Native stream: ${name} without arguments`)
    return a
  }
  if (name in FIXED_SIZES) return { kind: 'fixed', size: FIXED_SIZES[name]! }
  if (/^Interval[A-Za-z]+$/.test(name)) return { kind: 'fixed', size: 8 }
  switch (name) {
    case 'String':
      return { kind: 'string' }
    case 'FixedString': {
      const size = Number(arg(0))
      if (!Number.isSafeInteger(size) || size < 1) throw new ClickHouseError(`invalid Native stream: ${text}`)
      return { kind: 'fixed', size }
    }
    case 'Decimal': {
      const precision = Number(arg(0))
      return { kind: 'fixed', size: precision <= 9 ? 4 : precision <= 18 ? 8 : precision <= 38 ? 16 : 32 }
    }
    case 'Nullable':
      return { kind: 'nullable', inner: parseNativeType(arg(0)) }
    case 'Array':
      return { kind: 'array', inner: parseNativeType(arg(0)) }
    case 'Tuple':
      return { kind: 'tuple', elements: args.map((a) => parseNativeType(stripElementName(a))) }
    case 'Nested':
      return {
        kind: 'array',
        inner: { kind: 'tuple', elements: args.map((a) => parseNativeType(stripElementName(a))) },
      }
    case 'Map':
      return {
        kind: 'array',
        inner: { kind: 'tuple', elements: [parseNativeType(arg(0)), parseNativeType(arg(1))] },
      }
    case 'LowCardinality': {
      const inner = parseNativeType(arg(0))
      // The dictionary of LowCardinality(Nullable(T)) is serialized as plain T.
      return { kind: 'lowCardinality', keys: inner.kind === 'nullable' ? inner.inner : inner }
    }
    case 'SimpleAggregateFunction':
      return parseNativeType(args.at(-1) ?? arg(1))
    case 'Point':
      return { kind: 'tuple', elements: [FLOAT64, FLOAT64] }
    case 'Ring':
    case 'LineString':
      return { kind: 'array', inner: parseNativeType('Point') }
    case 'Polygon':
    case 'MultiLineString':
      return { kind: 'array', inner: parseNativeType('Ring') }
    case 'MultiPolygon':
      return { kind: 'array', inner: parseNativeType('Polygon') }
    default:
      return { kind: 'opaque', name }
  }
}
const FLOAT64: NativeType = { kind: 'fixed', size: 8 }

class OpaqueTypeError extends Error {}

const LC_NEED_GLOBAL_DICTIONARY = 0x100
const LC_HAS_ADDITIONAL_KEYS = 0x200
const LC_NEED_UPDATE_DICTIONARY = 0x400
const LC_INDEX_WIDTHS = [1, 2, 4, 8]
const MAX_COLUMNS = 100_000
const MAX_HEADER_STRING = 1 << 20

/** A resumable parser: generator methods yield when they need more bytes than are buffered. */
class NativeParser {
  private buf: Buffer = Buffer.alloc(0)
  private pos = 0
  ended = false
  rows = 0
  blocks = 0

  constructor(private readonly expectedColumns?: string[]) {}

  push(chunk: Buffer): void {
    this.buf = this.pos < this.buf.length ? Buffer.concat([this.buf.subarray(this.pos), chunk]) : chunk
    this.pos = 0
  }

  private get available(): number {
    return this.buf.length - this.pos
  }

  private truncated(): ClickHouseError {
    return new ClickHouseError(
      `invalid Native stream: it ends inside block ${this.blocks + 1} (truncated, or an error was appended)`,
    )
  }

  private *need(n: number): Generator<void, void, void> {
    while (this.available < n) {
      if (this.ended) throw this.truncated()
      yield
    }
  }

  private *skip(n: number): Generator<void, void, void> {
    let left = n
    while (left > 0) {
      if (this.available === 0) {
        if (this.ended) throw this.truncated()
        yield
        continue
      }
      const k = Math.min(this.available, left)
      this.pos += k
      left -= k
    }
  }

  private *varUInt(): Generator<void, number, void> {
    let value = 0
    for (let shift = 0; shift < 63; shift += 7) {
      if (this.available === 0) yield* this.need(1)
      const byte = this.buf[this.pos++]!
      value += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) return value
    }
    throw new ClickHouseError('invalid Native stream: malformed length')
  }

  private *uint64(): Generator<void, number, void> {
    yield* this.need(8)
    const value = this.buf.readBigUInt64LE(this.pos)
    this.pos += 8
    if (value > BigInt(Number.MAX_SAFE_INTEGER))
      throw new ClickHouseError('invalid Native stream: huge count')
    return Number(value)
  }

  private *headerString(): Generator<void, string, void> {
    const length = yield* this.varUInt()
    if (length > MAX_HEADER_STRING)
      throw new ClickHouseError('invalid Native stream: oversized column header')
    yield* this.need(length)
    const text = this.buf.toString('utf8', this.pos, this.pos + length)
    this.pos += length
    return text
  }

  /** Reads the per-column state prefixes (LowCardinality's serialization version), in type order. */
  private *prefix(type: NativeType): Generator<void, void, void> {
    switch (type.kind) {
      case 'nullable':
      case 'array':
        return yield* this.prefix(type.inner)
      case 'tuple':
        for (const e of type.elements) yield* this.prefix(e)
        return
      case 'lowCardinality': {
        const version = yield* this.uint64()
        if (version !== 1)
          throw new ClickHouseError(`invalid Native stream: LowCardinality version ${version}`)
        return
      }
      case 'opaque':
        throw new OpaqueTypeError(type.name)
      default:
        return
    }
  }

  private *skipStrings(rows: number): Generator<void, void, void> {
    for (let i = 0; i < rows; i++) {
      let length: number
      const b = this.buf
      // fast path for the common one- and two-byte lengths
      if (this.available >= 1 && b[this.pos]! < 0x80) {
        length = b[this.pos++]!
      } else if (this.available >= 2 && b[this.pos + 1]! < 0x80) {
        length = (b[this.pos]! & 0x7f) | (b[this.pos + 1]! << 7)
        this.pos += 2
      } else {
        length = yield* this.varUInt()
      }
      if (this.available >= length) this.pos += length
      else yield* this.skip(length)
    }
  }

  private *column(type: NativeType, rows: number): Generator<void, void, void> {
    if (rows === 0) return
    switch (type.kind) {
      case 'fixed':
        return yield* this.skip(rows * type.size)
      case 'string':
        return yield* this.skipStrings(rows)
      case 'nullable':
        yield* this.skip(rows)
        return yield* this.column(type.inner, rows)
      case 'array': {
        // offsets are cumulative within the block: the last one is the nested row count
        yield* this.skip((rows - 1) * 8)
        const nested = yield* this.uint64()
        return yield* this.column(type.inner, nested)
      }
      case 'tuple':
        for (const e of type.elements) yield* this.column(e, rows)
        return
      case 'lowCardinality': {
        let left = rows
        let haveGlobal = false
        while (left > 0) {
          const flags = yield* this.uint64()
          const width = LC_INDEX_WIDTHS[flags & 0xff]
          if (width === undefined)
            throw new ClickHouseError('invalid Native stream: LowCardinality index type')
          if (flags & LC_NEED_GLOBAL_DICTIONARY && (!haveGlobal || flags & LC_NEED_UPDATE_DICTIONARY)) {
            yield* this.column(type.keys, yield* this.uint64())
            haveGlobal = true
          }
          if (flags & LC_HAS_ADDITIONAL_KEYS) yield* this.column(type.keys, yield* this.uint64())
          const count = yield* this.uint64()
          if (count > left) throw new ClickHouseError('invalid Native stream: LowCardinality rows overflow')
          yield* this.skip(count * width)
          left -= count
        }
        return
      }
      case 'opaque':
        throw new OpaqueTypeError(type.name)
    }
  }

  *blocks_(): Generator<void, void, void> {
    for (;;) {
      while (this.available === 0) {
        if (this.ended) return
        yield
      }
      const columns = yield* this.varUInt()
      const rows = yield* this.varUInt()
      if (columns > MAX_COLUMNS || rows > 2 ** 32)
        throw new ClickHouseError('invalid Native stream: block header')
      if (this.expectedColumns && columns !== this.expectedColumns.length) {
        throw new ClickHouseError(
          `invalid Native stream: block ${this.blocks + 1} has ${columns} columns, expected ${this.expectedColumns.length}`,
        )
      }
      for (let c = 0; c < columns; c++) {
        const name = yield* this.headerString()
        const expected = this.expectedColumns?.[c]
        if (expected !== undefined && name !== expected) {
          throw new ClickHouseError(
            `invalid Native stream: column ${c + 1} of block ${this.blocks + 1} is ${JSON.stringify(name.slice(0, 80))}, expected ${JSON.stringify(expected)}`,
          )
        }
        const type = parseNativeType(yield* this.headerString())
        if (rows > 0) {
          yield* this.prefix(type)
          yield* this.column(type, rows)
        }
      }
      this.rows += rows
      this.blocks++
    }
  }
}

export interface NativeRowCounter {
  /** A pass-through stream; it errors when the data is not a complete Native stream. */
  stream: Transform
  /** Rows of the whole stream once it has ended; null when a column type cannot be skipped. */
  rows(): number | null
}

/**
 * A pass-through Transform counting the rows of a Native stream. `expectedColumns`, when given,
 * must match every block's column names in order (a cheap guard against foreign bytes).
 * For column types whose data has no generic layout (AggregateFunction, JSON, Dynamic, Variant)
 * counting gives up: the data still flows and {@link NativeRowCounter.rows} returns null.
 */
export function nativeRowCounter(expectedColumns?: string[]): NativeRowCounter {
  const parser = new NativeParser(expectedColumns)
  const steps = parser.blocks_()
  let opaque = false
  let finished = false
  const advance = () => {
    if (opaque) return
    try {
      finished = steps.next().done === true
    } catch (error) {
      if (error instanceof OpaqueTypeError) opaque = true
      else throw error
    }
  }
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (!opaque) {
        try {
          parser.push(chunk)
          advance()
        } catch (error) {
          return callback(error as Error)
        }
      }
      callback(null, chunk)
    },
    flush(callback) {
      try {
        parser.ended = true
        advance()
        if (!opaque && !finished) throw new ClickHouseError('invalid Native stream: incomplete')
        callback()
      } catch (error) {
        callback(error as Error)
      }
    },
  })
  return { stream, rows: () => (opaque || !finished ? null : parser.rows) }
}
