import { connect, createServer, type Socket } from 'node:net'

type Direction = 'upstream' | 'downstream'

/**
 * What the proxy does to a connection. `direction` says which bytes count: `downstream` (target -> client,
 * the default), `upstream` (client -> target) or `both` together.
 * - cut: once `afterBytes` have been forwarded, forwards nothing more and ends both sockets (the peers see
 *   EOF, or ECONNRESET); the chunk that crosses the boundary is split, so exactly `afterBytes` arrive.
 * - stall: once `afterBytes` have been forwarded, forwards nothing more either way and stops reading (so the
 *   senders feel TCP backpressure); both sockets stay open. A later setFault resumes the connection.
 * - delay: each chunk is forwarded `ms` after it arrived, in order; a chunk already waiting keeps its time.
 * `times`: the number of connections the fault applies to; the connections after those pass.
 */
export type Fault =
  | { kind: 'pass' }
  | { kind: 'cut'; afterBytes: number; direction?: Direction | 'both'; times?: number }
  | { kind: 'stall'; afterBytes: number; direction?: Direction | 'both'; times?: number }
  | { kind: 'delay'; ms: number }

export interface FaultProxy {
  readonly host: string
  readonly port: number
  /**
   * Replaces the fault of the open connections (oldest first; cut ones excepted, stalled ones resume) and of
   * new ones; `times` counts both, so an idle keep-alive connection takes a turn. Bytes count from this
   * call: `afterBytes` means that many more bytes.
   */
  setFault(fault: Fault): void
  /** Bytes forwarded since the start, all connections together. */
  bytes(): { upstream: number; downstream: number }
  /** Connections accepted since the start, and those still open. */
  connections(): { total: number; open: number }
  /** Destroys every socket, stalled ones included, and stops listening. Idempotent. */
  close(): Promise<void>
}

interface Leg {
  from: Socket
  to: Socket
  queue: { at: number; data: Buffer }[]
  ended: boolean
  timer?: NodeJS.Timeout
}
interface Conn {
  legs: Record<Direction, Leg>
  fault: Fault
  since: Record<Direction, number>
  /** 'cut' once cut or closed: nothing is forwarded any more. */
  state: 'open' | 'stalled' | 'cut'
  /** Settles once both sockets have closed and the connection is forgotten. */
  done?: Promise<void>
}

const PASS: Fault = { kind: 'pass' }
const DIRECTIONS = ['upstream', 'downstream'] as const

