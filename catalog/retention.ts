import { assertBackupId, assertEngine, type Engine, provenAt } from '#core/backupKeys.ts'
import { ConfigError, UntrustedInputError } from '#core/errors.ts'

/** What the catalog knows about one backup of one engine, from its objects and its manifest. */
export interface BackupListing {
  engine: Engine
  backupId: string
  /** `backupTime(backupId)`. */
  startedAt: Date
  /** True when the backup has a valid manifest. */
  complete: boolean
  keys: string[]
  bytes: number
  /** Last-modified time of the newest object. */
  lastModified: Date
  /**
   * Why an existing manifest was rejected. Set by the catalog; a listing that is not complete
   * but holds a `manifest.json` is treated the same way even without it.
   */
  manifestProblem?: string
}

export interface RetentionPolicy {
  /** Complete backups older than this are deleted (unless among the newest `keepLast`). */
  maxAgeDays: number
  /** The newest complete backups that are kept whatever their age. */
  keepLast: number
  /** Objects without a manifest are deleted only once their newest object is older than this. */
  incompleteGraceHours: number
  /** S3 Object Lock default retention: objects younger than this are never deleted. */
  lockDays?: number
  /** Keep the newest complete backup a drill proved restorable, whatever its age. */
  keepProven?: boolean
}

export interface PruneDecision {
  backupId: string
  action: 'keep' | 'delete'
  reason: string
  keys: string[]
  bytes: number
}

export const INVALID_MANIFEST_REASON = 'invalid manifest, needs an operator'

const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS

/**
 * Decides, for the backups of one engine, which to keep and which to delete. Pure: the caller
 * lists and deletes. The rules, in order of precedence:
 *
 * - a backup that starts after `now` (clock skew) is kept;
 * - a backup whose manifest exists but is invalid is kept for an operator: it may be a good
 *   backup whose manifest was damaged or tampered with, and deleting it is not undoable;
 * - the newest `keepLast` complete backups (not counting future ones) are kept whatever their age;
 * - with `keepProven`, so is the newest complete backup a drill proved restorable;
 * - other complete backups are deleted when strictly older than `maxAgeDays` (by start time);
 * - incomplete backups (no manifest) are deleted when their newest object is strictly older than
 *   `incompleteGraceHours`: a backup being written right now has fresh objects;
 * - whatever the rules above say, nothing whose newest object or start is younger than `lockDays` is deleted.
 *
 * Every listing appears exactly once in the result, sorted by backup id.
 */
