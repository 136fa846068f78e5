// docs/protocol.md §3, the error rows: upstream `error` events and upstream closes, on
// real sockets. An upstream error's message text never reaches the client (it can
// carry internals); its structured code does.

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, barrier, configuredClient, errorsOf, startProxy } from '../helpers/proxy.js'
import type { SimConnection, SimScript } from '../../lib/simulator/index.js'

const SECRET = 'internal-shard-7 said: key sk-live-REDACTED'

async function session (t: Test, script: Partial<SimScript> = {}): Promise<{ client: TestClient, conn: SimConnection, base: string }> {
  const { url, sim, base } = await startProxy(t, { script })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  return { client, conn, base }
}

/** Polls `GET /connections` until no session is listed (both legs of a session close asynchronously). */
async function sessionEnds (base: string, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const listing = await (await fetch(`${base}/connections`)).json() as { connections: unknown[] }
    if (listing.connections.length === 0) return true
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return false
}

t.test('upstream error on an injected item → Error with the upstream code, never its message; the session continues', async (t) => {
  const { client, conn } = await session(t, { rejectNext: [{ type: 'conversation.item.create', code: 'invalid_value', message: SECRET }] })
  client.send({ type: 'InjectUserMessage', content: 'First try' })
  const error = await client.next('Error')
  t.equal(error.code, 'invalid_value')
  t.type(error.description, 'string')
  t.ok(error.description.length > 0)
  t.notMatch(error.description, 'internal-shard-7')
  t.notMatch(error.description, 'sk-live')
  await barrier(client)
  t.equal(conn.count('response.create'), 0, 'no response for a refused item')
  client.send({ type: 'InjectUserMessage', content: 'Second try' })
  await client.next('AgentAudioDone')
  t.equal(client.all('ConversationText').at(-1)?.content, 'You said: Second try.')
  t.equal(client.ws.readyState, client.ws.OPEN)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('upstream error on a session.update after setup → Error, no PromptUpdated, the session continues', async (t) => {
  const { client, conn } = await session(t)
  conn.script.rejectNext.push({ type: 'session.update', code: 'unknown_parameter', message: SECRET })
  client.send({ type: 'UpdatePrompt', prompt: 'Speak like a pirate.' })
  const error = await client.next('Error')
  t.equal(error.code, 'unknown_parameter')
  t.notMatch(error.description, 'internal-shard-7')
  t.equal(client.all('PromptUpdated').length, 0)
  // The refused change is not taken as applied: asking again sends it again.
  client.send({ type: 'UpdatePrompt', prompt: 'Speak like a pirate.' })
  await client.next('PromptUpdated')
  t.equal(conn.session.instructions, 'You are a helpful test agent.\n\nSpeak like a pirate.')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('upstream error on response.create → Error with its code; the next turn works', async (t) => {
  const { client, conn } = await session(t, { rejectNext: [{ type: 'response.create', code: 'rate_limit_exceeded', message: SECRET }] })
  client.send({ type: 'InjectUserMessage', content: 'Hello?' })
  const error = await client.next('Error')
  t.equal(error.code, 'rate_limit_exceeded')
  t.notMatch(error.description, 'internal-shard-7')
  client.send({ type: 'InjectUserMessage', content: 'Hello again' })
  await client.next('AgentAudioDone')
  t.equal(conn.count('response.create'), 2)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('an unsolicited upstream server error → Error with its structured code (or type), never its message', async (t) => {
  const { client, conn } = await session(t)
  conn.send({ type: 'error', error: { type: 'server_error', code: null, message: SECRET, param: null, event_id: null } })
  const error = await client.next('Error')
  t.equal(error.code, 'server_error')
  t.notMatch(error.description, 'internal-shard-7')
  client.send({ type: 'InjectUserMessage', content: 'Still here?' })
  await client.next('AgentAudioDone')
  t.equal(client.ws.readyState, client.ws.OPEN)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('the first session.update refused upstream → Error with its code, then the client is closed', async (t) => {
  const { url, sim } = await startProxy(t, { script: { rejectNext: [{ type: 'session.update', code: 'invalid_value', message: SECRET }] } })
  const client = await TestClient.connect(url)
  client.send(BASIC_SETTINGS)
  const error = await client.next('Error')
  t.equal(error.code, 'invalid_value')
  t.notMatch(error.description, 'internal-shard-7')
  const closed = await client.closed
  t.equal(closed.code, 1008)
  t.ok(closed.reason.length > 0, `a reason: ${closed.reason}`)
  t.notMatch(closed.reason, 'internal-shard-7')
  t.equal(client.all('SettingsApplied').length, 0)
  t.same(sim.violations(), NO_VIOLATIONS)
})

for (const [upstreamCode, clientCode] of [[1011, 1011], [1001, 1001], [4000, 1011], [1000, 1000]] as const) {
  t.test(`upstream closes with ${upstreamCode} → Error UPSTREAM_CLOSED, then the client is closed with ${clientCode} and a reason`, async (t) => {
    const { client, conn, base } = await session(t)
    const order: string[] = []
    client.ws.on('message', (data: Buffer, isBinary) => { if (!isBinary) order.push(JSON.parse(data.toString()).type) })
    client.ws.on('close', () => order.push('close'))
    conn.close(upstreamCode, 'upstream going away')
    const closed = await client.closed
    t.equal(closed.code, clientCode)
    t.ok(closed.reason.length > 0, `a reason: ${closed.reason}`)
    t.same(order, ['Error', 'close'], 'the Error comes first')
    const error = client.all('Error')[0]
    t.equal(error?.code, 'UPSTREAM_CLOSED')
    t.type(error?.description, 'string')
    t.ok(await sessionEnds(base), 'the session is gone from /connections')
  })
}

t.test('upstream closes mid-response (closeAfter response.create, 1001) → Error then close 1001', async (t) => {
  const { client } = await session(t, { closeAfter: { type: 'response.create', code: 1001, reason: 'session expired' }, chunkIntervalMs: 20 })
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  const closed = await client.closed
  t.equal(closed.code, 1001)
  t.ok(closed.reason.length > 0)
  t.same(errorsOf(client).map((e) => e.code), ['UPSTREAM_CLOSED'])
  t.match(errorsOf(client)[0]?.description, /maximum duration|going away/)
})

t.test('upstream dropped without a close frame → Error UPSTREAM_CLOSED, client closed with 1011', async (t) => {
  const { client } = await session(t, { closeAfter: { type: 'conversation.item.create', code: 1006 } })
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  const closed = await client.closed
  t.equal(closed.code, 1011)
  t.ok(closed.reason.length > 0)
  t.same(errorsOf(client).map((e) => e.code), ['UPSTREAM_CLOSED'])
})
