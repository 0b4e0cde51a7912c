/**
 * The runbook's "copy the backup files to S3" step, as an operator's script would do it (what
 * `aws s3 cp` does per file): each file streamed from disk with the SDK's multipart Upload, one
 * after the other. Run as its own process so that the benchmark can measure its memory.
 *
 *   node --import tsx bench/uploadFiles.ts <bucket> <key>=<file> [<key>=<file> …]
 *
 * Endpoint, region and credentials come from the usual AWS_* environment variables.
 */
import { createReadStream } from 'node:fs'
import { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'

/**
 * Same part size and parallel parts as our own uploads (catalog/objectStore.ts), so neither side is
 * tuned differently; BENCH_UPLOAD_PART_MIB / BENCH_UPLOAD_QUEUE change them to measure their cost.
 */
const PART_BYTES = Number(process.env.BENCH_UPLOAD_PART_MIB ?? 16) * 1024 * 1024
const QUEUE_SIZE = Number(process.env.BENCH_UPLOAD_QUEUE ?? 4)

const [bucket, ...pairs] = process.argv.slice(2)
if (!bucket || pairs.length === 0) {
  process.stderr.write('usage: uploadFiles.ts <bucket> <key>=<file> …\n')
  process.exit(2)
}
const endpoint = process.env.AWS_ENDPOINT_URL_S3
const client = new S3Client({
  region: process.env.AWS_REGION ?? 'us-east-1',
  ...(endpoint
    ? {
        endpoint,
        forcePathStyle: true,
        requestChecksumCalculation: 'WHEN_REQUIRED' as const,
        responseChecksumValidation: 'WHEN_REQUIRED' as const,
      }
    : {}),
})
for (const pair of pairs) {
  const at = pair.indexOf('=')
  const key = pair.slice(0, at)
  const file = pair.slice(at + 1)
  await new Upload({
    client,
    params: { Bucket: bucket, Key: key, Body: createReadStream(file, { highWaterMark: 1024 * 1024 }) },
    partSize: PART_BYTES,
    queueSize: QUEUE_SIZE,
    leavePartsOnError: false,
  }).done()
}
client.destroy()