export function planPrune(backups: BackupListing[], policy: RetentionPolicy, now: Date): PruneDecision[] {
  assertPolicy(policy)
  if (Number.isNaN(now.getTime())) throw new UntrustedInputError('planPrune: now is not a valid date')
  assertOneEngine(backups)

  const nowMs = now.getTime()
  const isFuture = (b: BackupListing) => b.startedAt.getTime() > nowMs
  // Ranked newest first; ids sort as their start times do.
  const protectedIds = new Set(
    backups
      .filter((b) => b.complete && !isFuture(b))
      .sort((a, b) => (a.backupId < b.backupId ? 1 : -1))
      .slice(0, policy.keepLast)
      .map((b) => b.backupId),
  )
  const newestProven = policy.keepProven
    ? backups
        .filter((b) => b.complete && !isFuture(b) && provenAt(b.keys) !== null)
        .sort((a, b) => (a.backupId < b.backupId ? 1 : -1))[0]?.backupId
    : undefined

  return [...backups]
    .sort((a, b) => (a.backupId < b.backupId ? -1 : 1))
    .map((b) => {
      const decide = (action: PruneDecision['action'], reason: string): PruneDecision => ({
        backupId: b.backupId,
        action,
        reason,
        keys: [...b.keys],
        bytes: b.bytes,
      })
      const decision = ruleFor(b)
      if (decision.action === 'delete' && policy.lockDays !== undefined) {
        // The newest of the two: a skewed S3 clock must not make a locked object look old.
        const newestMs = Math.max(b.lastModified.getTime(), b.startedAt.getTime())
        const ageDays = (nowMs - newestMs) / DAY_MS
        if (ageDays < policy.lockDays) {
          return decide(
            'keep',
            `object lock: newest object ${days(ageDays)} old, locked for ${policy.lockDays} days`,
          )
        }
      }
      return decide(decision.action, decision.reason)
    })

  function ruleFor(b: BackupListing): { action: PruneDecision['action']; reason: string } {
    if (isFuture(b)) return { action: 'keep', reason: 'starts in the future (clock skew?)' }
    if (!b.complete && hasManifest(b)) return { action: 'keep', reason: INVALID_MANIFEST_REASON }
    if (b.complete) {
      if (protectedIds.has(b.backupId))
        return { action: 'keep', reason: `among the newest ${policy.keepLast} complete backups` }
      if (b.backupId === newestProven)
        return { action: 'keep', reason: `the newest backup proven restorable (drill ${provenAt(b.keys)})` }
      const ageMs = nowMs - b.startedAt.getTime()
      if (ageMs > policy.maxAgeDays * DAY_MS)
        return {
          action: 'delete',
          reason: `${days(ageMs / DAY_MS)} old, retention ${policy.maxAgeDays} days`,
        }
      return { action: 'keep', reason: `within retention (${days(ageMs / DAY_MS)} old)` }
    }
    const idleMs = nowMs - b.lastModified.getTime()
    if (idleMs > policy.incompleteGraceHours * HOUR_MS)
      return {
        action: 'delete',
        reason: `incomplete (no manifest), newest object ${hours(idleMs / HOUR_MS)} old`,
      }
    return {
      action: 'keep',
      reason: `incomplete (no manifest) but written ${hours(idleMs / HOUR_MS)} ago: may still be in progress`,
    }
  }
}

function hasManifest(b: BackupListing): boolean {
  return b.manifestProblem !== undefined || b.keys.some((k) => k.endsWith(`/${b.backupId}/manifest.json`))
}

function assertPolicy(p: RetentionPolicy): void {
  const bad = (name: string, v: unknown) =>
    new ConfigError(`retention policy: ${name} must be a non-negative number, got ${JSON.stringify(v)}`)
  if (!(Number.isFinite(p.maxAgeDays) && p.maxAgeDays > 0))
    throw new ConfigError(
      `retention policy: maxAgeDays must be positive, got ${JSON.stringify(p.maxAgeDays)}`,
    )
  if (!(Number.isInteger(p.keepLast) && p.keepLast >= 0)) throw bad('keepLast (an integer)', p.keepLast)
  if (!(Number.isFinite(p.incompleteGraceHours) && p.incompleteGraceHours >= 0))
    throw bad('incompleteGraceHours', p.incompleteGraceHours)
  if (p.lockDays !== undefined && !(Number.isFinite(p.lockDays) && p.lockDays >= 0))
    throw bad('lockDays', p.lockDays)
}

/** The caller prunes engine by engine; a mixed or duplicated list is a bug upstream, not something to guess about. */
function assertOneEngine(backups: BackupListing[]): void {
  const seen = new Set<string>()
  for (const b of backups) {
    assertEngine(b.engine)
    assertBackupId(b.backupId)
    if (b.engine !== backups[0]!.engine)
      throw new UntrustedInputError(
        `planPrune got backups of several engines (${backups[0]!.engine}, ${b.engine}): plan one engine at a time`,
      )
    if (seen.has(b.backupId)) throw new UntrustedInputError(`planPrune got backup ${b.backupId} twice`)
    seen.add(b.backupId)
    if (Number.isNaN(b.startedAt.getTime()) || Number.isNaN(b.lastModified.getTime()))
      throw new UntrustedInputError(`backup ${b.backupId} has an invalid date`)
  }
}

const days = (d: number) => `${d.toFixed(1)} days`
const hours = (h: number) => `${h.toFixed(1)} h`
