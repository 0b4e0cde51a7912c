// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript templates
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  actionsOf,
  functionsByKey,
  type Json,
  type Obj,
  out,
  PACKAGE_TIMEOUT_MS,
  packagedTemplate,
  type Resource,
  repo,
  resolveIfs,
  resourcesOf,
  roleIdOf,
  roleStatements,
  show,
  type Template,
} from './packagedTemplate.ts'

/**
 * The AWS deployment, checked offline: `npm run package` (once, or reused when .serverless is newer
 * than every source) and assertions on the CloudFormation it produces and the zips it builds.
 */
const require = createRequire(import.meta.url)
const aslValidator = require('asl-validator') as (definition: unknown) => {
  isValid: boolean
  errors: { message: string }[]
}

/** The state machine definition with Serverless' Fn::Sub placeholders put back as their values. */
function definitionOf(template: Template, logicalId: string): { states: Obj; refs: Record<string, Json> } {
  const sub = template.Resources[logicalId]!.Properties.DefinitionString as Obj
  const [text, refs] = sub['Fn::Sub'] as [string, Record<string, Json>]
  return { states: JSON.parse(text) as Obj, refs }
}

interface TaskState {
  name: string
  resource: Json
}

/** Every Task state, inside Map (ItemProcessor/Iterator) and Parallel branches too. */
function taskStates(definition: Obj, refs: Record<string, Json> = {}): TaskState[] {
  const found: TaskState[] = []
  const walk = (states: Obj) => {
    for (const [name, s] of Object.entries(states)) {
      const state = s as Obj
      if (state.Type === 'Task') {
        const raw = state.Resource as string
        const placeholder = typeof raw === 'string' ? /^\$\{(\w+)\}$/.exec(raw) : null
        found.push({ name, resource: placeholder ? refs[placeholder[1]!]! : raw })
      }
      for (const key of ['ItemProcessor', 'Iterator']) if (state[key]) walk((state[key] as Obj).States as Obj)
      for (const branch of (state.Branches ?? []) as Obj[]) walk(branch.States as Obj)
    }
  }
  walk(definition.States as Obj)
  return found
}

// ── Expectations ──────────────────────────────────────────────────────────────────────────────

/** Native integrations the restore machine may use, and the actions its role needs for each. */
const NATIVE_INTEGRATIONS: Record<string, string[]> = {
  'arn:aws:states:::ecs:runTask.sync': [
    'ecs:RunTask',
    'ecs:StopTask',
    'ecs:DescribeTasks',
    'events:PutRule',
    'iam:PassRole',
  ],
  'arn:aws:states:::aws-sdk:ecs:updateService': ['ecs:UpdateService'],
  'arn:aws:states:::aws-sdk:ecs:describeServices': ['ecs:DescribeServices'],
  'arn:aws:states:::lambda:invoke': ['lambda:InvokeFunction'],
}

const SECRETS = ['LSB_POSTGRES_URL', 'LSB_CLICKHOUSE_URL', 'LSB_SLACK_WEBHOOK_URL'] as const

/** Which functions read a secret, from their own source (`requireSecret('X')` / `getSecret('X')`). */
function functionsReading(secret: string, keys: string[]): string[] {
  const reads = new RegExp(`(require|get)Secret\\(\\s*'${secret}'`)
  return keys.filter((key) => {
    const file = join(repo, 'functions', `${key}.ts`)
    if (!existsSync(file)) return false
    const source = readFileSync(file, 'utf8')
    // a handler reads a secret itself or through a middleware it uses (functions/middleware/*.ts)
    const middlewares = [...source.matchAll(/from '#functions\/middleware\/(\w+)\.ts'/g)].map((m) =>
      readFileSync(join(repo, 'functions', 'middleware', `${m[1]}.ts`), 'utf8'),
    )
    return [source, ...middlewares].some((text) => reads.test(text))
  })
}

/** Test-only or embedded-engine packages that must never reach a Lambda bundle. */
const FORBIDDEN_IN_BUNDLES = [
  'chdb',
  'vitest',
  's3rver',
  'aws-sdk-client-mock',
  '@vitest',
  'esbuild',
  'serverless',
]
const MAX_ZIP_BYTES = 10 * 1024 * 1024

let template: Template
let fns: Map<string, { logicalId: string; resource: Resource }>

beforeAll(async () => {
  template = await packagedTemplate()
  fns = functionsByKey(template)
}, PACKAGE_TIMEOUT_MS + 60_000)

