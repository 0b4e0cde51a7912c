import { randomBytes } from 'node:crypto'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type FaultProxy, startFaultProxy } from './faultProxy.ts'

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  await within(Promise.all(cleanups.splice(0).map((f) => f())), 5000, 'cleanup')
})

/** A loopback server; `received` holds what each connection sent, in order of connection. */
async function startServer(onConnection: (s: Socket) => void) {
  const received: Buffer[][] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    const chunks: Buffer[] = []
    received.push(chunks)
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('error', () => {})
    onConnection(s)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => {
    for (const s of sockets) s.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as AddressInfo
  return { host: '127.0.0.1', port, received: () => received.map((c) => Buffer.concat(c)) }
}

/** A server that sends `payload` to every connection, then ends it. */
const sending = (payload: Buffer) => startServer((s) => s.end(payload))
/** A server that echoes every byte back. */
const echoing = () => startServer((s) => s.pipe(s))

async function proxyTo(...args: Parameters<typeof startFaultProxy>): Promise<FaultProxy> {
  const proxy = await startFaultProxy(...args)
  cleanups.push(() => proxy.close())
  return proxy
}

/** A client connected through the proxy, recording what it receives and how its connection ends. */
async function dial(proxy: FaultProxy) {
  const socket = connect(proxy.port, proxy.host)
  const chunks: Buffer[] = []
  let ended: { code?: string } | undefined
  socket.on('data', (d: Buffer) => chunks.push(d))
  socket.on('error', () => {})
  const closed = new Promise<{ code?: string }>((resolve) =>
    socket.on('close', () => {
      ended = { code: (socket.errored as NodeJS.ErrnoException | null)?.code }
      resolve(ended)
    }),
  )
  cleanups.push(async () => socket.destroy())
  await within(new Promise((resolve) => socket.once('connect', resolve)), 2000, 'connect')
  return { socket, closed, received: () => Buffer.concat(chunks), ended: () => ended }
}

/** `promise`, or a failure naming `what` after `ms`; leaves no timer behind. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `condition` until it holds, failing after `ms`. */
async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms
  while (!condition()) {
    if (performance.now() > end) throw new Error(`no ${what} within ${ms} ms`)
    await sleep(5)
  }
}

/** The pending timers set for between `ms` - 1000 and `ms`: the proxy's delay timers, not vitest's own. */
function watchTimers(ms: number): Set<unknown> {
  const pending = new Set<unknown>()
  const { setTimeout: set, clearTimeout: clear } = globalThis
  vi.spyOn(globalThis, 'setTimeout').mockImplementation(((
    fn: (...a: unknown[]) => void,
    wait = 0,
    ...args: unknown[]
  ) => {
    const timer = set(() => {
      pending.delete(timer)
      fn(...args)
    }, wait)
    if (wait > ms - 1000 && wait <= ms) pending.add(timer)
    return timer
  }) as typeof setTimeout)
  vi.spyOn(globalThis, 'clearTimeout').mockImplementation((timer) => {
    pending.delete(timer)
    clear(timer)
  })
  cleanups.push(async () => vi.restoreAllMocks())
  return pending
}

