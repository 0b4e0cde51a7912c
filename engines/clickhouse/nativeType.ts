/**
 * ClickHouse type names (`Array(Nullable(String))`, `Map(String, UInt64)`, …) parsed into the
 * layout of their column data in the `Native` format: what nativeRowCounter.ts needs to skip a
 * column's bytes. Types whose layout is not known here are `opaque`.
 */
import { ClickHouseError } from '#core/errors.ts'

export type NativeType =
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
