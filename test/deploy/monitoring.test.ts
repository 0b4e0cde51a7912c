// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript templates
import { createRequire } from 'node:module'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  conditionValue,
  functionsByKey,
  type Obj,
  PACKAGE_TIMEOUT_MS,
  packagedTemplate,
  type Resource,
  resolveIfs,
  roleStatements,
  type Template,
} from './packagedTemplate.ts'

const { alarmResources } = createRequire(import.meta.url)('../../infra/alarms.cjs') as {
  alarmResources: (o: { service: string; params: Record<string, string> }) => Record<string, Resource>
}

const SERVICE = 'langsight-backup-dev'
/** The metrics contract of the functions (Powertools Metrics, EMF). */
const METRICS = [
  'BackupSucceeded',
  'BackupBytes',
  'BackupRows',
  'BackupDurationSeconds',
  'BackupObjects',
  'LastBackupEpochSeconds',
  'BackupSizeRatio',
  'TableRows',
  'DrillSucceeded',
  'DrillMismatchedTables',
]
const RULES = {
  PostgresBackupSchedule: ['postgres', 'cron(0 2 * * ? *)', { engines: ['postgres'] }, 'BackupStateMachine'],
  ClickhouseBackupSchedule: [
    'clickhouse',
    'cron(0 3 ? * SUN *)',
    { engines: ['clickhouse'] },
    'BackupStateMachine',
  ],
  PostgresDrillSchedule: [
    'postgres-drill',
    'cron(0 4 * * ? *)',
    { mode: 'drill', postgres: 'latest', clickhouse: null },
    'RestoreStateMachine',
  ],
  ClickhouseDrillSchedule: [
    'clickhouse-drill',
    'cron(0 6 ? * SUN *)',
    { mode: 'drill', postgres: null, clickhouse: 'latest' },
    'RestoreStateMachine',
  ],
} as const

let template: Template
const resource = (id: string) => template.Resources[id]!
const ofType = (type: string) => Object.entries(template.Resources).filter(([, r]) => r.Type === type)

beforeAll(async () => {
  template = await packagedTemplate()
}, PACKAGE_TIMEOUT_MS + 60_000)

describe('Function: serverless.yml schedules', () => {
  it('starts backups and drills on their crons, with retries and a dead-letter queue, through one narrow role', () => {
    // Act
    const rules = ofType('AWS::Events::Rule').map(([id, r]) => {
      const target = (r.Properties.Targets as Obj[])[0]!
      return [id, r.Properties, target] as const
    })
    // Assess
    expect(rules.map(([id]) => id).sort()).toEqual(Object.keys(RULES).sort())
    for (const [id, props, target] of rules) {
      const [suffix, cron, input, machine] = RULES[id as keyof typeof RULES]
      expect(props.Name, id).toBe(`${SERVICE}-${suffix}`)
      expect(props.ScheduleExpression, id).toBe(cron)
      expect(resolveIfs(template, props.State!, 'deployed'), id).toBe('ENABLED')
      expect(JSON.parse(target.Input as string), id).toEqual(input)
      expect(target.Arn, id).toEqual({ Ref: machine })
      expect(target.RetryPolicy, id).toEqual({ MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 3600 })
      expect(target.DeadLetterConfig, id).toEqual({
        Arn: { 'Fn::GetAtt': ['ScheduleDeadLetterQueue', 'Arn'] },
      })
      expect(target.RoleArn, id).toEqual({ 'Fn::GetAtt': ['ScheduleRole', 'Arn'] })
    }
    expect(roleStatements(template, 'ScheduleRole', 'configured')).toEqual([
      {
        Effect: 'Allow',
        Action: ['states:StartExecution'],
        Resource: [{ Ref: 'BackupStateMachine' }, { Ref: 'RestoreStateMachine' }],
      },
    ])
    // schedulesEnabled and drillsEnabled switch their own rules
    expect(resource('PostgresBackupSchedule').Properties.State).toEqual({
      'Fn::If': ['SchedulesEnabled', 'ENABLED', 'DISABLED'],
    })
    expect(resource('PostgresDrillSchedule').Properties.State).toEqual({
      'Fn::If': ['DrillsEnabled', 'ENABLED', 'DISABLED'],
    })
  })

  it('encrypts the DLQ with the stack key and lets only these rules write to it (checkov CKV_AWS_27)', () => {
    // Prepare
    const [, policy] = ofType('AWS::SQS::QueuePolicy')[0]!
    const statement = ((policy.Properties.PolicyDocument as Obj).Statement as Obj[])[0]!
    // Assess
    expect(resource('ScheduleDeadLetterQueue').Properties.KmsMasterKeyId).toEqual({ Ref: 'AlarmKey' })
    expect(statement).toMatchObject({
      Effect: 'Allow',
      Principal: { Service: 'events.amazonaws.com' },
      Action: 'sqs:SendMessage',
    })
    expect((statement.Condition as Obj).ArnEquals).toEqual({
      'aws:SourceArn': Object.keys(RULES).map((id) => ({ 'Fn::GetAtt': [id, 'Arn'] })),
    })
  })
})