/** A TCP proxy on 127.0.0.1 (a free port) to `target` that injects faults; only ever connects to `target`. */
export async function startFaultProxy(
  target: { host: string; port: number },
  fault: Fault = PASS,
): Promise<FaultProxy> {
  const conns = new Set<Conn>()
  const total = { upstream: 0, downstream: 0 }
  let accepted = 0
  let current: Fault = PASS
  let remaining = Number.POSITIVE_INFINITY
  let closing: Promise<void> | undefined

  const take = (): Fault => (remaining-- >= 1 ? current : PASS)

  /** Bytes the connection may still forward in direction `d` before its fault trips. */
  function left({ fault: f, since }: Conn, d: Direction): number {
    if (f.kind !== 'cut' && f.kind !== 'stall') return Number.POSITIVE_INFINITY
    const dir = f.direction ?? 'downstream'
    if (dir !== 'both' && dir !== d) return Number.POSITIVE_INFINITY
    return f.afterBytes - (dir === 'both' ? since.upstream + since.downstream : since[dir])
  }

  /** Cuts or stalls the connection once its fault's bytes have flowed. */
  function trip(c: Conn) {
    if (Math.min(left(c, 'upstream'), left(c, 'downstream')) > 0) return
    c.state = c.fault.kind === 'cut' ? 'cut' : 'stalled'
    if (c.state === 'stalled') return
    for (const leg of Object.values(c.legs)) {
      clearTimeout(leg.timer)
      leg.queue.length = 0
      // Ends once what was forwarded is flushed; reading on (and dropping) keeps the close free of an RST.
      leg.to.end(() => leg.to.destroy())
    }
  }

  function send(c: Conn, d: Direction, data: Buffer) {
    const n = Math.min(data.length, left(c, d))
    if (n > 0) c.legs[d].to.write(n < data.length ? data.subarray(0, n) : data)
    c.since[d] += n
    total[d] += n
    if (n < data.length) c.legs[d].queue.unshift({ at: 0, data: data.subarray(n) })
    trip(c)
  }

  /** Forwards what is due, in order, while the connection is open and the receiver keeps up. */
  function pump(c: Conn, d: Direction) {
    const leg = c.legs[d]
    clearTimeout(leg.timer)
    leg.timer = undefined
    while (c.state === 'open' && !leg.to.writableNeedDrain) {
      const next = leg.queue[0]
      if (!next) {
        if (leg.ended && !leg.to.writableEnded) leg.to.end()
        break
      }
      const wait = next.at - performance.now()
      if (wait > 0) {
        leg.timer = setTimeout(() => pump(c, d), wait)
        break
      }
      leg.queue.shift()
      send(c, d, next.data)
    }
    for (const { from, to } of Object.values(c.legs)) {
      if (c.state === 'stalled' || (c.state === 'open' && to.writableNeedDrain)) from.pause()
      else from.resume()
    }
  }

  function assign(c: Conn) {
    if (c.state === 'cut') return
    c.fault = take()
    c.since = { upstream: 0, downstream: 0 }
    c.state = 'open'
    trip(c)
    for (const d of DIRECTIONS) pump(c, d)
  }

  function setFault(f: Fault) {
    const n = f.kind === 'delay' ? f.ms : f.kind === 'pass' ? 0 : f.afterBytes
    if (!(n >= 0)) throw new RangeError(`startFaultProxy: bad fault ${JSON.stringify(f)}`)
    current = f
    remaining = (f.kind === 'cut' || f.kind === 'stall' ? f.times : undefined) ?? Number.POSITIVE_INFINITY
    for (const c of conns) assign(c)
  }

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    accepted++
    if (closing) {
      client.destroy()
      return
    }
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    const leg = (from: Socket, to: Socket): Leg => ({ from, to, queue: [], ended: false })
    const c: Conn = {
      legs: { upstream: leg(client, upstream), downstream: leg(upstream, client) },
      fault: PASS,
      since: { upstream: 0, downstream: 0 },
      state: 'open',
    }
    conns.add(c)
    for (const d of DIRECTIONS) {
      const { from, to, queue } = c.legs[d]
      from.on('data', (data: Buffer) => {
        if (c.state === 'cut') return
        queue.push({ at: performance.now() + (c.fault.kind === 'delay' ? c.fault.ms : 0), data })
        pump(c, d)
      })
      from.on('end', () => {
        c.legs[d].ended = true
        pump(c, d)
      })
      to.on('drain', () => pump(c, d))
    }
    const closed = [client, upstream].map((s) => {
      s.on('error', () => {}) // a reset on one side is passed on to the other below
      return new Promise<void>((resolve) =>
        s.on('close', (hadError) => {
          if (hadError) for (const t of [client, upstream]) t.destroy()
          resolve()
        }),
      )
    })
    c.done = Promise.all(closed).then(() => {
      c.state = 'cut'
      for (const l of Object.values(c.legs)) clearTimeout(l.timer)
      conns.delete(c)
    })
    assign(c)
  })

  setFault(fault)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as { port: number }

  return {
    host: '127.0.0.1',
    port,
    setFault,
    bytes: () => ({ ...total }),
    connections: () => ({ total: accepted, open: conns.size }),
    close() {
      closing ??= (async () => {
        const stopped = new Promise((resolve) => server.close(resolve))
        for (const c of conns) {
          c.state = 'cut'
          for (const l of Object.values(c.legs)) {
            clearTimeout(l.timer)
            l.from.destroy()
          }
        }
        await Promise.all([stopped, ...[...conns].map((c) => c.done)])
      })()
      return closing
    },
  }
}