describe('Function: serverless.yml state machines', () => {
  it.each([
    ['BackupStateMachine', 'backup'],
    ['RestoreStateMachine', 'restore'],
  ])(
    '%s: every Task invokes a function of this stack or an allowed native integration its role grants',
    (logicalId) => {
      // Prepare
      const { states, refs } = definitionOf(template, logicalId)
      const roleId = (
        (template.Resources[logicalId]!.Properties.RoleArn as Obj)['Fn::GetAtt'] as string[]
      )[0]!
      const granted = roleStatements(template, roleId, 'configured')
      // Act
      const tasks = taskStates(states, refs)
      // Assess
      expect(tasks.length).toBeGreaterThan(3)
      for (const task of tasks) {
        if (typeof task.resource === 'string') {
          const needs = NATIVE_INTEGRATIONS[task.resource]
          expect(needs, `${task.name}: ${task.resource} is not an allowed integration`).toBeDefined()
          for (const action of needs!) {
            const grant = granted.find((s) => actionsOf(s).includes(action))
            expect(grant, `${task.name} needs ${action}`).toBeDefined()
            expect(resourcesOf(grant!).map(show)).not.toContain('*')
          }
          continue
        }
        const [target, attribute] = (task.resource as Obj)['Fn::GetAtt'] as string[]
        expect(attribute).toBe('Arn')
        expect(template.Resources[target!]?.Type, `${task.name} → ${target}`).toBe('AWS::Lambda::Function')
        const invoke = granted.filter((s) => actionsOf(s).includes('lambda:InvokeFunction'))
        expect(invoke.flatMap(resourcesOf).map(show), `${task.name} may invoke ${target}`).toContain(
          show(task.resource),
        )
      }
    },
  )

  it.each(['backup', 'restore'])(
    'statemachines/%s.asl.json passes asl-validator, as written and as deployed',
    (name) => {
      // Prepare: the file, and the same with each function reference as the ARN it becomes
      const text = readFileSync(join(repo, 'statemachines', `${name}.asl.json`), 'utf8')
      const deployed = text.replace(
        /\{\s*"Fn::GetAtt"\s*:\s*\[\s*"(\w+)"\s*,\s*"Arn"\s*\]\s*\}/g,
        '"arn:aws:lambda:us-east-1:123456789012:function:langsight-backup-dev-$1"',
      )
      // Act
      const asWritten = aslValidator(JSON.parse(text))
      const asDeployed = aslValidator(JSON.parse(deployed))
      // Assess
      expect(asWritten.errors).toEqual([])
      expect(asDeployed.errors).toEqual([])
      expect(asDeployed.isValid).toBe(true)
    },
  )

  it('traces and logs both machines and alarms on failed and timed-out executions', () => {
    for (const logicalId of ['BackupStateMachine', 'RestoreStateMachine']) {
      // Prepare
      const props = template.Resources[logicalId]!.Properties
      const alarms = Object.values(template.Resources).filter(
        (r) =>
          r.Type === 'AWS::CloudWatch::Alarm' &&
          JSON.stringify(r.Properties.Dimensions) ===
            JSON.stringify([{ Name: 'StateMachineArn', Value: { Ref: logicalId } }]),
      )
      // Assess
      expect(props.TracingConfiguration).toEqual({ Enabled: true })
      const logging = props.LoggingConfiguration as Obj
      expect(logging.Level).toBe('ERROR')
      const groupId = (
        ((logging.Destinations as Obj[])[0]!.CloudWatchLogsLogGroup as Obj).LogGroupArn as Obj
      )['Fn::GetAtt'] as string[]
      expect(template.Resources[groupId[0]!]!.Type).toBe('AWS::Logs::LogGroup')
      expect(alarms.map((a) => a.Properties.MetricName).sort()).toEqual([
        'ExecutionsFailed',
        'ExecutionsTimedOut',
      ])
      for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toEqual([{ Ref: 'AlarmTopic' }])
    }
  })

  it('outputs both state machine ARNs and the bucket name', () => {
    expect(template.Outputs.BackupStateMachineArn?.Value).toEqual({ Ref: 'BackupStateMachine' })
    expect(template.Outputs.RestoreStateMachineArn?.Value).toEqual({ Ref: 'RestoreStateMachine' })
    expect(template.Outputs.BackupBucketName?.Value).toEqual({ Ref: 'BackupBucket' })
  })
})

