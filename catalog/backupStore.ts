import { isDeepStrictEqual } from 'node:util'
import { z } from 'zod'
import {
  assertBackupId,
  backupDir,
  backupIdOfKey,
  backupTime,
  clickhousePlanKey,
  type Engine,
  engineDir,
  exportBatchResultKey,
  manifestKey,
} from '#core/backupKeys.ts'
import { loadSettings } from '#core/config.ts'
import { BackupNotFoundError, ManifestError, ObjectExistsError, UntrustedInputError } from '#core/errors.ts'
import { logger } from '#core/logger.ts'
import { type Manifest, parseManifest, type StoredObject, storedObjectSchema } from '#core/manifest.ts'
import { type ClickHousePlan, clickhousePlanSchema } from '#core/payloads.ts'
import { redact } from '#core/redact.ts'
import { deleteObjects, getText, type ListedObject, listObjects, putBytes } from './objectStore.ts'
import { type BackupListing, type PruneDecision, planPrune, type RetentionPolicy } from './retention.ts'

/** Parses a stored JSON working file; a missing or invalid one is a ManifestError naming it. */
function parseStored<S extends z.ZodType>(schema: S, text: string | undefined, where: string): z.output<S> {
  if (text === undefined) throw new ManifestError(`${where} does not exist`)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new ManifestError(`${where} is not JSON`)
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ')
    throw new ManifestError(`${where} is invalid: ${problems}`)
  }
  return parsed.data
}

/** Manifests read at once while listing: enough to hide latency, few enough not to be throttled. */
const MANIFEST_READS_IN_FLIGHT = 8

export interface PruneReport {
  engine: Engine
  dryRun: boolean
  removed: { backupId: string; reason: string; objects: number; bytes: number }[]
  kept: { backupId: string; reason: string }[]
}

export interface PruneOptions {
  policy: RetentionPolicy
  now: Date
  dryRun: boolean
}

/**
 * The backups below one bucket and prefix: listing, manifests, `latest`, and prune. Every key it
 * reads or deletes is checked to lie below `<prefix>/<engine>/<backupId>/`.
 */
export class BackupStore {
  constructor(
    readonly bucket: string,
    readonly prefix: string,
  ) {}

  /**
   * Every backup of one engine below `<prefix>/<engine>/`, sorted by id. Keys that are not below a
   * valid `<backupId>/` directory are ignored (and so never pruned). A backup is complete when its
   * manifest parses and names the place it was found in; an existing but invalid manifest is reported
   * in `manifestProblem`. S3 errors are thrown, never taken for a missing manifest.
   */
  async list(engine: Engine): Promise<BackupListing[]> {
    const groups = await this.groupObjects(engine)
    const listings: BackupListing[] = []
    const ids = [...groups.keys()].sort()
    for (let i = 0; i < ids.length; i += MANIFEST_READS_IN_FLIGHT) {
      const batch = ids.slice(i, i + MANIFEST_READS_IN_FLIGHT)
      listings.push(...(await Promise.all(batch.map((id) => this.toListing(engine, id, groups.get(id)!)))))
    }
    return listings
  }

  /**
   * Stores a ClickHouse backup's plan (ListClickHouseTables). Unconditional, like the batch results:
   * these are working files a retried state rewrites; the manifest, written once, is the record.
   */
  async writePlan(plan: ClickHousePlan): Promise<string> {
    const key = clickhousePlanKey(this.prefix, plan.backupId)
    await putBytes(this.bucket, key, JSON.stringify(plan), 'application/json')
    return key
  }

  /** Reads a ClickHouse backup's plan, validated: it is state, and state is untrusted. */
  async readPlan(backupId: string): Promise<ClickHousePlan> {
    const key = clickhousePlanKey(this.prefix, backupId)
    return parseStored(clickhousePlanSchema, await getText(this.bucket, key), `s3://${this.bucket}/${key}`)
  }

  /** The objects one export batch has stored so far (none before its first). */
  async readBatchResult(backupId: string, batch: number): Promise<StoredObject[]> {
    const key = exportBatchResultKey(this.prefix, backupId, batch)
    const text = await getText(this.bucket, key)
    if (text === undefined) return []
    return parseStored(z.array(storedObjectSchema), text, `s3://${this.bucket}/${key}`)
  }

  /** Rewritten by every ExportBatch invocation of the batch's loop, so not a conditional write. */
  async writeBatchResult(backupId: string, batch: number, objects: StoredObject[]): Promise<void> {
    const key = exportBatchResultKey(this.prefix, backupId, batch)
    await putBytes(this.bucket, key, JSON.stringify(objects), 'application/json')
  }

