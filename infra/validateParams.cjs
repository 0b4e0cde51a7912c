/**
 * Deploy-time checks of serverless.yml's parameters: a combination CloudFormation would accept but
 * that cannot work fails `serverless package`/`deploy` here, with the parameter's name and the fix.
 *
 * `validateParams(params)` is pure (test/deploy/validateParams.test.ts); serverless.yml runs it
 * through `${file(infra/validateParams.cjs):checked}` and takes derived values from the others.
 */
'use strict'

/** CloudWatch evaluates an alarm over at most 7 days (Period × EvaluationPeriods ≤ 604,800 s). */
const MAX_ALARM_WINDOW_HOURS = 168

const NAMES = [
  'vpcSubnetIds',
  'vpcSecurityGroupIds',
  'migrateSubnetIds',
  'migrateSecurityGroupIds',
  'migrateAssignPublicIp',
  'objectLockMode',
  'objectLockDays',
  'noncurrentVersionDays',
  'postgresMaxAgeHours',
  'clickhouseMaxAgeHours',
  'drillMaxAgeHours',
  'sizeDropRatio',
  'replicationBucketArn',
  'replicationAccountId',
  'replicationKmsKeyArn',
]

const list = (value) =>
  String(value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

function requireBoth(params, set, needed, what) {
  if (list(params[set]).length > 0 && list(params[needed]).length === 0) {
    throw new Error(
      `${set} is set but ${needed} is empty: ${what} needs both (pass --param="${needed}=sg-…", or leave ${set} empty)`,
    )
  }
}

function wholeNumber(params, name, min, max) {
  const text = String(params[name] ?? '')
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new Error(`${name} is "${text}": it must be a whole number from ${min} to ${max}`)
  }
  return n
}

/**
 * Throws on a parameter combination that cannot work; returns the values derived from them.
 * @param {Record<string, string>} params serverless.yml's resolved parameters
 */
function validateParams(params) {
  checkNetwork(params)
  return deriveParams(params)
}

/** Subnets and security groups come in pairs; the Fargate task's public IP is ENABLED or DISABLED. */
function checkNetwork(params) {
  requireBoth(params, 'vpcSubnetIds', 'vpcSecurityGroupIds', 'a Lambda function in a VPC')
  requireBoth(params, 'vpcSecurityGroupIds', 'vpcSubnetIds', 'a Lambda function in a VPC')
  requireBoth(params, 'migrateSubnetIds', 'migrateSecurityGroupIds', 'the Fargate migration task (awsvpc)')
  requireBoth(params, 'migrateSecurityGroupIds', 'migrateSubnetIds', 'the Fargate migration task (awsvpc)')
  if (!['ENABLED', 'DISABLED'].includes(params.migrateAssignPublicIp)) {
    throw new Error(
      `migrateAssignPublicIp is "${params.migrateAssignPublicIp}": it must be ENABLED or DISABLED`,
    )
  }
}

/** Object Lock, noncurrent-version expiry, alarm ages and replication: checked, and the derived values. */
function deriveParams(params) {
  if (!['', 'GOVERNANCE', 'COMPLIANCE'].includes(params.objectLockMode)) {
    throw new Error(
      `objectLockMode is "${params.objectLockMode}": it must be GOVERNANCE, COMPLIANCE or '' (off)`,
    )
  }
  const lockDays = params.objectLockMode === '' ? 0 : wholeNumber(params, 'objectLockDays', 1, 36500)
  // A version may be deleted by the lifecycle only once its lock has ended: noncurrent ≥ lock days.
  const noncurrentVersionDays =
    params.noncurrentVersionDays === ''
      ? Math.max(lockDays, 7)
      : wholeNumber(params, 'noncurrentVersionDays', 1, 36500)
  if (noncurrentVersionDays < lockDays) {
    throw new Error(
      `noncurrentVersionDays is ${noncurrentVersionDays} but objectLockDays is ${lockDays}: a deleted or replaced backup ` +
        'must stay recoverable at least as long as it is locked (raise noncurrentVersionDays, or leave it empty to derive it)',
    )
  }

  const ages = {}
  for (const name of ['postgresMaxAgeHours', 'clickhouseMaxAgeHours', 'drillMaxAgeHours']) {
    ages[name] = wholeNumber(params, name, 1, 2 * MAX_ALARM_WINDOW_HOURS)
  }
  const ratio = Number(params.sizeDropRatio)
  if (!(ratio >= 0 && ratio < 1) || String(params.sizeDropRatio).trim() === '') {
    throw new Error(
      `sizeDropRatio is "${params.sizeDropRatio}": it must be a number from 0 (no check) to below 1 (0.5 = half the previous backup)`,
    )
  }
  if (
    params.replicationBucketArn !== '' &&
    !/^arn:aws[\w-]*:s3:::[a-z0-9][a-z0-9.-]+$/.test(params.replicationBucketArn)
  ) {
    throw new Error(
      `replicationBucketArn is "${params.replicationBucketArn}": it must be a bucket ARN (arn:aws:s3:::name)`,
    )
  }
  if (params.replicationBucketArn === '' && (params.replicationAccountId || params.replicationKmsKeyArn)) {
    throw new Error(
      'replicationAccountId/replicationKmsKeyArn are set but replicationBucketArn is empty: set the destination bucket',
    )
  }
  return { noncurrentVersionDays, sizeDropRatio: ratio, ...ages }
}

/** The parameters validateParams reads, resolved by Serverless. */
async function readParams(resolveVariable) {
  const entries = await Promise.all(
    NAMES.map(async (n) => [n, String((await resolveVariable(`param:${n}`)) ?? '')]),
  )
  return Object.fromEntries(entries)
}
/** serverless.yml: `${file(infra/validateParams.cjs):checked}` — throws at package time, else true. */
const checked = async ({ resolveVariable }) => Boolean(validateParams(await readParams(resolveVariable)))
/** The noncurrent-version expiry: the parameter, or derived from the lock (at least 7 days). */
const noncurrentVersionDays = async ({ resolveVariable }) =>
  deriveParams(await readParams(resolveVariable)).noncurrentVersionDays

module.exports = {
  validateParams,
  deriveParams,
  readParams,
  checked,
  noncurrentVersionDays,
  MAX_ALARM_WINDOW_HOURS,
}
