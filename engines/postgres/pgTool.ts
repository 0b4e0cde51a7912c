import { type ChildProcessByStdio, execFile, spawn } from 'node:child_process'
import { accessSync, constants, existsSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { promisify } from 'node:util'
import { loadSettings } from '#core/config.ts'
import { ConfigError, PgVersionError } from '#core/errors.ts'
import { redact } from '#core/redact.ts'
import type { PostgresInfo } from './connectPostgres.ts'
import { LIBPQ_PARAMS, type PostgresTarget } from './postgresUrl.ts'

export type PgToolName = 'pg_dump' | 'pg_restore'

export interface PgToolVersion {
  version: string
  major: number
  path: string
}

/** Where the pg tools Lambda layer (scripts/build-pg-layer.sh) puts them: bin/ and lib/ at its root. */
export const LAYER_BIN_DIR = '/opt/bin'

/**
 * LD_LIBRARY_PATH for a tool: its own `../lib` first when that holds its libpq (the layer). Lambda's default
 * path puts /lib64 before /opt/lib, which would load Amazon Linux's libssl and libz instead of the
 * layer's.
 */
export function libraryPathFor(toolPath: string): string | undefined {
  const own = join(dirname(toolPath), '..', 'lib')
  const inherited = process.env.LD_LIBRARY_PATH
  // Only a directory that carries the tools' own libpq is theirs (not, say, a server's plugin dir).
  if (!existsSync(join(own, 'libpq.so.5'))) return inherited
  return inherited ? `${own}${delimiter}${inherited}` : own
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The tool's path: `binDir`, else LSB_PG_BIN_DIR, else the layer's directory if present, else PATH. */
export function resolvePgTool(tool: PgToolName, binDir?: string): string {
  const dir =
    binDir ?? loadSettings().LSB_PG_BIN_DIR ?? (existsSync(LAYER_BIN_DIR) ? LAYER_BIN_DIR : undefined)
  const candidates = dir
    ? [join(dir, tool)]
    : (process.env.PATH ?? '').split(delimiter).map((d) => join(d, tool))
  const found = candidates.find(isExecutable)
  if (!found) {
    throw new ConfigError(
      `${tool} not found ${dir ? `in ${dir}` : 'on PATH'} (set LSB_PG_BIN_DIR to the PostgreSQL client tools)`,
    )
  }
  return found
}

/** Runs `<binDir>/<tool> --version` (binDir optional: else LSB_PG_BIN_DIR, else /opt/bin if it exists, else PATH). */
export async function pgToolVersion(tool: PgToolName, binDir?: string): Promise<PgToolVersion> {
  const path = resolvePgTool(tool, binDir)
  let stdout: string
  try {
    ;({ stdout } = await promisify(execFile)(path, ['--version'], {
      timeout: 10_000,
      env: { PATH: process.env.PATH, LD_LIBRARY_PATH: libraryPathFor(path), LC_ALL: 'C' },
    }))
  } catch (error) {
    throw new ConfigError(`${path} --version failed: ${redact((error as Error).message)}`, { cause: error })
  }
  // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)". Pre-10 majors (9.6) count as 9, like the server's.
  const match = /\(PostgreSQL\)\s+((\d+)\S*(?:\s.*)?)$/m.exec(stdout.trim())
  if (!match)
    throw new ConfigError(`${path} --version printed ${JSON.stringify(stdout.trim().slice(0, 200))}`)
  return { version: match[1]!.trim(), major: Number(match[2]), path }
}

/** Throws PgVersionError (naming both versions and the required major) if pg_dump's major < server major. */
export function assertDumpToolCompatible(tool: PgToolVersion, server: PostgresInfo): void {
  if (tool.major < server.serverMajor) {
    throw new PgVersionError(
      `pg_dump ${tool.version} (${tool.path}) cannot dump database ${server.database} on PostgreSQL ` +
        `${server.serverVersion}: pg_dump ${server.serverMajor} or newer is required ` +
        `(deploy the pg tools layer of scripts/build-pg-layer.sh, PostgreSQL 17 by default, ` +
        `or point LSB_PG_BIN_DIR at PostgreSQL ${server.serverMajor}+ client tools)`,
    )
  }
}

export interface PgToolExit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A running pg_dump / pg_restore, its exit and the tail of its stderr. */
export interface PgToolProcess {
  child: ChildProcessByStdio<Writable | null, Readable, Readable>
  /** Resolves when the process has exited and its output is closed. */
  closed: Promise<PgToolExit>
  /** Whether the process failed: a non-zero exit, a signal, or an error line on stderr. */
  failed(exit: PgToolExit): boolean
  /** Whether it failed by itself (an exit code or an error line), not by a signal we or a broken pipe sent. */
  reportedFailure(exit: PgToolExit): boolean
  /** `exited 1` / `killed by SIGKILL`, then the last lines of stderr — redacted. */
  describe(exit: PgToolExit): string
  /** Stops the process (SIGTERM, then SIGKILL if it lingers) and waits for it. */
  stop(): Promise<PgToolExit>
}

const STDERR_TAIL_CHARS = 4000
/** pg_dump / pg_restore ≥ 12 print "pg_dump: error: …"; older ones "pg_dump: [archiver (db)] …". */
const ERROR_LINE = /^pg_(?:dump|restore): (?:error|fatal|\[[^\]]+\])/im

/** Spawns a PostgreSQL tool without a shell; stdin is a pipe when `stdin` is true. */
export function spawnPgTool(
  path: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { stdin: boolean },
): PgToolProcess {
  const child = spawn(path, args, {
    env,
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  }) as ChildProcessByStdio<Writable | null, Readable, Readable>
  let stderr = ''
  let sawErrorLine = false
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_CHARS * 2)
    sawErrorLine ||= ERROR_LINE.test(stderr)
  })
  const closed = new Promise<PgToolExit>((resolve) => {
    child.once('error', (error) => {
      stderr += `\n${error.message}`
      resolve({ code: -1, signal: null })
    })
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  return {
    child,
    closed,
    failed: (exit) => exit.code !== 0 || exit.signal !== null || sawErrorLine,
    reportedFailure: (exit) => (exit.code !== null && exit.code !== 0) || sawErrorLine,
    describe: (exit) => {
      const how = exit.signal ? `killed by ${exit.signal}` : `exited ${exit.code}`
      const tail = stderr.trim().slice(-STDERR_TAIL_CHARS)
      return redact(tail ? `${how}: ${tail}` : how)
    },
    stop: async () => {
      // Output is no longer wanted; destroyed pipes also let 'close' fire.
      child.stdin?.destroy()
      child.stdout.destroy()
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const force = setTimeout(() => child.kill('SIGKILL'), 3000)
        force.unref()
        const exit = await closed
        clearTimeout(force)
        return exit
      }
      return closed
    },
  }
}

/**
 * The whole environment of a pg_dump / pg_restore child: the password travels here (a process's
 * environment is readable only by its user, unlike argv), plus the URL's libpq parameters.
 */
export function toolEnv(
  target: PostgresTarget,
  applicationName: string,
  toolPath: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    PGPASSWORD: target.password,
    PGAPPNAME: applicationName,
    // English messages: stderr is matched for pg_dump's error lines.
    LC_ALL: 'C',
    // a server that never answers the connection fails it (the URL's connect_timeout wins)
    PGCONNECT_TIMEOUT: '15',
  }
  const libraryPath = libraryPathFor(toolPath)
  if (libraryPath) env.LD_LIBRARY_PATH = libraryPath
  for (const [name, value] of Object.entries(target.params)) env[LIBPQ_PARAMS[name]!] = value
  return env
}
