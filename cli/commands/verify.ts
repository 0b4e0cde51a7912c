import { Command } from 'commander'
import { backupStore } from '#catalog/backupStore.ts'
import { verifyObjectChecksum } from '#catalog/objectStore.ts'
import type { Engine } from '#core/backupKeys.ts'
import { BackupNotFoundError } from '#core/errors.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { engineOption, engines, print } from '../output.ts'

export function verifyCommand(): Command {
  return new Command('verify')
    .argument('<backupId>')
    .description('re-hash every object of a stored backup against its manifest')
    .addOption(engineOption())
    .option('--json', 'print JSON')
    .action(async (backupId: string, opts) => {
      const store = backupStore()
      const results: { engine: Engine; backupId: string; objects: number; bytes: number }[] = []
      for (const engine of engines(opts.engine)) {
        const manifest = await store.readManifest(engine, backupId).catch((e) => {
          if (e instanceof BackupNotFoundError && opts.engine === 'all') return null
          throw e
        })
        if (!manifest) continue
        let done = 0
        for (const object of manifest.objects) {
          process.stderr.write(
            `  ${engine} ${++done}/${manifest.objects.length} ${object.key} (${humanBytes(object.bytes)})\n`,
          )
          await verifyObjectChecksum(store.bucket, object.key, object)
        }
        results.push({
          engine,
          backupId,
          objects: manifest.objects.length,
          bytes: manifest.objects.reduce((s, o) => s + o.bytes, 0),
        })
      }
      if (results.length === 0)
        throw new BackupNotFoundError(`no backup ${backupId} under s3://${store.bucket}/${store.prefix}/`)
      print(opts.json, { verified: results }, () =>
        results
          .map((r) => `${r.engine} ${r.backupId}: ${r.objects} object(s), ${humanBytes(r.bytes)} verified`)
          .join('\n'),
      )
    })
}
