import { PassThrough, Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { stallGuard, withinLimit } from '#core/deadline.ts'
import { StallError } from '#core/errors.ts'

const sink = (into: Buffer[]) =>
  new Writable({
    write(chunk, _e, cb) {
      into.push(chunk)
      cb()
    },
  })

describe('Function: stallGuard', () => {
  it('fails a pipeline whose source stops sending, naming what stalled, after the limit and not before', async () => {
    // Prepare: a source that sends one chunk and then nothing, without ending
    const source = new PassThrough()
    source.write('first')
    const received: Buffer[] = []
    const started = Date.now()
    // Act
    const outcome = await pipeline(source, stallGuard('read of s3://b/k', 200), sink(received)).catch(
      (e) => e,
    )
    // Assess
    const waited = Date.now() - started
    expect(outcome).toBeInstanceOf(StallError)
    expect(outcome.message).toBe('read of s3://b/k: no progress for 200 ms')
    expect(Buffer.concat(received).toString()).toBe('first')
    expect(waited).toBeGreaterThanOrEqual(190)
    expect(source.destroyed).toBe(true)
  })

  it('lets a slow stream through when every gap is shorter than the limit', async () => {
    // Prepare: five chunks 60 ms apart against a 200 ms limit
    const source = Readable.from(
      (async function* () {
        for (let i = 0; i < 5; i++) {
          await sleep(60)
          yield Buffer.from(String(i))
        }
      })(),
    )
    const received: Buffer[] = []
    // Act
    await pipeline(source, stallGuard('slow', 200), sink(received))
    // Assess
    expect(Buffer.concat(received).toString()).toBe('01234')
  })

  it('stops its timer when the stream ends: no StallError afterwards', async () => {
    // Prepare
    const guard = stallGuard('ended', 50)
    const errors: unknown[] = []
    guard.on('error', (e) => errors.push(e))
    // Act
    await pipeline(Readable.from([Buffer.from('x')]), guard, sink([]))
    await sleep(120)
    // Assess
    expect(errors).toEqual([])
    expect(guard.destroyed).toBe(true)
  })
})

describe('Function: withinLimit', () => {
  it('turns work that never answers into a StallError and aborts its signal', async () => {
    // Prepare
    let seen: AbortSignal | undefined
    // Act
    const outcome: Error = await withinLimit<never>(
      'ssm GetParameter',
      (signal) => {
        seen = signal
        return new Promise(() => {}) // never settles, ignores the signal
      },
      100,
    ).catch((e) => e)
    // Assess
    expect(outcome).toBeInstanceOf(StallError)
    expect(outcome.message).toContain('ssm GetParameter: no answer within')
    expect(seen?.aborted).toBe(true)
  })

  it("returns the work's result when it finishes in time, and follows the parent's abort", async () => {
    // Prepare
    const parent = new AbortController()
    // Act
    const value = await withinLimit('quick', async () => 42, 1000)
    const aborted = withinLimit(
      'parent',
      (signal) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
        ),
      5000,
      parent.signal,
    )
    parent.abort(new Error('step deadline'))
    // Assess
    expect(value).toBe(42)
    await expect(aborted).rejects.toThrow('step deadline')
  })
})
