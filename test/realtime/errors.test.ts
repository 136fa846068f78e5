// docs/protocol.md §3, the error rows: upstream `error` events and upstream closes, on
// real sockets. An upstream error's message text never reaches the client (it can
// carry internals); its structured code does. A refused request is a Warning (the
// session goes on); an Error is always followed by the close.

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, barrier, configuredClient, errorsOf, startProxy } from '../helpers/proxy.js'
import type { SimConnection, SimScript } from '../../lib/simulator/index.js'
import { replayed as itemsAcknowledged } from '../helpers/conversation.js'

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

t.test('upstream error on an injected item → Warning with the upstream code, never its message; the session continues', async (t) => {
  const { client, conn } = await session(t, { rejectNext: [{ type: 'conversation.item.create', code: 'invalid_value', message: SECRET }] })
  client.send({ type: 'InjectUserMessage', content: 'First try' })
  const error = await client.next('Warning')
  t.equal(error.code, 'invalid_value')
  t.type(error.description, 'string')
  t.ok(error.description.length > 0)
  t.notMatch(error.description, 'internal-shard-7')
  t.notMatch(error.description, 'sk-live')
  await barrier(client)
  t.equal(conn.count('response.create'), 0, 'no response for a refused item')
  client.send({ type: 'InjectUserMessage', content: 'Second try' })
  await client.until(() => client.all('ConversationText').at(-1)?.content === 'You said: Second try.', 'the answer to the second try')
  t.same(errorsOf(client), [], 'no Error: the session went on')
  t.equal(client.ws.readyState, client.ws.OPEN)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('upstream error on a session.update after setup → Warning, no PromptUpdated, the session continues', async (t) => {
  const { client, conn } = await session(t)
  conn.script.rejectNext.push({ type: 'session.update', code: 'unknown_parameter', message: SECRET })
  client.send({ type: 'UpdatePrompt', prompt: 'Speak like a pirate.' })
  const error = await client.next('Warning')
  t.equal(error.code, 'unknown_parameter')
  t.notMatch(error.description, 'internal-shard-7')
  t.equal(client.all('PromptUpdated').length, 0)
  // The refused change is not taken as applied: asking again sends it again.
  client.send({ type: 'UpdatePrompt', prompt: 'Speak like a pirate.' })
  await client.next('PromptUpdated')
  t.equal(conn.session.instructions, 'You are a helpful test agent.\n\nSpeak like a pirate.')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('upstream error on response.create → Warning with its code; the next turn works', async (t) => {
  const { client, conn } = await session(t, { rejectNext: [{ type: 'response.create', code: 'rate_limit_exceeded', message: SECRET }] })
  client.send({ type: 'InjectUserMessage', content: 'Hello?' })
  const error = await client.next('Warning')
  t.equal(error.code, 'rate_limit_exceeded')
  t.notMatch(error.description, 'internal-shard-7')
  client.send({ type: 'InjectUserMessage', content: 'Hello again' })
  await client.next('AgentAudioDone')
  t.equal(conn.count('response.create'), 2)
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('an unsolicited upstream server error → Warning with its structured code (or type), never its message', async (t) => {
  const { client, conn } = await session(t)
  conn.send({ type: 'error', error: { type: 'server_error', code: null, message: SECRET, param: null, event_id: null } })
  const error = await client.next('Warning')
  t.equal(error.code, 'server_error')
  t.notMatch(error.description, 'internal-shard-7')
  client.send({ type: 'InjectUserMessage', content: 'Still here?' })
  await client.next('AgentAudioDone')
  t.same(errorsOf(client), [])
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

for (const [upstreamCode, clientCode] of [[4000, 1011], [1000, 1000], [1008, 1011]] as const) {
  t.test(`upstream closes with ${upstreamCode} (no new connection cures it) → Error UPSTREAM_CLOSED, then the client is closed with ${clientCode} and a reason`, async (t) => {
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

for (const upstreamCode of [1001, 1011, 1012, 1013, 1006]) {
  const endsSession = upstreamCode === 1001
  t.test(`upstream ${upstreamCode === 1006 ? 'dropped without a close frame' : `closes with ${upstreamCode}`} at a quiet moment → a new connection carries the conversation on, ${endsSession ? 'unseen (the upstream ended the session: a renewal)' : 'one UPSTREAM_RECONNECTED Warning'}`, async (t) => {
    const { url, sim, base } = await startProxy(t)
    const client = await configuredClient(url)
    t.teardown(() => client.close())
    const first = await sim.nextConnection()
    client.send({ type: 'InjectUserMessage', content: 'Remember the word lighthouse' })
    await client.next('AgentAudioDone')
    await client.until(() => client.all('ConversationText').length === 2, 'the first turn told')
    first.close(upstreamCode, 'going away')
    const second = await sim.nextConnection()
    if (!endsSession) t.equal((await client.next('Warning')).code, 'UPSTREAM_RECONNECTED')
    await itemsAcknowledged(second, 2)
    t.equal(second.count('session.update'), 1, 'the new upstream gets the session\'s configuration')
    t.equal(second.session.instructions, first.session.instructions)
    // The conversation so far is replayed into it: the user's words and the answer heard.
    const replayed = second.received.filter((e) => e.type === 'conversation.item.create').map((e) => [e.item.role, e.item.content?.[0]?.text])
    t.same(replayed, [['user', 'Remember the word lighthouse'], ['assistant', 'You said: Remember the word lighthouse.']])
    client.send({ type: 'InjectUserMessage', content: 'What did I say first?' })
    await client.until(() => client.all('ConversationText').length === 4, 'the answer from the new upstream')
    t.match(client.all('ConversationText')[3], { role: 'assistant', content: /lighthouse/ }, 'the new upstream knows what was said before the drop')
    t.same(errorsOf(client), [])
    t.same(client.all('Warning').map((w) => w.code), endsSession ? [] : ['UPSTREAM_RECONNECTED'])
    const listing = await (await fetch(`${base}/connections`)).json() as { connections: Array<{ upstream: { connects: number } }> }
    t.equal(listing.connections[0]?.upstream.connects, 2, '/connections counts the upstream connections')
    t.same(sim.violations(), NO_VIOLATIONS)
  })
}

t.test('upstream closes with 1011 and every reconnect is refused → the last failure\'s Error, then the close', async (t) => {
  const { url, sim, base } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  sim.refuseUpgrades = 503
  conn.close(1011, 'server error')
  const closed = await client.closed
  t.same(errorsOf(client).map((e) => e.code), ['UPSTREAM_UNAVAILABLE'])
  t.equal(client.all('Warning').length, 0, 'no UPSTREAM_RECONNECTED: it never came back')
  t.ok([1011, 1013].includes(closed.code), `closed ${closed.code} ${closed.reason}`)
  t.equal(sim.connections.length, 1, 'no connection accepted after the first')
  t.ok(await sessionEnds(base))
})

t.test('upstream closes mid-response (closeAfter response.create, 1001: OpenAI\'s 60 minutes) → the request is made again on a new connection and answered', async (t) => {
  const { client, conn } = await session(t, { chunkIntervalMs: 20 })
  conn.script.closeAfter = { type: 'response.create', code: 1001, reason: 'Your session hit the maximum duration of 60 minutes.' }
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the answer')
  t.match(client.all('ConversationText'), [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'You said: Hello.' }], 'answered once')
  t.same(client.all('Warning').map((w) => w.code), ['UPSTREAM_RECONNECTED'])
  t.same(errorsOf(client), [])
})

t.test('an upstream that closes after every response.create: three reconnects in a streak, then the Error and the close', async (t) => {
  const { url, sim } = await startProxy(t, { script: { closeAfter: { type: 'response.create', code: 1011 } } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  const closed = await client.closed
  t.same(errorsOf(client).map((e) => e.code), ['UPSTREAM_CLOSED'])
  t.equal(closed.code, 1011)
  t.equal(client.all('Warning').filter((w) => w.code === 'UPSTREAM_RECONNECTED').length, 3, 'each reconnect said so')
  t.equal(sim.connections.length, 4, 'the first connection and three more, no endless loop')
})