describe('Function: serverless.yml bucket', () => {
  it('versions, encrypts, blocks public access, refuses plain HTTP and cleans up uploads and old versions', () => {
    // Prepare
    const bucket = template.Resources.BackupBucket!
    const deployed = resolveIfs(template, bucket.Properties, 'deployed') as Obj
    const policy = Object.values(template.Resources).find(
      (r) => r.Type === 'AWS::S3::BucketPolicy' && (r.Properties.Bucket as Obj).Ref === 'BackupBucket',
    )!
    // Assess
    expect(bucket.DeletionPolicy).toBe('Retain')
    expect(deployed.VersioningConfiguration).toEqual({ Status: 'Enabled' })
    expect(deployed.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [
        { BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
      ],
    })
    expect(deployed.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    })
    const rules = (deployed.LifecycleConfiguration as Obj).Rules as Obj[]
    expect(rules).toContainEqual(
      expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
    )
    expect((policy.Properties.PolicyDocument as Obj).Statement).toContainEqual(
      expect.objectContaining({
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:*',
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        Resource: [{ 'Fn::GetAtt': ['BackupBucket', 'Arn'] }, { 'Fn::Sub': '${BackupBucket.Arn}/*' }],
      }),
    )
  })

  it('offers SSE-KMS with a given key', () => {
    // Prepare: the branch a stage takes when bucketKmsKeyArn is set
    const configured = resolveIfs(template, template.Resources.BackupBucket!.Properties, 'configured') as Obj
    // Assess
    const sse = ((configured.BucketEncryption as Obj).ServerSideEncryptionConfiguration as Obj[])[0]!
    expect((sse.ServerSideEncryptionByDefault as Obj).SSEAlgorithm).toBe('aws:kms')
  })
})

