/**
 * Executes a real ASL file locally with aws-local-stepfunctions: every Task whose Resource is
 * `{"Fn::GetAtt": ["<fn>", "Arn"]}` runs `functions/<fn>.ts`'s middy handler in-process, exactly
 * as serverless.yml wires it on AWS. Native integrations (ECS, Lambda invoke) need a stand-in.
 * Step Functions' payload and history quotas are enforced, so a run that passes here fits on AWS.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Context } from 'aws-lambda'
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions'

export { type EventLog, HISTORY_EVENT_LIMIT, PAYLOAD_LIMIT_BYTES } from './quotas.ts'

import { lambdaContext } from './lambdaContext.ts'
import {
  type EventLog,
  HISTORY_EVENT_LIMIT,
  PAYLOAD_LIMIT_BYTES,
  type QuotaExceeded,
  Quotas,
  TERMINAL,
} from './quotas.ts'

// aws-local-stepfunctions 3 uses Promise.withResolvers, which Node 20 lacks.
const promiseWithResolvers = Promise as unknown as { withResolvers?: () => unknown }
promiseWithResolvers.withResolvers ??= () => {
  let resolve!: (v: unknown) => void
  let reject!: (e: unknown) => void
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Each function's settings as deployed (infra/functions.cjs): the local run keeps their timeouts. */
const deployed = createRequire(import.meta.url)(join(root, 'infra', 'functions.cjs')) as {
  functions: () => Record<string, { timeout?: number }>
}

/** Lambda's answer when a function outlives its timeout: Step Functions sees this error name. */
export class LambdaTimeout extends Error {
  constructor(functionName: string, seconds: number) {
    super(`Task timed out after ${seconds.toFixed(2)} seconds (${functionName})`)
    this.name = 'Sandbox.Timedout'
  }
}

export type MachineName = 'backup' | 'restore'
type Json = Parameters<StateMachine['run']>[0]
type TaskHandler = (input: Json) => Promise<Json>

export interface LocalRunOptions {
  /** Stand-ins for native integrations by Task state name (Quiesce, MigrateWithEcs, …). */
  nativeHandlers?: Record<string, TaskHandler>
  /** Called for every execution event: states entered/exited/failed, map iterations. */
  onEvent?: (event: EventLog) => void
  /** Milliseconds between retries instead of the ASL's IntervalSeconds (tests). */
  retryIntervalMs?: number
  /** Function timeouts in seconds by function name, instead of the deployed ones (tests). */
  functionTimeouts?: Record<string, number>
  /** Runs before each Task's handler with the state's name and input: fault injection in tests. */
  beforeTask?: (state: string, input: unknown) => Promise<void> | void
  signal?: AbortSignal
  /** Runs this definition instead of statemachines/<machine>.asl.json; the machine still names the execution. */
  definition?: AslDefinition
  /** Largest input or output of any state, in UTF-8 bytes of its JSON (default {@link PAYLOAD_LIMIT_BYTES}). */
  payloadLimitBytes?: number
  /** Most events the execution's history may hold (default {@link HISTORY_EVENT_LIMIT}). */
  historyEventLimit?: number
}

export interface LocalRunResult {
  executionArn: string
  output: unknown
}

/** The failure of a local execution, with Step Functions' Error and Cause. */
export class LocalExecutionFailed extends Error {
  constructor(
    readonly error: string,
    readonly cause_: string,
    readonly executionArn: string,
  ) {
    super(`${error}: ${cause_}`)
    this.name = 'LocalExecutionFailed'
  }
}

export interface AslState {
  Type: string
  Resource?: unknown
  ItemProcessor?: AslDefinition
  Iterator?: AslDefinition
  Branches?: AslDefinition[]
  [field: string]: unknown
}

export interface AslDefinition {
  StartAt?: string
  States: Record<string, AslState>
  [field: string]: unknown
}

export function loadDefinition(machine: MachineName): AslDefinition {
  return JSON.parse(readFileSync(join(root, 'statemachines', `${machine}.asl.json`), 'utf8'))
}

/** Every Task state of a definition, nested Map and Parallel states included. */
export function taskStates(states: Record<string, AslState>): [string, AslState][] {
  return Object.entries(states).flatMap(([name, state]): [string, AslState][] => {
    const nested = [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])].flatMap((p) =>
      p ? taskStates(p.States) : [],
    )
    return state.Type === 'Task' ? [[name, state], ...nested] : nested
  })
}

/** The function key of a `{"Fn::GetAtt": [key, "Arn"]}` Resource, or undefined for a native integration. */
export function functionKeyOf(resource: unknown): string | undefined {
  const getAtt = (resource as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt']
  return getAtt?.[1] === 'Arn' ? getAtt[0] : undefined
}

/**
 * Calls a handler as Lambda would: with the function's timeout in its context (middy's abort
 * signal fires before it), and a LambdaTimeout when it has not returned by then.
 */
async function invokeLikeLambda(
  handler: (event: unknown, context: Context) => Promise<Json>,
  functionName: string,
  timeoutSeconds: number,
  input: Json,
): Promise<Json> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LambdaTimeout(functionName, timeoutSeconds)), timeoutSeconds * 1000)
  })
  try {
    return await Promise.race([handler(input, lambdaContext(functionName, timeoutSeconds * 1000)), timedOut])
  } finally {
    clearTimeout(timer)
  }
}

