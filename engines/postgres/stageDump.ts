import { createWriteStream } from 'node:fs'
import { mkdtemp, readdir, rm, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { HeadObjectCommand } from '@aws-sdk/client-s3'
import { openObject, s3Client } from '#catalog/objectStore.ts'
import { ConfigError, PgRestoreError } from '#core/errors.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { redact } from '#core/redact.ts'
import { progressMeter } from './progressMeter.ts'
import { dumpReadFailure, type PgRestoreFile, type PgRestoreSource } from './runPgRestore.ts'

/** A dump copied to local disk for `pg_restore --jobs`; remove() deletes it, whatever happened. */
export interface StagedDump extends PgRestoreFile {
  remove(): Promise<void>
}

/** Room left beside the dump: pg_restore and the runtime write a little to the same disk. */
export const STAGING_HEADROOM_BYTES = 64 * 2 ** 20

/** `lsb-pgrestore-<pid>-<random>`: whose copy it is, so a leftover can be told from a copy in use. */
const DIR_PREFIX = 'lsb-pgrestore-'
/** Copies this process is using now: anything else of ours in the temp dir is a leftover. */
const inUse = new Set<string>()

/**
 * Why the dump is streamed rather than copied, or null when a copy fits: one job needs no copy, and
 * the dump with {@link STAGING_HEADROOM_BYTES} must fit in the free space of the temp dir.
 */
export function reasonToStream(
  jobs: number,
  dumpBytes: number,
  freeBytes: number,
  tempDir: string,
): string | null {
  if (jobs <= 1) return 'one job (LSB_PG_RESTORE_JOBS=1)'
  if (dumpBytes + STAGING_HEADROOM_BYTES > freeBytes) {
    return (
      `the dump (${humanBytes(dumpBytes)}) does not fit in ${tempDir} (${humanBytes(freeBytes)} free, ` +
      `${humanBytes(STAGING_HEADROOM_BYTES)} kept free; LSB_PG_RESTORE_TEMP_DIR, or Lambda's ephemeral storage)`
    )
  }
  return null
}

/**
 * Copies s3://bucket/key into a fresh directory under `tempDir` for `pg_restore --jobs`, or says
 * why the dump should be streamed instead (see {@link reasonToStream}; also when its size cannot
 * be read, and the stream then reports why). Leftovers of earlier runs (a process that was killed)
 * are removed first. A failed copy is removed before the error (a StallError, TransientError or
 * PgRestoreError) is thrown.
 */
export async function stageDump(
  options: PgRestoreSource & { jobs: number; tempDir: string },
): Promise<StagedDump | { reason: string }> {
  const { bucket, key, jobs, tempDir, signal, onProgress } = options
  if (jobs <= 1) return { reason: reasonToStream(jobs, 0, 0, tempDir)! }
  let dumpBytes: number
  try {
    const head = await s3Client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }), {
      abortSignal: signal,
    })
    dumpBytes = head.ContentLength ?? Number.NaN
  } catch (error) {
    return {
      reason: `the size of s3://${bucket}/${key} is unknown (${redact(String((error as Error).name))})`,
    }
  }
  if (!Number.isFinite(dumpBytes)) return { reason: `S3 gave no size for s3://${bucket}/${key}` }
  const unusable = (error: unknown) =>
    new ConfigError(
      `the restore temp dir ${tempDir} (LSB_PG_RESTORE_TEMP_DIR) is not usable: ${(error as Error).message}`,
      { cause: error },
    )
  await removeLeftovers(tempDir)
  const { bavail, bsize } = await statfs(tempDir).catch((error) => {
    throw unusable(error)
  })
  const reason = reasonToStream(jobs, dumpBytes, bavail * bsize, tempDir)
  if (reason) return { reason }

  const dir = await mkdtemp(join(tempDir, `${DIR_PREFIX}${process.pid}-`)).catch((error) => {
    throw unusable(error)
  })
  inUse.add(dir)
  const remove = async () => {
    await rm(dir, { recursive: true, force: true })
    inUse.delete(dir)
  }
  const path = join(dir, 'dump')
  try {
    try {
      await pipeline(
        await openObject(bucket, key, signal),
        progressMeter({ onProgress }),
        createWriteStream(path),
        {
          signal,
        },
      )
    } catch (error) {
      if (signal?.aborted) {
        throw new PgRestoreError(
          `copy of s3://${bucket}/${key} to ${path} aborted (${redact(String(signal.reason))}); ` +
            'the live database is untouched',
          { cause: error },
        )
      }
      throw dumpReadFailure(`copy of s3://${bucket}/${key} to ${path}`, error)
    }
    const { size } = await stat(path)
    if (size !== dumpBytes) {
      throw dumpReadFailure(
        `copy of s3://${bucket}/${key} to ${path}`,
        new Error(`${size} bytes copied, S3 said ${dumpBytes}`),
      )
    }
    return { path, jobs, remove }
  } catch (error) {
    await remove()
    throw error
  }
}

/** Our copies in `tempDir` that no running process uses: a process killed mid-restore leaves one. */
async function removeLeftovers(tempDir: string): Promise<void> {
  const names = await readdir(tempDir).catch(() => [] as string[])
  for (const name of names) {
    const pid = Number(/^lsb-pgrestore-(\d+)-/.exec(name)?.[1])
    const dir = join(tempDir, name)
    if (!pid || inUse.has(dir)) continue
    // another live process's copy is its own; one of this pid not in use is from before (a Lambda
    // sandbox reuses its pid after a timeout killed the runtime)
    if (pid !== process.pid && isRunning(pid)) continue
    await rm(dir, { recursive: true, force: true })
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM'
  }
}