describe('Function: serverless.yml alarm topic', () => {
  it('encrypts the topic with a rotated customer-managed key CloudWatch and EventBridge may use (checkov CKV_AWS_26)', () => {
    // Prepare
    const key = resource('AlarmKey')
    const statements = (key.Properties.KeyPolicy as Obj).Statement as Obj[]
    // Act
    const services = statements.find((s) => JSON.stringify(s.Principal).includes('cloudwatch'))!
    // Assess
    expect(key.Type).toBe('AWS::KMS::Key')
    expect(key.Properties.EnableKeyRotation).toBe(true)
    expect(resource('AlarmTopic').Properties.KmsMasterKeyId).toEqual({ Ref: 'AlarmKey' })
    expect(services.Principal).toEqual({ Service: ['cloudwatch.amazonaws.com', 'events.amazonaws.com'] })
    expect(services.Action).toEqual(['kms:Decrypt', 'kms:GenerateDataKey*'])
  })

  it('subscribes notify (Slack) by default and an email address when given, and lets SNS invoke notify', () => {
    // Prepare
    const email = resource('AlarmEmailSubscription')
    const slack = resource('AlarmSlackSubscription')
    const permission = resource('AlarmSlackPermission')
    // Assess
    expect([email.Condition, slack.Condition, permission.Condition]).toEqual([
      'HasAlarmEmail',
      'AlarmToSlack',
      'AlarmToSlack',
    ])
    // by default the alarms go where the failures go, Slack; email only when an address is given
    expect([conditionValue(template, 'HasAlarmEmail'), conditionValue(template, 'AlarmToSlack')]).toEqual([
      false,
      true,
    ])
    expect(email.Properties).toMatchObject({ Protocol: 'email', TopicArn: { Ref: 'AlarmTopic' } })
    expect(slack.Properties).toEqual({
      TopicArn: { Ref: 'AlarmTopic' },
      Protocol: 'lambda',
      Endpoint: { 'Fn::GetAtt': ['NotifyLambdaFunction', 'Arn'] },
    })
    expect(permission.Properties).toEqual({
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': ['NotifyLambdaFunction', 'Arn'] },
      Principal: 'sns.amazonaws.com',
      SourceArn: { Ref: 'AlarmTopic' },
    })
  })
})

