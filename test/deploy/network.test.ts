import { statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  functionsByKey,
  type Obj,
  PACKAGE_TIMEOUT_MS,
  packagedTemplate,
  runPackage,
  type Template,
  templateFile,
  withPackageLock,
} from './packagedTemplate.ts'

const require = createRequire(import.meta.url)
const { validateParams } = require('../../infra/validateParams.cjs') as {
  validateParams: (p: Record<string, string>) => Record<string, number>
}
const { FUNCTIONS } = require('../../infra/functions.cjs') as {
  FUNCTIONS: Record<string, { inVpc?: boolean; secret?: string | string[] }>
}

/** serverless.yml's defaults for what validateParams reads. */
const DEFAULTS = {
  vpcSubnetIds: '',
  vpcSecurityGroupIds: '',
  migrateSubnetIds: '',
  migrateSecurityGroupIds: '',
  migrateAssignPublicIp: 'DISABLED',
  objectLockMode: 'GOVERNANCE',
  objectLockDays: '14',
  noncurrentVersionDays: '',
  postgresMaxAgeHours: '26',
  clickhouseMaxAgeHours: '192',
  drillMaxAgeHours: '192',
  sizeDropRatio: '0.5',
  replicationBucketArn: '',
  replicationAccountId: '',
  replicationKmsKeyArn: '',
}

let template: Template
beforeAll(async () => {
  template = await packagedTemplate()
}, PACKAGE_TIMEOUT_MS + 60_000)

describe('Function: serverless.yml network', () => {
  it('puts exactly the functions that connect to a database in the VPC; notify runs outside it', () => {
    // Prepare
    const fns = functionsByKey(template)
    // Act
    const inVpc = [...fns].filter(([, { resource }]) => resource.Properties.VpcConfig).map(([key]) => key)
    const database = Object.entries(FUNCTIONS)
      .filter(([, f]) => [f.secret ?? []].flat().some((s) => s === 'postgres' || s === 'clickhouse'))
      .map(([key]) => key)
    // Assess
    expect(inVpc.sort()).toEqual(database.sort())
    expect(fns.get('notify')!.resource.Properties.VpcConfig).toBeUndefined()
    for (const key of ['prune', 'commitManifest', 'resolveBackup', 'planBackup']) {
      expect(fns.get(key)!.resource.Properties.VpcConfig, key).toBeUndefined()
    }
    for (const key of inVpc) {
      expect(fns.get(key)!.resource.Properties.VpcConfig, key).toEqual({
        SecurityGroupIds: { 'Fn::If': ['HasVpc', { 'Fn::Split': [',', ''] }, []] },
        SubnetIds: { 'Fn::If': ['HasVpc', { 'Fn::Split': [',', ''] }, []] },
      })
    }
  })

  it('gives the migration task no public IP by default', () => {
    const env = (functionsByKey(template).get('resolveBackup')!.resource.Properties.Environment as Obj)
      .Variables as Obj
    expect(env.LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP).toBe('DISABLED')
  })
})

describe('Function: validateParams', () => {
  it('accepts the defaults and derives the noncurrent-version expiry from the lock', () => {
    expect(validateParams(DEFAULTS)).toMatchObject({ noncurrentVersionDays: 14, clickhouseMaxAgeHours: 192 })
    expect(validateParams({ ...DEFAULTS, objectLockMode: '' }).noncurrentVersionDays).toBe(7)
  })

  it.each([
    [{ vpcSubnetIds: 'subnet-a' }, 'vpcSubnetIds is set but vpcSecurityGroupIds is empty'],
    [{ vpcSecurityGroupIds: 'sg-1' }, 'vpcSecurityGroupIds is set but vpcSubnetIds is empty'],
    [{ migrateSubnetIds: 'subnet-a, ' }, 'migrateSubnetIds is set but migrateSecurityGroupIds is empty'],
    [{ migrateAssignPublicIp: 'yes' }, 'migrateAssignPublicIp is "yes"'],
    [{ noncurrentVersionDays: '7' }, 'noncurrentVersionDays is 7 but objectLockDays is 14'],
    [{ objectLockMode: 'governance' }, 'objectLockMode is "governance"'],
    [
      { clickhouseMaxAgeHours: '400' },
      'clickhouseMaxAgeHours is "400": it must be a whole number from 1 to 336',
    ],
    [{ sizeDropRatio: '2' }, 'sizeDropRatio is "2"'],
    [{ replicationBucketArn: 'my-bucket' }, 'replicationBucketArn is "my-bucket"'],
    [{ replicationAccountId: '123456789012' }, 'replicationBucketArn is empty'],
  ])('refuses %j', (change, message) => {
    expect(() => validateParams({ ...DEFAULTS, ...change })).toThrow(message)
  })

  it(
    'fails `npm run package` with subnets but no security groups, naming the fix, and leaves the template alone',
    async () => {
      // Prepare
      const before = statSync(templateFile).mtimeMs
      // Act
      const { code, log } = await withPackageLock(() =>
        runPackage(['--param=vpcSubnetIds=subnet-0a1b', '--param=migrateSubnetIds=subnet-0a1b'], 120_000),
      )
      // Assess
      expect(code).not.toBe(0)
      expect(log).toContain('vpcSubnetIds is set but vpcSecurityGroupIds is empty')
      expect(log).toContain('--param="vpcSecurityGroupIds=sg-…"')
      expect(statSync(templateFile).mtimeMs).toBe(before)
    },
    PACKAGE_TIMEOUT_MS,
  )
})
