/**
 * The deployed stack: both state machines exist, EventBridge schedules start a backup of every
 * engine, and CloudWatch alarms watch failed and timed-out executions. Read with the caller's
 * AWS credentials, in the region of each state machine's ARN.
 */
import {
  CloudWatchClient,
  DescribeAlarmsForMetricCommand,
  type MetricAlarm,
} from '@aws-sdk/client-cloudwatch'
import {
  DescribeRuleCommand,
  EventBridgeClient,
  ListRuleNamesByTargetCommand,
  ListTargetsByRuleCommand,
} from '@aws-sdk/client-eventbridge'
import { DescribeStateMachineCommand } from '@aws-sdk/client-sfn'
import { ENGINES } from '#core/backupKeys.ts'
import { STATE_MACHINE_ARN } from '#core/names.ts'
import { clientFor, type MachineKind } from '../aws/client.ts'
import { resolveStateMachineArn, STATE_MACHINE_ARN_ENV } from '../aws/resolveStateMachineArn.ts'
import {
  type CheckContext,
  type CheckResult,
  fail,
  hasCode,
  listOf,
  ok,
  result,
  runCheck,
  skip,
  warn,
} from './check.ts'

/** The metrics serverless.yml alarms on, for each state machine. */
export const ALARMED_METRICS = ['ExecutionsFailed', 'ExecutionsTimedOut'] as const

const regionOf = (arn: string) => STATE_MACHINE_ARN.exec(arn)?.[1]
const nameOf = (arn: string) => STATE_MACHINE_ARN.exec(arn)?.[3] ?? arn

/** Checks `aws-backup-state-machine`, `aws-restore-state-machine`, `aws-schedules` and `aws-alarms`. */
export async function awsChecks(ctx: CheckContext): Promise<CheckResult[]> {
  const found: Partial<Record<MachineKind, string>> = {}
  const results: CheckResult[] = []
  for (const kind of ['backup', 'restore'] as const) {
    results.push(
      await runCheck(
        `aws-${kind}-state-machine`,
        ctx,
        async (abortSignal) => {
          const arn = await resolveStateMachineArn(kind)
          const machine = await clientFor(arn).send(
            new DescribeStateMachineCommand({ stateMachineArn: arn }),
            {
              abortSignal,
            },
          )
          if (machine.status && machine.status !== 'ACTIVE') {
            return fail(
              `${nameOf(arn)} is ${machine.status}`,
              'deploy the stack again (npx serverless deploy)',
            )
          }
          found[kind] = arn
          return ok(`${nameOf(arn)} exists (${arn})`)
        },
        (error) => machineFix(error, kind),
      ),
    )
  }
  const backup = found.backup
  results.push(
    backup
      ? await runCheck(
          'aws-schedules',
          ctx,
          (signal) => schedules(backup, signal),
          (e) => awsFix(e, 'events:ListRuleNamesByTarget, events:DescribeRule and events:ListTargetsByRule'),
        )
      : result('aws-schedules', skip('not checked: the backup state machine was not found')),
    Object.keys(found).length > 0
      ? await runCheck(
          'aws-alarms',
          ctx,
          (signal) => alarms(found, signal),
          (e) => awsFix(e, 'cloudwatch:DescribeAlarmsForMetric'),
        )
      : result('aws-alarms', skip('not checked: no state machine was found')),
  )
  return results
}

/** Every engine must be backed up by an enabled rule that targets the backup state machine. */
async function schedules(arn: string, abortSignal: AbortSignal) {
  const events = new EventBridgeClient({ region: regionOf(arn), maxAttempts: 3 })
  try {
    const names: string[] = []
    let NextToken: string | undefined
    do {
      const page = await events.send(new ListRuleNamesByTargetCommand({ TargetArn: arn, NextToken }), {
        abortSignal,
      })
      names.push(...(page.RuleNames ?? []))
      NextToken = page.NextToken
    } while (NextToken)
    const rules = await Promise.all(
      names.map(async (Name) => {
        const [rule, targets] = await Promise.all([
          events.send(new DescribeRuleCommand({ Name }), { abortSignal }),
          events.send(new ListTargetsByRuleCommand({ Rule: Name }), { abortSignal }),
        ])
        const engines = (targets.Targets ?? [])
          .filter((t) => t.Arn === arn)
          .flatMap((t) => enginesOf(t.Input))
        return {
          name: Name,
          schedule: rule.ScheduleExpression ?? 'on events',
          enabled: rule.State === 'ENABLED',
          engines,
        }
      }),
    )
    const described = rules.map(
      (r) => `${r.name} ${r.schedule} → ${r.engines.join('+') || '?'}${r.enabled ? '' : ' (DISABLED)'}`,
    )
    const unscheduled = ENGINES.filter((e) => !rules.some((r) => r.enabled && r.engines.includes(e)))
    if (unscheduled.length > 0) {
      return fail(
        `no enabled schedule backs up ${unscheduled.join(' or ')}` +
          (rules.length ? `: ${described.join('; ')}` : `: no EventBridge rule targets ${nameOf(arn)}`),
        'deploy the stack with its schedules on (parameters schedulesEnabled=true, postgresSchedule, clickhouseSchedule), ' +
          'or enable the rules: aws events enable-rule --name <rule>',
      )
    }
    const disabled = rules.filter((r) => !r.enabled)
    if (disabled.length > 0) {
      return warn(
        `${described.join('; ')}`,
        `delete or enable the disabled rules: ${disabled.map((r) => r.name).join(', ')}`,
      )
    }
    return ok(described.join('; '))
  } finally {
    events.destroy()
  }
}

