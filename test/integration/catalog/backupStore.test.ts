import { createHash, randomUUID } from 'node:crypto'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest'
import { BackupStore, type PruneReport } from '#catalog/backupStore.ts'
import { listObjects, putBytes } from '#catalog/objectStore.ts'
import { INVALID_MANIFEST_REASON, type RetentionPolicy } from '#catalog/retention.ts'
import {
  backupIdFor,
  backupTime,
  type Engine,
  manifestKey,
  postgresDumpKey,
  tableDataKey,
} from '#core/backupKeys.ts'
import { resetConfig } from '#core/config.ts'
import { BackupNotFoundError, ManifestError, UntrustedInputError } from '#core/errors.ts'
import { MANIFEST_FORMAT_VERSION, type Manifest } from '#core/manifest.ts'

const { s3 } = inject('servers')
const bucket = s3.bucket
const DAY = 86_400_000

/**
 * A real HTTP proxy in front of s3rver that every S3 request of this file goes through. It records
 * the keys of each DeleteObjects request in order, and can refuse one with S3's AccessDenied:
 * a real fault on the wire, seen by the real SDK.
 */
const deletes: string[][] = []
const invocations = new Set<string>()
let refuseDeleteNumber: number | undefined
let proxy: Server

beforeAll(async () => {
  const upstream = new URL(s3.endpoint)
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      if (req.method === 'POST' && new URL(req.url!, 'http://x').searchParams.has('delete')) {
        // One entry per DeleteObjects call: the SDK's retries of a call (s3rver sometimes answers 500
        // when two deletes empty the same directory at once) carry the same invocation id.
        const invocation = String(req.headers['amz-sdk-invocation-id'])
        if (!invocations.has(invocation)) {
          invocations.add(invocation)
          deletes.push(
            [...body.toString('utf8').matchAll(/<Key>(.*?)<\/Key>/g)].map((m) => unescapeXml(m[1]!)),
          )
          if (deletes.length === refuseDeleteNumber) {
            res.writeHead(403, { 'content-type': 'application/xml' })
            res.end(
              '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>' +
                '<Message>Access Denied</Message><RequestId>proxy</RequestId></Error>',
            )
            return
          }
        }
      }
      // Headers unchanged (Host included), so the SigV4 signature still matches upstream.
      const forward = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers)
          up.pipe(res)
        },
      )
      forward.on('error', (e) => res.destroy(e))
      forward.end(body)
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  process.env.AWS_ENDPOINT_URL_S3 = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  resetConfig()
})

afterAll(async () => {
  process.env.AWS_ENDPOINT_URL_S3 = s3.endpoint
  resetConfig()
  proxy.closeAllConnections()
  await new Promise((resolve) => proxy.close(resolve))
})

beforeEach(() => {
  deletes.length = 0
  refuseDeleteNumber = undefined
})

function unescapeXml(s: string): string {
  return s
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&amp;', '&')
}

/** The error a promise rejects with, settled at once so that no rejection is left unhandled. */
async function failureOf(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: Error) => e,
  )
  if (!error) throw new Error('expected a failure')
  return error
}

const uniquePrefix = () => `catalog-${randomUUID().slice(0, 8)}`
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

/** Runs `jobs` with at most `limit` in flight. */
async function inParallel(jobs: (() => Promise<unknown>)[], limit = 32): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(limit, jobs.length) }, async () => {
      while (next < jobs.length) await jobs[next++]!()
    }),
  )
}

type ManifestState = 'valid' | 'missing' | 'not-json' | 'bad-schema' | 'elsewhere'

/**
 * Writes a backup as the backup state machine would: its data objects, then its manifest
 * (or a broken one). ClickHouse backups get `objects` parts; a Postgres backup has one dump.
 */
