import { createServer, type Server } from 'node:http'

/** A real HTTP server standing in for Slack's incoming webhook: records every message it receives. */
export async function startSlackSink(): Promise<{
  url: string
  messages: { text: string; raw: string }[]
  close(): Promise<void>
}> {
  const messages: { text: string; raw: string }[] = []
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => {
      body += c
    })
    req.on('end', () => {
      const parsed = JSON.parse(body) as { text?: string }
      messages.push({ text: parsed.text ?? '', raw: body })
      res.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  return {
    // The path looks like a real hook so that redaction of webhook URLs is exercised too.
    url: `http://127.0.0.1:${port}/services/T000/B000/${'x'.repeat(24)}`,
    messages,
    close: () => new Promise((r) => server.close(() => r())),
  }
}
