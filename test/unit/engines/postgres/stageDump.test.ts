import { describe, expect, it } from 'vitest'
import { loadSettings } from '#core/config.ts'
import { ConfigError } from '#core/errors.ts'
import { reasonToStream, STAGING_HEADROOM_BYTES } from '#engines/postgres/stageDump.ts'

const base = { LSB_BUCKET: 'langsight-backups' }
const MiB = 2 ** 20

describe('Function: reasonToStream', () => {
  it('copies a dump that fits beside the headroom, streams one that does not or needs no copy', () => {
    expect(reasonToStream(2, 100 * MiB, 100 * MiB + STAGING_HEADROOM_BYTES, '/tmp')).toBeNull()
    expect(reasonToStream(2, 100 * MiB, 100 * MiB + STAGING_HEADROOM_BYTES - 1, '/tmp')).toBe(
      "the dump (100.0 MiB) does not fit in /tmp (164.0 MiB free, 64.0 MiB kept free; LSB_PG_RESTORE_TEMP_DIR, or Lambda's ephemeral storage)",
    )
    expect(reasonToStream(1, 1, 10 * 2 ** 30, '/tmp')).toBe('one job (LSB_PG_RESTORE_JOBS=1)')
  })
})

describe('Function: loadSettings — pg_restore jobs and temp dir', () => {
  it('defaults to two jobs in the OS temp dir', () => {
    const s = loadSettings({ ...base })
    expect([s.LSB_PG_RESTORE_JOBS, s.LSB_PG_RESTORE_TEMP_DIR]).toEqual([2, undefined])
  })

  it.each([
    ['LSB_PG_RESTORE_JOBS', '0'],
    ['LSB_PG_RESTORE_JOBS', '17'],
    ['LSB_PG_RESTORE_TEMP_DIR', 'tmp/restore'],
  ])('refuses %s=%s, naming the variable', (name, value) => {
    const load = () => loadSettings({ ...base, [name]: value })
    expect(load).toThrow(ConfigError)
    expect(load).toThrow(`${name}: `)
  })

  it('refuses a temp dir for a restore that streams: it would do nothing', () => {
    // Act
    const load = () =>
      loadSettings({ ...base, LSB_PG_RESTORE_JOBS: '1', LSB_PG_RESTORE_TEMP_DIR: '/mnt/restore' })
    // Assess
    expect(load).toThrow(ConfigError)
    expect(load).toThrow(
      'LSB_PG_RESTORE_TEMP_DIR is set but LSB_PG_RESTORE_JOBS is 1, so the dump is streamed and it would do nothing',
    )
    expect(
      loadSettings({ ...base, LSB_PG_RESTORE_JOBS: '4', LSB_PG_RESTORE_TEMP_DIR: '/mnt/restore' }),
    ).toMatchObject({
      LSB_PG_RESTORE_JOBS: 4,
      LSB_PG_RESTORE_TEMP_DIR: '/mnt/restore',
    })
  })
})
