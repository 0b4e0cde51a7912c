import { SSMProvider } from '@aws-lambda-powertools/parameters/ssm'
import { z } from 'zod'
import { ConfigError } from './errors.ts'
import { registerSecret } from './redact.ts'

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes')
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max)
/** A setting that holds JSON: parsed, then validated; a bad value names the variable and the expected shape. */
const json = <S extends z.ZodType>(schema: S, example: string) =>
  z
    .string()
    .transform((raw, ctx) => {
      try {
        return JSON.parse(raw) as unknown
      } catch {
        ctx.addIssue({ code: 'custom', message: `not JSON (expected ${example})` })
        return z.NEVER
      }
    })
    .pipe(schema)
/** pg_dump's compression: `auto`, `none`, or `<method>:<level>` within the range pg_dump accepts for the method. */
const PG_COMPRESSION_LEVELS = { gzip: [1, 9], zstd: [1, 22], lz4: [1, 12] } as const
export type PgCompressionMethod = keyof typeof PG_COMPRESSION_LEVELS | 'none'
export type PgCompressionSetting = 'auto' | { method: PgCompressionMethod; level: number | null }
const pgCompression = z.string().transform((raw, ctx): PgCompressionSetting => {
  const text = raw.trim().toLowerCase()
  if (text === 'auto') return 'auto'
  if (text === 'none') return { method: 'none', level: null }
  const match = /^(gzip|zstd|lz4):(\d{1,2})$/.exec(text)
  const range = match ? PG_COMPRESSION_LEVELS[match[1] as keyof typeof PG_COMPRESSION_LEVELS] : undefined
  const level = Number(match?.[2])
  if (!match || !range || level < range[0] || level > range[1]) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(raw)} is not auto, none, gzip:1–9, zstd:1–22 or lz4:1–12`,
    })
    return z.NEVER
  }
  return { method: match[1] as PgCompressionMethod, level }
})
const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
)

/** Every non-secret setting, read from the environment and validated once. */
const settingsSchema = z.object({
  LSB_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
  LSB_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*[A-Za-z0-9]$/, 'letters, digits, . _ - / only')
    .refine((p) => !p.split('/').includes('..'), 'must not contain ..')
    .default('langsight-backups'),
  AWS_ENDPOINT_URL_S3: z.url().optional(),
  AWS_REGION: z.string().default('us-east-1'),
  LSB_CLICKHOUSE_INCLUDE: list.default([]),
  LSB_CLICKHOUSE_EXCLUDE: list.default([]),
  LSB_CLICKHOUSE_SPLIT_BYTES: int(2 ** 20, 2 ** 40).default(256 * 1024 * 1024),
  LSB_CLICKHOUSE_GZIP_LEVEL: int(0, 9).default(1),
  /** auto: the server moves its own bytes through S3 where it has the s3 table function, else streaming. */
  LSB_CLICKHOUSE_TRANSFER: z.enum(['auto', 'server', 'stream']).default('auto'),
  /** How the ClickHouse server authenticates to S3 on the server-side path: function | server | collection:<name>. */
  LSB_CLICKHOUSE_S3_AUTH: z
    .string()
    .regex(
      /^(function|server|collection:[A-Za-z_][A-Za-z0-9_]*)$/,
      'must be function, server or collection:<name>',
    )
    .default('function'),
  /** The bucket's URL as the ClickHouse server reaches it (default: the endpoint's, or AWS's virtual-hosted URL). */
  LSB_CLICKHOUSE_S3_BUCKET_URL: z.url().optional(),
  /** At most this many ExportTables Map items (batches of export items): bounds the execution's history. */
  LSB_CLICKHOUSE_MAX_BATCHES: int(1, 1000).default(200),
  /** pg_dump's compression; `auto` is zstd:1 with pg_dump ≥ 16, else gzip:1 (see LSB_PG_COMPRESS). */
  LSB_PG_COMPRESSION: pgCompression.default('auto'),
  /** The older setting: a gzip level (0 = none), taken as gzip:<level> when LSB_PG_COMPRESSION is auto. */
  LSB_PG_COMPRESS: int(0, 9).optional(),
  /**
   * pg_restore --jobs. Above 1 the dump is copied to LSB_PG_RESTORE_TEMP_DIR first (-j needs a seekable
   * file): 2 loaded a six-table database a third faster, copy included (bench/RESULTS.md, issue 10).
   */
  LSB_PG_RESTORE_JOBS: int(1, 16).default(2),
  /** Where a parallel restore puts the dump: the OS temp dir (/tmp, Lambda's ephemeral storage) unless set. */
  LSB_PG_RESTORE_TEMP_DIR: z.string().startsWith('/', 'must be an absolute path').optional(),
  LSB_PG_BIN_DIR: z.string().optional(),
  LSB_MAP_CONCURRENCY: int(1, 40).default(4),
  /** A transfer with no byte for this long is a StallError (retried), never a silent wait. */
  LSB_STALL_SECONDS: int(5, 900).default(120),
  LSB_RETENTION_POSTGRES_DAYS: int(1, 3650).default(30),
  LSB_RETENTION_CLICKHOUSE_DAYS: int(1, 3650).default(84),
  LSB_KEEP_LAST: int(1, 1000).default(3),
  /** Prune keeps the newest backup of each engine a drill proved restorable, whatever its age. */
  LSB_KEEP_PROVEN: bool.default(true),
  /**
   * Content fingerprints recorded at backup time, per engine: `full` (rows and an order-independent
   * hash of every row, one more read of the data), `rows` (counts only) or `off`. A drill compares them.
   */
  LSB_POSTGRES_FINGERPRINT: z.enum(['full', 'rows', 'off']).default('full'),
  LSB_CLICKHOUSE_FINGERPRINT: z.enum(['full', 'rows', 'off']).default('full'),
  LSB_INCOMPLETE_GRACE_HOURS: int(0, 24 * 365).default(24),
  LSB_OBJECT_LOCK_DAYS: int(0, 36500).default(0),
  LSB_PRUNE_DRY_RUN: bool.default(false),
  LSB_NOTIFY_SUCCESS: bool.default(false),
  /**
   * A committed backup smaller than this share of the previous one of its engine is reported as a
   * warning (Slack, even with LSB_NOTIFY_SUCCESS off); 0 turns the check off.
   */
  LSB_SIZE_DROP_RATIO: z.coerce.number().min(0).max(1).default(0.5),
  LSB_MIGRATE_STRATEGY: z.enum(['none', 'command', 'lambda', 'ecs']).default('none'),
  /** A JSON argv array, run without a shell. */
  LSB_MIGRATE_COMMAND: json(
    z.array(z.string().min(1)).min(1, 'must name a command'),
    '["uv","run","alembic","upgrade","head"]',
  ).optional(),
  LSB_MIGRATE_FUNCTION: z.string().optional(),
  LSB_MIGRATE_ECS_CLUSTER: z.string().optional(),
  LSB_MIGRATE_ECS_TASK_DEFINITION: z.string().optional(),
  LSB_MIGRATE_ECS_CONTAINER: z.string().default('api'),
  LSB_MIGRATE_ECS_SUBNETS: list.default([]),
  LSB_MIGRATE_ECS_SECURITY_GROUPS: list.default([]),
  /** The migration task's awsvpc AssignPublicIp: ENABLED only in a public subnet without NAT (docs/DEPLOY.md §9). */
  LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP: z.enum(['ENABLED', 'DISABLED']).default('DISABLED'),
  LSB_MIGRATE_TIMEOUT_SECONDS: int(1, 3600).default(600),
  /** JSON: [{"cluster":"langsight","service":"api","desiredCount":2}] — writers stopped during a restore. */
  LSB_QUIESCE_SERVICES: json(
    z.array(
      z.strictObject({
        cluster: z.string().min(1),
        service: z.string().min(1),
        desiredCount: z.number().int().min(0),
      }),
    ),
    '[{"cluster":"…","service":"…","desiredCount":2}]',
  ).optional(),
  /** How long a restore waits for the stopped writers to drain (runningCount 0), and for them to be back, each. */
  LSB_QUIESCE_TIMEOUT_SECONDS: int(1, 3600).default(600),
  /** How often it looks (each look is a few Step Functions history events). */
  LSB_QUIESCE_POLL_SECONDS: int(1, 300).default(10),
  LSB_EXPECTED_SCHEMA_HEAD: z.string().optional(),
})

export type Settings = z.output<typeof settingsSchema>

let cachedSettings: Settings | undefined

/**
 * Settings that only one migration strategy reads. (LSB_MIGRATE_ECS_CLUSTER is not one: the
 * quiesce step uses the cluster too; LSB_MIGRATE_ECS_CONTAINER has a default.)
 */
const STRATEGY_OF = {
  LSB_MIGRATE_COMMAND: 'command',
  LSB_MIGRATE_FUNCTION: 'lambda',
  LSB_MIGRATE_ECS_TASK_DEFINITION: 'ecs',
  LSB_MIGRATE_ECS_SUBNETS: 'ecs',
  LSB_MIGRATE_ECS_SECURITY_GROUPS: 'ecs',
} as const

/**
 * A setting never silently does nothing: one that belongs to a migration strategy other than the
 * selected one is an error naming both variables (it does not select the strategy by itself: which
 * migration runs after a restore must be said once, explicitly).
 */
function settingsThatWouldDoNothing(s: Settings): string[] {
  // the deployed stack always passes DISABLED (the default): only ENABLED asks for something
  const publicIp =
    s.LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP === 'ENABLED' && s.LSB_MIGRATE_STRATEGY !== 'ecs'
      ? [
          `LSB_MIGRATE_ECS_ASSIGN_PUBLIC_IP=ENABLED but LSB_MIGRATE_STRATEGY is ${s.LSB_MIGRATE_STRATEGY}, so it would do ` +
            'nothing (set LSB_MIGRATE_STRATEGY=ecs, or unset it)',
        ]
      : []
  return Object.entries(STRATEGY_OF)
    .filter(([name, strategy]) => {
      const value = s[name as keyof typeof STRATEGY_OF]
      const set = Array.isArray(value) ? value.length > 0 : value !== undefined
      return set && s.LSB_MIGRATE_STRATEGY !== strategy
    })
    .map(
      ([name, strategy]) =>
        `${name} is set but LSB_MIGRATE_STRATEGY is ${s.LSB_MIGRATE_STRATEGY}, so it would do nothing ` +
        `(set LSB_MIGRATE_STRATEGY=${strategy}, or unset ${name})`,
    )
    .concat(publicIp)
}

/**
 * Postgres settings that another one makes idle: LSB_PG_COMPRESS (a gzip level) beside an explicit
 * LSB_PG_COMPRESSION, and a temp dir for a restore that streams (LSB_PG_RESTORE_JOBS=1).
 */
function pgSettingsThatWouldDoNothing(s: Settings): string[] {
  const idle: string[] = []
  if (s.LSB_PG_COMPRESS !== undefined && s.LSB_PG_COMPRESSION !== 'auto') {
    const { method, level } = s.LSB_PG_COMPRESSION
    idle.push(
      `LSB_PG_COMPRESS=${s.LSB_PG_COMPRESS} is set but LSB_PG_COMPRESSION=${level === null ? method : `${method}:${level}`} ` +
        'decides the compression, so it would do nothing (unset LSB_PG_COMPRESS, or set LSB_PG_COMPRESSION=auto)',
    )
  }
  if (s.LSB_PG_RESTORE_TEMP_DIR !== undefined && s.LSB_PG_RESTORE_JOBS === 1) {
    idle.push(
      'LSB_PG_RESTORE_TEMP_DIR is set but LSB_PG_RESTORE_JOBS is 1, so the dump is streamed and it would do ' +
        'nothing (set LSB_PG_RESTORE_JOBS to 2 or more, or unset LSB_PG_RESTORE_TEMP_DIR)',
    )
  }
  return idle
}

/**
 * The compression pg_dump is asked for: LSB_PG_COMPRESSION; when that is `auto` and the older
 * LSB_PG_COMPRESS is set, its gzip level (0 = none), which is what it has always meant.
 */
export function pgDumpCompression(s: Settings = loadSettings()): PgCompressionSetting {
  if (s.LSB_PG_COMPRESSION !== 'auto' || s.LSB_PG_COMPRESS === undefined) return s.LSB_PG_COMPRESSION
  return s.LSB_PG_COMPRESS === 0
    ? { method: 'none', level: null }
    : { method: 'gzip', level: s.LSB_PG_COMPRESS }
}

/** Server-side S3 settings do nothing when the streaming path is forced. */
function serverSideSettingsThatWouldDoNothing(env: NodeJS.ProcessEnv, s: Settings): string[] {
  if (s.LSB_CLICKHOUSE_TRANSFER !== 'stream') return []
  return ['LSB_CLICKHOUSE_S3_AUTH', 'LSB_CLICKHOUSE_S3_BUCKET_URL']
    .filter((name) => env[name])
    .map(
      (name) =>
        `${name} is set but LSB_CLICKHOUSE_TRANSFER is stream, so it would do nothing ` +
        `(set LSB_CLICKHOUSE_TRANSFER=auto or server, or unset ${name})`,
    )
}

/** Reads and validates the environment; a bad value throws a ConfigError that names the variable. */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  if (env === process.env && cachedSettings) return cachedSettings
  const parsed = settingsSchema.safeParse(
    Object.fromEntries(Object.entries(env).filter(([k, v]) => k in settingsSchema.shape && v !== '')),
  )
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
    throw new ConfigError(`invalid configuration: ${problems}`)
  }
  const idle = [
    ...settingsThatWouldDoNothing(parsed.data),
    ...pgSettingsThatWouldDoNothing(parsed.data),
    ...serverSideSettingsThatWouldDoNothing(env, parsed.data),
  ]
  if (idle.length > 0) throw new ConfigError(`invalid configuration: ${idle.join('; ')}`)
  if (env === process.env) cachedSettings = parsed.data
  return parsed.data
}

/** Forgets cached settings and secrets (tests change the environment between cases). */
export function resetConfig(): void {
  cachedSettings = undefined
  secretCache.clear()
}

export type SecretName = 'LSB_POSTGRES_URL' | 'LSB_CLICKHOUSE_URL' | 'LSB_SLACK_WEBHOOK_URL'

const secretCache = new Map<SecretName, Promise<string | undefined>>()
const SECRET_MAX_AGE_SECONDS = 300

/** SSM with bounded waits: a connection in 5 s, no silent socket for more than 20 s, 3 attempts. */
let ssm: SSMProvider | undefined
const ssmProvider = () =>
  (ssm ??= new SSMProvider({
    clientConfig: { maxAttempts: 3, requestHandler: { connectionTimeout: 5_000, requestTimeout: 20_000 } },
  }))

/**
 * A secret by name. Locally it is the environment variable itself; on AWS the variable
 * `<NAME>_SSM` holds the name of an SSM SecureString parameter, read (decrypted) at run
 * time and cached. The value is registered with the redactor before it is returned.
 */
export async function getSecret(
  name: SecretName,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const cached = secretCache.get(name)
  if (cached) return cached
  const read = (async () => {
    const direct = env[name]
    if (direct) return direct
    const parameterName = env[`${name}_SSM`]
    if (!parameterName) return undefined
    try {
      return await ssmProvider().get(parameterName, { decrypt: true, maxAge: SECRET_MAX_AGE_SECONDS })
    } catch (error) {
      throw new ConfigError(`cannot read SSM parameter ${parameterName} for ${name}`, { cause: error })
    }
  })()
  secretCache.set(name, read)
  try {
    const value = await read
    registerSecret(value)
    return value
  } catch (error) {
    secretCache.delete(name)
    throw error
  }
}

/** Like {@link getSecret}, but a missing value is a ConfigError naming both ways to set it. */
export async function requireSecret(name: SecretName, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const value = await getSecret(name, env)
  if (!value)
    throw new ConfigError(`${name} is not set (set ${name} locally or ${name}_SSM to an SSM parameter name)`)
  return value
}
