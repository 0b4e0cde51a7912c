import { z } from 'zod'
import { backupStore } from '#catalog/backupStore.ts'
import { verifyObjectChecksum } from '#catalog/objectStore.ts'
import { UntrustedInputError } from '#core/errors.ts'
import { sha256Schema } from '#core/payloads.ts'
import { type StateContext, stateHandler } from '#functions/middleware/stateHandler.ts'

const input = z.object({
  key: z.string().min(1),
  sha256: sha256Schema,
  bytes: z.number().int().nonnegative(),
})

/** Re-reads one stored object and compares it with the sha256 and size recorded when it was written. */
export async function run({ key, sha256, bytes }: z.output<typeof input>, { signal }: StateContext) {
  const { bucket, prefix } = backupStore()
  if (!key.startsWith(`${prefix}/`) || key.split('/').includes('..')) {
    throw new UntrustedInputError(`object key ${JSON.stringify(key)} is outside ${prefix}/`)
  }
  await verifyObjectChecksum(bucket, key, { sha256, bytes }, signal)
  return { key, verified: true }
}

export const handler = stateHandler('VerifyObject', input, run)