describe('Function: serverless.yml alarms', () => {
  it('tells every function the metrics namespace and service dimension the alarms read', () => {
    for (const [key, { resource: fn }] of functionsByKey(template)) {
      const env = (fn.Properties.Environment as Obj).Variables as Obj
      expect(env.POWERTOOLS_METRICS_NAMESPACE, key).toBe('LangSightBackup')
      expect(env.POWERTOOLS_SERVICE_NAME, key).toBe(SERVICE)
    }
  })

  it('stays within CloudWatch limits: 7 days of evaluation, 1 day below hourly periods', () => {
    for (const [id, alarm] of ofType('AWS::CloudWatch::Alarm')) {
      const { Period, EvaluationPeriods, DatapointsToAlarm } = alarm.Properties as Record<string, number>
      expect(Period! * EvaluationPeriods!, id).toBeLessThanOrEqual(Period! < 3600 ? 86_400 : 604_800)
      expect(DatapointsToAlarm ?? 1, id).toBeLessThanOrEqual(EvaluationPeriods!)
    }
  })

  it('alarms when Postgres has had no successful backup for 26 h, missing data breaching', () => {
    // Prepare
    const p = resource('PostgresBackupStaleAlarm').Properties
    // Assess
    expect(p).toMatchObject({
      Namespace: 'LangSightBackup',
      MetricName: 'BackupSucceeded',
      Dimensions: [
        { Name: 'service', Value: SERVICE },
        { Name: 'Engine', Value: 'postgres' },
      ],
      Statistic: 'Sum',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
      AlarmActions: [{ Ref: 'AlarmTopic' }],
    })
    expect((p.Period as number) * (p.EvaluationPeriods as number)).toBe(26 * 3600)
    expect(p.DatapointsToAlarm).toBe(p.EvaluationPeriods)
  })

  it('alarms after 192 h without a ClickHouse backup: 168 h (the API maximum) plus 24 h once a run has started', () => {
    // Prepare
    const window = resource('ClickhouseBackupStaleAlarmWindow').Properties
    const grace = resource('ClickhouseBackupStaleAlarmGrace').Properties
    const composite = resource('ClickhouseBackupStaleAlarm')
    // Assess
    expect(window).toMatchObject({
      MetricName: 'BackupSucceeded',
      TreatMissingData: 'breaching',
      Period: 3600,
    })
    expect([window.EvaluationPeriods, window.DatapointsToAlarm, window.AlarmActions]).toEqual([
      168,
      168,
      undefined,
    ])
    expect(grace).toMatchObject({
      Namespace: 'AWS/Events',
      MetricName: 'Invocations',
      Dimensions: [{ Name: 'RuleName', Value: `${SERVICE}-clickhouse` }],
      EvaluationPeriods: 24,
      DatapointsToAlarm: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    })
    expect(composite.Type).toBe('AWS::CloudWatch::CompositeAlarm')
    expect(composite.Properties.AlarmRule).toEqual({
      'Fn::Sub':
        'ALARM("${ClickhouseBackupStaleAlarmWindow.Arn}") AND NOT ALARM("${ClickhouseBackupStaleAlarmGrace.Arn}")',
    })
    expect(composite.Properties.AlarmActions).toEqual([{ Ref: 'AlarmTopic' }])
  })

  it('uses one hourly alarm when the age fits in 168 h, the composite only beyond, and no size alarm at ratio 0', () => {
    // Prepare
    const params = {
      objectLockMode: 'GOVERNANCE',
      objectLockDays: '14',
      noncurrentVersionDays: '',
      postgresMaxAgeHours: '26',
      clickhouseMaxAgeHours: '168',
      drillMaxAgeHours: '200',
      sizeDropRatio: '0.5',
      replicationBucketArn: '',
    }
    // Act
    const alarms = alarmResources({ service: 's-prod', params })
    // Assess
    expect(alarms.ClickhouseBackupStaleAlarm!.Type).toBe('AWS::CloudWatch::Alarm')
    expect(alarms.ClickhouseBackupStaleAlarm!.Properties.EvaluationPeriods).toBe(168)
    expect(alarms.ClickhouseBackupStaleAlarmGrace).toBeUndefined()
    expect(alarms.PostgresDrillStaleAlarmGrace!.Properties.EvaluationPeriods).toBe(32)
    expect(alarms.PostgresDrillStaleAlarmGrace!.Properties.Dimensions).toEqual([
      { Name: 'RuleName', Value: 's-prod-postgres-drill' },
    ])
    expect(
      alarmResources({ service: 's-prod', params: { ...params, sizeDropRatio: '0' } }),
    ).not.toHaveProperty('PostgresBackupSizeDropAlarm')
  })

  it('alarms on stale drills (only with drills enabled), small backups, failed schedules and dead letters', () => {
    // Prepare
    const alarms = [...ofType('AWS::CloudWatch::Alarm'), ...ofType('AWS::CloudWatch::CompositeAlarm')]
    const byMetric = (metric: string) => alarms.filter(([, a]) => a.Properties.MetricName === metric)
    // Assess
    for (const engine of ['Postgres', 'Clickhouse']) {
      expect(resource(`${engine}DrillStaleAlarm`).Condition).toBe('DrillsEnabled')
      expect(resource(`${engine}BackupSizeDropAlarm`).Properties).toMatchObject({
        MetricName: 'BackupSizeRatio',
        Threshold: 0.5,
        ComparisonOperator: 'LessThanThreshold',
        AlarmActions: [{ Ref: 'AlarmTopic' }],
      })
    }
    expect(byMetric('DrillSucceeded').length).toBeGreaterThanOrEqual(2)
    expect(
      byMetric('FailedInvocations')
        .map(([, a]) => (a.Properties.Dimensions as Obj[])[0]!.Value)
        .sort(),
    ).toEqual(
      Object.values(RULES)
        .map(([suffix]) => `${SERVICE}-${suffix}`)
        .sort(),
    )
    expect(byMetric('ApproximateNumberOfMessagesVisible')[0]![1].Properties.Dimensions).toEqual([
      { Name: 'QueueName', Value: { 'Fn::GetAtt': ['ScheduleDeadLetterQueue', 'QueueName'] } },
    ])
    for (const [id, a] of alarms) {
      const child = /Stale\w*(Window|Grace)$/.test(id)
      expect(a.Properties.AlarmActions, id).toEqual(child ? undefined : [{ Ref: 'AlarmTopic' }])
      if (a.Properties.Namespace === 'LangSightBackup') expect(METRICS, id).toContain(a.Properties.MetricName)
    }
  })
})

