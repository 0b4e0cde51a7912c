// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript templates
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

/**
 * The packaged CloudFormation template, shared by the test/deploy suites: `npm run package` once (or
 * reused when .serverless is newer than every source), and helpers that read it as CloudFormation would.
 */
export const repo = resolve(import.meta.dirname, '../..')
export const out = join(repo, '.serverless')
export const templateFile = join(out, 'cloudformation-template-update-stack.json')
export const PACKAGE_TIMEOUT_MS = 8 * 60_000

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type Obj = { [key: string]: Json }
export interface Resource {
  Type: string
  Properties: Obj
  DeletionPolicy?: string
  Condition?: string
}
export interface Template {
  Conditions: Record<string, Json>
  Resources: Record<string, Resource>
  Outputs: Record<string, { Value: Json }>
}
export interface Statement {
  Effect: string
  Action: string | string[]
  Resource?: Json
  Condition?: Obj
}

function newest(path: string): number {
  if (!existsSync(path)) return 0
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))))
}

/** Runs `npm run package` unless .serverless is newer than everything that goes into it. */
async function packageIfStale(): Promise<void> {
  const sources = [
    'serverless.yml',
    'package.json',
    'statemachines',
    'functions',
    'core',
    'catalog',
    'engines',
    'notify',
    'infra',
    'scripts',
    'layer/build',
  ]
  const built = existsSync(templateFile) ? statSync(templateFile).mtimeMs : 0
  if (built > Math.max(...sources.map((s) => newest(join(repo, s))))) return
  const { code, log } = await runPackage([])
  if (code !== 0) throw new Error(`npm run package failed (${code}):\n${log.slice(-4000)}`)
}

// ── CloudFormation helpers ────────────────────────────────────────────────────────────────────

/** Evaluates the template's Conditions for the parameters it was packaged with (they are literals). */
export function conditionValue(template: Template, name: string): boolean {
  const evaluate = (node: Json): boolean => {
    const o = node as Obj
    if ('Fn::Not' in o) return !evaluate((o['Fn::Not'] as Json[])[0]!)
    if ('Fn::And' in o) return (o['Fn::And'] as Json[]).every(evaluate)
    if ('Fn::Or' in o) return (o['Fn::Or'] as Json[]).some(evaluate)
    if ('Fn::Equals' in o) {
      const [a, b] = o['Fn::Equals'] as Json[]
      return JSON.stringify(a) === JSON.stringify(b)
    }
    if ('Condition' in o) return conditionValue(template, o.Condition as string)
    throw new Error(`cannot evaluate condition ${JSON.stringify(node)}`)
  }
  return evaluate(template.Conditions[name]!)
}

export const NO_VALUE = Symbol('AWS::NoValue')

/**
 * Resolves Fn::If as CloudFormation would. `branch` 'deployed' follows the packaged parameters;
 * 'configured' takes every true branch (what the stack grants once the option is configured).
 */
export function resolveIfs(
  template: Template,
  node: Json,
  branch: 'deployed' | 'configured',
): Json | typeof NO_VALUE {
  if (Array.isArray(node)) {
    return node.map((n) => resolveIfs(template, n, branch)).filter((n) => n !== NO_VALUE) as Json[]
  }
  if (node && typeof node === 'object') {
    if ('Fn::If' in node) {
      const [cond, yes, no] = node['Fn::If'] as [string, Json, Json]
      const pick = branch === 'configured' || conditionValue(template, cond) ? yes : no
      return resolveIfs(template, pick, branch)
    }
    if ((node as Obj).Ref === 'AWS::NoValue') return NO_VALUE
    const outObj: Obj = {}
    for (const [k, v] of Object.entries(node)) {
      const r = resolveIfs(template, v, branch)
      if (r !== NO_VALUE) outObj[k] = r
    }
    return outObj
  }
  return node
}

export const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action])
export const resourcesOf = (s: Statement): Json[] =>
  s.Resource === undefined ? [] : Array.isArray(s.Resource) ? s.Resource : [s.Resource]
/** A resource as text, intrinsic functions included, for matching ARNs and patterns. */
export const show = (r: Json) => (typeof r === 'string' ? r : JSON.stringify(r))

/** Every Allow statement of a role (inline policies and the managed policies it attaches). */
export function roleStatements(
  template: Template,
  roleId: string,
  branch: 'deployed' | 'configured',
): Statement[] {
  const role = resolveIfs(template, template.Resources[roleId]!.Properties as Json, branch) as Obj
  const inline = ((role.Policies ?? []) as Obj[]).flatMap(
    (p) => ((p.PolicyDocument as Obj).Statement ?? []) as unknown as Statement[],
  )
  const managed = ((role.ManagedPolicyArns ?? []) as Obj[]).flatMap((ref) => {
    const policy = template.Resources[(ref as { Ref: string }).Ref]
    if (!policy) return []
    const doc = resolveIfs(template, policy.Properties.PolicyDocument!, branch) as Obj
    return doc.Statement as unknown as Statement[]
  })
  return [...inline, ...managed].filter((s) => s.Effect === 'Allow')
}

export function functionsByKey(template: Template): Map<string, { logicalId: string; resource: Resource }> {
  const byKey = new Map<string, { logicalId: string; resource: Resource }>()
  for (const [logicalId, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue
    const name = resource.Properties.FunctionName as string
    byKey.set(name.replace(/^langsight-backup-[^-]+-/, ''), { logicalId, resource })
  }
  return byKey
}

export const roleIdOf = (fn: Resource) => ((fn.Properties.Role as Obj)['Fn::GetAtt'] as string[])[0]!

// outside the work tree (not in .serverless/, which packaging empties)
const lockDir = join(
  tmpdir(),
  `lsb-packaging-${createHash('sha256').update(repo).digest('hex').slice(0, 12)}.lock`,
)

/**
 * Runs `fn` while no other test process packages: test files run in parallel forks, and two
 * `serverless package` runs would write the same .serverless/. A lock older than the packaging
 * timeout is a dead run's and is taken over.
 */
export async function withPackageLock<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + PACKAGE_TIMEOUT_MS + 60_000
  for (;;) {
    try {
      mkdirSync(lockDir)
      break
    } catch {
      if (existsSync(lockDir) && Date.now() - statSync(lockDir).mtimeMs > PACKAGE_TIMEOUT_MS)
        rmSync(lockDir, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error(`${lockDir} is held by another run`)
      await new Promise((done) => setTimeout(done, 500))
    }
  }
  try {
    return await fn()
  } finally {
    rmSync(lockDir, { recursive: true, force: true })
  }
}

/** The template of `npm run package` with the default parameters (packaged first when stale). */
export async function packagedTemplate(): Promise<Template> {
  await withPackageLock(packageIfStale)
  return JSON.parse(readFileSync(templateFile, 'utf8')) as Template
}

/** Runs scripts/package.sh with extra arguments and returns its exit code and output. */
export async function runPackage(
  args: string[],
  timeoutMs = PACKAGE_TIMEOUT_MS,
): Promise<{ code: number | null; log: string }> {
  const child = spawn('bash', ['scripts/package.sh', ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let log = ''
  child.stdout.on('data', (d) => (log += d))
  child.stderr.on('data', (d) => (log += d))
  // Serverless v3 can hang after a failed esbuild run: the timeout turns that into a failure.
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>((done) => child.on('close', done))
  clearTimeout(timer)
  return { code, log }
}
