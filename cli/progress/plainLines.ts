/**
 * Progress where nothing can be redrawn (a pipe, a log file): a plain line per Map or byte stream,
 * at most one every `everyMs`. A change inside that time is shown when it is up, as it stands then.
 */
import type { ProgressStream } from './liveArea.ts'

export class PlainLines {
  private readonly last = new Map<string, number>()
  private readonly pending = new Map<string, NodeJS.Timeout>()

  constructor(
    private readonly stream: ProgressStream,
    /** The line of a key as it stands now, or undefined once it is gone. */
    private readonly line: (key: string) => string | undefined,
    private readonly everyMs: number,
  ) {}

  changed(key: string): void {
    if (this.pending.has(key)) return
    const now = Date.now()
    // the state's start line counts as its first: a short state prints none of these
    if (!this.last.has(key)) this.last.set(key, now)
    const wait = this.last.get(key)! + this.everyMs - now
    if (wait <= 0) this.flush(key)
    else this.pending.set(key, setTimeout(() => this.flush(key), wait).unref())
  }

  gone(key: string): void {
    clearTimeout(this.pending.get(key))
    this.pending.delete(key)
    this.last.delete(key)
  }

  stop(): void {
    for (const key of [...this.pending.keys()]) this.gone(key)
  }

  private flush(key: string): void {
    this.pending.delete(key)
    const text = this.line(key)
    if (text === undefined) return
    this.stream.write(`  ${text}\n`)
    this.last.set(key, Date.now())
  }
}
