import { describe, expect, it } from 'vitest'
import {
  type BackupListing,
  INVALID_MANIFEST_REASON,
  type PruneDecision,
  planPrune,
  type RetentionPolicy,
} from '#catalog/retention.ts'
import { backupIdFor, type Engine } from '#core/backupKeys.ts'
import { ConfigError, UntrustedInputError } from '#core/errors.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const NOW = new Date('2026-11-25T12:00:00.000Z')
const POLICY: RetentionPolicy = { maxAgeDays: 30, keepLast: 3, incompleteGraceHours: 24 }

interface Shape {
  complete?: boolean
  /** Age of the newest object; defaults to the backup's age (written when it started). */
  idleMs?: number
  manifest?: 'valid' | 'missing' | 'invalid'
  engine?: Engine
}

/** A listing for a backup that started `ageMs` before NOW. */
function backup(ageMs: number, shape: Shape = {}): BackupListing {
  const startedAt = new Date(NOW.getTime() - ageMs)
  const backupId = backupIdFor(startedAt)
  const engine = shape.engine ?? 'postgres'
  const manifest = shape.manifest ?? (shape.complete === false ? 'missing' : 'valid')
  const dir = `p/${engine}/${backupId}/`
  const keys = [`${dir}postgres.dump`, ...(manifest === 'missing' ? [] : [`${dir}manifest.json`])]
  return {
    engine,
    backupId,
    startedAt,
    complete: manifest === 'valid',
    keys,
    bytes: 1000 + keys.length,
    lastModified: new Date(NOW.getTime() - (shape.idleMs ?? ageMs)),
  }
}

const byId = (plan: PruneDecision[]) => Object.fromEntries(plan.map((d) => [d.backupId, d]))
const deleted = (plan: PruneDecision[]) => plan.filter((d) => d.action === 'delete').map((d) => d.backupId)

