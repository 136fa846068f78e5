// Issue #5, part 1: bad client input. Each case gets the documented Error/Warning or a
// clean close with a code (and a reason where the proxy decides), and the process and
// every other session keep working.

import t from 'tap'
import type { Test } from 'tap'
import { BASIC_SETTINGS, TestClient, configuredClient, startProxy } from '../helpers/proxy.js'
import type { TestProxy } from '../helpers/proxy.js'
import { eventually, noSessionsLeft, within } from '../fixtures/leaks.js'
import { closeFrames, rawWebSocket } from '../fixtures/raw-ws.js'
import { scriptedUpstream } from '../fixtures/upstreams.js'

/** A bystander session must still get a whole turn through after the bad client's trouble. */
async function stillServes (t: Test, proxied: TestProxy, bystander: TestClient): Promise<void> {
  bystander.send({ type: 'InjectUserMessage', content: 'Are you still there?' })
  await bystander.next('AgentAudioDone')
  const health = await fetch(`${proxied.base}/healthz`)
  t.equal(health.status, 200, 'the process still serves')
}

async function metric (proxied: TestProxy, line: string): Promise<number> {
  const text = await (await fetch(`${proxied.base}/metrics`)).text()
  const found = text.split('\n').find((l) => l.startsWith(line + ' '))
  return found === undefined ? 0 : Number(found.slice(line.length + 1))
}

// Warnings, not Errors: Deepgram's clients treat every Error as the end of the session.
t.test('malformed JSON, non-objects and unknown types: Warning UNPARSABLE_CLIENT_MESSAGE, the session goes on', async (t) => {
  const proxied = await startProxy(t)
  const client = await TestClient.connect(proxied.url)
  const bad = ['{not json', '', 'null', '[]', '"Settings"', '42', '{"type":5}', '{"no_type":true}', '{"type":"Nonsense"}']
  for (const text of bad) client.ws.send(text)
  await client.until(() => client.all('Warning').length === bad.length, `${bad.length} Warnings`)
  t.ok(client.all('Warning').every((m) => m.code === 'UNPARSABLE_CLIENT_MESSAGE'), 'every one is UNPARSABLE_CLIENT_MESSAGE')
  t.match(client.all('Warning').at(-1)?.description, /Unknown message type "Nonsense"/)
  client.send({ type: 'AgentKeepAlive' })
  await client.until(() => client.all('Warning').length === bad.length + 1, 'the Warning for AgentKeepAlive')
  t.equal(client.all('Warning').at(-1)?.code, 'UNSUPPORTED_MESSAGE', 'a known but unsupported type is a Warning')
  t.same(client.all('Error'), [])
  client.send(BASIC_SETTINGS)
  await client.next('SettingsApplied')
  t.pass('Settings after all that still configures the session')
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('wrong field types: a Warning naming the field, nothing forwarded, the session goes on', async (t) => {
  const proxied = await startProxy(t)
  const client = await configuredClient(proxied.url)
  const connection = await proxied.sim.nextConnection()
  const before = connection.received.length
  const wrong = [
    { type: 'UpdatePrompt', prompt: 5 },
    { type: 'UpdateSpeak', speak: 'alloy' },
    { type: 'UpdateThink', think: [] },
    { type: 'UpdateThink', think: { functions: 'not an array' } },
    { type: 'UpdateListen', listen: 'nova-3' },
    { type: 'InjectUserMessage', content: { text: 'hi' } },
    { type: 'InjectAgentMessage', message: null },
    { type: 'FunctionCallResponse', id: 7, content: 'x' }
  ]
  for (const message of wrong) client.send(message)
  await client.until(() => client.all('Warning').length === wrong.length, `${wrong.length} Warnings`)
  const descriptions = client.all('Warning').map((m) => `${String(m.code)}: ${String(m.description)}`)
  t.match(descriptions, [/"prompt"/, /"speak"/, /"think"/, /^INVALID_SETTINGS: .*functions/, /"listen"/, /"content"/, /"message"/, /"id"/])
  t.same(client.all('Error'), [], 'no Error: the session goes on')
  t.equal(connection.received.length, before, 'nothing went upstream')
  client.send({ type: 'InjectUserMessage', content: 'hello' })
  await client.next('AgentAudioDone')
  t.pass('the session still works')
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('Settings the proxy cannot serve, even a later one: an Error, then close 1008 with a reason', async (t) => {
  const proxied = await startProxy(t)
  for (const [settings, code, reason] of [
    [{ type: 'Settings', agent: { think: { functions: 'not an array' } } }, 'INVALID_SETTINGS', 'invalid settings'],
    [{ type: 'Settings', audio: { input: { encoding: 'opus', sample_rate: 48000 } } }, 'UNSUPPORTED_AUDIO_FORMAT', 'unsupported audio format']
  ] as const) {
    const client = await configuredClient(proxied.url)
    client.send(settings)
    const error = await client.next('Error')
    t.equal(error.code, code)
    t.same(await client.closed, { code: 1008, reason })
  }
  await noSessionsLeft(proxied)
})

t.test('binary before Settings is held (bounded) and flushed in order; odd-length frames carry over', async (t) => {
  // The simulator keeps only the size of appends; this upstream keeps their audio.
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { MAX_PENDING_AUDIO_BYTES: '1000', OPENAI_REALTIME_URL: upstream.url } })
  const client = await TestClient.connect(proxied.url)
  for (let i = 0; i < 4; i++) client.sendAudio(Buffer.alloc(301, i + 1)) // 1204 bytes: the last frame goes over
  client.send(BASIC_SETTINGS)
  await client.next('SettingsApplied')
  const warning = await client.next('Warning')
  t.equal(warning.code, 'AUDIO_BUFFER_FULL')
  t.match(warning.description, 'More than 1000 bytes')
  client.sendAudio(Buffer.alloc(3, 9))
  const expected = Buffer.concat([Buffer.alloc(301, 1), Buffer.alloc(301, 2), Buffer.alloc(301, 3), Buffer.alloc(3, 9)])
  const appended = (): Buffer => Buffer.concat(upstream.received.filter((e) => e.type === 'input_audio_buffer.append').map((e) => Buffer.from(e.audio as string, 'base64')))
  await eventually(() => appended().length >= (expected.length & ~1), 'the appends')
  const audio = appended()
  t.same(audio, expected.subarray(0, expected.length & ~1), 'held frames in order, the over-limit one dropped, odd bytes carried over')
  t.ok(await metric(proxied, 'dgproxy_dropped_frames_total{reason="audio_before_ready"}') >= 1, 'the drop is counted')
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('Settings twice: both applied', async (t) => {
  const proxied = await startProxy(t)
  const client = await configuredClient(proxied.url)
  client.send({ ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, prompt: 'Second prompt.' } } })
  await client.next('SettingsApplied')
  const connection = await proxied.sim.nextConnection()
  t.equal(connection.session.instructions, 'Second prompt.')
  t.same(client.all('Error'), [])
  await client.close()
})

t.test('a frame over MAX_CLIENT_FRAME_BYTES: closed with 1009 before it is read; other sessions unaffected', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_CLIENT_FRAME_BYTES: '1024' } })
  const bystander = await configuredClient(proxied.url)
  const client = await configuredClient(proxied.url)
  client.sendAudio(Buffer.alloc(1025))
  const close = await within(client.closed, 'the client to be closed')
  t.equal(close.code, 1009, 'Message Too Big')
  // A hand-written client claims 1 GiB and sends nothing more: refused from the header alone.
  const raw = await rawWebSocket(proxied.url)
  raw.socket.write(Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]))
  await raw.ended
  t.same(closeFrames(raw.received()).map((f) => f.code), [1009], 'closed from the header, the payload never awaited')
  t.equal(await metric(proxied, 'dgproxy_dropped_frames_total{reason="client_frame_too_large"}'), 2, 'counted')
  await stillServes(t, proxied, bystander)
  await bystander.close()
  await noSessionsLeft(proxied)
})

