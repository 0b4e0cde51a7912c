/**
 * Every Lambda function of the stack beside the IAM role it runs with: a function's handler,
 * timeout and memory sit on the same lines as what it may read and write.
 *
 * serverless.yml takes `functions` and `roles` from here; the `${…}` strings are Serverless
 * variables, resolved like any in serverless.yml. The reusable statements are in
 * serverless.yml's `custom.statements`.
 */

const statement = (name) => `\${self:custom.statements.${name}}`

/** Read any backup: objects, listings, the bucket key. */
const readBackups = ['readBackups', 'listBackups', 'bucketKeyRead'].map(statement)

/** Write new objects below `<prefix>/<path>`, and nothing above it. */
const writeUnder = (path, actions = ['s3:PutObject', 's3:AbortMultipartUpload']) => [
  {
    Effect: 'Allow',
    Action: actions,
    Resource: { 'Fn::Sub': `\${BackupBucket.Arn}/\${param:prefix}/${path}` },
  },
  statement('bucketKeyWrite'),
]

/** A secret: its SSM parameter name in the environment, and the right to read and decrypt only it. */
const SECRETS = {
  postgres: ['LSB_POSTGRES_URL_SSM', 'postgresUrlParameter', 'PostgresUrl'],
  clickhouse: ['LSB_CLICKHOUSE_URL_SSM', 'clickhouseUrlParameter', 'ClickHouseUrl'],
  slack: ['LSB_SLACK_WEBHOOK_URL_SSM', 'slackWebhookParameter', 'SlackWebhook'],
}

/**
 * In the VPC of the databases (vpcSubnetIds): exactly the functions that open a Postgres or
 * ClickHouse connection. The others reach only S3 and SSM (or Slack) and run outside any VPC,
 * so they need no NAT gateway or endpoints; test/deploy/network.test.ts holds the rule.
 */
const IN_VPC = { inVpc: true }
const BIG = { timeout: 900, memorySize: 1769 } // 1769 MB is one full vCPU: compression and hashing are CPU-bound
const PG_TOOLS = { layers: [{ Ref: 'PgToolsLambdaLayer' }] }

