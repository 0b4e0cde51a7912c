import { describe, expect, it } from 'vitest'
import { drillOfKey, drillRecordKey, provenAt } from '#core/backupKeys.ts'
import {
  addRowHashes,
  compareFingerprints,
  expectedFingerprints,
  normalizeRowHash,
} from '#core/fingerprint.ts'
import type { Manifest } from '#core/manifest.ts'
import { databaseNameProblem, drillDatabaseName, isDrillDatabase } from '#core/names.ts'

const MAX = (2n ** 64n - 1n).toString()

describe('Function: addRowHashes / normalizeRowHash', () => {
  it('adds modulo 2^64, as ClickHouse sum(UInt64) wraps', () => {
    expect(addRowHashes(MAX, '1')).toBe('0')
    expect(addRowHashes(MAX, MAX)).toBe((2n ** 64n - 2n).toString())
    expect(addRowHashes('12', '30')).toBe('42')
  })
  it("brings Postgres's numeric sums, negative ones included, into 0 … 2^64-1", () => {
    expect(normalizeRowHash('-1')).toBe(MAX)
    expect(normalizeRowHash((2n ** 64n + 5n).toString())).toBe('5')
  })
})

describe('Function: expectedFingerprints', () => {
  const object = (table: string, rows: number, fingerprint?: string) => ({
    key: `p/clickhouse/20261125T000000.000Z/data/${table}/${rows}.native.zst`,
    bytes: 1,
    sha256: '0'.repeat(64),
    rows,
    table,
    part: 'all',
    compression: 'zstd' as const,
    ...(fingerprint ? { fingerprint } : {}),
  })
  const manifest = (objects: ReturnType<typeof object>[]) =>
    ({ engine: 'clickhouse', objects }) as unknown as Manifest

  it("sums a split table's objects into one fingerprint", () => {
    const got = expectedFingerprints(
      manifest([object('spans', 2, MAX), object('spans', 3, '2'), object('x', 1, '7')]),
    )
    expect(got).toEqual([
      { table: 'spans', rows: 5, hash: '1' },
      { table: 'x', rows: 1, hash: '7' },
    ])
  })
  it('keeps the rows but no hash when one object of the table has none', () => {
    expect(expectedFingerprints(manifest([object('spans', 2, '5'), object('spans', 3)]))).toEqual([
      { table: 'spans', rows: 5, hash: null },
    ])
  })
  it('is null for a Postgres backup that recorded none', () => {
    expect(expectedFingerprints({ engine: 'postgres', objects: [] } as unknown as Manifest)).toBeNull()
  })
})

describe('Function: compareFingerprints', () => {
  it('matches equal tables, and names a differing hash, a differing count, a missing and an extra table', () => {
    const got = compareFingerprints(
      [
        { table: 'a', rows: 1, hash: '1' },
        { table: 'b', rows: 2, hash: '2' },
        { table: 'c', rows: 3, hash: '3' },
        { table: 'd', rows: 4, hash: null },
        { table: 'e', rows: 5, hash: '5' },
      ],
      [
        { table: 'a', rows: 1, hash: '1' },
        { table: 'b', rows: 2, hash: '9' },
        { table: 'c', rows: 4, hash: '3' },
        { table: 'd', rows: 4, hash: '4' },
        { table: 'f', rows: 6, hash: '6' },
      ],
    )
    expect(got.map((c) => [c.table, c.compared, c.match])).toEqual([
      ['a', 'full', true],
      ['b', 'full', false],
      ['c', 'full', false],
      ['d', 'rows', true],
      ['e', 'rows', false],
      ['f', 'rows', false],
    ])
    expect(got.find((c) => c.table === 'e')!.rows).toBeNull()
    expect(got.find((c) => c.table === 'f')!.expectedRows).toBeNull()
  })
})

describe('Function: drillDatabaseName', () => {
  it('makes a name no live database can have, within the length every working name needs', () => {
    const name = drillDatabaseName('langsight', '0a1b2c3d')
    expect(name).toBe('langsight__lsb_drill_0a1b2c3d')
    expect(isDrillDatabase(name)).toBe(true)
    expect(databaseNameProblem(name)).toBeUndefined()
    const long = drillDatabaseName('x'.repeat(60), '0a1b2c3d')
    expect(databaseNameProblem(long)).toBeUndefined()
    expect(isDrillDatabase(long)).toBe(true)
  })
  it('refuses other working names and a drill suffix on a working name', () => {
    expect(isDrillDatabase('langsight')).toBe(false)
    expect(isDrillDatabase('langsight__lsb_restoring')).toBe(false)
    expect(isDrillDatabase('a__lsb_previous__lsb_drill_0a1b2c3d')).toBe(false)
    expect(isDrillDatabase('langsight__lsb_drill_0A1B2C3D')).toBe(false)
    expect(databaseNameProblem('langsight__lsb_restoring')).toBe("a restore's working name")
    expect(() => drillDatabaseName('langsight', 'nothex!!')).toThrow(/8 hex digits/)
  })
})

describe('Function: provenAt', () => {
  it("is the newest passed drill's id, from keys alone", () => {
    const key = (drill: string, passed: boolean) =>
      drillRecordKey('p', 'postgres', '20261101T020000.000Z', drill, passed)
    const keys = [
      'p/postgres/20261101T020000.000Z/postgres.dump',
      key('20261102T040000.000Z', true),
      key('20261109T040000.000Z', false),
      key('20261103T040000.000Z', true),
    ]
    expect(provenAt(keys)).toBe('20261103T040000.000Z')
    expect(provenAt(keys.slice(0, 1))).toBeNull()
    expect(drillOfKey(keys[2]!)).toEqual({ drillId: '20261109T040000.000Z', passed: false })
    expect(drillOfKey('p/postgres/20261101T020000.000Z/drills/evil-passed.json')).toBeUndefined()
  })
})
