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
import { type NativeType, parseNativeType } from './nativeType.ts'

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
