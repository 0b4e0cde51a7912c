// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript templates
import { beforeAll, describe, expect, it } from 'vitest'
import {
  actionsOf,
  conditionValue,
  functionsByKey,
  type Obj,
  PACKAGE_TIMEOUT_MS,
  packagedTemplate,
  resolveIfs,
  roleStatements,
  type Statement,
  type Template,
} from './packagedTemplate.ts'

/** What no one but the bucket admins may do (bucketAdminArns; by default the account root). */
const PROTECTED = [
  's3:DeleteObjectVersion',
  's3:PutLifecycleConfiguration',
  's3:PutBucketPolicy',
  's3:DeleteBucketPolicy',
  's3:PutBucketObjectLockConfiguration',
  's3:PutBucketVersioning',
  's3:BypassGovernanceRetention',
]

let template: Template
const bucket = (branch: 'deployed' | 'configured') =>
  resolveIfs(template, template.Resources.BackupBucket!.Properties, branch) as Obj

beforeAll(async () => {
  template = await packagedTemplate()
}, PACKAGE_TIMEOUT_MS + 60_000)

describe('Function: serverless.yml backup bucket immutability', () => {
  it('locks every new object version in GOVERNANCE mode for 14 days by default, and Prune knows it', () => {
    // Prepare
    const prune = functionsByKey(template).get('prune')!.resource
    // Assess
    expect(bucket('deployed').ObjectLockEnabled).toBe(true)
    expect(bucket('deployed').ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: '14' } },
    })
    expect(((prune.Properties.Environment as Obj).Variables as Obj).LSB_OBJECT_LOCK_DAYS).toBe('14')
  })

  it('keeps deleted or replaced versions at least as long as they are locked', () => {
    // Prepare
    const rules = (bucket('deployed').LifecycleConfiguration as Obj).Rules as Obj[]
    const lockDays = Number(
      (((bucket('deployed').ObjectLockConfiguration as Obj).Rule as Obj).DefaultRetention as Obj).Days,
    )
    // Act
    const noncurrent = rules.find((r) => r.NoncurrentVersionExpiration)!
    // Assess
    expect(Number((noncurrent.NoncurrentVersionExpiration as Obj).NoncurrentDays)).toBeGreaterThanOrEqual(
      lockDays,
    )
    expect(rules.some((r) => r.ExpirationInDays !== undefined)).toBe(false) // current versions never expire by age
  })

  it('denies version deletion and every bucket-weakening action to all but the account root and CloudFormation', () => {
    // Prepare
    const policy = Object.values(template.Resources).find(
      (r) => r.Type === 'AWS::S3::BucketPolicy' && (r.Properties.Bucket as Obj).Ref === 'BackupBucket',
    )!
    const statements = (resolveIfs(template, policy.Properties.PolicyDocument!, 'deployed') as Obj)
      .Statement as Obj[]
    // Act
    const deny = statements.find(
      (s) => s.Effect === 'Deny' && (s.Action as string[]).includes('s3:PutBucketPolicy'),
    )!
    // Assess
    expect(deny.Principal).toBe('*')
    expect(deny.Action).toEqual(expect.arrayContaining(PROTECTED))
    expect(deny.Resource).toEqual([
      { 'Fn::GetAtt': ['BackupBucket', 'Arn'] },
      { 'Fn::Sub': '${BackupBucket.Arn}/*' },
    ])
    expect(deny.Condition).toEqual({
      ArnNotLike: {
        'aws:PrincipalArn': [{ 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' }],
      },
      'ForAllValues:StringNotEquals': { 'aws:CalledVia': ['cloudformation.amazonaws.com'] },
    })
    const admins = (resolveIfs(template, policy.Properties.PolicyDocument!, 'configured') as Obj)
      .Statement as Obj[]
    expect(admins.find((s) => s.Sid === deny.Sid)!.Condition).toHaveProperty([
      'ArnNotLike',
      'aws:PrincipalArn',
      'Fn::Split',
    ])
  })

  it('grants no role or policy of the stack a protected action, nor replicated deletes', () => {
    // Prepare
    const roles = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Role')
    // Act
    const policies = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Policy')
    const statementsOf = (id: string) =>
      template.Resources[id]!.Type === 'AWS::IAM::Policy'
        ? (((resolveIfs(template, template.Resources[id]!.Properties.PolicyDocument!, 'configured') as Obj)
            .Statement ?? []) as unknown as Statement[])
        : roleStatements(template, id, 'configured')
    const granted = [...roles, ...policies].flatMap(([id]) =>
      statementsOf(id)
        .flatMap(actionsOf)
        .filter((a) => PROTECTED.includes(a) || a === 's3:ReplicateDelete')
        .map((a) => `${id} ${a}`),
    )
    // Assess
    expect(roles.length).toBeGreaterThan(15)
    expect(policies.map(([id]) => id)).toContain('ReplicationPolicy')
    expect(granted).toEqual([])
  })

  it('replicates <prefix>/ only when replicationBucketArn is set, without deletes', () => {
    // Prepare
    const rule = ((bucket('configured').ReplicationConfiguration as Obj).Rules as Obj[])[0]!
    const role = template.Resources.ReplicationRole!
    const policy = template.Resources.ReplicationPolicy!
    const document = resolveIfs(template, policy.Properties.PolicyDocument!, 'configured') as Obj
    const actions = (document.Statement as unknown as Statement[]).flatMap(actionsOf)
    // Assess
    expect(conditionValue(template, 'HasReplication')).toBe(false)
    expect(bucket('deployed').ReplicationConfiguration).toBeUndefined()
    expect([role.Condition, policy.Condition]).toEqual(['HasReplication', 'HasReplication'])
    expect(policy.Properties.Roles).toEqual([{ Ref: 'ReplicationRole' }])
    expect((bucket('configured').ReplicationConfiguration as Obj).Role).toEqual({
      'Fn::GetAtt': ['ReplicationRole', 'Arn'],
    })
    expect(rule).toMatchObject({
      Status: 'Enabled',
      Filter: { Prefix: 'langsight-backups/' },
      DeleteMarkerReplication: { Status: 'Disabled' },
      Destination: { AccessControlTranslation: { Owner: 'Destination' } },
    })
    expect(actions).toEqual(
      expect.arrayContaining([
        's3:ReplicateObject',
        's3:GetObjectVersionForReplication',
        's3:GetObjectRetention',
      ]),
    )
  })

  it('logs every request to the backup bucket into a log bucket of the stack (checkov CKV_AWS_18)', () => {
    // Prepare
    const logBucket = template.Resources.AccessLogBucket!
    const logPolicy = Object.values(template.Resources).find(
      (r) => r.Type === 'AWS::S3::BucketPolicy' && (r.Properties.Bucket as Obj).Ref === 'AccessLogBucket',
    )!
    const allow = ((logPolicy.Properties.PolicyDocument as Obj).Statement as Obj[]).find(
      (s) => s.Effect === 'Allow',
    )!
    // Assess
    expect(conditionValue(template, 'CreateAccessLogBucket')).toBe(true)
    expect((bucket('deployed').LoggingConfiguration as Obj).DestinationBucketName).toEqual({
      Ref: 'AccessLogBucket',
    })
    expect(logBucket.Properties.ObjectLockEnabled).toBeUndefined() // S3 refuses a locked log target
    expect(logBucket.Properties.PublicAccessBlockConfiguration).toMatchObject({ BlockPublicPolicy: true })
    expect(logBucket.Properties.BucketEncryption).toBeDefined()
    expect(allow.Principal).toEqual({ Service: 'logging.s3.amazonaws.com' })
    expect(allow.Condition).toHaveProperty(['ArnLike', 'aws:SourceArn'], {
      'Fn::GetAtt': ['BackupBucket', 'Arn'],
    })
  })
})