describe('Function: planPrune', () => {
  it('deletes complete backups older than maxAgeDays and keeps the rest', () => {
    // Prepare
    const backups = [1, 5, 10, 29, 31, 40, 90].map((d) => backup(d * DAY))
    // Act
    const plan = planPrune(backups, POLICY, NOW)
    // Assess
    expect(deleted(plan)).toEqual([backups[6]!.backupId, backups[5]!.backupId, backups[4]!.backupId])
    expect(byId(plan)[backups[6]!.backupId]!.reason).toBe('90.0 days old, retention 30 days')
    expect(byId(plan)[backups[3]!.backupId]!.reason).toBe('within retention (29.0 days old)')
  })

  it('keeps a backup exactly maxAgeDays old and deletes one a millisecond older', () => {
    const atLimit = backup(30 * DAY)
    const past = backup(30 * DAY + 1)
    const plan = planPrune([atLimit, past], { ...POLICY, keepLast: 0 }, NOW)
    expect(byId(plan)[atLimit.backupId]!.action).toBe('keep')
    expect(byId(plan)[past.backupId]!.action).toBe('delete')
  })

  it('with keepProven, keeps the newest backup a drill proved, whatever its age, and only that one', () => {
    // Prepare: five old backups; drills passed on the 300- and 400-day ones, failed on the 200-day one
    const backups = [100, 200, 300, 400, 500].map((d) => backup(d * DAY))
    const drill = (b: BackupListing, outcome: 'passed' | 'failed') =>
      b.keys.push(`p/postgres/${b.backupId}/drills/${backupIdFor(NOW)}-${outcome}.json`)
    drill(backups[1]!, 'failed')
    drill(backups[2]!, 'passed')
    drill(backups[3]!, 'passed')
    const policy = { ...POLICY, keepLast: 1 }
    // Act
    const withProof = byId(planPrune(backups, { ...policy, keepProven: true }, NOW))
    const without = byId(planPrune(backups, { ...policy, keepProven: false }, NOW))
    // Assess
    expect(withProof[backups[2]!.backupId]!.action).toBe('keep')
    expect(withProof[backups[2]!.backupId]!.reason).toMatch(/^the newest backup proven restorable \(drill /)
    expect(withProof[backups[1]!.backupId]!.action).toBe('delete')
    expect(withProof[backups[3]!.backupId]!.action).toBe('delete')
    expect(without[backups[2]!.backupId]!.action).toBe('delete')
  })

  it('keeps the newest keepLast complete backups whatever their age', () => {
    const backups = [100, 200, 300, 400, 500].map((d) => backup(d * DAY))
    const plan = planPrune(backups, POLICY, NOW)
    expect(plan.filter((d) => d.action === 'keep').map((d) => d.backupId)).toEqual(
      backups
        .slice(0, 3)
        .map((b) => b.backupId)
        .sort(),
    )
    expect(byId(plan)[backups[0]!.backupId]!.reason).toBe('among the newest 3 complete backups')
  })

  it('keeps everything when keepLast is larger than the number of backups', () => {
    const backups = [100, 200].map((d) => backup(d * DAY))
    const plan = planPrune(backups, { ...POLICY, keepLast: 10 }, NOW)
    expect(deleted(plan)).toEqual([])
  })

  it('when all backups are old, keeps exactly the newest keepLast', () => {
    const backups = Array.from({ length: 10 }, (_, i) => backup((40 + i) * DAY))
    const plan = planPrune(backups, POLICY, NOW)
    expect(deleted(plan)).toHaveLength(7)
    expect(deleted(plan)).not.toContain(backups[0]!.backupId)
    expect(deleted(plan)).not.toContain(backups[2]!.backupId)
    expect(deleted(plan)).toContain(backups[3]!.backupId)
  })

  it('does not count incomplete or invalid backups towards keepLast', () => {
    // Prepare: the two newest are not usable; the protected ones are the older complete ones
    const broken = backup(35 * DAY, { complete: false })
    const invalid = backup(36 * DAY, { manifest: 'invalid' })
    const good = [40, 41, 42, 43].map((d) => backup(d * DAY))
    // Act
    const plan = planPrune([broken, invalid, ...good], POLICY, NOW)
    // Assess
    expect(deleted(plan).sort()).toEqual([broken.backupId, good[3]!.backupId].sort())
  })

  it('deletes an incomplete backup only once its newest object is older than the grace period', () => {
    // Prepare: all started long ago; they differ in when their newest object was written
    const stale = backup(50 * DAY, { complete: false, idleMs: 24 * HOUR + 1 })
    const atGrace = backup(51 * DAY, { complete: false, idleMs: 24 * HOUR })
    const writing = backup(52 * DAY, { complete: false, idleMs: 10_000 })
    // Act
    const plan = byId(planPrune([stale, atGrace, writing], POLICY, NOW))
    // Assess
    expect(plan[stale.backupId]!.action).toBe('delete')
    expect(plan[stale.backupId]!.reason).toMatch(/^incomplete \(no manifest\), newest object 24\.0 h old$/)
    expect(plan[atGrace.backupId]!.action).toBe('keep')
    expect(plan[writing.backupId]!.action).toBe('keep')
    expect(plan[writing.backupId]!.reason).toMatch(/may still be in progress/)
  })

  it('deletes a fresh incomplete backup right away when the grace period is zero', () => {
    const fresh = backup(HOUR, { complete: false, idleMs: 1 })
    expect(deleted(planPrune([fresh], { ...POLICY, incompleteGraceHours: 0 }, NOW))).toEqual([fresh.backupId])
  })

  it('keeps a backup whose manifest exists but is invalid, for an operator', () => {
    // Prepare: old enough that any other rule would delete it
    const invalid = backup(400 * DAY, { manifest: 'invalid' })
    const flagged = {
      ...backup(401 * DAY, { complete: false }),
      manifestProblem: 'formatVersion: expected 1',
    }
    const newer = [1, 2, 3].map((d) => backup(d * DAY))
    // Act
    const plan = byId(planPrune([invalid, flagged, ...newer], { ...POLICY, incompleteGraceHours: 0 }, NOW))
    // Assess
    expect(plan[invalid.backupId]).toMatchObject({ action: 'keep', reason: INVALID_MANIFEST_REASON })
    expect(plan[flagged.backupId]).toMatchObject({ action: 'keep', reason: INVALID_MANIFEST_REASON })
  })

  it('keeps backups that start in the future and does not let them take a keepLast place', () => {
    // Prepare: one backup from the future, one very old complete backup, keepLast 1
    const future = backup(-2 * DAY)
    const old = backup(100 * DAY)
    // Act
    const plan = byId(planPrune([future, old], { ...POLICY, keepLast: 1 }, NOW))
    // Assess: the old one is the newest trustworthy backup and stays
    expect(plan[future.backupId]).toMatchObject({
      action: 'keep',
      reason: 'starts in the future (clock skew?)',
    })
    expect(plan[old.backupId]).toMatchObject({
      action: 'keep',
      reason: 'among the newest 1 complete backups',
    })
  })

  it('never deletes objects younger than lockDays', () => {
    // Prepare: keepLast 0 and short retention so that only the lock protects
    const policy = { maxAgeDays: 1, keepLast: 0, incompleteGraceHours: 1, lockDays: 7 }
    const young = backup(3 * DAY)
    const rewritten = backup(20 * DAY, { idleMs: 6 * DAY })
    const incomplete = backup(4 * DAY, { complete: false })
    const unlocked = backup(7 * DAY + 1)
    // Act
    const plan = byId(planPrune([young, rewritten, incomplete, unlocked], policy, NOW))
    // Assess
    expect(plan[young.backupId]).toMatchObject({
      action: 'keep',
      reason: expect.stringMatching(/^object lock/),
    })
    expect(plan[rewritten.backupId]!.action).toBe('keep')
    expect(plan[incomplete.backupId]!.action).toBe('keep')
    expect(plan[unlocked.backupId]!.action).toBe('delete')
  })

  it('returns every backup once, sorted by id, with its keys and bytes', () => {
    const backups = [5, 1, 50, 3].map((d) => backup(d * DAY))
    const plan = planPrune(backups, POLICY, NOW)
    expect(plan.map((d) => d.backupId)).toEqual(backups.map((b) => b.backupId).sort())
    for (const b of backups) expect(byId(plan)[b.backupId]).toMatchObject({ keys: b.keys, bytes: b.bytes })
  })

  it('returns an empty plan for no backups', () => {
    expect(planPrune([], POLICY, NOW)).toEqual([])
  })

  it('refuses listings of several engines', () => {
    const mixed = [backup(DAY), backup(2 * DAY, { engine: 'clickhouse' })]
    expect(() => planPrune(mixed, POLICY, NOW)).toThrow(UntrustedInputError)
    expect(() => planPrune(mixed, POLICY, NOW)).toThrow(/several engines \(postgres, clickhouse\)/)
  })

  it('refuses the same backup twice and a malformed backup id', () => {
    const one = backup(DAY)
    expect(() => planPrune([one, one], POLICY, NOW)).toThrow(/twice/)
    expect(() => planPrune([{ ...one, backupId: '../etc' }], POLICY, NOW)).toThrow(UntrustedInputError)
  })

  it.each([
    [{ ...POLICY, maxAgeDays: 0 }],
    [{ ...POLICY, maxAgeDays: Number.NaN }],
    [{ ...POLICY, keepLast: -1 }],
    [{ ...POLICY, keepLast: 1.5 }],
    [{ ...POLICY, incompleteGraceHours: -1 }],
    [{ ...POLICY, lockDays: -2 }],
  ])('refuses an invalid policy %o', (policy) => {
    expect(() => planPrune([backup(DAY)], policy, NOW)).toThrow(ConfigError)
  })
})

describe('Function: planPrune (random listings)', () => {
  /** mulberry32: a seeded generator, so a failure reproduces. */
  function random(seed: number): () => number {
    let a = seed >>> 0
    return () => {
      a = (a + 0x6d2b79f5) >>> 0
      let t = a
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }

  it('holds its invariants over 500 random listings and policies', () => {
    const seen = { keep: 0, delete: 0 }
    for (let seed = 1; seed <= 500; seed++) {
      // Prepare
      const rnd = random(seed)
      const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!
      const policy: RetentionPolicy = {
        maxAgeDays: pick([1, 7, 30, 84]),
        keepLast: pick([0, 1, 3, 10]),
        incompleteGraceHours: pick([0, 1, 24]),
        ...(rnd() < 0.3 ? { lockDays: pick([0, 3, 30]) } : {}),
      }
      const ages = new Set<number>()
      const count = Math.floor(rnd() * 40)
      while (ages.size < count) ages.add(Math.round((rnd() * 200 - 5) * DAY)) // a few in the future
      const backups = [...ages].map((age) =>
        backup(age, {
          manifest: pick(['valid', 'valid', 'valid', 'missing', 'invalid'] as const),
          idleMs: age - rnd() * 2 * DAY,
        }),
      )
      // Act
      const plan = planPrune(backups, policy, NOW)
      // Assess
      const ctx = `seed ${seed}, policy ${JSON.stringify(policy)}`
      expect(
        plan.map((d) => d.backupId),
        ctx,
      ).toEqual(backups.map((b) => b.backupId).sort())
      const decision = byId(plan)
      const usable = backups
        .filter((b) => b.complete && b.startedAt <= NOW)
        .sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime())
      for (const b of usable.slice(0, policy.keepLast)) expect(decision[b.backupId]!.action, ctx).toBe('keep')
      const keptComplete = plan.filter(
        (d) => d.action === 'keep' && usable.some((b) => b.backupId === d.backupId),
      )
      expect(keptComplete.length, ctx).toBeGreaterThanOrEqual(Math.min(policy.keepLast, usable.length))
      for (const b of backups) {
        const d = decision[b.backupId]!
        seen[d.action]++
        expect(d.keys, ctx).toEqual(b.keys)
        if (d.action === 'keep') continue
        expect(b.startedAt <= NOW, ctx).toBe(true)
        expect(b.keys.some((k) => k.endsWith('manifest.json')) && !b.complete, ctx).toBe(false)
        if (b.complete)
          expect(NOW.getTime() - b.startedAt.getTime(), ctx).toBeGreaterThan(policy.maxAgeDays * DAY)
        else
          expect(NOW.getTime() - b.lastModified.getTime(), ctx).toBeGreaterThan(
            policy.incompleteGraceHours * HOUR,
          )
        if (policy.lockDays !== undefined)
          expect(NOW.getTime() - b.lastModified.getTime(), ctx).toBeGreaterThanOrEqual(policy.lockDays * DAY)
      }
    }
    // The generator exercises both outcomes, so the invariants above are not vacuous.
    expect(seen.keep).toBeGreaterThan(1000)
    expect(seen.delete).toBeGreaterThan(1000)
  })
})
