import { uploadStream } from '#catalog/objectStore.ts'
import type { PgCompressionSetting } from '#core/config.ts'
import { stallLimitMs } from '#core/deadline.ts'
import { PgDumpError } from '#core/errors.ts'
import { redact } from '#core/redact.ts'
import { APPLICATION_NAME, inspectPostgres } from './connectPostgres.ts'
import { compressArgument, describeCompression, resolvePgCompression } from './pgCompression.ts'
import { assertDumpToolCompatible, pgToolVersion, spawnPgTool, toolEnv } from './pgTool.ts'
import { parsePostgresUrl, toolConnectionArgs } from './postgresUrl.ts'
import { progressMeter } from './progressMeter.ts'

export interface DumpOptions {
  url: string
  bucket: string
  key: string
  /** `auto` (zstd:1 with pg_dump ≥ 16, else gzip:1) or a method and level (core/config.ts pgDumpCompression). */
  compression: PgCompressionSetting
  binDir?: string
  /** Fired before the Lambda timeout: kills pg_dump and aborts the upload. */
  signal?: AbortSignal
  /** Bytes stored so far, every few MiB and once at the end. */
  onProgress?: (bytes: number) => void
  /** An exported snapshot (`pg_export_snapshot()`) to dump, so that what else reads it sees the same data. */
  snapshot?: string
}

export interface DumpResult {
  bytes: number
  sha256: string
  serverVersion: string
  dumpToolVersion: string
  database: string
  /** What pg_dump compressed with: `zstd:1`, `gzip:6`, `none`. */
  compression: string
}

/** A snapshot id as pg_export_snapshot() prints it (`00000003-0000001B-1`), nothing else. */
function snapshotId(id: string): string {
  if (!/^[0-9A-F]+-[0-9A-F]+(-\d+)?$/i.test(id))
    throw new PgDumpError(`not a snapshot id: ${JSON.stringify(id)}`)
  return id
}

/** Every custom-format archive starts with these bytes; anything else is not a dump, whatever the exit code. */
const ARCHIVE_MAGIC = Buffer.from('PGDMP')
/** pg_dump's error when the reader of its stdout has gone: a consequence of our failure, not its own. */
const OUTPUT_GONE = /could not write to output file/

/**
 * Preflight (versions, compression), then `pg_dump --format=custom --compress=… --no-password` streamed through
 * uploadStream() into s3://bucket/key while hashing. Nothing is staged on disk or in memory beyond the
 * multipart queue. A non-zero exit, a signal, an error line on stderr or the abort `signal` aborts the
 * multipart upload and throws PgDumpError with pg_dump's (redacted) stderr: no object is left at the key.
 */
export async function dumpPostgresToS3(options: DumpOptions): Promise<DumpResult> {
  const { url, bucket, key, binDir, signal, onProgress } = options
  const target = parsePostgresUrl(url)
  const destination = `s3://${bucket}/${key}`
  const [server, tool] = await Promise.all([inspectPostgres(url), pgToolVersion('pg_dump', binDir)])
  assertDumpToolCompatible(tool, server)
  const compression = await resolvePgCompression(options.compression, tool)
  if (signal?.aborted) throw new PgDumpError(`pg_dump of ${target.location} aborted before it started`)

  const args = [
    '--format=custom',
    compressArgument(compression, tool),
    '--no-password',
    // a table locked by someone else fails the dump after the stall limit instead of waiting for good
    `--lock-wait-timeout=${stallLimitMs()}`,
    ...(options.snapshot ? [`--snapshot=${snapshotId(options.snapshot)}`] : []),
    ...toolConnectionArgs(target),
  ]
  const dump = spawnPgTool(tool.path, args, toolEnv(target, `${APPLICATION_NAME} pg_dump`, tool.path), {
    stdin: false,
  })
  const failure = (what: string, cause?: unknown) =>
    new PgDumpError(`pg_dump of ${target.location} to ${destination} ${what}`, { cause })
  const onAbort = () => void dump.stop()
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const meter = progressMeter({
      onProgress,
      startBytes: ARCHIVE_MAGIC.length,
      checkStart: (start) => {
        if (!start.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC)) {
          throw failure(
            `produced no custom-format archive (it starts ${JSON.stringify(redact(start.toString('latin1')))})`,
          )
        }
      },
    })
    const digest = await uploadStream(dump.child.stdout, {
      bucket,
      key,
      transforms: [meter],
      signal,
      // The object is completed only once pg_dump has exited cleanly: a dump cut short is never stored.
      beforeComplete: async () => {
        const exit = await dump.closed
        if (dump.failed(exit)) throw failure(`failed, ${dump.describe(exit)}`)
      },
    })
    return {
      bytes: digest.bytes,
      sha256: digest.sha256,
      serverVersion: server.serverVersion,
      dumpToolVersion: tool.version,
      database: target.database,
      compression: describeCompression(compression),
    }
  } catch (error) {
    // Still running: whatever it exits with now is our stop's doing (pg_dump answers SIGTERM with
    // exit 1, "terminated by user"), not a failure of its own that would hide `error` (a StallError).
    const running = dump.child.exitCode === null && dump.child.signalCode === null
    const exit = await dump.stop()
    if (signal?.aborted)
      throw failure(`aborted (${redact(String(signal.reason))}), ${dump.describe(exit)}`, error)
    // Nor is "could not write to output file": our end of its stdout went away first (a failed upload).
    const ownFailure = !running && !OUTPUT_GONE.test(dump.describe(exit)) && dump.reportedFailure(exit)
    if (ownFailure) throw failure(`failed, ${dump.describe(exit)}`, error)
    // Our own check failed, or S3 did first (pg_dump then died of the broken pipe): that error is the one to act on.
    throw error
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
