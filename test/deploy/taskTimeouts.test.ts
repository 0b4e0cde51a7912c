/**
 * Step Functions must never give up on a Lambda task before the function itself does: the function
 * ends through its own deadline handling (middy's abort signal, 10 s before its timeout), and a
 * cold start or a slow invoke must not make the task time out first.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const repo = join(import.meta.dirname, '../..')
const { functions } = createRequire(import.meta.url)(join(repo, 'infra/functions.cjs')) as {
  functions: () => Record<string, { timeout?: number }>
}
/** The provider's default (serverless.yml) for a function without a timeout of its own. */
const DEFAULT_TIMEOUT = 60
const MARGIN_SECONDS = 60

interface Task {
  name: string
  fn: string
  timeout: number
  retried: string[]
}

function lambdaTasks(machine: string): Task[] {
  const asl = JSON.parse(readFileSync(join(repo, `statemachines/${machine}.asl.json`), 'utf8'))
  const tasks: Task[] = []
  const walk = (states: Record<string, Record<string, unknown>>) => {
    for (const [name, s] of Object.entries(states)) {
      const resource = s.Resource as { 'Fn::GetAtt'?: [string, string] } | undefined
      if (s.Type === 'Task' && resource?.['Fn::GetAtt']) {
        const retry = (s.Retry ?? []) as { ErrorEquals: string[] }[]
        tasks.push({
          name,
          fn: resource['Fn::GetAtt'][0],
          timeout: s.TimeoutSeconds as number,
          retried: retry.flatMap((r) => r.ErrorEquals),
        })
      }
      for (const b of (s.Branches ?? []) as { States: Record<string, Record<string, unknown>> }[])
        walk(b.States)
      const processor = s.ItemProcessor as { States: Record<string, Record<string, unknown>> } | undefined
      if (processor) walk(processor.States)
    }
  }
  walk(asl.States)
  return tasks
}

describe.each(['backup', 'restore'])('State machine %s: task timeouts and retries', (machine) => {
  const deployed = functions()
  const tasks = lambdaTasks(machine)

  it('gives every Lambda task at least its function timeout plus a 60 s margin', () => {
    expect(tasks.length).toBeGreaterThan(5)
    for (const t of tasks) {
      const fnTimeout = deployed[t.fn]?.timeout ?? DEFAULT_TIMEOUT
      expect(t.timeout, `${t.name} (${t.fn}: ${fnTimeout} s)`).toBeGreaterThanOrEqual(
        fnTimeout + MARGIN_SECONDS,
      )
    }
  })

  it('retries the Lambda service and VPC errors on every Lambda task', () => {
    for (const t of tasks) {
      for (const error of [
        'Lambda.ServiceException',
        'Lambda.AWSLambdaException',
        'Lambda.SdkClientException',
        'Lambda.TooManyRequestsException',
        'Lambda.EC2ThrottledException',
        'Lambda.ResourceNotReadyException',
      ]) {
        expect(t.retried, `${t.name} retries ${error}`).toContain(error)
      }
    }
  })
})
