/** What the CLI's Step Functions calls share: the machines, one client per region, JSON read back. */
import { SFNClient } from '@aws-sdk/client-sfn'
import { EXECUTION_ARN, STATE_MACHINE_ARN } from '#core/names.ts'

export type MachineKind = 'backup' | 'restore'

const clients = new Map<string, SFNClient>()

/** One client per region; the region comes from the ARN, so no AWS_REGION is needed. */
export function clientFor(arn: string): SFNClient {
  const region = STATE_MACHINE_ARN.exec(arn)?.[1] ?? EXECUTION_ARN.exec(arn)?.[1]
  const key = region ?? 'default'
  let client = clients.get(key)
  if (!client) {
    client = new SFNClient(region ? { region, maxAttempts: 5 } : { maxAttempts: 5 })
    clients.set(key, client)
  }
  return client
}

/** Step Functions' JSON text, or the text itself when it is not JSON. */
export function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