async function storeBackup(
  prefix: string,
  engine: Engine,
  backupId: string,
  opts: { objects?: number; manifest?: ManifestState } = {},
): Promise<{ manifest: Manifest; keys: string[] }> {
  const count = engine === 'postgres' ? 1 : (opts.objects ?? 2)
  const objects = Array.from({ length: count }, (_, i) => {
    const key =
      engine === 'postgres'
        ? postgresDumpKey(prefix, backupId)
        : tableDataKey(prefix, backupId, 'spans', `p${i}`)
    const body = `${key} payload`
    return { key, body }
  })
  await inParallel(objects.map((o) => () => putBytes(bucket, o.key, o.body, 'application/octet-stream')))
  const manifest: Manifest = {
    formatVersion: MANIFEST_FORMAT_VERSION,
    backupId,
    engine,
    prefix,
    startedAt: backupTime(backupId).toISOString(),
    finishedAt: new Date(backupTime(backupId).getTime() + 60_000).toISOString(),
    toolVersion: 'test',
    source: { serverVersion: '15.8', database: 'langsight' },
    objects: objects.map((o, i) => ({
      key: o.key,
      bytes: Buffer.byteLength(o.body),
      sha256: sha256(o.body),
      rows: engine === 'postgres' ? null : 10,
      table: engine === 'postgres' ? null : 'spans',
      ...(engine === 'postgres' ? {} : { part: `p${i}` }),
      compression: 'none',
    })),
    tables: [],
  }
  const key = manifestKey(prefix, engine, backupId)
  const state = opts.manifest ?? 'valid'
  if (state === 'valid') await new BackupStore(bucket, manifest.prefix).writeManifest(manifest)
  if (state === 'not-json')
    await putBytes(bucket, key, '{"formatVersion": 1, "backupId": ', 'application/json')
  if (state === 'bad-schema')
    await putBytes(bucket, key, JSON.stringify({ ...manifest, formatVersion: 99 }), 'application/json')
  if (state === 'elsewhere') {
    // A valid manifest of another backup, copied here.
    const other = backupIdFor(new Date(backupTime(backupId).getTime() - 1000))
    const moved = {
      ...manifest,
      backupId: other,
      objects: manifest.objects.map((o) => ({ ...o, key: o.key.replace(backupId, other) })),
    }
    await putBytes(bucket, key, JSON.stringify(moved), 'application/json')
  }
  return { manifest, keys: [...objects.map((o) => o.key), ...(state === 'missing' ? [] : [key])].sort() }
}

async function bytesBelow(dir: string): Promise<number> {
  let bytes = 0
  for await (const o of listObjects(bucket, dir)) bytes += o.bytes
  return bytes
}

async function keysBelow(prefix: string): Promise<string[]> {
  const keys: string[] = []
  for await (const o of listObjects(bucket, `${prefix}/`)) keys.push(o.key)
  return keys.sort()
}

const ago = (days: number, from = Date.now()) => backupIdFor(new Date(from - days * DAY))

describe('Function: listBackups', () => {
  it('groups objects by backup and tells complete, incomplete and invalid-manifest backups apart', async () => {
    // Prepare
    const prefix = uniquePrefix()
    const [good, partial, broken, schema, moved] = [50, 40, 30, 20, 10].map((d) => ago(d))
    const stored = {
      good: await storeBackup(prefix, 'clickhouse', good!, { objects: 3 }),
      partial: await storeBackup(prefix, 'clickhouse', partial!, { manifest: 'missing' }),
      broken: await storeBackup(prefix, 'clickhouse', broken!, { manifest: 'not-json' }),
      schema: await storeBackup(prefix, 'clickhouse', schema!, { manifest: 'bad-schema' }),
      moved: await storeBackup(prefix, 'clickhouse', moved!, { manifest: 'elsewhere' }),
    }
    // Not below a backup directory, or not this engine, or not this prefix: never listed.
    const strays = [
      `${prefix}/clickhouse/README.txt`,
      `${prefix}/clickhouse/${good}`,
      `${prefix}/clickhouse/not-a-backup-id/x.bin`,
      `${prefix}/clickhouse/2026-11-25/x.bin`,
    ]
    for (const key of strays) await putBytes(bucket, key, 'stray', 'text/plain')
    await storeBackup(prefix, 'postgres', ago(5))
    await storeBackup(`${prefix}-sibling`, 'clickhouse', ago(1))
    // Act
    const listings = await new BackupStore(bucket, prefix).list('clickhouse')
    // Assess
    expect(listings.map((l) => [l.backupId, l.complete])).toEqual([
      [good, true],
      [partial, false],
      [broken, false],
      [schema, false],
      [moved, false],
    ])
    const [g, p, b, s, m] = listings
    expect(g).toMatchObject({ engine: 'clickhouse', keys: stored.good.keys, startedAt: backupTime(good!) })
    expect(g!.manifestProblem).toBeUndefined()
    expect(g!.bytes).toBe(await bytesBelow(`${prefix}/clickhouse/${good}/`))
    expect(g!.lastModified.getTime()).toBeGreaterThan(Date.now() - 60_000)
    expect(p!.keys).toEqual(stored.partial.keys)
    expect(p!.manifestProblem).toBeUndefined()
    expect(b!.manifestProblem).toMatch(/is not valid JSON/)
    expect(s!.manifestProblem).toMatch(/formatVersion/)
    expect(m!.manifestProblem).toMatch(/does not belong where it was found: backupId is/)
    for (const stray of strays) expect(listings.flatMap((l) => l.keys)).not.toContain(stray)
  })

  it('returns nothing for a prefix without backups', async () => {
    expect(await new BackupStore(bucket, uniquePrefix()).list('postgres')).toEqual([])
  })
})

