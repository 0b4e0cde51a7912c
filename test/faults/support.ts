/**
 * Shared helpers of the fault-matrix tests (test/faults/*.test.ts): bounded waits, proxies put in
 * front of a real dependency by rewriting its URL, reading the bucket past any S3 fault proxy,
 * recorded local executions and the real CLI as a child process.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { inject } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { listObjects, putBytes, verifyObjectChecksum } from '#catalog/objectStore.ts'
import {
  type EventLog,
  LocalExecutionFailed,
  type LocalRunOptions,
  type MachineName,
  runStateMachine,
} from '#cli/local/runStateMachine.ts'
import { type Engine, manifestKey } from '#core/backupKeys.ts'
import type { Manifest } from '#core/manifest.ts'
import { useEnv } from '../support/env.ts'
import { type FaultProxy, startFaultProxy } from '../support/faultProxy.ts'

export const root = join(import.meta.dirname, '../..')

/** `promise`, or an error naming `what` once `ms` have passed: no test waits without a deadline. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `check` every 20 ms until it is true; an error naming `what` after `ms`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not true after ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A TCP fault proxy in front of the host and port of `url`, and `url` pointing at the proxy instead. */
export async function proxyInFrontOf(url: string): Promise<{ proxy: FaultProxy; url: string }> {
  const target = new URL(url)
  const proxy = await startFaultProxy({ host: target.hostname, port: Number(target.port) })
  const through = new URL(url)
  through.hostname = proxy.host
  through.port = String(proxy.port)
  return { proxy, url: through.toString() }
}

/** The S3 endpoint of the test servers, without any fault proxy. */
export function realS3Endpoint(): string {
  return inject('servers').s3.endpoint
}

/**
 * Runs `read` with the S3 client pointed at the real endpoint (whatever AWS_ENDPOINT_URL_S3 the
 * test set), so that what a test checks in the bucket never passes through an injected fault.
 */
export async function direct<T>(read: () => Promise<T>): Promise<T> {
  const endpoint = process.env.AWS_ENDPOINT_URL_S3
  useEnv({ AWS_ENDPOINT_URL_S3: realS3Endpoint() })
  try {
    return await read()
  } finally {
    useEnv({ AWS_ENDPOINT_URL_S3: endpoint })
  }
}

/** Every key below `<prefix>/`, sorted, read from the real endpoint. */
export function keysUnder(bucket: string, prefix: string): Promise<string[]> {
  return direct(async () => {
    const keys: string[] = []
    for await (const o of listObjects(bucket, `${prefix}/`)) keys.push(o.key)
    return keys.sort()
  })
}

/** The manifest.json keys below `<prefix>/`. */
export async function manifestKeysUnder(bucket: string, prefix: string): Promise<string[]> {
  return (await keysUnder(bucket, prefix)).filter((k) => k.endsWith('/manifest.json'))
}

/**
 * Reads a committed manifest and re-hashes every object it names from the real endpoint; throws
 * (ChecksumMismatchError, BackupNotFoundError…) unless every object matches its sha256 and size.
 */
export function verifyCommitted(
  bucket: string,
  prefix: string,
  engine: Engine,
  backupId: string,
): Promise<Manifest> {
  return direct(async () => {
    const manifest = await new BackupStore(bucket, prefix).readManifest(engine, backupId)
    if (manifest.objects.length === 0) throw new Error(`${engine} backup ${backupId} names no object`)
    for (const o of manifest.objects) await verifyObjectChecksum(bucket, o.key, o)
    return manifest
  })
}

/**
 * Writes a complete backup of `engine` dated `daysAgo` below `prefix`, made from the manifest of a
 * real backup (its objects are copied as one-byte stand-ins): what retention would remove after
 * any successful run with LSB_KEEP_LAST=1 and a one-day retention, so a prune that ran is visible.
 */
export function plantOldBackup(
  bucket: string,
  prefix: string,
  template: Manifest,
  backupId: string,
): Promise<string> {
  return direct(async () => {
    const store = new BackupStore(bucket, prefix)
    const from = `${template.prefix}/${template.engine}/${template.backupId}/`
    const to = `${prefix}/${template.engine}/${backupId}/`
    const objects = template.objects.map((o) => ({ ...o, key: o.key.replace(from, to) }))
    for (const o of objects) await putBytes(bucket, o.key, 'x', 'application/octet-stream')
    await store.writeManifest({ ...template, prefix, backupId, objects })
    return manifestKey(prefix, template.engine, backupId)
  })
}

/** What one local execution did: outcome, error, every failed attempt of a Task, and its wall time. */
export interface RunRecord {
  ok: boolean
  output?: unknown
  /** Step Functions' Error and Cause of a failed execution. */
  error?: string
  cause?: string
  /** Every StateFailed of a Task attempt (retried or not), in order: `State: ErrorName`. */
  attemptFailures: string[]
  /** State names retried, once per retry. */
  retried: string[]
  /** The backup id PlanBackup derived, when it got that far. */
  backupId?: string
  ms: number
}

/**
 * Runs a state machine locally and records it. The run itself must end within `boundMs` (an
 * error otherwise): the proof that a fault never turns into a hang.
 */
export async function runRecorded(
  machine: MachineName,
  input: Record<string, unknown>,
  options: LocalRunOptions,
  boundMs: number,
): Promise<RunRecord> {
  const record: RunRecord = { ok: false, attemptFailures: [], retried: [], ms: 0 }
  const onEvent = (event: EventLog) => {
    options.onEvent?.(event)
    if (event.type === 'StateFailed' && event.state.type === 'Task')
      record.attemptFailures.push(`${event.state.name}: ${event.Error}`)
    if (event.type === 'StateRetried') record.retried.push(event.state.name)
    if (event.type === 'StateExited' && event.state.name === 'PlanBackup') {
      const id = (event.state.output as { backupId?: unknown } | undefined)?.backupId
      if (typeof id === 'string') record.backupId = id
    }
  }
  const started = performance.now()
  try {
    const { output } = await within(
      runStateMachine(machine, input, { ...options, onEvent }),
      boundMs,
      `${machine} execution`,
    )
    record.ok = true
    record.output = output
  } catch (error) {
    if (!(error instanceof LocalExecutionFailed)) throw error
    record.error = error.error
    record.cause = error.cause_
  }
  record.ms = performance.now() - started
  return record
}

export interface CliRun {
  child: ChildProcess
  /** Everything written so far. */
  stdout(): string
  stderr(): string
  /** Exit code and signal, once it has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts the real CLI (`node bin/langsight-backup.js …`) with exactly `env`. */
export function startCli(args: string[], env: NodeJS.ProcessEnv): CliRun {
  const child = spawn(process.execPath, [join(root, 'bin/langsight-backup.js'), ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (c) => {
    stdout += c
  })
  child.stderr!.on('data', (c) => {
    stderr += c
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  )
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/** Runs the CLI to its end within `ms` (killed and an error otherwise). */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, ms: number) {
  const run = startCli(args, env)
  try {
    const exit = await within(run.exited, ms, `langsight-backup ${args.join(' ')}`)
    return { ...exit, stdout: run.stdout(), stderr: run.stderr() }
  } finally {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL')
  }
}
