// A local HTTP server standing in for a server-side function's endpoint: it answers
// with the test's handler and records every request it got.

import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface Seen { method: string, url: string, headers: IncomingMessage['headers'], body: string }

/** A local HTTP server answering with `handler`, recording every request. */
export async function endpointServer (t: Teardown, handler: (request: IncomingMessage, response: ServerResponse, body: string) => void): Promise<{ base: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const http = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => { body += chunk })
    request.on('end', () => {
      seen.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body })
      handler(request, response, body)
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    http.closeAllConnections()
    await new Promise((resolve) => http.close(resolve))
  })
  return { base: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, seen }
}

export function json (response: ServerResponse, status: number, value: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value))
}