// Timeouts: 900 s (Lambda's maximum) where the work grows with the data — a dump, a table
// export, a restore, re-hashing an object.
const FUNCTIONS = {
  planBackup: {
    does: 'planBackup validates the input; it touches no data',
    timeout: 30,
  },
  snapshotPostgres: {
    ...IN_VPC,
    does: 'snapshotPostgres writes the dump under <prefix>/postgres/ and reads the Postgres URL',
    ...BIG,
    ...PG_TOOLS,
    secret: 'postgres',
    statements: writeUnder('postgres/*'),
  },
  listClickHouseTables: {
    ...IN_VPC,
    does: 'listClickHouseTables writes the backup plan under <prefix>/clickhouse/<id>/plan/ and reads the ClickHouse URL',
    timeout: 300,
    secret: 'clickhouse',
    statements: writeUnder('clickhouse/*/plan/*', ['s3:PutObject']),
  },
  exportBatch: {
    ...IN_VPC,
    does: 'exportBatch writes table data under <prefix>/clickhouse/, reads it back, and reads the ClickHouse URL',
    ...BIG,
    secret: 'clickhouse',
    statements: [...writeUnder('clickhouse/*'), ...readBackups],
  },
  verifyObject: {
    does: 'verifyObject re-reads stored objects',
    ...BIG,
    statements: readBackups,
  },
  commitManifest: {
    does: 'commitManifest reads the plan and batch results and writes manifest.json files',
    timeout: 120,
    memorySize: 512,
    statements: [...writeUnder('*/*/manifest.json', ['s3:PutObject']), ...readBackups],
  },
  prune: {
    does: 'prune is the only function that can delete (current versions only; no version deletes)',
    timeout: 600,
    memorySize: 512,
    environment: { LSB_OBJECT_LOCK_DAYS: '${param:objectLockDays}' },
    statements: [
      ...readBackups,
      {
        Effect: 'Allow',
        Action: ['s3:DeleteObject'],
        Resource: { 'Fn::Sub': '${BackupBucket.Arn}/${param:prefix}/*' },
      },
    ],
  },
  notify: {
    does: 'notify reads the Slack webhook URL, nothing else',
    timeout: 60,
    secret: 'slack',
  },
  verifyBackupBatch: {
    does: 'verifyBackupBatch re-reads stored objects before a restore',
    ...BIG,
    statements: readBackups,
  },
  resolveBackup: {
    does: 'resolveBackup lists backups and reads manifests',
    timeout: 300,
    memorySize: 512,
    statements: readBackups,
  },
  loadPostgres: {
    ...IN_VPC,
    does: 'loadPostgres reads a dump and the Postgres URL; it restores into <db>__lsb_restoring only',
    ...BIG,
    ...PG_TOOLS,
    // pg_restore --jobs reads a local copy of the dump: /tmp must hold it (a bigger dump streams)
    ephemeralStorageSize: 10240,
    secret: 'postgres',
    statements: readBackups,
  },
  swapPostgres: {
    ...IN_VPC,
    does: 'swapPostgres renames the loaded database into place; reads the manifest and the Postgres URL',
    timeout: 300,
    memorySize: 512,
    secret: 'postgres',
    statements: readBackups,
  },
  prepareClickHouseRestore: {
    ...IN_VPC,
    does: 'prepareClickHouseRestore reads manifests and the ClickHouse URL',
    timeout: 300,
    secret: 'clickhouse',
    statements: readBackups,
  },
  loadClickHouseBatch: {
    ...IN_VPC,
    does: 'loadClickHouseBatch reads table data and the ClickHouse URL',
    ...BIG,
    secret: 'clickhouse',
    statements: readBackups,
  },
  commitClickHouseRestore: {
    ...IN_VPC,
    does: 'commitClickHouseRestore swaps restored tables in; reads manifests and the ClickHouse URL',
    timeout: 300,
    secret: 'clickhouse',
    statements: readBackups,
  },
  checkDrill: {
    ...IN_VPC,
    does: 'checkDrill fingerprints a drill scratch database and writes its record under <prefix>/<engine>/<id>/drills/',
    ...BIG,
    secret: ['postgres', 'clickhouse'],
    statements: [...writeUnder('*/*/drills/*', ['s3:PutObject']), ...readBackups],
  },
  finishDrill: {
    ...IN_VPC,
    does: 'finishDrill drops a drill scratch database (drill names only) and writes its record under drills/',
    timeout: 300,
    secret: ['postgres', 'clickhouse'],
    statements: [...writeUnder('*/*/drills/*', ['s3:PutObject']), ...readBackups],
  },
  migrateToHead: {
    ...IN_VPC,
    does: 'migrateToHead reads the Postgres URL to check the schema head',
    timeout: 900,
    memorySize: 512,
    secret: 'postgres',
  },
}

const roleId = (name) => `${name[0].toUpperCase()}${name.slice(1)}Role`

const assumeLambda = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' }],
}

function functions() {
  return Object.fromEntries(
    Object.entries(FUNCTIONS).map(([name, { does, secret, statements, environment, inVpc, ...settings }]) => {
      const env = { ...environment }
      for (const one of [secret ?? []].flat()) env[SECRETS[one][0]] = `\${param:${SECRETS[one][1]}}`
      return [
        name,
        {
          handler: `functions/${name}.handler`,
          role: roleId(name),
          ...settings,
          ...(inVpc ? { vpc: '${self:custom.lambdaVpc}' } : {}),
          ...(Object.keys(env).length > 0 ? { environment: env } : {}),
        },
      ]
    }),
  )
}

function roles() {
  return Object.fromEntries(
    Object.entries(FUNCTIONS).map(([name, { does, secret, statements = [] }]) => {
      const all = [...statements]
      for (const one of [secret ?? []].flat()) {
        all.push(statement(`read${SECRETS[one][2]}`), statement(`decrypt${SECRETS[one][2]}`))
      }
      return [
        roleId(name),
        {
          Type: 'AWS::IAM::Role',
          Properties: {
            Description: does,
            AssumeRolePolicyDocument: assumeLambda,
            ManagedPolicyArns: [{ Ref: 'LambdaBasePolicy' }],
            ...(all.length > 0
              ? {
                  Policies: [
                    { PolicyName: 'data', PolicyDocument: { Version: '2012-10-17', Statement: all } },
                  ],
                }
              : {}),
          },
        },
      ]
    }),
  )
}

module.exports = { functions, roles, FUNCTIONS }