describe('Function: startFaultProxy', () => {
  it('passes every byte both ways unchanged', async () => {
    // Prepare
    const target = await echoing()
    const proxy = await proxyTo(target)
    const payload = randomBytes(3_000_000)
    // Act
    const client = await dial(proxy)
    client.socket.end(payload)
    const end = await within(client.closed, 5000, 'close')
    // Assess
    expect(end.code).toBeUndefined()
    expect(target.received()[0]!.equals(payload)).toBe(true)
    expect(client.received().equals(payload)).toBe(true)
    expect(proxy.bytes()).toEqual({ upstream: payload.length, downstream: payload.length })
    await until(() => proxy.connections().open === 0, 2000, 'the proxy forgetting its connection')
    expect(proxy.connections().total).toBe(1)
  })

  it('reads no faster than the client takes the bytes', async () => {
    // Prepare: a target that offers 64 MiB, one 64 KiB chunk whenever its socket takes more
    let offered = 0
    const chunk = Buffer.alloc(64 * 1024)
    const target = await startServer((s) =>
      Readable.from(
        (function* () {
          for (; offered < 64 * 2 ** 20; offered += chunk.length) yield chunk
        })(),
      ).pipe(s),
    )
    const proxy = await proxyTo(target)
    // Act: a client that never reads
    const client = await dial(proxy)
    client.socket.pause()
    await sleep(500)
    // Assess: the target could hand over about what the kernel's buffers hold, not everything
    expect(proxy.bytes().downstream).toBeGreaterThan(0)
    expect(offered).toBeLessThan(32 * 2 ** 20)
  })

  it('cuts downstream after exactly N bytes, splitting the chunk that crosses the boundary', async () => {
    // Prepare
    const payload = randomBytes(200_000)
    const proxy = await proxyTo(await sending(payload), { kind: 'cut', afterBytes: 12_345 })
    // Act
    const client = await dial(proxy)
    await within(client.closed, 5000, 'close')
    // Assess
    expect(client.received().length).toBe(12_345)
    expect(client.received().equals(payload.subarray(0, 12_345))).toBe(true)
    expect(proxy.bytes().downstream).toBe(12_345)
  })

  it('cuts upstream after exactly N bytes: the target receives N and its connection ends', async () => {
    // Prepare
    const target = await echoing()
    const proxy = await proxyTo(target, { kind: 'cut', afterBytes: 1000, direction: 'upstream' })
    const payload = randomBytes(50_000)
    // Act
    const client = await dial(proxy)
    client.socket.write(payload)
    await within(client.closed, 5000, 'close')
    // Assess
    expect(target.received()[0]!.equals(payload.subarray(0, 1000))).toBe(true)
    expect(client.received().length).toBeLessThanOrEqual(1000)
    expect(proxy.bytes().upstream).toBe(1000)
  })

  it('with direction both, counts the bytes of both directions together', async () => {
    // Prepare
    const target = await echoing()
    const proxy = await proxyTo(target, { kind: 'cut', afterBytes: 150, direction: 'both' })
    const payload = randomBytes(100)
    // Act: 100 bytes go up, the echo's first 50 come back
    const client = await dial(proxy)
    client.socket.write(payload)
    await within(client.closed, 5000, 'close')
    // Assess
    expect(target.received()[0]!.equals(payload)).toBe(true)
    expect(client.received().equals(payload.subarray(0, 50))).toBe(true)
    expect(proxy.bytes()).toEqual({ upstream: 100, downstream: 50 })
  })

  it('closes the client when the target refuses the connection', async () => {
    // Prepare: a port nobody listens on
    const gone = await echoing()
    await cleanups.pop()!()
    const proxy = await proxyTo(gone)
    // Act
    const client = await dial(proxy)
    await within(client.closed, 5000, 'close')
    // Assess
    expect(client.received().length).toBe(0)
    await until(() => proxy.connections().open === 0, 2000, 'the proxy forgetting its connection')
  })

  it('stalls after exactly N bytes with the socket left open, and resumes on setFault', async () => {
    // Prepare
    const payload = randomBytes(200_000)
    const proxy = await proxyTo(await sending(payload), { kind: 'stall', afterBytes: 5000 })
    // Act
    const client = await dial(proxy)
    await until(() => client.received().length >= 5000, 5000, '5000 bytes')
    await sleep(300)
    // Assess: nothing more, still open
    expect(client.received().length).toBe(5000)
    expect(client.received().equals(payload.subarray(0, 5000))).toBe(true)
    expect(client.ended()).toBeUndefined()
    expect(client.socket.destroyed).toBe(false)
    expect(proxy.connections().open).toBe(1)
    // Act: lift the stall
    proxy.setFault({ kind: 'pass' })
    await within(client.closed, 5000, 'close')
    // Assess: the rest arrives, in order
    expect(client.received().equals(payload)).toBe(true)
  })

  it('applies a fault to an open connection counting from setFault', async () => {
    // Prepare
    const target = await echoing()
    const proxy = await proxyTo(target)
    const client = await dial(proxy)
    client.socket.write(randomBytes(100))
    await until(() => client.received().length === 100, 5000, 'the echo')
    // Act
    proxy.setFault({ kind: 'cut', afterBytes: 50, direction: 'upstream' })
    client.socket.write(randomBytes(100))
    await within(client.closed, 5000, 'close')
    // Assess
    expect(target.received()[0]!.length).toBe(150)
  })

  it('delays every chunk by at least the given ms, each way', async () => {
    // Prepare
    const proxy = await proxyTo(await echoing(), { kind: 'delay', ms: 150 })
    const client = await dial(proxy)
    // Act
    const start = performance.now()
    client.socket.write('ping')
    await until(() => client.received().length === 4, 5000, 'the echo')
    const elapsed = performance.now() - start
    // Assess
    expect(client.received().toString()).toBe('ping')
    expect(elapsed).toBeGreaterThanOrEqual(300)
  })

  it('with times: 1 faults only the first connection; later ones pass', async () => {
    // Prepare
    const payload = randomBytes(100_000)
    const proxy = await proxyTo(await sending(payload), { kind: 'cut', afterBytes: 10, times: 1 })
    // Act
    const received: number[] = []
    for (let i = 0; i < 3; i++) {
      const client = await dial(proxy)
      await within(client.closed, 5000, 'close')
      received.push(client.received().length)
    }
    // Assess
    expect(received).toEqual([10, 100_000, 100_000])
    await until(() => proxy.connections().open === 0, 2000, 'the proxy forgetting its connections')
    expect(proxy.connections().total).toBe(3)
  })

  it('close() with a stalled connection resolves promptly, closes the client and leaves no timer', async () => {
    // Prepare: a connection stalled mid-stream; on another proxy, a chunk waiting out a long delay
    const stalledProxy = await proxyTo(await sending(randomBytes(2_000_000)), {
      kind: 'stall',
      afterBytes: 5000,
    })
    const stalled = await dial(stalledProxy)
    await until(() => stalled.received().length === 5000, 5000, '5000 bytes')
    const timers = watchTimers(45_678)
    const delayedProxy = await proxyTo(await echoing(), { kind: 'delay', ms: 45_678 })
    const delayed = await dial(delayedProxy)
    delayed.socket.write('y')
    await until(() => timers.size > 0, 2000, 'the delay timer')
    // Act
    const start = performance.now()
    await within(
      Promise.all([stalledProxy.close(), stalledProxy.close(), delayedProxy.close()]),
      1000,
      'close()',
    )
    // Assess
    expect(performance.now() - start).toBeLessThan(1000)
    await within(Promise.all([stalled.closed, delayed.closed]), 1000, 'client close')
    expect(stalledProxy.connections()).toEqual({ total: 1, open: 0 })
    expect(delayed.received().length).toBe(0)
    expect(timers.size).toBe(0)
  })
})
