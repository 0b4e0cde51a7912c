import { createServer, type IncomingMessage, request, type Server } from 'node:http'

/** Which S3 requests a fault hits: by method and by what the URL holds (`partNumber=`, `uploadId=`, a key). */
export interface S3Fault {
  method?: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'HEAD'
  /** Every one of these must appear in the request's path and query. */
  urlIncludes?: string[]
  /** The answer instead of S3's: 500 InternalError, 503 ServiceUnavailable or 503 SlowDown. */
  status: 500 | 503
  code: 'InternalError' | 'ServiceUnavailable' | 'SlowDown'
  /** How many matching requests get the fault; the ones after pass. */
  times: number
}

export interface S3FaultProxy {
  /** The endpoint to give the pipeline (AWS_ENDPOINT_URL_S3). */
  endpoint: string
  inject(fault: S3Fault): void
  /** Faults answered so far, as `METHOD path?query status code`. */
  injected(): string[]
  close(): Promise<void>
}

/**
 * An HTTP proxy in front of the local S3 endpoint that answers chosen requests with S3's own
 * error responses (500/503/SlowDown), the way S3 does under load, and forwards everything else.
 */
export async function startS3FaultProxy(target: string): Promise<S3FaultProxy> {
  const upstream = new URL(target)
  const faults: S3Fault[] = []
  const log: string[] = []
  const matches = (f: S3Fault, req: IncomingMessage) =>
    f.times > 0 &&
    (!f.method || f.method === req.method) &&
    (f.urlIncludes ?? []).every((part) => (req.url ?? '').includes(part))
  const server: Server = createServer((req, res) => {
    const fault = faults.find((f) => matches(f, req))
    if (fault) {
      fault.times--
      log.push(`${req.method} ${req.url} ${fault.status} ${fault.code}`)
      req.resume() // read and drop the body, as S3 does before it answers
      req.on('end', () => {
        res.writeHead(fault.status, { 'content-type': 'application/xml', connection: 'close' })
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected</Message></Error>`,
        )
      })
      return
    }
    const forward = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    forward.on('error', () => res.destroy())
    req.pipe(forward)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    inject: (fault) => faults.push({ ...fault }),
    injected: () => [...log],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