/** The engines a schedule's input names (`{"engines":["postgres"]}`; `all` is both). */
function enginesOf(input: string | undefined): string[] {
  try {
    const engines = (JSON.parse(input ?? '{}') as { engines?: unknown }).engines
    if (!Array.isArray(engines)) return []
    return engines.includes('all') ? [...ENGINES] : engines.filter((e): e is string => typeof e === 'string')
  } catch {
    return []
  }
}

/** An alarm on each {@link ALARMED_METRICS} of each state machine, with an action, and none firing. */
async function alarms(machines: Partial<Record<MachineKind, string>>, abortSignal: AbortSignal) {
  const found: { label: string; alarm: MetricAlarm }[] = []
  const missing: string[] = []
  for (const [kind, arn] of Object.entries(machines)) {
    const watch = new CloudWatchClient({ region: regionOf(arn), maxAttempts: 3 })
    try {
      for (const MetricName of ALARMED_METRICS) {
        const { MetricAlarms = [] } = await watch.send(
          new DescribeAlarmsForMetricCommand({
            Namespace: 'AWS/States',
            MetricName,
            Dimensions: [{ Name: 'StateMachineArn', Value: arn }],
          }),
          { abortSignal },
        )
        const label = `${kind} ${MetricName}`
        if (MetricAlarms.length === 0) missing.push(label)
        for (const alarm of MetricAlarms) found.push({ label, alarm })
      }
    } finally {
      watch.destroy()
    }
  }
  const checked = Object.keys(machines).join(' and ')
  if (missing.length > 0) {
    return fail(
      `no CloudWatch alarm on ${listOf(missing)}: a failing ${checked} would go unnoticed outside Slack`,
      'deploy the stack (serverless.yml alarms on ExecutionsFailed and ExecutionsTimedOut of each state machine)',
    )
  }
  const silent = found.filter(({ alarm }) => !alarm.ActionsEnabled || !alarm.AlarmActions?.length)
  const firing = found.filter(({ alarm }) => alarm.StateValue === 'ALARM')
  const described = found.map(({ label, alarm }) => `${label} (${alarm.StateValue ?? '?'})`)
  if (silent.length > 0) {
    return warn(
      `${listOf(silent.map((s) => s.alarm.AlarmName ?? s.label))} notify nobody (no enabled action)`,
      "give them the stack's SNS topic as action (output AlarmTopicArn) and subscribe to it",
    )
  }
  if (firing.length > 0) {
    return warn(
      `${listOf(firing.map((f) => f.label))} in ALARM: an execution failed or timed out recently; ${listOf(described)}`,
      'look at the failed execution (langsight-backup status <execution-arn>, or the Step Functions console)',
    )
  }
  return ok(
    `${found.length} alarms on the ${checked} state machines: ${listOf(described)}; subscribe to the topic AlarmTopicArn`,
  )
}

function machineFix(error: unknown, kind: MachineKind): string {
  if (hasCode(error, 'ConfigError')) {
    return `set LSB_STACK_NAME to the deployed stack (e.g. langsight-backup-prod), or ${STATE_MACHINE_ARN_ENV[kind]}; --local skips the AWS checks`
  }
  if (hasCode(error, 'StateMachineDoesNotExist', 'InvalidArn')) {
    return `deploy the stack (npx serverless deploy), or fix ${STATE_MACHINE_ARN_ENV[kind]} / LSB_STACK_NAME`
  }
  return awsFix(error, 'states:DescribeStateMachine (and cloudformation:DescribeStacks)')
}

function awsFix(error: unknown, permissions: string): string {
  if (hasCode(error, 'CredentialsProviderError')) {
    return 'no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY'
  }
  if (hasCode(error, 'AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation')) {
    return `grant these credentials ${permissions}`
  }
  if (hasCode(error, 'StallError')) return 'AWS did not answer: check the network and the region'
  return `check the AWS credentials, the region, and that they may call ${permissions}`
}
