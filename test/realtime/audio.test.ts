// docs/protocol.md §4 and the audio rows of §2 and §3: client audio → input_audio_buffer.append
// and agent audio → binary frames, per format, on real sockets. The simulator's
// `echoAudio` mode sends every append back as agent audio, so a byte-exact round trip
// proves both legs carried the bytes unchanged.

import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, arrivals, errorsOf, startProxy } from '../helpers/proxy.js'
import { audioChunk } from '../../lib/simulator/audio.js'
import type { SimConnection, SimScript } from '../../lib/simulator/index.js'

function withAudio (input: Record<string, unknown>, output: Record<string, unknown>): Record<string, unknown> {
  return { ...BASIC_SETTINGS, audio: { input, output: { container: 'none', ...output } } }
}

async function session (t: Test, settings: Record<string, unknown>, script: Partial<SimScript> = {}): Promise<{ client: TestClient, conn: SimConnection }> {
  const { url, sim } = await startProxy(t, { script })
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send(settings)
  await client.next('SettingsApplied')
  return { client, conn }
}

function appendSizes (conn: SimConnection): number[] {
  return conn.received.filter((e) => e.type === 'input_audio_buffer.append').map((e) => e.audioBytes)
}

async function echoed (client: TestClient, bytes: number): Promise<Buffer> {
  await client.until(() => Buffer.concat(client.audio).length >= bytes, `${bytes} bytes of echoed audio`)
  return Buffer.concat(client.audio)
}

const total = (sizes: number[]): number => sizes.reduce((a, b) => a + b, 0)

