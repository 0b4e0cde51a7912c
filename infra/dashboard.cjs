/**
 * The CloudWatch dashboard of the stack: backup size and duration per engine, rows per ClickHouse
 * table, last success, drills and failures. Its body is JSON inside Fn::Sub, so ${AWS::Region} and
 * the state machines' ARNs (${BackupStateMachine}) are filled in by CloudFormation.
 *
 * serverless.yml: `${file(infra/dashboard.cjs):resources}` (a Serverless variable resolver).
 */
'use strict'

const { NAMESPACE } = require('./alarms.cjs')

const ENGINES = ['postgres', 'clickhouse']
const DAY = 86400

function dashboardBody(service) {
  const perEngine = (metric, stat) =>
    ENGINES.map((engine) => [
      NAMESPACE,
      metric,
      'service',
      service,
      'Engine',
      engine,
      { stat, label: engine },
    ])
  const graph = (title, metrics, extra = {}) => ({
    type: 'metric',
    width: 12,
    height: 6,
    properties: { title, region: '${AWS::Region}', view: 'timeSeries', period: DAY, metrics, ...extra },
  })
  const rules = ['postgres', 'clickhouse', 'postgres-drill', 'clickhouse-drill'].map((s) => `${service}-${s}`)
  const widgets = [
    graph('Backup size per engine (bytes)', perEngine('BackupBytes', 'Maximum')),
    graph('Backup duration per engine (s)', perEngine('BackupDurationSeconds', 'Maximum')),
    graph('Rows per ClickHouse table', [
      {
        expression: `SEARCH('{${NAMESPACE},service,Engine,Table} MetricName="TableRows" service="${service}" Engine="clickhouse"', 'Maximum', ${DAY})`,
        id: 'tables',
        label: '',
      },
    ]),
    graph('Last successful backup (epoch seconds) and successes per day', [
      ...perEngine('LastBackupEpochSeconds', 'Maximum'),
      ...perEngine('BackupSucceeded', 'Sum').map((m) => [...m.slice(0, -1), { ...m.at(-1), yAxis: 'right' }]),
    ]),
    graph('Restore drills: successes and mismatched tables per day', [
      ...perEngine('DrillSucceeded', 'Sum'),
      ...perEngine('DrillMismatchedTables', 'Sum').map((m) => [
        ...m.slice(0, -1),
        { ...m.at(-1), label: `${m.at(-1).label} mismatched` },
      ]),
    ]),
    graph('Failures', [
      [
        'AWS/States',
        'ExecutionsFailed',
        'StateMachineArn',
        '${BackupStateMachine}',
        { stat: 'Sum', label: 'backup failed' },
      ],
      [
        'AWS/States',
        'ExecutionsFailed',
        'StateMachineArn',
        '${RestoreStateMachine}',
        { stat: 'Sum', label: 'restore failed' },
      ],
      ...rules.map((r) => [
        'AWS/Events',
        'FailedInvocations',
        'RuleName',
        r,
        { stat: 'Sum', label: `${r} not started` },
      ]),
      [
        'AWS/SQS',
        'ApproximateNumberOfMessagesVisible',
        'QueueName',
        '${ScheduleDeadLetterQueue.QueueName}',
        { stat: 'Maximum', label: 'schedule DLQ' },
      ],
    ]),
  ]
  return { widgets }
}

async function resources({ resolveVariable }) {
  const service = `${await resolveVariable('self:service')}-${await resolveVariable('sls:stage')}`
  return {
    Resources: {
      Dashboard: {
        Type: 'AWS::CloudWatch::Dashboard',
        Properties: {
          DashboardName: service,
          DashboardBody: { 'Fn::Sub': JSON.stringify(dashboardBody(service)) },
        },
      },
    },
  }
}

module.exports = { dashboardBody, resources }
