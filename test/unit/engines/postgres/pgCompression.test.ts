import { describe, expect, it } from 'vitest'
import { loadSettings, pgDumpCompression } from '#core/config.ts'
import { ConfigError } from '#core/errors.ts'
import { formatLoadMarker, parseLoadMarker } from '#engines/postgres/loadMarker.ts'
import { compressArgument, describeCompression } from '#engines/postgres/pgCompression.ts'

const base = { LSB_BUCKET: 'langsight-backups' }
const tool = (major: number) => ({
  version: `${major}.1`,
  major,
  path: `/usr/lib/postgresql/${major}/bin/pg_dump`,
})

describe('Function: pgDumpCompression', () => {
  it.each([
    [{}, 'auto'],
    [{ LSB_PG_COMPRESSION: 'auto' }, 'auto'],
    [{ LSB_PG_COMPRESSION: 'ZSTD:3' }, { method: 'zstd', level: 3 }],
    [{ LSB_PG_COMPRESSION: 'lz4:12' }, { method: 'lz4', level: 12 }],
    [{ LSB_PG_COMPRESSION: 'gzip:9' }, { method: 'gzip', level: 9 }],
    [{ LSB_PG_COMPRESSION: 'none' }, { method: 'none', level: null }],
    // the older setting keeps its meaning, a gzip level (0 = none), when LSB_PG_COMPRESSION is auto
    [{ LSB_PG_COMPRESS: '6' }, { method: 'gzip', level: 6 }],
    [
      { LSB_PG_COMPRESS: '0', LSB_PG_COMPRESSION: 'auto' },
      { method: 'none', level: null },
    ],
  ])('reads %j as %j', (env, expected) => {
    // Act
    const compression = pgDumpCompression(loadSettings({ ...base, ...env }))
    // Assess
    expect(compression).toEqual(expected)
  })

  it.each(['zstd', 'zstd:0', 'zstd:23', 'gzip:0', 'lz4:13', 'none:1', 'brotli:3', '6'])(
    'refuses LSB_PG_COMPRESSION=%s, naming the variable and the accepted values',
    (value) => {
      // Act
      const load = () => loadSettings({ ...base, LSB_PG_COMPRESSION: value })
      // Assess
      expect(load).toThrow(ConfigError)
      expect(load).toThrow(/LSB_PG_COMPRESSION: .* is not auto, none, gzip:1–9, zstd:1–22 or lz4:1–12/)
    },
  )

  it('refuses LSB_PG_COMPRESS beside an explicit LSB_PG_COMPRESSION: it would do nothing', () => {
    // Act
    const load = () => loadSettings({ ...base, LSB_PG_COMPRESS: '6', LSB_PG_COMPRESSION: 'zstd:1' })
    // Assess
    expect(load).toThrow(ConfigError)
    expect(load).toThrow(
      'LSB_PG_COMPRESS=6 is set but LSB_PG_COMPRESSION=zstd:1 decides the compression, so it would do nothing',
    )
  })
})

describe('Function: compressArgument', () => {
  it.each([
    [{ method: 'zstd', level: 1 } as const, 17, '--compress=zstd:1', 'zstd:1'],
    [{ method: 'gzip', level: 6 } as const, 16, '--compress=gzip:6', 'gzip:6'],
    [{ method: 'none', level: null } as const, 17, '--compress=none', 'none'],
    [{ method: 'gzip', level: 6 } as const, 15, '--compress=6', 'gzip:6'],
    [{ method: 'none', level: null } as const, 15, '--compress=0', 'none'],
  ])('spells %j for pg_dump %i as %s', (compression, major, argument, described) => {
    expect(compressArgument(compression, tool(major))).toBe(argument)
    expect(describeCompression(compression)).toBe(described)
  })
})

describe('Function: parseLoadMarker', () => {
  it('reads back what a load writes, and nothing else', () => {
    // Prepare
    const marker = { source: 's3://b/k.dump', tables: 5, loadedAt: '2026-11-25T02:00:00.000Z' }
    // Act / Assess
    expect(parseLoadMarker(formatLoadMarker(marker))).toEqual(marker)
    expect(parseLoadMarker(null)).toBeNull()
    expect(parseLoadMarker('an operator’s note')).toBeNull()
    expect(parseLoadMarker('langsight-backup: load complete {"source":"s3://b/k"}')).toBeNull()
    expect(parseLoadMarker('langsight-backup: load complete {not json')).toBeNull()
  })
})
