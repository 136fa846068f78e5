// Issue #5, part 2: upstream faults. Each fault gives the client an Error with a clear
// code, then a close code and reason that say what happened; afterwards nothing is
// left: no session in the registry or /connections, no socket, no session timer.

import t from 'tap'
import type { Test } from 'tap'
import { BASIC_SETTINGS, TestClient, configuredClient, startProxy } from '../helpers/proxy.js'
import type { TestProxy } from '../helpers/proxy.js'
import { eventually, noSessionsLeft, tcpHandles, trackSessionTimers, within } from '../fixtures/leaks.js'
import { blackholeUpstream, refusingUpstream, scriptedUpstream, statusUpstream } from '../fixtures/upstreams.js'

const timers = trackSessionTimers()
t.teardown(() => timers.stop())

interface Outcome { error: Record<string, unknown>, close: { code: number, reason: string } }

/** Connects, sends Settings, and collects the Error and the close the fault produces. */
async function faultOutcome (proxied: TestProxy, settings = true): Promise<Outcome> {
  const client = await TestClient.connect(proxied.url)
  if (settings) client.send(BASIC_SETTINGS)
  const close = await within(client.closed, 'the client to be closed')
  const errors = client.all('Error')
  if (errors.length !== 1) throw new Error(`expected one Error, got ${JSON.stringify(errors)}`)
  return { error: errors[0] as Record<string, unknown>, close }
}

async function leftNothing (t: Test, proxied: TestProxy, baseline: number): Promise<void> {
  await noSessionsLeft(proxied, baseline)
  await eventually(() => timers.live() === 0, `session timers to be gone (${timers.live()} left)`)
  t.pass('no session, socket or timer left')
}

t.test('connection refused: UPSTREAM_UNAVAILABLE, 1013', async (t) => {
  const upstream = await refusingUpstream()
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url } })
  const baseline = tcpHandles()
  const { error, close } = await faultOutcome(proxied)
  t.equal(error.code, 'UPSTREAM_UNAVAILABLE')
  t.match(error.description, /could not be reached/)
  t.same(close, { code: 1013, reason: 'upstream unreachable' })
  await leftNothing(t, proxied, baseline)
})

for (const [status, code, closeCode] of [[401, 'UPSTREAM_UNAUTHORIZED', 1011], [403, 'UPSTREAM_UNAUTHORIZED', 1011], [429, 'UPSTREAM_RATE_LIMITED', 1013], [503, 'UPSTREAM_UNAVAILABLE', 1013]] as const) {
  t.test(`HTTP ${status} at the upgrade: ${code}, ${closeCode}`, async (t) => {
    const upstream = await statusUpstream(t, status)
    const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url } })
    const baseline = tcpHandles()
    const { error, close } = await faultOutcome(proxied)
    t.equal(error.code, code)
    t.match(error.description, `HTTP ${status}`)
    t.same(close, { code: closeCode, reason: `upstream refused (HTTP ${status})` })
    await leftNothing(t, proxied, baseline)
  })
}

t.test('a handshake that never completes: UPSTREAM_TIMEOUT after UPSTREAM_CONNECT_TIMEOUT_MS', async (t) => {
  const upstream = await blackholeUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, UPSTREAM_CONNECT_TIMEOUT_MS: '300' } })
  const baseline = tcpHandles()
  const started = Date.now()
  const { error, close } = await faultOutcome(proxied)
  const elapsed = Date.now() - started
  t.ok(elapsed >= 250 && elapsed < 3000, `gave up after the connect timeout (${elapsed} ms)`)
  t.equal(upstream.connections, 1, 'the TCP connection was accepted; only the upgrade hung')
  t.equal(error.code, 'UPSTREAM_TIMEOUT')
  t.same(close, { code: 1013, reason: 'upstream connect timeout' })
  await leftNothing(t, proxied, baseline)
})

