/**
 * The backup bucket: writable under the prefix (a temporary object written, read back and always
 * deleted), its versioning, and its Object Lock. The last two are warnings, never failures: a
 * backup works without them, it is only easier to lose.
 */
import { randomUUID } from 'node:crypto'
import {
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  type ObjectLockConfiguration,
  PutObjectCommand,
} from '@aws-sdk/client-s3'
import { s3Client } from '#catalog/objectStore.ts'
import { loadSettings, type Settings } from '#core/config.ts'
import {
  type CheckContext,
  type CheckResult,
  fail,
  hasCode,
  messageOf,
  type Outcome,
  ok,
  result,
  runCheck,
  settleWithin,
  skip,
  warn,
} from './check.ts'

/** Where the probe object goes: below the prefix, outside every engine's directory (so no listing sees it). */
export const PROBE_DIR = '.doctor'

/** Checks `bucket`, `bucket-versioning` and `bucket-object-lock`, in that order. */
export async function bucketChecks(ctx: CheckContext): Promise<CheckResult[]> {
  const settings = loadSettings()
  const Key = `${settings.LSB_PREFIX}/${PROBE_DIR}/${randomUUID()}`
  let probe: Promise<Outcome> | undefined
  const writable = await runCheck(
    'bucket',
    ctx,
    (signal) => (probe = writeReadDelete(settings, Key, signal, ctx.timeoutMs)),
    (error) => bucketFix(error, settings),
  )
  // The probe object is deleted also when the deadline came first: wait (boundedly) for that.
  await settleWithin(probe, ctx.timeoutMs)
  if (!writable.ok) {
    const why = skip('not checked: the bucket is not usable')
    return [writable, result('bucket-versioning', why), result('bucket-object-lock', why)]
  }
  const other = (error: unknown) => bucketFix(error, settings)
  return [
    writable,
    await runCheck('bucket-versioning', ctx, (signal) => versioning(settings.LSB_BUCKET, signal), other),
    await runCheck('bucket-object-lock', ctx, (signal) => objectLock(settings, signal), other),
  ]
}