describe('Function: readManifest', () => {
  it('reads back what writeManifest wrote', async () => {
    const prefix = uniquePrefix()
    const id = ago(1)
    const { manifest } = await storeBackup(prefix, 'postgres', id)
    expect(await new BackupStore(bucket, prefix).readManifest('postgres', id)).toEqual(manifest)
  })

  it('says "no backup" when nothing exists and "incomplete backup" when objects exist without a manifest', async () => {
    // Prepare
    const prefix = uniquePrefix()
    const partial = ago(2)
    await storeBackup(prefix, 'clickhouse', partial, { objects: 3, manifest: 'missing' })
    // Act
    const missing = ago(3)
    const none = await failureOf(new BackupStore(bucket, prefix).readManifest('clickhouse', missing))
    const incomplete = await failureOf(new BackupStore(bucket, prefix).readManifest('clickhouse', partial))
    // Assess
    expect(none).toBeInstanceOf(BackupNotFoundError)
    expect(none.message).toBe(`no clickhouse backup ${missing} under s3://${bucket}/${prefix}/clickhouse/`)
    expect(incomplete).toBeInstanceOf(BackupNotFoundError)
    expect(incomplete.message).toBe(
      `clickhouse backup ${partial} at s3://${bucket}/${prefix}/clickhouse/${partial}/ is an incomplete backup: ` +
        '3 object(s) but no manifest.json (it failed or is still being written)',
    )
  })

  it('throws ManifestError for invalid JSON or a failed schema, naming the manifest', async () => {
    const prefix = uniquePrefix()
    const [notJson, badSchema] = [ago(2), ago(1)]
    await storeBackup(prefix, 'postgres', notJson, { manifest: 'not-json' })
    await storeBackup(prefix, 'postgres', badSchema, { manifest: 'bad-schema' })
    const a = new BackupStore(bucket, prefix).readManifest('postgres', notJson)
    await expect(a).rejects.toBeInstanceOf(ManifestError)
    await expect(a).rejects.toThrow(
      `manifest s3://${bucket}/${manifestKey(prefix, 'postgres', notJson)} is not valid JSON`,
    )
    const b = new BackupStore(bucket, prefix).readManifest('postgres', badSchema)
    await expect(b).rejects.toBeInstanceOf(ManifestError)
    await expect(b).rejects.toThrow(/formatVersion/)
  })

  it('throws UntrustedInputError for a manifest found in another backup, engine or prefix than it names', async () => {
    // Prepare: a valid manifest copied under another id, another engine, another prefix
    const prefix = uniquePrefix()
    const id = ago(1)
    await storeBackup(prefix, 'clickhouse', id, { manifest: 'elsewhere' })
    const { manifest } = await storeBackup(prefix, 'postgres', ago(2))
    const text = JSON.stringify(manifest)
    await putBytes(bucket, manifestKey(prefix, 'clickhouse', manifest.backupId), text, 'application/json')
    await putBytes(
      bucket,
      manifestKey(`${prefix}-copy`, 'postgres', manifest.backupId),
      text,
      'application/json',
    )
    // Act
    const otherId = await failureOf(new BackupStore(bucket, prefix).readManifest('clickhouse', id))
    const otherEngine = await failureOf(
      new BackupStore(bucket, prefix).readManifest('clickhouse', manifest.backupId),
    )
    const otherPrefix = await failureOf(
      new BackupStore(bucket, `${prefix}-copy`).readManifest('postgres', manifest.backupId),
    )
    // Assess
    for (const error of [otherId, otherEngine, otherPrefix]) expect(error).toBeInstanceOf(UntrustedInputError)
    expect(otherId.message).toMatch(/backupId is "\d{8}T\d{6}\.\d{3}Z", expected "/)
    expect(otherEngine.message).toContain('engine is "postgres", expected "clickhouse"')
    expect(otherPrefix.message).toContain(`prefix is "${prefix}", expected "${prefix}-copy"`)
  })
})

describe('Function: resolveBackup', () => {
  it('resolves latest to the newest complete backup, skipping newer incomplete and invalid ones', async () => {
    // Prepare
    const prefix = uniquePrefix()
    const [older, good, invalid, moved, partial] = [5, 4, 3, 2, 1].map((d) => ago(d))
    await storeBackup(prefix, 'postgres', older!)
    await storeBackup(prefix, 'postgres', good!)
    await storeBackup(prefix, 'postgres', invalid!, { manifest: 'bad-schema' })
    await storeBackup(prefix, 'postgres', moved!, { manifest: 'elsewhere' })
    await storeBackup(prefix, 'postgres', partial!, { manifest: 'missing' })
    // Act
    const latest = await new BackupStore(bucket, prefix).resolve('postgres', 'latest')
    const byId = await new BackupStore(bucket, prefix).resolve('postgres', older!)
    // Assess
    expect(latest.backupId).toBe(good)
    expect(byId.backupId).toBe(older)
  })

  it('names the engine and the prefix when there is no complete backup', async () => {
    const prefix = uniquePrefix()
    await storeBackup(prefix, 'clickhouse', ago(1), { manifest: 'missing' })
    await storeBackup(prefix, 'clickhouse', ago(2), { manifest: 'not-json' })
    await storeBackup(prefix, 'postgres', ago(3))
    const none = new BackupStore(bucket, prefix).resolve('clickhouse', 'latest')
    await expect(none).rejects.toBeInstanceOf(BackupNotFoundError)
    await expect(none).rejects.toThrow(
      `no complete clickhouse backup under s3://${bucket}/${prefix}/clickhouse/ (2 backup id(s) found, none with a valid manifest)`,
    )
  })

  it('refuses an id that is not a backup id before touching S3', async () => {
    await expect(
      new BackupStore(bucket, uniquePrefix()).resolve('postgres', '../../etc'),
    ).rejects.toBeInstanceOf(UntrustedInputError)
  })
})

describe('Function: writeManifest', () => {
  it('refuses an invalid manifest and writes nothing', async () => {
    // Prepare: a key that escapes its backup
    const prefix = uniquePrefix()
    const id = ago(1)
    const { manifest } = await storeBackup(prefix, 'clickhouse', id, { manifest: 'missing' })
    const escaping = {
      ...manifest,
      objects: [{ ...manifest.objects[0]!, key: `${prefix}/clickhouse/${id}/../x` }],
    }
    // Act
    const write = new BackupStore(bucket, escaping.prefix).writeManifest(escaping)
    // Assess
    await expect(write).rejects.toBeInstanceOf(ManifestError)
    await expect(write).rejects.toThrow(/objects\.0\.key/)
    expect(await keysBelow(prefix)).not.toContain(manifestKey(prefix, 'clickhouse', id))
  })

  it('returns the key it wrote', async () => {
    const prefix = uniquePrefix()
    const id = ago(1)
    const { manifest } = await storeBackup(prefix, 'postgres', id, { manifest: 'missing' })
    expect(await new BackupStore(bucket, manifest.prefix).writeManifest(manifest)).toBe(
      manifestKey(prefix, 'postgres', id),
    )
    expect((await new BackupStore(bucket, prefix).list('postgres'))[0]!.complete).toBe(true)
  })
})

describe('Function: pruneBackups', () => {
  // `now` two days ahead: objects written by the test are then older than a 24 h grace period.
  const now = new Date(Date.now() + 2 * DAY)
  const policy: RetentionPolicy = { maxAgeDays: 84, keepLast: 2, incompleteGraceHours: 24 }

  /** Seven backups and a stray object; `hugeObjects` > 1000 exercises listing pages and delete batches. */
  async function scenario(hugeObjects: number) {
    const prefix = uniquePrefix()
    const ids = {
      huge: ago(100, now.getTime()),
      old: ago(90, now.getTime()),
      oldInvalid: ago(95, now.getTime()),
      recent: ago(10, now.getTime()),
      newer: ago(5, now.getTime()),
      newest: ago(3, now.getTime()),
      partial: ago(4, now.getTime()),
    }
    const huge = await storeBackup(prefix, 'clickhouse', ids.huge, { objects: hugeObjects })
    const old = await storeBackup(prefix, 'clickhouse', ids.old)
    await storeBackup(prefix, 'clickhouse', ids.oldInvalid, { manifest: 'bad-schema' })
    await storeBackup(prefix, 'clickhouse', ids.recent)
    await storeBackup(prefix, 'clickhouse', ids.newer)
    await storeBackup(prefix, 'clickhouse', ids.newest)
    const partial = await storeBackup(prefix, 'clickhouse', ids.partial, { manifest: 'missing' })
    const stray = `${prefix}/clickhouse/notes.txt`
    await putBytes(bucket, stray, 'operator notes', 'text/plain')
    return { prefix, ids, planned: [...huge.keys, ...old.keys, ...partial.keys].sort(), stray }
  }

  it('deletes nothing in a dry run; a real run deletes exactly that plan, each manifest first, in batches', async () => {
    // Prepare
    // Over 1000 keys: s3rver pages listings with a DES-encrypted token, which needs OpenSSL's legacy provider.
    const { prefix, ids, planned, stray } = await scenario(1100)
    const before = await keysBelow(prefix)
    // Act: dry run
    const dry = await new BackupStore(bucket, prefix).prune('clickhouse', { policy, now, dryRun: true })
    // Assess: nothing touched
    expect(await keysBelow(prefix)).toEqual(before)
    expect(deletes).toEqual([])
    expect(dry.dryRun).toBe(true)
    expect(dry.removed.map((r) => r.backupId)).toEqual([ids.huge, ids.old, ids.partial].sort())
    expect(dry.removed.find((r) => r.backupId === ids.huge)).toMatchObject({ objects: 1101 })
    expect(dry.kept).toEqual(
      expect.arrayContaining([
        { backupId: ids.oldInvalid, reason: INVALID_MANIFEST_REASON },
        { backupId: ids.newest, reason: 'among the newest 2 complete backups' },
        { backupId: ids.recent, reason: expect.stringMatching(/^within retention/) },
      ]),
    )
    // Act: the real run
    const real = await new BackupStore(bucket, prefix).prune('clickhouse', { policy, now, dryRun: false })
    // Assess: the same report, exactly the planned keys gone, the stray object untouched
    expect(real).toEqual<PruneReport>({ ...dry, dryRun: false })
    const after = await keysBelow(prefix)
    expect(after).toEqual(before.filter((k) => !planned.includes(k)))
    expect(after).toContain(stray)
    expect(deletes.flat().sort()).toEqual(planned)
    // Oldest backup first; its manifest alone, then its data in batches of at most 1000.
    expect(deletes.map((batch) => batch.length)).toEqual([1, 1000, 100, 1, 2, 2])
    expect(deletes[0]).toEqual([manifestKey(prefix, 'clickhouse', ids.huge)])
    expect(deletes[3]).toEqual([manifestKey(prefix, 'clickhouse', ids.old)])
    expect(deletes[5]!.every((k) => k.includes(`/${ids.partial}/data/`))).toBe(true)
    expect(await new BackupStore(bucket, prefix).resolve('clickhouse', 'latest')).toMatchObject({
      backupId: ids.newest,
    })
  })

  it('leaves an incomplete backup, never a manifest without its data, when S3 refuses a delete half-way', async () => {
    // Prepare: S3 refuses the first data batch of the first backup, after its manifest went
    const { prefix, ids } = await scenario(5)
    refuseDeleteNumber = 2
    // Act
    const failed = new BackupStore(bucket, prefix).prune('clickhouse', { policy, now, dryRun: false })
    // Assess: the error says what and where, keeps S3's name for the state machine's Catch
    await expect(failed).rejects.toMatchObject({
      name: 'AccessDenied',
      message: expect.stringMatching(
        new RegExp(
          `^prune of clickhouse backup ${ids.huge.replaceAll('.', '\\.')} failed \\(already removed: none\\)`,
        ),
      ),
    })
    const listing = await new BackupStore(bucket, prefix).list('clickhouse')
    const huge = listing.find((l) => l.backupId === ids.huge)!
    expect(huge.complete).toBe(false)
    expect(huge.manifestProblem).toBeUndefined()
    expect(huge.keys).toHaveLength(5)
    expect(listing.find((l) => l.backupId === ids.old)!.complete).toBe(true)
    // Act: a later prune, S3 healthy again, removes what is left
    refuseDeleteNumber = undefined
    const later = await new BackupStore(bucket, prefix).prune('clickhouse', { policy, now, dryRun: false })
    // Assess
    expect(later.removed.map((r) => [r.backupId, r.objects])).toEqual([
      [ids.huge, 5],
      [ids.old, 3],
      [ids.partial, 2],
    ])
    expect(await new BackupStore(bucket, prefix).list('clickhouse')).toHaveLength(4)
  })

  it('keeps incomplete backups that are still being written', async () => {
    // Prepare: objects written just now, evaluated at the real current time
    const prefix = uniquePrefix()
    const id = ago(0.01)
    await storeBackup(prefix, 'clickhouse', id, { manifest: 'missing' })
    // Act
    const report = await new BackupStore(bucket, prefix).prune('clickhouse', {
      policy,
      now: new Date(),
      dryRun: false,
    })
    // Assess
    expect(report.removed).toEqual([])
    expect(report.kept).toEqual([{ backupId: id, reason: expect.stringMatching(/may still be in progress/) }])
    expect((await keysBelow(prefix)).length).toBe(2)
  })
})
