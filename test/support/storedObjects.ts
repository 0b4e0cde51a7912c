import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inject } from 'vitest'

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) =>
    statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)],
  )
}

/** The file in which s3rver keeps an object. */
export function storedFile(key: string): string {
  const { directory, bucket } = inject('servers').s3
  const file = walk(join(directory, bucket)).find((f) => f.endsWith(`${key}._S3rver_object`))
  if (!file) throw new Error(`no stored file for ${key}`)
  return file
}

/** Flips one byte of a stored object at rest: a real corruption that only a re-read can notice. */
export function corruptStoredObject(key: string, at = 0.5): void {
  const file = storedFile(key)
  const bytes = readFileSync(file)
  const i = Math.floor(bytes.length * at)
  bytes[i] = (bytes[i] ?? 0) ^ 0xff
  writeFileSync(file, bytes)
}
