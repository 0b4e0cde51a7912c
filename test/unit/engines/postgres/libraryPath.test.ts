import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { libraryPathFor } from '#engines/postgres/pgTool.ts'

describe('Function: libraryPathFor', () => {
  const saved = process.env.LD_LIBRARY_PATH
  const roots: string[] = []
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true })
    if (saved === undefined) delete process.env.LD_LIBRARY_PATH
    else process.env.LD_LIBRARY_PATH = saved
  })

  function layer(withLibpq: boolean): string {
    const root = mkdtempSync(join(tmpdir(), 'lsb-layer-'))
    roots.push(root)
    mkdirSync(join(root, 'bin'))
    mkdirSync(join(root, 'lib'))
    if (withLibpq) writeFileSync(join(root, 'lib', 'libpq.so.5'), '')
    return root
  }

  it("puts a layer's own lib/ before Lambda's library path", () => {
    const root = layer(true)
    process.env.LD_LIBRARY_PATH = '/lib64:/opt/lib'
    expect(libraryPathFor(join(root, 'bin', 'pg_dump'))).toBe(
      `${join(root, 'bin', '..', 'lib')}:/lib64:/opt/lib`,
    )
  })

  it('leaves the path alone next to a lib/ that holds no libpq (a server install)', () => {
    const root = layer(false)
    process.env.LD_LIBRARY_PATH = '/usr/lib'
    expect(libraryPathFor(join(root, 'bin', 'pg_dump'))).toBe('/usr/lib')
    delete process.env.LD_LIBRARY_PATH
    expect(libraryPathFor(join(root, 'bin', 'pg_dump'))).toBeUndefined()
  })
})