t.test('frames after the client\'s close frame are ignored; the session ends cleanly', async (t) => {
  const proxied = await startProxy(t)
  const raw = await rawWebSocket(proxied.url)
  raw.frame(0x1, JSON.stringify(BASIC_SETTINGS))
  raw.frame(0x8, Buffer.from([0x03, 0xe8]))
  raw.frame(0x1, JSON.stringify({ type: 'InjectUserMessage', content: 'too late' }))
  raw.frame(0x2, Buffer.alloc(480))
  raw.frame(0x1, '{garbage')
  await raw.ended
  t.same(closeFrames(raw.received()).map((f) => f.code), [1000], 'the close is answered')
  await noSessionsLeft(proxied)
  const connection = proxied.sim.connections[0]
  t.notOk(connection?.received.some((e) => e.type === 'conversation.item.create'), 'nothing after the close frame went upstream')
})

t.test('a text-message flood: Error CLIENT_MESSAGE_RATE_EXCEEDED, close 1008; audio does not count; others unaffected', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_CLIENT_MESSAGES_PER_SECOND: '20' } })
  const bystander = await configuredClient(proxied.url)
  const streamer = await configuredClient(proxied.url)
  for (let i = 0; i < 200; i++) streamer.sendAudio(Buffer.alloc(480))
  const flooder = await configuredClient(proxied.url)
  for (let i = 0; i < 200; i++) flooder.send({ type: 'KeepAlive' })
  const close = await within(flooder.closed, 'the flooder to be closed')
  t.same(close, { code: 1008, reason: 'message rate limit exceeded' })
  t.equal(flooder.all('Error').at(-1)?.code, 'CLIENT_MESSAGE_RATE_EXCEEDED')
  const summary = (await (await fetch(`${proxied.base}/connections`)).json() as { connections: Array<{ client: { received: Record<string, number> } }> }).connections
  t.ok(summary.some((s) => s.client.received.binary === 200), '200 audio frames in a burst did not trip the limit')
  t.equal(streamer.ws.readyState, streamer.ws.OPEN)
  await stillServes(t, proxied, bystander)
  await Promise.all([bystander.close(), streamer.close()])
  await noSessionsLeft(proxied)
})
