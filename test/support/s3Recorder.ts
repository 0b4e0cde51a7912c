import { createServer, type IncomingMessage, request, type Server } from 'node:http'

/** One request as it crossed the proxy: what S3 was asked, and the If-None-Match it carried. */
export interface RecordedS3Request {
  method: string
  /** Path and query, e.g. `/bucket/key?uploadId=…`. */
  url: string
  ifNoneMatch: string | undefined
  /** The status the client got. */
  status: number
}

export interface S3Recorder {
  /** The endpoint to give the code (AWS_ENDPOINT_URL_S3). */
  endpoint: string
  requests: RecordedS3Request[]
  close(): Promise<void>
}

/** PutObject (not a part, not a copy) or CompleteMultipartUpload: the writes S3 checks If-None-Match on. */
function isObjectWrite(req: IncomingMessage): boolean {
  const url = req.url ?? ''
  if (req.method === 'PUT') return !url.includes('partNumber=') && !req.headers['x-amz-copy-source']
  return req.method === 'POST' && url.includes('uploadId=')
}

/**
 * An HTTP proxy in front of the local S3 endpoint that records every request with its
 * If-None-Match header. s3rver 3.7 ignores If-None-Match on writes (it answers 304 to it on GET
 * only) and overwrites; with `enforceIfNoneMatch` the proxy gives S3's answer instead — 412
 * PreconditionFailed when the key exists — so that what our code does with it can be tested.
 */
export async function startS3Recorder(
  target: string,
  opts: { enforceIfNoneMatch?: boolean } = {},
): Promise<S3Recorder> {
  const upstream = new URL(target)
  const requests: RecordedS3Request[] = []
  const forward = (req: IncomingMessage) =>
    request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
    })

  const exists = (req: IncomingMessage) =>
    new Promise<boolean>((resolve, reject) => {
      const path = (req.url ?? '').split('?')[0]!
      const head = request({ host: upstream.hostname, port: upstream.port, method: 'HEAD', path }, (res) => {
        res.resume()
        resolve(res.statusCode === 200)
      })
      head.on('error', reject)
      head.end()
    })

  const server: Server = createServer(async (req, res) => {
    const ifNoneMatch = req.headers['if-none-match'] as string | undefined
    const entry: RecordedS3Request = { method: req.method ?? '', url: req.url ?? '', ifNoneMatch, status: 0 }
    requests.push(entry)
    if (opts.enforceIfNoneMatch && ifNoneMatch === '*' && isObjectWrite(req) && (await exists(req))) {
      entry.status = 412
      req.resume() // S3 reads the body before it answers
      req.on('end', () => {
        res.writeHead(412, { 'content-type': 'application/xml' })
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>' +
            '<Message>At least one of the pre-conditions you specified did not hold</Message>' +
            '<Condition>If-None-Match</Condition></Error>',
        )
      })
      return
    }
    const out = forward(req)
    out.on('response', (answer) => {
      entry.status = answer.statusCode ?? 502
      res.writeHead(entry.status, answer.headers)
      answer.pipe(res)
    })
    out.on('error', () => res.destroy())
    req.pipe(out)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