describe('Function: serverless.yml IAM', () => {
  it('grants no "*" action and no "*" resource on S3, SSM or KMS, in any role', () => {
    // Prepare
    const roles = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Role')
    // Act
    const statements = roles.flatMap(([id]) =>
      roleStatements(template, id, 'configured').map((s) => ({ id, s })),
    )
    // Assess
    expect(statements.length).toBeGreaterThan(20)
    for (const { id, s } of statements) {
      for (const action of actionsOf(s)) {
        expect(action, id).not.toBe('*')
        expect(action, id).not.toMatch(/:\*$/)
        if (/^(s3|ssm|kms):/.test(action)) {
          for (const resource of resourcesOf(s)) expect(show(resource), `${id} ${action}`).not.toBe('*')
        }
      }
    }
  })

  it('gives each function its own role, and only Prune may delete', () => {
    // Prepare
    const roleIds = [...fns.values()].map(({ resource }) => roleIdOf(resource))
    // Act
    const deleters = [...fns].filter(([, { resource }]) =>
      roleStatements(template, roleIdOf(resource), 'configured').some((s) =>
        actionsOf(s).some((a) => /^s3:(Delete|PutLifecycle|PutBucket|BypassGovernance)/.test(a)),
      ),
    )
    // Assess
    expect(new Set(roleIds).size).toBe(fns.size)
    expect(deleters.map(([key]) => key)).toEqual(['prune'])
    const pruneDeletes = roleStatements(template, roleIdOf(fns.get('prune')!.resource), 'deployed').filter(
      (s) => actionsOf(s).some((a) => a.startsWith('s3:Delete')),
    )
    expect(pruneDeletes.flatMap(actionsOf)).toEqual(['s3:DeleteObject'])
    expect(pruneDeletes.flatMap(resourcesOf)).toEqual([
      { 'Fn::Sub': '${BackupBucket.Arn}/langsight-backups/*' },
    ])
  })

  it('lets writers write only below their own prefix, and readers list only the backup prefix', () => {
    // Prepare
    const s3Grants = (key: string) =>
      roleStatements(template, roleIdOf(fns.get(key)!.resource), 'deployed')
        .filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')))
        .map((s) => ({ actions: actionsOf(s).sort(), resources: resourcesOf(s), condition: s.Condition }))
    const put = (path: string) => ({
      actions: ['s3:AbortMultipartUpload', 's3:PutObject'],
      resources: [{ 'Fn::Sub': `\${BackupBucket.Arn}/langsight-backups/${path}` }],
      condition: undefined,
    })
    const read = [
      {
        actions: ['s3:GetObject'],
        resources: [{ 'Fn::Sub': '${BackupBucket.Arn}/langsight-backups/*' }],
        condition: undefined,
      },
      {
        actions: ['s3:ListBucket'],
        resources: [{ 'Fn::GetAtt': ['BackupBucket', 'Arn'] }],
        condition: { StringLike: { 's3:prefix': ['langsight-backups', 'langsight-backups/*'] } },
      },
    ]
    // Assess
    expect(s3Grants('snapshotPostgres')).toEqual([put('postgres/*')])
    expect(s3Grants('exportBatch')).toEqual([put('clickhouse/*'), ...read])
    expect(s3Grants('listClickHouseTables')).toEqual([
      {
        actions: ['s3:PutObject'],
        resources: [{ 'Fn::Sub': '${BackupBucket.Arn}/langsight-backups/clickhouse/*/plan/*' }],
        condition: undefined,
      },
    ])
    expect(s3Grants('commitManifest')).toEqual([
      {
        actions: ['s3:PutObject'],
        resources: [{ 'Fn::Sub': '${BackupBucket.Arn}/langsight-backups/*/*/manifest.json' }],
        condition: undefined,
      },
      ...read,
    ])
    for (const reader of [
      'verifyObject',
      'verifyBackupBatch',
      'resolveBackup',
      'loadPostgres',
      'swapPostgres',
      'loadClickHouseBatch',
    ]) {
      expect(s3Grants(reader), reader).toEqual(read)
    }
    for (const none of ['planBackup', 'notify', 'migrateToHead']) {
      expect(s3Grants(none), none).toEqual([])
    }
  })

  it.each(SECRETS)(
    'lets exactly the functions that read %s read its SSM parameter and decrypt only it',
    (secret) => {
      // Prepare
      const keys = [...fns.keys()]
      const readers = functionsReading(secret, keys)
      const parameterName = (fns.get(readers[0]!)!.resource.Properties.Environment as Obj).Variables as Obj
      const name = parameterName[`${secret}_SSM`] as string
      const arn = {
        'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter${name}`,
      }
      // Act
      const granted = keys.filter((key) =>
        roleStatements(template, roleIdOf(fns.get(key)!.resource), 'configured').some(
          (s) => actionsOf(s).includes('ssm:GetParameter') && resourcesOf(s).map(show).includes(show(arn)),
        ),
      )
      const told = keys.filter(
        (key) => `${secret}_SSM` in ((fns.get(key)!.resource.Properties.Environment as Obj).Variables as Obj),
      )
      // Assess
      expect(readers.length).toBeGreaterThan(0)
      expect(name).toMatch(/^\/langsight-backup\/dev\//)
      expect(granted.sort()).toEqual(readers.sort())
      expect(told.sort()).toEqual(readers.sort())
      for (const key of readers) {
        const decrypt = roleStatements(template, roleIdOf(fns.get(key)!.resource), 'deployed').filter((s) =>
          actionsOf(s).includes('kms:Decrypt'),
        )
        expect(decrypt.map((s) => s.Condition)).toContainEqual({
          StringEquals: {
            'kms:ViaService': { 'Fn::Sub': 'ssm.${AWS::Region}.amazonaws.com' },
            'kms:EncryptionContext:PARAMETER_ARN': arn,
          },
        })
        for (const s of decrypt) {
          const context = (s.Condition?.StringEquals as Obj)?.['kms:EncryptionContext:PARAMETER_ARN']
          expect(context, `${key} decrypts only parameters it reads`).toBeDefined()
        }
      }
    },
  )

  it('grants the restore machine ECS and migration rights only when they are configured, scoped to them', () => {
    // Prepare
    const deployed = roleStatements(template, 'RestoreStateMachineRole', 'deployed').flatMap(actionsOf)
    const configured = roleStatements(template, 'RestoreStateMachineRole', 'configured')
    const passRole = configured.find((s) => actionsOf(s).includes('iam:PassRole'))!
    const runTask = configured.find((s) => actionsOf(s).includes('ecs:RunTask'))!
    // Assess: by default (no ECS, no migration function) there is nothing beyond the stack's own functions
    expect(deployed.filter((a) => /^(ecs|iam|events):/.test(a))).toEqual([])
    expect(passRole.Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } })
    expect(show(runTask.Resource!)).toContain(':task-definition/')
    expect(runTask.Condition).toHaveProperty(['ArnEquals', 'ecs:cluster'])
  })
})

