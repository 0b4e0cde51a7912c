/**
 * Progress of long work (bytes dumped, rows exported). On Lambda nobody watches, so the default
 * sink does nothing; the local CLI installs one that draws on stderr.
 */
export interface ProgressEvent {
  state: string
  what: string
  bytes?: number
  totalBytes?: number
}

type Sink = (event: ProgressEvent) => void

let sink: Sink = () => {}

export function setProgressSink(next: Sink | undefined): void {
  sink = next ?? (() => {})
}

/** A reporter for one piece of work that emits at most every `everyMs`. */
export function progressReporter(state: string, what: string, totalBytes?: number, everyMs = 500) {
  let last = 0
  return (bytes: number) => {
    const now = Date.now()
    if (now - last < everyMs) return
    last = now
    sink({ state, what, bytes, totalBytes })
  }
}
