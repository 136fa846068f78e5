// A `traceparent` on the upgrade request puts its trace id on every log line of that
// session (and so on its OTel records); without one, each session gets its own.

import t from 'tap'
import { TestClient, startProxy } from '../helpers/proxy.js'

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'

async function sessionLines (url: string, logs: Array<Record<string, unknown>>, headers: Record<string, string> = {}): Promise<Array<Record<string, unknown>>> {
  const client = await TestClient.connect(url, { headers })
  const welcome = await client.next('Welcome')
  await client.close()
  const id = welcome.request_id as string
  const deadline = Date.now() + 5000
  while (!logs.some((line) => line.sessionId === id && line.msg === 'client closed') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return logs.filter((line) => line.sessionId === id && line.traceId !== undefined)
}

t.test('the traceparent trace id is on the session\'s log lines', async (t) => {
  const { url, logs } = await startProxy(t)
  const lines = await sessionLines(url, logs, { traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` })
  t.ok(lines.length > 0, 'the session logged with its trace context')
  for (const line of lines) t.equal(line.traceId, TRACE_ID)
  t.not(lines[0]?.spanId, '00f067aa0ba902b7', 'the session has a span of its own under that trace')
})

t.test('without a traceparent each session gets its own trace id', async (t) => {
  const { url, logs } = await startProxy(t)
  const first = await sessionLines(url, logs)
  const second = await sessionLines(url, logs)
  t.match(first[0]?.traceId, /^[0-9a-f]{32}$/)
  t.match(second[0]?.traceId, /^[0-9a-f]{32}$/)
  t.not(first[0]?.traceId, second[0]?.traceId)
})