/** Writes, reads back and always deletes one small object. */
async function writeReadDelete(
  settings: Settings,
  Key: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<Outcome> {
  const { LSB_BUCKET: Bucket, LSB_PREFIX: prefix } = settings
  const body = `langsight-backup doctor probe, safe to delete (${new Date().toISOString()})`
  const s3 = s3Client()
  let outcome = ok(
    `s3://${Bucket}/${prefix}/ is writable ${where(settings)}: wrote, read back and deleted ${Key}`,
  )
  let failure: unknown
  try {
    await s3.send(new PutObjectCommand({ Bucket, Key, Body: body, ContentType: 'text/plain' }), {
      abortSignal: signal,
    })
    const text = await (
      await s3.send(new GetObjectCommand({ Bucket, Key }), { abortSignal: signal })
    ).Body!.transformToString('utf8')
    if (text !== body) {
      outcome = fail(
        `s3://${Bucket}/${Key} read back ${text.length} bytes that differ from the ${body.length} written`,
        'the endpoint does not return what it stored: check AWS_ENDPOINT_URL_S3 (a proxy, a cache)',
      )
    }
  } catch (error) {
    failure = error
  }
  // Always, also after a failure or the deadline: with a signal of its own, not the spent one.
  const removal = await s3
    .send(new DeleteObjectCommand({ Bucket, Key }), { abortSignal: AbortSignal.timeout(timeoutMs) })
    .then(
      () => undefined,
      (error: unknown) => error ?? new Error('delete failed'),
    )
  if (failure !== undefined) throw failure
  if (removal !== undefined) {
    return fail(
      `wrote and read back s3://${Bucket}/${Key}, but cannot delete it: ${messageOf(removal)}`,
      `grant s3:DeleteObject on arn:aws:s3:::${Bucket}/${prefix}/* (prune deletes expired backups), then delete the object`,
    )
  }
  return outcome
}

const where = (s: Settings) => (s.AWS_ENDPOINT_URL_S3 ? `at ${s.AWS_ENDPOINT_URL_S3}` : `in ${s.AWS_REGION}`)

async function versioning(Bucket: string, abortSignal: AbortSignal) {
  let status: string | undefined
  try {
    ;({ Status: status } = await s3Client().send(new GetBucketVersioningCommand({ Bucket }), { abortSignal }))
  } catch (error) {
    if (abortSignal.aborted) throw error
    return warn(`cannot tell: ${messageOf(error)}`, 'grant s3:GetBucketVersioning to see it')
  }
  if (status === 'Enabled')
    return ok('enabled: an overwritten or deleted object is kept as a noncurrent version')
  return warn(
    `${status === 'Suspended' ? 'suspended' : 'off'}: an overwritten or deleted backup object is gone for good`,
    `aws s3api put-bucket-versioning --bucket ${Bucket} --versioning-configuration Status=Enabled (the stack's bucket has it on)`,
  )
}

async function objectLock(settings: Settings, abortSignal: AbortSignal) {
  const { LSB_BUCKET: Bucket, LSB_OBJECT_LOCK_DAYS: lockDays } = settings
  const off = warn(
    'off: whoever may delete in the bucket (a leaked key, a mistake) can remove every backup',
    "enable Object Lock with a default retention (the stack's parameters objectLockMode and objectLockDays, docs/DEPLOY.md) " +
      'and set LSB_OBJECT_LOCK_DAYS to the same number of days',
  )
  let configuration: ObjectLockConfiguration | undefined
  try {
    ;({ ObjectLockConfiguration: configuration } = await s3Client().send(
      new GetObjectLockConfigurationCommand({ Bucket }),
      { abortSignal },
    ))
  } catch (error) {
    if (abortSignal.aborted) throw error
    if (hasCode(error, 'ObjectLockConfigurationNotFoundError')) return off
    return warn(
      `cannot tell: ${messageOf(error)}`,
      'grant s3:GetBucketObjectLockConfiguration to see it (S3-compatible servers may not implement Object Lock)',
    )
  }
  if (configuration?.ObjectLockEnabled !== 'Enabled') return off
  const retention = configuration.Rule?.DefaultRetention
  const days = retention?.Days ?? (retention?.Years === undefined ? undefined : retention.Years * 365)
  if (!retention || days === undefined) {
    return warn(
      'enabled without a default retention: no backup object is locked',
      `set a default retention on the bucket and LSB_OBJECT_LOCK_DAYS to the same number of days`,
    )
  }
  if (lockDays < days) {
    return warn(
      `enabled, ${retention.Mode} for ${days} days, but LSB_OBJECT_LOCK_DAYS=${lockDays}: prune would try to delete backups still locked`,
      `set LSB_OBJECT_LOCK_DAYS=${days}`,
    )
  }
  return ok(`enabled, ${retention.Mode} for ${days} days (LSB_OBJECT_LOCK_DAYS=${lockDays})`)
}

function bucketFix(error: unknown, s: Settings): string {
  const bucket = s.LSB_BUCKET
  if (hasCode(error, 'NoSuchBucket')) {
    return `bucket ${bucket} does not exist ${where(s)}: create it (the stack does: its output BackupBucketName), or fix LSB_BUCKET`
  }
  if (hasCode(error, 'CredentialsProviderError')) {
    return 'no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY'
  }
  if (hasCode(error, 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken')) {
    return 'the AWS credentials are not valid (or expired): check AWS_PROFILE / AWS_ACCESS_KEY_ID'
  }
  if (hasCode(error, 'AccessDenied', 'Forbidden')) {
    return `grant s3:PutObject, s3:GetObject and s3:DeleteObject on arn:aws:s3:::${bucket}/${s.LSB_PREFIX}/* to these credentials`
  }
  if (
    hasCode(error, 'PermanentRedirect', 'AuthorizationHeaderMalformed', 'IllegalLocationConstraintException')
  ) {
    return `the bucket is in another region than ${s.AWS_REGION}: set AWS_REGION to its region`
  }
  if (hasCode(error, 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'StallError', 'ETIMEDOUT', 'TimeoutError')) {
    return `S3 ${where(s)} does not answer: check AWS_ENDPOINT_URL_S3, AWS_REGION and the network`
  }
  return `check LSB_BUCKET, AWS_REGION${s.AWS_ENDPOINT_URL_S3 ? ', AWS_ENDPOINT_URL_S3' : ''} and the credentials' S3 permissions`
}