t.test('the upstream closes with 1000 in the middle of a response: UPSTREAM_CLOSED, 1000', async (t) => {
  const proxied = await startProxy(t, { script: { audioChunks: 50, chunkIntervalMs: 20 } })
  const baseline = tcpHandles()
  const client = await configuredClient(proxied.url)
  const connection = await proxied.sim.nextConnection()
  client.send({ type: 'InjectUserMessage', content: 'Tell me a long story' })
  await client.next('AgentStartedSpeaking')
  t.ok(proxied.proxy.sessions.size === 1 && [...proxied.proxy.sessions][0]?.summary().responseInProgress, 'a response is in progress')
  connection.close(1000, 'upstream says bye')
  const close = await within(client.closed, 'the client to be closed')
  const error = client.all('Error')
  t.equal(error.length, 1)
  t.equal(error[0]?.code, 'UPSTREAM_CLOSED')
  t.match(error[0]?.description, /ended the session normally/)
  t.notMatch(error[0]?.description, 'upstream says bye', 'the upstream\'s own reason text is never passed on')
  t.same(close, { code: 1000, reason: 'upstream closed (1000)' })
  await leftNothing(t, proxied, baseline)
})

for (const code of [1001, 1011]) {
  t.test(`the upstream closes with ${code} in the middle of a response and no new connection is accepted: three attempts, then UPSTREAM_UNAVAILABLE, and nothing left`, async (t) => {
    const proxied = await startProxy(t, { script: { audioChunks: 50, chunkIntervalMs: 20 } })
    const baseline = tcpHandles()
    const client = await configuredClient(proxied.url)
    const connection = await proxied.sim.nextConnection()
    client.send({ type: 'InjectUserMessage', content: 'Tell me a long story' })
    await client.until(() => client.audio.length >= 15, 'some of the answer heard')
    proxied.sim.refuseUpgrades = 503
    connection.close(code, 'upstream says bye')
    const close = await within(client.closed, 'the client to be closed')
    const error = client.all('Error')
    t.equal(error.length, 1)
    t.equal(error[0]?.code, 'UPSTREAM_UNAVAILABLE')
    t.notMatch(JSON.stringify(client.messages), 'upstream says bye', 'the upstream\'s own reason text is never passed on')
    t.equal(close.code, 1013, 'try again later')
    t.equal(client.all('AgentAudioDone').length, 1, 'the interrupted audio ended for the client')
    const told = client.all('ConversationText').filter((m) => m.role === 'assistant')
    t.equal(told.length, 1, 'what was heard of it was told')
    t.ok(told[0]?.content.length > 0 && 'You said: Tell me a long story.'.startsWith(told[0]?.content) && told[0]?.content !== 'You said: Tell me a long story.', `a beginning of the answer, not all of it: "${told[0]?.content}"`)
    const attempts = proxied.logs.filter((line) => line.msg === 'opening a new upstream connection')
    t.equal(attempts.length, 3, 'three reconnects were tried')
    await leftNothing(t, proxied, baseline)
  })
}

t.test('garbage text and binary frames are ignored; the session goes on', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  ws.send('this is not JSON {')
  ws.send('{"no":"type"}')
  ws.send('[1,2,3]')
  ws.send(Buffer.from([1, 2, 3, 4]), { binary: true })
  ws.send(JSON.stringify({ type: 'conversation.item.input_audio_transcription.completed', event_id: 'e1', item_id: 'i1', content_index: 0, transcript: 'still here' }))
  const text = await client.next('ConversationText')
  t.equal(text.content, 'still here', 'a valid event after the garbage still reaches the client')
  t.same(client.all('Error'), [], 'garbage is not the client\'s problem')
  const received = [...proxied.proxy.sessions][0]?.summary().upstream.received
  t.equal(received?.invalid, 3, 'counted as invalid')
  t.equal(received?.binary, 1, 'binary counted')
  t.ok(proxied.logs.some((line) => line.msg === 'upstream sent a frame that is not a JSON event; ignored'), 'logged')
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('an invalid WebSocket frame: UPSTREAM_PROTOCOL_ERROR, 1011, without waiting for a close handshake', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url } })
  const baseline = tcpHandles()
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  // Opcode 0x3 is reserved: no WebSocket API sends it, so write the frame raw.
  ;(ws as unknown as { _socket: { write: (b: Buffer) => void } })._socket.write(Buffer.from([0x83, 0x00]))
  const close = await within(client.closed, 'the client to be closed')
  const error = client.all('Error')
  t.equal(error.length, 1)
  t.equal(error[0]?.code, 'UPSTREAM_PROTOCOL_ERROR')
  t.match(error[0]?.description, /invalid WebSocket frame/)
  t.same(close, { code: 1011, reason: 'upstream protocol error' })
  await leftNothing(t, proxied, baseline)
})

