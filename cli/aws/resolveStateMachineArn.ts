/** Which deployed state machine to start: a flag, an environment variable, or the stack's outputs. */
import { ConfigError } from '#core/errors.ts'
import { STATE_MACHINE_ARN } from '#core/names.ts'
import { redact } from '#core/redact.ts'
import type { MachineKind } from './client.ts'

/** Environment variables that name a deployed state machine (the stack outputs say the same). */
export const STATE_MACHINE_ARN_ENV: Record<MachineKind, string> = {
  backup: 'LSB_BACKUP_STATE_MACHINE_ARN',
  restore: 'LSB_RESTORE_STATE_MACHINE_ARN',
}
/** The CloudFormation outputs of serverless.yml that hold the ARNs. */
export const STATE_MACHINE_OUTPUT: Record<MachineKind, string> = {
  backup: 'BackupStateMachineArn',
  restore: 'RestoreStateMachineArn',
}

export interface ResolveArnOptions {
  /** --state-machine-arn */
  flag?: string
  env?: NodeJS.ProcessEnv
  /** The deployed stack (`langsight-backup-<stage>`); default LSB_STACK_NAME. Read with DescribeStacks. */
  stackName?: string
  /** Region of the stack; default the SDK's (AWS_REGION, profile). */
  region?: string
}

/**
 * The ARN of the deployed backup or restore state machine: the flag, else
 * LSB_BACKUP_STATE_MACHINE_ARN / LSB_RESTORE_STATE_MACHINE_ARN, else the stack's outputs.
 */
export async function resolveStateMachineArn(
  kind: MachineKind,
  options: ResolveArnOptions = {},
): Promise<string> {
  const env = options.env ?? process.env
  const variable = STATE_MACHINE_ARN_ENV[kind]
  const given = options.flag || env[variable]
  if (given) {
    if (!STATE_MACHINE_ARN.test(given)) {
      throw new ConfigError(
        `${options.flag ? '--state-machine-arn' : variable} is not a state machine ARN: ${given}`,
      )
    }
    return given
  }
  const stackName = options.stackName || env.LSB_STACK_NAME
  if (!stackName) {
    throw new ConfigError(
      `which ${kind} state machine? pass --state-machine-arn, set ${variable}, or set LSB_STACK_NAME ` +
        `(e.g. langsight-backup-prod) to read it from the stack's outputs`,
    )
  }
  const outputKey = STATE_MACHINE_OUTPUT[kind]
  const outputs = await stackOutputs(stackName, options.region)
  const arn = outputs[outputKey]
  if (!arn)
    throw new ConfigError(
      `stack ${stackName} has no output ${outputKey} (deployed from this serverless.yml?)`,
    )
  return arn
}

/** The outputs of a CloudFormation stack. The client is loaded only when a stack is asked for. */
async function stackOutputs(stackName: string, region?: string): Promise<Record<string, string>> {
  let cloudFormation: typeof import('@aws-sdk/client-cloudformation')
  try {
    cloudFormation = await import('@aws-sdk/client-cloudformation')
  } catch (error) {
    throw new ConfigError(
      'reading stack outputs needs @aws-sdk/client-cloudformation (npm install it), or pass --state-machine-arn',
      { cause: error },
    )
  }
  const client = new cloudFormation.CloudFormationClient(region ? { region } : {})
  try {
    const { Stacks } = await client.send(new cloudFormation.DescribeStacksCommand({ StackName: stackName }))
    return Object.fromEntries(
      (Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']),
    )
  } catch (error) {
    throw new ConfigError(
      `cannot read the outputs of stack ${stackName}: ${redact((error as Error).message)}`,
      {
        cause: error,
      },
    )
  } finally {
    client.destroy()
  }
}
