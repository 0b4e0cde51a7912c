/**
 * The alarms on what the functions publish (namespace LangSightBackup, Powertools Metrics/EMF,
 * dimensions service + Engine) and on the schedules: a missed backup or drill, a backup much
 * smaller than the one before, a schedule that could not start its state machine.
 *
 * serverless.yml: `${file(infra/alarms.cjs):resources}` (a Serverless variable resolver).
 */
'use strict'

const { MAX_ALARM_WINDOW_HOURS, deriveParams, readParams } = require('./validateParams.cjs')

const NAMESPACE = 'LangSightBackup'
const ENGINES = ['postgres', 'clickhouse']
const HOUR = 3600
const topic = [{ Ref: 'AlarmTopic' }]
const cap = (s) => s[0].toUpperCase() + s.slice(1)

const dimensions = (service, engine) => [
  { Name: 'service', Value: service },
  { Name: 'Engine', Value: engine },
]

/**
 * "No <metric> for <hours> h", missing data breaching. Up to 168 h (CloudWatch's longest
 * evaluation range) this is one alarm of hourly periods. Beyond, a composite alarm: no success
 * for 168 h AND NOT "the schedule started a run in the last (hours − 168) h" — a run that is late
 * or slow gets that grace, a schedule that never fires does not.
 */
function freshness({ id, alarmName, description, metric, service, engine, hours, ruleName, condition }) {
  const window = Math.min(hours, MAX_ALARM_WINDOW_HOURS)
  const stale = {
    Type: 'AWS::CloudWatch::Alarm',
    ...(condition ? { Condition: condition } : {}),
    Properties: {
      AlarmName: hours > window ? `${alarmName}-${window}h` : alarmName,
      AlarmDescription: description,
      Namespace: NAMESPACE,
      MetricName: metric,
      Dimensions: dimensions(service, engine),
      Statistic: 'Sum',
      Period: HOUR,
      EvaluationPeriods: window,
      DatapointsToAlarm: window,
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
      ...(hours > window ? {} : { AlarmActions: topic, OKActions: topic }),
    },
  }
  if (hours <= window) return { [id]: stale }
  const grace = hours - window
  return {
    [`${id}Window`]: stale,
    [`${id}Grace`]: {
      Type: 'AWS::CloudWatch::Alarm',
      ...(condition ? { Condition: condition } : {}),
      Properties: {
        AlarmName: `${alarmName}-run-started-${grace}h`,
        AlarmDescription: `${ruleName} started a run in the last ${grace} h (grace for ${alarmName})`,
        Namespace: 'AWS/Events',
        MetricName: 'Invocations',
        Dimensions: [{ Name: 'RuleName', Value: ruleName }],
        Statistic: 'Sum',
        Period: HOUR,
        EvaluationPeriods: grace,
        DatapointsToAlarm: 1,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
      },
    },
    [id]: {
      Type: 'AWS::CloudWatch::CompositeAlarm',
      ...(condition ? { Condition: condition } : {}),
      Properties: {
        AlarmName: alarmName,
        AlarmDescription: description,
        AlarmRule: { 'Fn::Sub': `ALARM("\${${id}Window.Arn}") AND NOT ALARM("\${${id}Grace.Arn}")` },
        AlarmActions: topic,
        OKActions: topic,
      },
    },
  }
}

/** Every alarm of this file, from the stack's names and parameters. */
function alarmResources({ service, params }) {
  const ages = deriveParams(params)
  const rule = (suffix) => `${service}-${suffix}`
  const resources = {}
  for (const engine of ENGINES) {
    const hours = ages[`${engine}MaxAgeHours`]
    Object.assign(
      resources,
      freshness({
        id: `${cap(engine)}BackupStaleAlarm`,
        alarmName: `${service}-${engine}-backup-stale`,
        description: `No successful ${engine} backup for ${hours} h (BackupSucceeded)`,
        metric: 'BackupSucceeded',
        service,
        engine,
        hours,
        ruleName: rule(engine),
      }),
      freshness({
        id: `${cap(engine)}DrillStaleAlarm`,
        alarmName: `${service}-${engine}-drill-stale`,
        description: `No successful ${engine} restore drill for ${ages.drillMaxAgeHours} h (DrillSucceeded)`,
        metric: 'DrillSucceeded',
        service,
        engine,
        hours: ages.drillMaxAgeHours,
        ruleName: rule(`${engine}-drill`),
        condition: 'DrillsEnabled',
      }),
    )
    if (ages.sizeDropRatio === 0) continue // sizeDropRatio 0: the check is off
    resources[`${cap(engine)}BackupSizeDropAlarm`] = {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `${service}-${engine}-backup-size-drop`,
        AlarmDescription: `A ${engine} backup is below ${params.sizeDropRatio} × the previous one (BackupSizeRatio): a warning`,
        Namespace: NAMESPACE,
        MetricName: 'BackupSizeRatio',
        Dimensions: dimensions(service, engine),
        Statistic: 'Minimum',
        Period: HOUR,
        EvaluationPeriods: 1,
        Threshold: Number(params.sizeDropRatio),
        ComparisonOperator: 'LessThanThreshold',
        TreatMissingData: 'notBreaching', // emitted only when a backup commits
        AlarmActions: topic,
      },
    }
  }
  for (const suffix of ['postgres', 'clickhouse', 'postgres-drill', 'clickhouse-drill']) {
    const id = suffix.split('-').map(cap).join('')
    resources[`${id}ScheduleFailedAlarm`] = {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `${rule(suffix)}-schedule-failed`,
        AlarmDescription: `EventBridge could not start the state machine for ${rule(suffix)} (FailedInvocations)`,
        Namespace: 'AWS/Events',
        MetricName: 'FailedInvocations',
        Dimensions: [{ Name: 'RuleName', Value: rule(suffix) }],
        Statistic: 'Sum',
        Period: 300,
        EvaluationPeriods: 1,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
        AlarmActions: topic,
      },
    }
  }
  resources.ScheduleDeadLetterAlarm = {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${service}-schedule-dead-letters`,
      AlarmDescription: 'A scheduled run was given up after its retries (messages in the schedule DLQ)',
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': ['ScheduleDeadLetterQueue', 'QueueName'] } }],
      Statistic: 'Maximum',
      Period: 300,
      EvaluationPeriods: 1,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: topic,
    },
  }
  return resources
}

/** Serverless resolver: `{ Resources }` for serverless.yml's `resources`. */
async function resources({ resolveVariable }) {
  const service = `${await resolveVariable('self:service')}-${await resolveVariable('sls:stage')}`
  return { Resources: alarmResources({ service, params: await readParams(resolveVariable) }) }
}

module.exports = { alarmResources, resources, NAMESPACE }