t.test('a frame over MAX_UPSTREAM_FRAME_BYTES: UPSTREAM_PROTOCOL_ERROR, 1011', async (t) => {
  const upstream = await scriptedUpstream(t)
  const limit = 1024 * 1024
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_UPSTREAM_FRAME_BYTES: String(limit) } })
  const baseline = tcpHandles()
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  ws.send(JSON.stringify({ type: 'response.output_text.delta', delta: 'x'.repeat(limit) }))
  const close = await within(client.closed, 'the client to be closed')
  const error = client.all('Error')
  t.equal(error.length, 1)
  t.equal(error[0]?.code, 'UPSTREAM_PROTOCOL_ERROR')
  t.match(error[0]?.description, `larger than ${limit} bytes (MAX_UPSTREAM_FRAME_BYTES)`)
  t.same(close, { code: 1011, reason: 'upstream protocol error' })
  await leftNothing(t, proxied, baseline)
})

t.test('an upstream that stops answering pings: reconnected; when every new connection is unresponsive too, UPSTREAM_UNRESPONSIVE, 1011', async (t) => {
  const upstream = await scriptedUpstream(t, { autoPong: false })
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, UPSTREAM_PING_INTERVAL_MS: '100' } })
  const baseline = tcpHandles()
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  let pings = 0
  ws.on('ping', () => pings++)
  ws.once('close', () => { ws.removeAllListeners('ping') })
  const close = await within(client.closed, 'the client to be closed')
  t.equal(pings, 1, 'one unanswered ping is enough')
  const error = client.all('Error')
  t.equal(error.length, 1)
  t.equal(error[0]?.code, 'UPSTREAM_UNRESPONSIVE')
  t.same(close, { code: 1011, reason: 'upstream unresponsive' })
  t.equal(proxied.logs.filter((line) => line.msg === 'opening a new upstream connection').length, 3, 'three new connections were tried')
  await leftNothing(t, proxied, baseline)
})

t.test('an upstream that answers pings stays connected', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, UPSTREAM_PING_INTERVAL_MS: '50' } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  let pings = 0
  ws.on('ping', () => pings++)
  await eventually(() => pings >= 5, 'five pings')
  t.equal(client.ws.readyState, client.ws.OPEN, 'still open after five answered pings')
  t.same(client.all('Error'), [])
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('no pings when UPSTREAM_PING_INTERVAL_MS=0', async (t) => {
  const upstream = await scriptedUpstream(t, { autoPong: false })
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, UPSTREAM_PING_INTERVAL_MS: '0' } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  let pings = 0
  ws.on('ping', () => pings++)
  // A barrier through the upstream: an event sent after 300 ms comes back to the client.
  await new Promise((resolve) => setTimeout(resolve, 300))
  ws.send(JSON.stringify({ type: 'conversation.item.input_audio_transcription.completed', event_id: 'e1', item_id: 'i1', content_index: 0, transcript: 'quiet' }))
  await client.next('ConversationText')
  t.equal(pings, 0)
  await client.close()
  await noSessionsLeft(proxied)
})
