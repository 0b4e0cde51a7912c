/**
 * Runs one command as a child process and measures it: wall time, the peak resident memory of
 * the biggest single process it ran (GNU time's %M, which covers reaped descendants too) and the
 * peak sum of resident memory of its whole process tree, sampled. Every child has a deadline: on
 * expiry its whole process group is killed and the run fails as a hang, never waits forever.
 */
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Measurement {
  /** What was run, without secrets: the command's basename and a label. */
  label: string
  wallMs: number
  /** Peak RSS of the largest single process (the command or any descendant), bytes. */
  peakRssBytes: number
  /** Peak of the summed RSS of the process tree, sampled every 50 ms, bytes. */
  treePeakBytes: number
  stdout: string
  stderr: string
}

export interface MeasureOptions {
  label: string
  env?: NodeJS.ProcessEnv
  /** A file to read stdin from (`< file`). */
  stdinFile?: string
  /** A file to write stdout to (`> file`); otherwise stdout is captured. */
  stdoutFile?: string
  timeoutMs: number
  cwd?: string
}

/** The command did not finish before its deadline: reported as a hang with what it printed. */
export class BenchTimeoutError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'BenchTimeoutError'
  }
}

/** The command exited non-zero or on a signal. */
export class BenchCommandError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'BenchCommandError'
  }
}

const KEEP_OUTPUT = 256 * 1024

/** Process groups of the children running now (each child leads its own group). */
const running = new Set<number>()

/** Kills every measured child still running, with its descendants (on Ctrl-C of the benchmark). */
export function killRunningChildren(): void {
  for (const pgid of running) {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** Summed RSS of the descendants of `pid` (the `time` wrapper itself is left out). */
function treeRss(pid: number): number {
  let sum = 0
  const queue = childrenOf(pid)
  while (queue.length) {
    const p = queue.pop()!
    sum += rssBytes(p)
    queue.push(...childrenOf(p))
  }
  return sum
}

/** Runs `command args…` under /usr/bin/time with its own process group; see the module comment. */
export async function measure(
  command: string,
  args: string[],
  options: MeasureOptions,
): Promise<Measurement> {
  const scratch = mkdtempSync(join(tmpdir(), 'lsb-bench-time-'))
  const timeFile = join(scratch, 'time')
  const stdin = options.stdinFile ? openSync(options.stdinFile, 'r') : 'ignore'
  const stdout = options.stdoutFile ? openSync(options.stdoutFile, 'w') : 'pipe'
  const started = performance.now()
  try {
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, command, ...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: [stdin, stdout, 'pipe'],
      // its own process group: a hang is ended by killing the group, grandchildren included
      detached: true,
    })
    if (child.pid) running.add(child.pid)
    let out = ''
    let err = ''
    child.stdout?.on('data', (d: Buffer) => {
      out = (out + d.toString('utf8')).slice(-KEEP_OUTPUT)
    })
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString('utf8')).slice(-KEEP_OUTPUT)
    })
    let treePeak = 0
    const sampler = setInterval(() => {
      treePeak = Math.max(treePeak, treeRss(child.pid!))
    }, 50)
    let timedOut = false
    const deadline = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }, options.timeoutMs)
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c, s) => resolve([c, s]))
    })
    clearInterval(sampler)
    clearTimeout(deadline)
    running.delete(child.pid!)
    const wallMs = performance.now() - started
    if (timedOut) {
      throw new BenchTimeoutError(
        `${options.label} did not finish within ${options.timeoutMs / 1000} s (killed): ${err.slice(-2000)}`,
      )
    }
    if (code !== 0) {
      throw new BenchCommandError(
        `${options.label} exited with ${code ?? signal}: ${err.slice(-4000) || out.slice(-2000)}`,
      )
    }
    const maxKb = Number(readFileSync(timeFile, 'utf8').trim().split('\n').at(-1))
    return {
      label: options.label,
      wallMs,
      peakRssBytes: maxKb * 1024,
      treePeakBytes: Math.max(treePeak, maxKb * 1024),
      stdout: out,
      stderr: err,
    }
  } finally {
    if (typeof stdin === 'number') closeSync(stdin)
    if (typeof stdout === 'number') closeSync(stdout)
    rmSync(scratch, { recursive: true, force: true })
  }
}