  /**
   * Reads and validates one backup's manifest.
   * @throws BackupNotFoundError when there is no manifest (the message says whether objects exist: an incomplete backup)
   * @throws ManifestError when the manifest is not JSON or fails its schema
   * @throws UntrustedInputError when the manifest names another engine, backup id or prefix than where it was found
   */
  async readManifest(engine: Engine, backupId: string): Promise<Manifest> {
    const { bucket, prefix } = this
    const key = manifestKey(prefix, engine, backupId)
    const where = `s3://${bucket}/${key}`
    const text = await getText(bucket, key)
    if (text === undefined) {
      let objects = 0
      for await (const _ of listObjects(bucket, backupDir(prefix, engine, backupId))) objects++
      throw new BackupNotFoundError(
        objects > 0
          ? `${engine} backup ${backupId} at s3://${bucket}/${backupDir(prefix, engine, backupId)} is an incomplete backup: ` +
              `${objects} object(s) but no manifest.json (it failed or is still being written)`
          : `no ${engine} backup ${backupId} under s3://${bucket}/${engineDir(prefix, engine)}`,
      )
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (error) {
      throw new ManifestError(`manifest ${where} is not valid JSON: ${redact((error as Error).message)}`)
    }
    const manifest = parseManifest(json, where)
    const mismatches = (
      [
        ['engine', manifest.engine, engine],
        ['backupId', manifest.backupId, backupId],
        ['prefix', manifest.prefix, prefix],
      ] as const
    ).filter(([, found, expected]) => found !== expected)
    if (mismatches.length > 0) {
      // A manifest copied or moved from elsewhere would point a restore at objects it does not describe.
      throw new UntrustedInputError(
        `manifest ${where} does not belong where it was found: ${mismatches
          .map(
            ([field, found, expected]) =>
              `${field} is ${JSON.stringify(found)}, expected ${JSON.stringify(expected)}`,
          )
          .join('; ')}`,
      )
    }
    return manifest
  }

  /**
   * The manifest of a backup id, or of the newest complete backup for `latest`. Incomplete
   * backups and invalid manifests are skipped for `latest` (with a warning), never chosen.
   */
  async resolve(engine: Engine, idOrLatest: string): Promise<Manifest> {
    const { bucket, prefix } = this
    if (idOrLatest !== 'latest') {
      assertBackupId(idOrLatest)
      return this.readManifest(engine, idOrLatest)
    }
    const groups = await this.groupObjects(engine)
    const found = await this.newestComplete(engine, () => true, groups)
    if (found) return found
    throw new BackupNotFoundError(
      `no complete ${engine} backup under s3://${bucket}/${engineDir(prefix, engine)} ` +
        `(${groups.size} backup id(s) found, none with a valid manifest)`,
    )
  }

  /** The newest backup whose id passes `wanted` and whose manifest is valid; invalid ones are skipped with a warning. */
  private async newestComplete(
    engine: Engine,
    wanted: (backupId: string) => boolean,
    groups?: Map<string, ListedObject[]>,
  ): Promise<Manifest | undefined> {
    const { prefix } = this
    const objects = groups ?? (await this.groupObjects(engine))
    const newestFirst = [...objects.keys()].filter(wanted).sort().reverse()
    for (const id of newestFirst) {
      if (!objects.get(id)!.some((o) => o.key === manifestKey(prefix, engine, id))) continue
      try {
        return await this.readManifest(engine, id)
      } catch (error) {
        if (!(error instanceof ManifestError || error instanceof UntrustedInputError)) throw error
        logger.warn('skipping a backup with an invalid manifest', {
          engine,
          backupId: id,
          error: error.message,
        })
      }
    }
    return undefined
  }

  /**
   * Validates a manifest and writes it, once, to `<prefix>/<engine>/<backupId>/manifest.json`;
   * returns the key. A retried commit that finds the same manifest (only `finishedAt` differs) is
   * done; any other manifest at the key is an ObjectExistsError: a backup is never rewritten.
   */
  async writeManifest(manifest: Manifest): Promise<string> {
    const valid = parseManifest(
      manifest,
      `for backup ${String(manifest?.engine)}/${String(manifest?.backupId)}`,
    )
    if (valid.prefix !== this.prefix) {
      throw new UntrustedInputError(
        `manifest of ${valid.backupId} names prefix ${valid.prefix}, not ${this.prefix}`,
      )
    }
    const key = manifestKey(valid.prefix, valid.engine, valid.backupId)
    try {
      await putBytes(this.bucket, key, `${JSON.stringify(valid, null, 2)}\n`, 'application/json', {
        ifNoneMatch: true,
      })
    } catch (error) {
      if (!(error instanceof ObjectExistsError)) throw error
      const stored = await this.readManifest(valid.engine, valid.backupId)
      // compared as stored (JSON): an absent optional field and an undefined one are the same
      const asJson = (m: Manifest): unknown => JSON.parse(JSON.stringify(m))
      if (!isDeepStrictEqual(asJson({ ...stored, finishedAt: valid.finishedAt }), asJson(valid))) throw error
      logger.info('manifest already written by an earlier attempt', { key })
    }
    return key
  }

  /**
   * The newest complete backup of `engine` older than `backupId` (the one a new backup is compared
   * with), or undefined when there is none. Invalid manifests are skipped, as for `latest`.
   */
  async previous(engine: Engine, backupId: string): Promise<Manifest | undefined> {
    return this.newestComplete(engine, (id) => id < backupId)
  }

  /**
   * Applies the retention policy to one engine's backups (see {@link planPrune}). A dry run
   * reports the same plan and deletes nothing. For each backup the manifest is deleted FIRST:
   * the backup stops existing before its data goes, so a prune interrupted half-way leaves an
   * incomplete backup (objects without a manifest, removed by a later prune), never a manifest
   * that promises objects which are gone.
   */
  async prune(engine: Engine, opts: PruneOptions): Promise<PruneReport> {
    const { dryRun } = opts
    const plan = planPrune(await this.list(engine), opts.policy, opts.now)
    const report: PruneReport = { engine, dryRun, removed: [], kept: [] }
    for (const decision of plan) {
      if (decision.action === 'keep') {
        report.kept.push({ backupId: decision.backupId, reason: decision.reason })
        continue
      }
      if (!dryRun) {
        try {
          await this.deleteBackupObjects(engine, decision)
        } catch (error) {
          // Same error (its name drives the state machine's Retry/Catch), with where the prune stopped.
          if (error instanceof Error) {
            const done = report.removed.map((r) => r.backupId).join(', ') || 'none'
            error.message = redact(
              `prune of ${engine} backup ${decision.backupId} failed (already removed: ${done}): ${error.message}`,
            )
          }
          throw error
        }
        logger.info('pruned backup', { engine, backupId: decision.backupId, reason: decision.reason })
      }
      report.removed.push({
        backupId: decision.backupId,
        reason: decision.reason,
        objects: decision.keys.length,
        bytes: decision.bytes,
      })
    }
    return report
  }

  private async deleteBackupObjects(engine: Engine, d: PruneDecision) {
    const { bucket, prefix } = this
    // The listing produced these keys, but a delete is not undoable: check each one again.
    const dir = backupDir(prefix, engine, d.backupId)
    const outside = d.keys.find((k) => !k.startsWith(dir))
    if (outside !== undefined)
      throw new UntrustedInputError(`refusing to prune ${outside}: not inside ${dir}`)
    const manifest = manifestKey(prefix, engine, d.backupId)
    if (d.keys.includes(manifest)) await deleteObjects(bucket, [manifest])
    await deleteObjects(
      bucket,
      d.keys.filter((k) => k !== manifest),
    )
  }

  /** Objects below `<prefix>/<engine>/<backupId>/`, by backup id; anything else below the engine is left out. */
  private async groupObjects(engine: Engine): Promise<Map<string, ListedObject[]>> {
    const { bucket, prefix } = this
    const groups = new Map<string, ListedObject[]>()
    for await (const object of listObjects(bucket, engineDir(prefix, engine))) {
      const id = backupIdOfKey(prefix, engine, object.key)
      // `<engine>/<id>` as an object of its own is not below the backup's directory.
      if (!id || !object.key.startsWith(backupDir(prefix, engine, id))) continue
      const group = groups.get(id)
      if (group) group.push(object)
      else groups.set(id, [object])
    }
    return groups
  }

  private async toListing(engine: Engine, backupId: string, objects: ListedObject[]): Promise<BackupListing> {
    const { prefix } = this
    const listing: BackupListing = {
      engine,
      backupId,
      startedAt: backupTime(backupId),
      complete: false,
      keys: objects.map((o) => o.key).sort(),
      bytes: objects.reduce((sum, o) => sum + o.bytes, 0),
      lastModified: new Date(Math.max(...objects.map((o) => o.lastModified.getTime()))),
    }
    if (!objects.some((o) => o.key === manifestKey(prefix, engine, backupId))) return listing
    try {
      await this.readManifest(engine, backupId)
      listing.complete = true
    } catch (error) {
      // Only a judgement on the manifest itself counts; an S3 failure must not make a good backup look prunable.
      if (
        !(
          error instanceof ManifestError ||
          error instanceof UntrustedInputError ||
          error instanceof BackupNotFoundError
        )
      )
        throw error
      listing.manifestProblem = error.message
    }
    return listing
  }
}

/** The store the configuration names (LSB_BUCKET, LSB_PREFIX). */
export function backupStore(): BackupStore {
  const { LSB_BUCKET, LSB_PREFIX } = loadSettings()
  return new BackupStore(LSB_BUCKET, LSB_PREFIX)
}
