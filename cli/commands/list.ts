import { Command } from 'commander'
import { backupStore } from '#catalog/backupStore.ts'
import { type Engine, provenAt } from '#core/backupKeys.ts'
import { humanBytes } from '#core/humanBytes.ts'
import { engineOption, engines, print } from '../output.ts'

export function listCommand(): Command {
  return new Command('list')
    .description('list backups in the bucket')
    .addOption(engineOption())
    .option('--all', 'include incomplete backups')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const store = backupStore()
      const rows: {
        engine: Engine
        backupId: string
        complete: boolean
        bytes: number
        objects: number
        /** When a drill last proved it restorable (the drill's id, a UTC time), or null. */
        provenAt: string | null
      }[] = []
      for (const engine of engines(opts.engine)) {
        for (const b of await store.list(engine)) {
          if (b.complete || opts.all)
            rows.push({
              engine,
              backupId: b.backupId,
              complete: b.complete,
              bytes: b.bytes,
              objects: b.keys.length,
              provenAt: provenAt(b.keys),
            })
        }
      }
      print(opts.json, rows, () =>
        rows.length === 0
          ? `no backups under s3://${store.bucket}/${store.prefix}/`
          : rows
              .map(
                (r) =>
                  `${r.engine.padEnd(10)} ${r.backupId}  ${humanBytes(r.bytes).padStart(10)}  ${String(r.objects).padStart(5)} object(s)  ` +
                  (r.complete ? (r.provenAt ? `proven ${r.provenAt}` : 'not drilled') : 'INCOMPLETE'),
              )
              .join('\n'),
      )
    })
}
