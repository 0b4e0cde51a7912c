import { spawn } from 'node:child_process'
import pg from 'pg'
import { MigrationError } from '#core/errors.ts'
import { redact } from '#core/redact.ts'

/**
 * Runs the application's migration command without a shell. The child sees only PATH, HOME,
 * LANG and the restored database's URL (as LSB_POSTGRES_URL and DATABASE_URL): no other secret.
 */
export async function runMigrateCommand(
  argv: string[],
  postgresUrl: string,
  options: { timeoutSeconds: number; signal?: AbortSignal; cwd?: string },
): Promise<void> {
  const [command, ...args] = argv
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LANG: process.env.LANG ?? 'C.UTF-8',
    LSB_POSTGRES_URL: postgresUrl,
    DATABASE_URL: postgresUrl,
  }
  const child = spawn(command!, args, {
    env,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    signal: options.signal,
  })
  let tail = ''
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-4000)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutSeconds * 1000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', (e) =>
      reject(new MigrationError(`cannot run migration command ${command}: ${e.message}`)),
    )
    child.once('close', (c, s) => resolve([c, s]))
  }).finally(() => clearTimeout(timer))
  if (code !== 0) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`
    throw new MigrationError(
      redact(`migration command ${argv.join(' ')} ${how}: ${tail.trim().slice(-1500)}`),
    )
  }
}

/** The alembic head recorded in the database, or null when there is no alembic_version table. */
export async function currentSchemaHead(postgresUrl: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: postgresUrl })
  await client.connect()
  try {
    const exists = await client.query(`SELECT to_regclass('alembic_version') IS NOT NULL AS present`)
    if (!exists.rows[0]?.present) return null
    const rows = await client.query<{ version_num: string }>('SELECT version_num FROM alembic_version')
    return rows.rows.map((r) => r.version_num).join(',') || null
  } finally {
    await client.end()
  }
}

/** Fails with a MigrationError unless the schema is at `expected`. */
export async function assertSchemaHead(postgresUrl: string, expected: string): Promise<string> {
  const head = await currentSchemaHead(postgresUrl)
  if (head !== expected) {
    throw new MigrationError(
      `schema head is ${head ?? 'missing (no alembic_version table)'}, expected ${expected}`,
    )
  }
  return head
}