t.test('linear16 @ 24000 passes through: appends carry the exact bytes, agent audio comes back byte-exact', async (t) => {
  const { client, conn } = await session(t, withAudio({ encoding: 'linear16', sample_rate: 24000 }, { encoding: 'linear16', sample_rate: 24000 }), { echoAudio: true })
  const update = conn.received[0]
  t.same(update.session.audio.input.format, { type: 'audio/pcm', rate: 24000 })
  t.same(update.session.audio.output.format, { type: 'audio/pcm', rate: 24000 })
  const frames = [randomBytes(960), randomBytes(4800), randomBytes(2)]
  for (const frame of frames) client.sendAudio(frame)
  const back = await echoed(client, 5762)
  t.same(appendSizes(conn), [960, 4800, 2], 'one append per frame, same sizes')
  t.ok(back.equals(Buffer.concat(frames)), 'byte-exact round trip')
  t.ok(client.audio.every((frame) => frame.length % 2 === 0), 'agent frames have even lengths')
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('linear16 @ 16000 is resampled to 24 kHz (about 1.5 × the bytes), in even appends', async (t) => {
  const { client, conn } = await session(t, withAudio({ encoding: 'linear16', sample_rate: 16000 }, { encoding: 'linear16', sample_rate: 24000 }))
  t.same(conn.received[0].session.audio.input.format, { type: 'audio/pcm', rate: 24000 })
  const sent = 5 * 3200
  for (let i = 0; i < 5; i++) client.sendAudio(randomBytes(3200))
  await client.until(() => total(appendSizes(conn)) >= 1.5 * sent - 6, 'the resampled appends')
  const sizes = appendSizes(conn)
  t.equal(sizes.length, 5)
  t.ok(sizes.every((n) => n % 2 === 0), 'whole samples only')
  t.ok(Math.abs(total(sizes) - 1.5 * sent) <= 6, `≈ 1.5 × ${sent} bytes (got ${total(sizes)})`)
  t.same(conn.violations, NO_VIOLATIONS)
})

for (const [encoding, format] of [['mulaw', 'audio/pcmu'], ['alaw', 'audio/pcma']] as const) {
  t.test(`${encoding} maps to ${format}, bytes unchanged both ways`, async (t) => {
    const { client, conn } = await session(t, withAudio({ encoding, sample_rate: 8000 }, { encoding, sample_rate: 8000 }), { echoAudio: true })
    t.same(conn.received[0].session.audio.input.format, { type: format })
    t.same(conn.received[0].session.audio.output.format, { type: format })
    // G.711 is one byte per sample: odd frame sizes are normal.
    const frames = [randomBytes(160), randomBytes(333), randomBytes(1)]
    for (const frame of frames) client.sendAudio(frame)
    const back = await echoed(client, 494)
    t.same(appendSizes(conn), [160, 333, 1])
    t.ok(back.equals(Buffer.concat(frames)), 'byte-exact round trip')
    t.same(conn.violations, NO_VIOLATIONS)
  })
}

t.test('audio before SettingsApplied is held and flushed in order, never before session.updated', async (t) => {
  const { url, sim } = await startProxy(t, { script: { echoAudio: true, sessionUpdatedDelayMs: 200 } })
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  const frames = [randomBytes(480), randomBytes(960), randomBytes(240), randomBytes(1920)]
  client.sendAudio(frames[0]!) // even before Settings
  client.send({ type: 'KeepAlive' })
  client.send(BASIC_SETTINGS)
  client.sendAudio(frames[1]!)
  client.send({ type: 'KeepAlive' })
  client.sendAudio(frames[2]!)
  await client.next('SettingsApplied')
  client.sendAudio(frames[3]!)
  const back = await echoed(client, 3600)
  t.same(appendSizes(conn), [480, 960, 240, 1920], 'flushed in order, then live audio')
  t.ok(back.equals(Buffer.concat(frames)), 'every byte, in order')
  t.equal(conn.count('KeepAlive'), 0)
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS, 'no append before session.updated')
})

t.test('odd byte counts are carried over between frames', async (t) => {
  const { client, conn } = await session(t, BASIC_SETTINGS, { echoAudio: true })
  const frames = [randomBytes(1), randomBytes(3)]
  for (const frame of frames) client.sendAudio(frame)
  const back = await echoed(client, 4)
  t.same(appendSizes(conn), [4], '1 + 3 bytes → one 4-byte append')
  t.ok(back.equals(Buffer.concat(frames)))

  const more = [randomBytes(3), randomBytes(1), randomBytes(5), randomBytes(1)]
  for (const frame of more) client.sendAudio(frame)
  const all = await echoed(client, 14)
  t.same(appendSizes(conn), [4, 2, 2, 4, 2], 'even appends; the odd byte joins the next frame')
  t.ok(all.equals(Buffer.concat([...frames, ...more])), 'no byte lost or reordered')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('agent audio at 24 kHz is passed through byte-exact, after AgentStartedSpeaking', async (t) => {
  const { client, conn } = await session(t, BASIC_SETTINGS, { audioChunks: 4 })
  const order = arrivals(client)
  client.send({ type: 'InjectUserMessage', content: 'Say something' })
  await client.next('AgentAudioDone')
  const chunk = Buffer.from(audioChunk({ type: 'audio/pcm', rate: 24000 }).base64, 'base64')
  const deltas = conn.sent.filter((e) => e.type === 'response.output_audio.delta')
  t.equal(deltas.length, 4)
  t.ok(deltas.every((d) => d.audioBytes === chunk.length))
  t.ok(Buffer.concat(client.audio).equals(Buffer.concat([chunk, chunk, chunk, chunk])), 'exactly what the simulator sent')
  t.same(order.filter((type) => type === 'AgentStartedSpeaking' || type === 'binary' || type === 'AgentAudioDone'),
    ['AgentStartedSpeaking', 'binary', 'binary', 'binary', 'binary', 'AgentAudioDone'])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('agent audio for a 16 kHz client is resampled from 24 kHz, in even frames', async (t) => {
  const { client, conn } = await session(t, withAudio({ encoding: 'linear16', sample_rate: 24000 }, { encoding: 'linear16', sample_rate: 16000 }), { audioChunks: 3 })
  t.same(conn.received[0].session.audio.output.format, { type: 'audio/pcm', rate: 24000 }, 'the upstream still speaks 24 kHz')
  client.send({ type: 'InjectUserMessage', content: 'Say something' })
  await client.next('AgentAudioDone')
  const upstreamBytes = total(conn.sent.filter((e) => e.type === 'response.output_audio.delta').map((e) => e.audioBytes))
  const received = total(client.audio.map((frame) => frame.length))
  t.equal(client.audio.length, 3)
  t.ok(client.audio.every((frame) => frame.length % 2 === 0), 'even frame lengths')
  t.ok(Math.abs(received - upstreamBytes * 2 / 3) <= 4, `≈ 2/3 of ${upstreamBytes} bytes (got ${received})`)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('agent audio for a mulaw client is the upstream G.711 unchanged', async (t) => {
  const { client, conn } = await session(t, withAudio({ encoding: 'mulaw', sample_rate: 8000 }, { encoding: 'mulaw', sample_rate: 8000 }), { audioChunks: 2 })
  client.send({ type: 'InjectUserMessage', content: 'Say something' })
  await client.next('AgentAudioDone')
  const chunk = Buffer.from(audioChunk({ type: 'audio/pcmu' }).base64, 'base64')
  t.ok(Buffer.concat(client.audio).equals(Buffer.concat([chunk, chunk])))
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('a later Settings with the same audio formats keeps the odd byte carried over', async (t) => {
  const { client, conn } = await session(t, BASIC_SETTINGS)
  client.sendAudio(randomBytes(3))
  await client.until(() => appendSizes(conn).length === 1, 'the first append')
  client.send({ ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, prompt: 'A new prompt.' } } })
  await client.next('SettingsApplied')
  client.sendAudio(randomBytes(5))
  await client.until(() => appendSizes(conn).length === 2, 'the second append')
  t.same(appendSizes(conn), [2, 6], 'the carried byte leads the next append: the stream stays aligned on whole samples')
  t.same(conn.violations, NO_VIOLATIONS)
})
