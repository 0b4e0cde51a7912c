import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { NotifyError } from '#core/errors.ts'
import { freePort } from '#devtools/servers.ts'
import { failureMessage, postToSlack } from '#notify/slack.ts'

/** What the fake Slack answers, one entry per request; the last one repeats. */
type Answer = { status: number; body?: string; headers?: Record<string, string>; hang?: boolean }

let server: Server
let base: string
let answers: Answer[] = []
const received: { path: string; contentType: string; body: unknown }[] = []

// A real HTTP server on loopback, standing in for hooks.slack.com.
beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
      })
      const answer = (answers.length > 1 ? answers.shift() : answers[0]) ?? { status: 200 }
      if (answer.hang) return
      res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers })
      res.end(answer.body ?? 'ok')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

beforeEach(() => {
  received.length = 0
  answers = [{ status: 200 }]
})

const TOKEN = 'T000/B000/XXXXXXXXXXXXXXXXsecret'
const webhook = () => `${base}/services/${TOKEN}`
const message = failureMessage({
  stateMachine: 'restore',
  failedState: 'VerifyChecksums',
  error: 'ChecksumMismatchError',
  cause: 'postgres.dump differs',
  backupIds: { postgres: '20261125T020000.000Z' },
  region: 'us-east-1',
})

/** The error a failing post rejects with. */
async function failureOf(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: Error) => e,
  )
  if (!error) throw new Error('expected the post to fail')
  return error
}

describe('Function: postToSlack', () => {
  it('posts the message as JSON to the webhook', async () => {
    // Act
    await postToSlack(webhook(), message)
    // Assess
    expect(received).toEqual([{ path: `/services/${TOKEN}`, contentType: 'application/json', body: message }])
  })

  it('retries once after a 500 and succeeds', async () => {
    answers = [{ status: 500, body: 'internal_error' }, { status: 200 }]
    await postToSlack(webhook(), message)
    expect(received).toHaveLength(2)
    expect(received[1]!.body).toEqual(message)
  })

  it('retries once after a 429, honouring Retry-After up to the cap', async () => {
    // Prepare: an hour-long Retry-After would outlast the test; the cap makes it short
    answers = [{ status: 429, body: 'rate_limited', headers: { 'retry-after': '3600' } }, { status: 200 }]
    // Act
    await postToSlack(webhook(), message, { maxRetryAfterMs: 50 })
    // Assess
    expect(received).toHaveLength(2)
  })

  it('gives up after the second 5xx with a NotifyError that does not contain the webhook', async () => {
    answers = [{ status: 503, body: `upstream failed for ${webhook()}` }]
    const error = await failureOf(postToSlack(webhook(), message, { maxRetryAfterMs: 0 }))
    expect(error).toBeInstanceOf(NotifyError)
    expect(error.message).toMatch(/^Slack answered 503 Service Unavailable/)
    expect(error.message).not.toContain(TOKEN)
    expect(received).toHaveLength(2)
  })

  it('does not retry a 404 and never puts the URL in the error', async () => {
    answers = [{ status: 404, body: 'no_service' }]
    const error = await failureOf(postToSlack(webhook(), message))
    expect(error).toBeInstanceOf(NotifyError)
    expect(error.message).toBe('Slack answered 404 Not Found: no_service')
    expect(JSON.stringify({ message: error.message, stack: error.stack, cause: error.cause })).not.toContain(
      TOKEN,
    )
    expect(received).toHaveLength(1)
  })

  it('treats a redirect as a failure instead of following it', async () => {
    answers = [{ status: 302, headers: { location: `${base}/elsewhere` } }]
    await expect(postToSlack(webhook(), message)).rejects.toThrow(/Slack answered 302/)
    expect(received.map((r) => r.path)).toEqual([`/services/${TOKEN}`])
  })

  it('fails with a NotifyError when Slack does not answer in time', async () => {
    answers = [{ status: 200, hang: true }]
    const error = await failureOf(postToSlack(webhook(), message, { timeoutMs: 200 }))
    expect(error).toBeInstanceOf(NotifyError)
    expect(error.message).toBe('Slack did not answer within 200 ms')
    expect(received).toHaveLength(1)
  })

  it('names the host but not the path when nothing listens, after one retry', async () => {
    // Prepare: a port nobody listens on
    const port = await freePort()
    const url = `http://127.0.0.1:${port}/services/${TOKEN}`
    // Act
    const error = await failureOf(postToSlack(url, message, { maxRetryAfterMs: 0 }))
    // Assess
    expect(error).toBeInstanceOf(NotifyError)
    expect(error.message).toBe(`cannot reach Slack at 127.0.0.1:${port}: ECONNREFUSED`)
  })

  it('refuses a malformed webhook URL without echoing it', async () => {
    const error = await failureOf(postToSlack(`not a url ${TOKEN}`, message))
    expect(error).toBeInstanceOf(NotifyError)
    expect(error.message).not.toContain(TOKEN)
    expect(received).toHaveLength(0)
  })

  it('stops when the caller aborts', async () => {
    answers = [{ status: 200, hang: true }]
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 100)
    const error = await failureOf(postToSlack(webhook(), message, { signal: controller.signal }))
    expect(error).toBeInstanceOf(NotifyError)
    expect(error.message).toBe('posting to Slack was aborted')
  })
})