describe('Function: serverless.yml functions', () => {
  it('runs every handler on nodejs22.x with its own timeout, tracing and settings', () => {
    for (const [key, { resource }] of fns) {
      const p = resource.Properties
      expect(p.Runtime, key).toBe('nodejs22.x')
      expect(p.Handler, key).toBe(`functions/${key}.handler`)
      expect(p.TracingConfig, key).toEqual({ Mode: 'Active' })
      const env = (p.Environment as Obj).Variables as Obj
      expect(env.LSB_BUCKET, key).toEqual({ Ref: 'BackupBucket' })
      expect(env.LSB_PREFIX, key).toBe('langsight-backups')
      expect(
        Object.keys(env).filter((k) => /^LSB_(POSTGRES|CLICKHOUSE)_URL$|^LSB_SLACK_WEBHOOK_URL$/.test(k)),
      ).toEqual([])
    }
    for (const long of ['snapshotPostgres', 'exportBatch', 'loadPostgres', 'loadClickHouseBatch']) {
      expect(fns.get(long)!.resource.Properties.Timeout, long).toBe(900)
    }
  })

  it('passes every setting of core/config.ts to the functions (LSB_MIGRATE_COMMAND is local only)', () => {
    // Prepare
    const config = readFileSync(join(repo, 'core/config.ts'), 'utf8')
    const settings = [...config.matchAll(/^\s+(LSB_[A-Z0-9_]+):/gm)].map((m) => m[1]!)
    const env = (key: string) => (fns.get(key)!.resource.Properties.Environment as Obj).Variables as Obj
    // Assess
    expect(settings.length).toBeGreaterThan(10)
    for (const setting of settings) {
      if (setting === 'LSB_MIGRATE_COMMAND') continue
      if (setting === 'LSB_OBJECT_LOCK_DAYS') expect(env('prune')).toHaveProperty(setting)
      else expect(env('resolveBackup'), setting).toHaveProperty(setting)
    }
  })

  it('attaches the pg tools layer to the two functions that run pg_dump and pg_restore', () => {
    // Prepare
    const layer = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::Lambda::LayerVersion')!
    const withLayer = [...fns].filter(([, { resource }]) => resource.Properties.Layers).map(([key]) => key)
    // Assess
    expect(withLayer.sort()).toEqual(['loadPostgres', 'snapshotPostgres'])
    for (const key of withLayer) {
      expect(fns.get(key)!.resource.Properties.Layers).toEqual([{ Ref: layer[0] }])
      expect(((fns.get(key)!.resource.Properties.Environment as Obj).Variables as Obj).LSB_PG_BIN_DIR).toBe(
        '/opt/bin',
      )
    }
    expect(layer[1].Properties.CompatibleArchitectures).toEqual(['x86_64'])
    expect(show(layer[1].Properties.Content!)).toMatch(/pgtools-\d+\.zip/)
  })
})

describe('Function: serverless.yml bundles', () => {
  it('ships small ESM bundles without test or embedded-engine packages, each loading its handler', async () => {
    // Prepare
    const zips = readdirSync(out).filter((f) => f.endsWith('.zip') && !f.startsWith('pgtools'))
    const dir = mkdtempSync(join(tmpdir(), 'lsb-bundles-'))
    const sizes: Record<string, string> = {}
    try {
      for (const zip of zips) {
        const key = zip.replace(/\.zip$/, '')
        const bytes = statSync(join(out, zip)).size
        sizes[key] = `${(bytes / 1024 / 1024).toFixed(2)} MB`
        const target = join(dir, key)
        await new Promise<void>((done, fail) =>
          spawn('unzip', ['-q', join(out, zip), '-d', target]).on('close', (c) =>
            c === 0 ? done() : fail(new Error(`unzip ${zip}`)),
          ),
        )
        // Act: which packages went into the bundle (its source map lists them), and does it load
        const map = JSON.parse(readFileSync(join(target, 'functions', `${key}.mjs.map`), 'utf8')) as {
          sources: string[]
        }
        const packages = new Set(
          map.sources.flatMap((s) => {
            const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(s)
            return m ? [m[1]!] : []
          }),
        )
        const entries = walk(target).map((f) => relative(target, f))
        const handlerType = await loadInPlainNode(join(target, 'functions', `${key}.mjs`))
        // Assess
        expect(bytes, key).toBeLessThan(MAX_ZIP_BYTES)
        expect(handlerType, key).toBe('function')
        expect(
          entries.filter((e) => e.includes('node_modules')),
          key,
        ).toEqual([])
        for (const forbidden of FORBIDDEN_IN_BUNDLES) {
          expect(packages.has(forbidden), `${key} bundles ${forbidden}`).toBe(false)
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    console.info('bundle sizes (zipped):', sizes)
    expect(Object.keys(sizes).sort()).toEqual([...fns.keys()].sort())
  })
})

/** Imports a bundle in a plain Node process, as Lambda's runtime would, and says what `handler` is. */
async function loadInPlainNode(file: string): Promise<string> {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(file).href)}); process.stdout.write(typeof m.handler)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { PATH: process.env.PATH, AWS_REGION: 'us-east-1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const code = await new Promise<number | null>((done) => child.on('close', done))
  return code === 0 ? stdout : `failed to load (${code}): ${stderr.slice(-1000)}`
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) =>
    statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)],
  )
}