describe('Function: serverless.yml dashboard', () => {
  it('has a JSON body naming the metrics, a SEARCH over TableRows, and the failures of both machines', () => {
    // Prepare
    const sub = resource('Dashboard').Properties.DashboardBody as Obj
    const text = sub['Fn::Sub'] as string
    // Act: fill the placeholders the way CloudFormation would, then parse
    const placeholders = [...text.matchAll(/\$\{([\w:.]+)\}/g)].map((m) => m[1]!)
    const body = JSON.parse(text.replace(/\$\{([\w:.]+)\}/g, 'value-of-$1')) as {
      widgets: { properties: { metrics: unknown[] } }[]
    }
    const metrics = JSON.stringify(body.widgets.map((w) => w.properties.metrics))
    // Assess
    expect(typeof text).toBe('string')
    expect(new Set(placeholders)).toEqual(
      new Set([
        'AWS::Region',
        'BackupStateMachine',
        'RestoreStateMachine',
        'ScheduleDeadLetterQueue.QueueName',
      ]),
    )
    for (const p of placeholders) {
      const [id] = p.split('.')
      if (!p.startsWith('AWS::')) expect(template.Resources[id!], p).toBeDefined()
    }
    expect(body.widgets.length).toBeGreaterThanOrEqual(6)
    for (const m of ['BackupBytes', 'BackupDurationSeconds', 'LastBackupEpochSeconds', 'DrillSucceeded']) {
      expect(metrics).toContain(`"${m}"`)
    }
    expect(metrics).toMatch(/SEARCH\('\{LangSightBackup,service,Engine,Table\} MetricName=\\"TableRows\\"/)
    expect(metrics).toContain('value-of-BackupStateMachine')
    expect(metrics).toContain('value-of-RestoreStateMachine')
    expect(metrics).toContain('"FailedInvocations"')
  })
})
