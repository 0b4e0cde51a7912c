/**
 * The live lines at the bottom of a terminal, redrawn in place: the cursor goes back up over the
 * lines drawn last (CSI n A), clears to the end of the screen (CSI J) and draws them again. Lines
 * that stay are written where the live lines were, and the live lines again below them.
 */

/** What the display writes to: process.stderr, or a test's fake. */
export interface ProgressStream {
  write(chunk: string): unknown
  isTTY?: boolean
  columns?: number
}

export class LiveArea {
  /** Lines on screen below the last permanent line; the cursor is at the start of the next. */
  private drawn: string[] = []
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly stream: ProgressStream,
    private readonly lines: () => string[],
    private readonly everyMs: number,
  ) {}

  /** Writes lines that stay above the live ones, in one write with the redraw. */
  print(lines: string[]): void {
    this.stream.write(this.erase() + lines.map((l) => `${l}\n`).join('') + this.draw(this.fitted()))
  }

  /** Redraws on a timer, at most every `everyMs`, while there is something to show. */
  start(): void {
    this.timer ??= setInterval(() => this.refresh(), this.everyMs).unref()
  }

  refresh(): void {
    const next = this.fitted()
    if (next.length === 0 && this.drawn.length === 0) this.pause()
    else if (next.join('\n') !== this.drawn.join('\n')) this.stream.write(this.erase() + this.draw(next))
  }

  /** Removes the live lines and stops redrawing. */
  stop(): void {
    this.pause()
    const erase = this.erase()
    if (erase) this.stream.write(erase)
  }

  private pause(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Each line cut to the terminal's width: a wrapped line would throw off the count to go back up. */
  private fitted(): string[] {
    const width = Math.max(10, (this.stream.columns || 80) - 1)
    return this.lines().map((line) => [...line].slice(0, width).join(''))
  }

  private erase(): string {
    const up = this.drawn.length
    this.drawn = []
    return up === 0 ? '' : `\r\x1b[${up}A\x1b[J`
  }

  private draw(lines: string[]): string {
    this.drawn = lines
    return lines.map((l) => `${l}\n`).join('')
  }
}