async function localHandlers(
  machine: MachineName,
  definition: AslDefinition,
  native: Record<string, TaskHandler>,
  timeouts: Record<string, number>,
): Promise<Record<string, TaskHandler>> {
  const settings = deployed.functions()
  const handlers: Record<string, TaskHandler> = {}
  for (const [name, state] of taskStates(definition.States)) {
    const key = functionKeyOf(state.Resource)
    if (key) {
      const module = (await import(join(root, 'functions', `${key}.ts`))) as {
        handler: (event: unknown, context: Context) => Promise<Json>
      }
      const timeout = timeouts[key] ?? settings[key]?.timeout
      if (!timeout) throw new Error(`function ${key} of ${machine} has no timeout in infra/functions.cjs`)
      handlers[name] = (input) => invokeLikeLambda(module.handler, key, timeout, input)
    } else {
      handlers[name] =
        native[name] ??
        (async () => {
          const error = new Error(
            `${name} uses ${String(state.Resource)}, which cannot run locally; configure it off or run on AWS`,
          )
          error.name = 'ConfigError'
          throw error
        })
    }
  }
  return handlers
}

/** Runs a state machine locally to its end; throws LocalExecutionFailed with its Error and Cause. */
export async function runStateMachine(
  machine: MachineName,
  input: Record<string, unknown>,
  options: LocalRunOptions = {},
): Promise<LocalRunResult> {
  const definition = options.definition ?? loadDefinition(machine)
  const handlers = await localHandlers(
    machine,
    definition,
    options.nativeHandlers ?? {},
    options.functionTimeouts ?? {},
  )
  let abortForQuota = () => {}
  const quotas = new Quotas(
    options.payloadLimitBytes ?? PAYLOAD_LIMIT_BYTES,
    options.historyEventLimit ?? HISTORY_EVENT_LIMIT,
    () => abortForQuota(),
  )
  const before = options.beforeTask
  for (const [name, run] of Object.entries(handlers)) {
    handlers[name] = async (input) => {
      await quotas.gate()
      // What Step Functions schedules (after InputPath and Parameters), and what the task returns.
      quotas.check(`state ${name}: task input`, input)
      if (before) await before(name, input)
      const result = await run(input)
      quotas.check(`state ${name}: task result`, result)
      return result
    }
  }
  const name = `${machine}-${new Date().toISOString().replace(/[:.]/g, '')}-${randomUUID().slice(0, 8)}`
  const executionArn = `arn:aws:states:local:000000000000:execution:langsight-${machine}:${name}`
  const stateMachine = new StateMachine(definition as never, { validationOptions: { checkArn: false } })
  const retryIntervalOverrides =
    options.retryIntervalMs === undefined
      ? undefined
      : Object.fromEntries(Object.keys(handlers).map((n) => [n, options.retryIntervalMs!]))
  const execution = stateMachine.run(input as Json, {
    overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides },
    context: {
      Execution: {
        Id: executionArn,
        Name: name,
        StartTime: new Date().toISOString(),
        Input: input as Json,
        RoleArn: 'local',
      },
      StateMachine: {
        Id: `arn:aws:states:local:000000000000:stateMachine:langsight-${machine}`,
        Name: `langsight-${machine}`,
      },
    },
  })
  abortForQuota = () => execution.abort()
  options.signal?.addEventListener('abort', () => execution.abort(), { once: true })
  const events = (async () => {
    for await (const event of execution.eventLogs) {
      quotas.observe(event)
      const { breach } = quotas
      // After a breach the execution ends as AWS ends it, whatever the library did next.
      if (breach && TERMINAL.has(event.type)) {
        options.onEvent?.({
          type: 'ExecutionFailed',
          timestamp: event.timestamp,
          Error: breach.name,
          Cause: breach.message,
        })
      } else {
        options.onEvent?.(event)
      }
    }
  })()
  const failed = (breach: QuotaExceeded) =>
    new LocalExecutionFailed(breach.name, breach.message, executionArn)
  try {
    const output = await execution.result
    await events
    if (quotas.breach) throw failed(quotas.breach)
    return { executionArn, output }
  } catch (error) {
    if (error instanceof LocalExecutionFailed) throw error
    await events.catch(() => {})
    if (quotas.breach) throw failed(quotas.breach)
    if (error instanceof ExecutionError) {
      const cause = error.cause as { name?: string; message?: string } | undefined
      throw new LocalExecutionFailed(
        cause?.name ?? 'ExecutionFailed',
        cause?.message ?? error.message,
        executionArn,
      )
    }
    throw error
  }
}
