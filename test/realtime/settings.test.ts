// docs/protocol.md §2, configuration rows: Welcome, Settings, the Update* messages and
// unsupported audio formats, on real sockets through the proxy to the simulator.

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, barrier, configuredClient, errorsOf, simSent, startProxy } from '../helpers/proxy.js'

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}

function settings (agent: Record<string, unknown> = {}, audio?: Record<string, unknown>): Record<string, unknown> {
  return { ...BASIC_SETTINGS, ...(audio === undefined ? {} : { audio }), agent: { ...BASIC_SETTINGS.agent, ...agent } }
}

async function connect (t: Test, url: string): Promise<TestClient> {
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  return client
}

t.test('Welcome carries the session id that GET /connections shows', async (t) => {
  const { url, base, sim } = await startProxy(t)
  const client = await connect(t, url)
  const welcome = await client.next('Welcome')
  t.equal(client.messages[0]?.type, 'Welcome', 'Welcome is the first message')
  t.type(welcome.request_id, 'string')
  const listing = await (await fetch(`${base}/connections`)).json() as { connections: Array<{ id: string, phase: string }> }
  t.same(listing.connections.map((c) => c.id), [welcome.request_id])
  t.equal(listing.connections[0]?.phase, 'awaiting_settings')
  const detail = await fetch(`${base}/connections/${String(welcome.request_id)}`)
  t.equal(detail.status, 200)
  const conn = await sim.nextConnection()
  t.equal(conn.count('session.update'), 0, 'nothing is configured before Settings')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('Settings → exactly one mapped session.update; SettingsApplied only after session.updated', async (t) => {
  const { url, sim } = await startProxy(t, { script: { sessionUpdatedDelayMs: 300 } })
  const client = await connect(t, url)
  const conn = await sim.nextConnection()
  // Note the simulator's state at the instant SettingsApplied arrives.
  let updatedWhenApplied: boolean | undefined
  client.ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary && JSON.parse(data.toString()).type === 'SettingsApplied') updatedWhenApplied ??= conn.sent.some((e) => e.type === 'session.updated')
  })
  client.send(settings({
    think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'Be brief.', functions: [WEATHER] },
    speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'shimmer' } },
    listen: { provider: { type: 'open_ai', model: 'gpt-4o-transcribe' } },
    language: 'fr'
  }, {
    input: { encoding: 'linear16', sample_rate: 16000 },
    output: { encoding: 'mulaw', sample_rate: 8000, container: 'none' }
  }))
  const update = await conn.waitFor('session.update')
  t.type(update.event_id, 'string')
  t.same(update.session, {
    type: 'realtime',
    instructions: 'Be brief.',
    tools: [{ type: 'function', ...WEATHER }],
    tool_choice: 'auto',
    output_modalities: ['audio'],
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription: { model: 'gpt-4o-transcribe', language: 'fr' },
        turn_detection: { type: 'server_vad', create_response: true, interrupt_response: true }
      },
      output: { format: { type: 'audio/pcmu' }, voice: 'shimmer' }
    }
  })
  await client.next('SettingsApplied')
  // Held 300 ms upstream: an early SettingsApplied would arrive before session.updated exists.
  t.equal(updatedWhenApplied, true, 'session.updated was sent before SettingsApplied arrived')
  t.equal(conn.count('session.update'), 1)
  t.same(errorsOf(client), [])
  t.same(client.all('Warning'), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('unknown Settings fields are ignored, not rejected', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await connect(t, url)
  const conn = await sim.nextConnection()
  client.send({
    ...settings({ some_future_agent_field: { x: 1 }, think: { ...BASIC_SETTINGS.agent.think, temperature: 0.3 } }),
    tags: ['a', 'b'],
    flags: { history: true },
    experimental: true,
    mip_opt_out: false,
    brand_new_top_level: 'x'
  })
  await client.next('SettingsApplied')
  const update = conn.received.find((e) => e.type === 'session.update')
  t.same(Object.keys(update.session).sort(), ['audio', 'instructions', 'output_modalities', 'tool_choice', 'tools', 'type'])
  t.same(errorsOf(client), [])
  t.same(client.all('Warning'), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('a later Settings is applied as a difference and answered again; an identical one is still answered', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await connect(t, url)
  const conn = await sim.nextConnection()
  client.send(settings())
  await client.next('SettingsApplied')
  client.send(settings({
    think: { ...BASIC_SETTINGS.agent.think, prompt: 'A new prompt.' },
    speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'coral' } }
  }))
  const second = await conn.waitFor('session.update')
  t.same(second.session, { type: 'realtime', instructions: 'A new prompt.', audio: { output: { voice: 'coral' } } }, 'only the changed fields')
  await client.next('SettingsApplied')
  t.equal(conn.session.instructions, 'A new prompt.')
  t.equal(conn.session.audio.output.voice, 'coral')

  client.send(settings({
    think: { ...BASIC_SETTINGS.agent.think, prompt: 'A new prompt.' },
    speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'coral' } }
  }))
  await client.next('SettingsApplied')
  t.equal(client.all('SettingsApplied').length, 3)
  t.equal(conn.count('session.update'), 2, 'nothing to change: no session.update')
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('UpdatePrompt appends to the instructions → PromptUpdated', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'UpdatePrompt', prompt: 'Always answer in French.' })
  const update = await conn.waitFor('session.update', (e) => e.session.instructions !== undefined)
  t.same(update.session, { type: 'realtime', instructions: 'You are a helpful test agent.\n\nAlways answer in French.' })
  await client.next('PromptUpdated')
  client.send({ type: 'UpdatePrompt', prompt: 'Be short.' })
  await client.next('PromptUpdated')
  t.equal(conn.session.instructions, 'You are a helpful test agent.\n\nAlways answer in French.\n\nBe short.')
  t.equal(client.all('SettingsApplied').length, 1, 'not answered as Settings')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('UpdatePrompt without a string prompt is a Warning and changes nothing; the session goes on', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'UpdatePrompt', prompt: 42 })
  const warning = await client.next('Warning')
  t.equal(warning.code, 'UNPARSABLE_CLIENT_MESSAGE')
  t.same(client.all('Error'), [], 'not an Error: Deepgram\'s clients would reconnect')
  await barrier(client)
  t.equal(conn.count('session.update'), 1)
  t.equal(client.all('PromptUpdated').length, 0)
})

t.test('UpdateSpeak changes the voice → SpeakUpdated', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'UpdateSpeak', speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'Sage' } } })
  const update = await conn.waitFor('session.update', (e) => e.session.audio !== undefined)
  t.same(update.session, { type: 'realtime', audio: { output: { voice: 'sage' } } })
  await client.next('SpeakUpdated')
  t.equal(conn.session.audio.output.voice, 'sage')
  t.same(client.all('Warning'), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('UpdateSpeak after the agent spoke → Warning VOICE_CHANGE_NOT_ALLOWED, no voice sent upstream', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.next('AgentAudioDone')
  await simSent(conn, 'response.done')
  client.send({ type: 'UpdateSpeak', speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'echo' } } })
  const warning = await client.next('Warning')
  t.equal(warning.code, 'VOICE_CHANGE_NOT_ALLOWED')
  await barrier(client)
  t.equal(conn.count('session.update'), 1, 'the voice change was never sent')
  t.equal(conn.sent.filter((e) => e.type === 'error').length, 0, 'the upstream never had to refuse (cannot_update_voice)')
  t.equal(conn.session.audio.output.voice, 'alloy')

  // Other fields of a later change still go through, without the voice.
  client.send(settings({
    think: { ...BASIC_SETTINGS.agent.think, prompt: 'Changed.' },
    speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'echo' } }
  }))
  const update = await conn.waitFor('session.update')
  t.same(update.session, { type: 'realtime', instructions: 'Changed.' })
  await client.next('SettingsApplied')
  t.equal(client.all('Warning').filter((w) => w.code === 'VOICE_CHANGE_NOT_ALLOWED').length, 2)
  t.equal(conn.sent.filter((e) => e.type === 'error').length, 0)
  t.same(conn.violations, NO_VIOLATIONS)
})

// Engine bug (reported): the voice check happens when the change is queued, not when the
// deferred session.update is sent, so a voice change queued while the first response was
// being created goes out after that response spoke, and the upstream refuses it.

t.test('UpdateSpeak queued before the agent first spoke, sent after it did → no voice sent, Warning', async (t) => {
  const { url, sim } = await startProxy(t, { script: { responseCreatedDelayMs: 150, chunkIntervalMs: 20 } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await conn.waitFor('response.create')
  client.send({ type: 'UpdateSpeak', speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'echo' } } })
  await client.next('AgentAudioDone')
  const warning = await client.next('Warning')
  t.equal(warning.code, 'VOICE_CHANGE_NOT_ALLOWED')
  await simSent(conn, 'response.done')
  await barrier(client)
  t.notOk(conn.received.some((e) => e.type === 'session.update' && e.session.audio?.output?.voice === 'echo'), 'the voice change was never sent')
  t.equal(conn.sent.filter((e) => e.type === 'error').length, 0, 'the upstream never had to refuse (cannot_update_voice)')
  t.equal(client.all('SpeakUpdated').length, 0, 'a refused voice change is not acknowledged as applied')
  t.equal(conn.session.audio.output.voice, 'alloy')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('a later Settings while the agent responds is deferred until response.done, then answered', async (t) => {
  const { url, sim } = await startProxy(t, { script: { chunkIntervalMs: 30, audioChunks: 5 } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.next('AgentStartedSpeaking')
  client.send(settings({ think: { ...BASIC_SETTINGS.agent.think, prompt: 'Deferred prompt.' } }))
  const update = await conn.waitFor('session.update')
  t.same(update.session, { type: 'realtime', instructions: 'Deferred prompt.' })
  t.ok(conn.sent.some((e) => e.type === 'response.done'), 'sent only after the response ended')
  await client.next('SettingsApplied')
  t.equal(client.all('SettingsApplied').length, 2)
  t.same(conn.violations, NO_VIOLATIONS, 'no session.update during a response')
})

t.test('UpdateThink changes instructions and tools → ThinkUpdated', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send({ type: 'UpdateThink', think: { provider: { type: 'open_ai', model: 'gpt-4o' }, prompt: 'You are a weather bot.', functions: [WEATHER] } })
  const update = await conn.waitFor('session.update', (e) => e.session.tools !== undefined)
  t.same(update.session, {
    type: 'realtime',
    instructions: 'You are a weather bot.',
    tools: [{ type: 'function', ...WEATHER }],
    tool_choice: 'auto'
  })
  await client.next('ThinkUpdated')
  t.same(conn.session.tools, [{ type: 'function', ...WEATHER }])
  t.same(conn.violations, NO_VIOLATIONS)
})

for (const [direction, encoding] of [['input', 'opus'], ['output', 'mp3'], ['input', 'flac']] as const) {
  // Deepgram's clients treat every Error as the end of the session: the proxy ends it too, with a reason.
  t.test(`unsupported ${direction} encoding ${encoding} → Error UNSUPPORTED_AUDIO_FORMAT, then close 1008`, async (t) => {
    const { url, sim } = await startProxy(t)
    const client = await connect(t, url)
    const conn = await sim.nextConnection()
    const audio = { ...BASIC_SETTINGS.audio, [direction]: { encoding, sample_rate: 48000 } }
    client.send(settings({}, audio))
    const error = await client.next('Error')
    t.equal(error.code, 'UNSUPPORTED_AUDIO_FORMAT')
    t.match(error.description, encoding, 'the description names what was asked')
    t.same(await client.closed, { code: 1008, reason: 'unsupported audio format' })
    t.equal(conn.count('session.update'), 0, 'nothing was configured upstream')
    t.same(conn.violations, NO_VIOLATIONS)
  })
}

t.test('Settings whose agent is a string (a saved agent configuration\'s id) → Error AGENT_ID_NOT_SUPPORTED, then close 1008', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await connect(t, url)
  const conn = await sim.nextConnection()
  client.send({ ...settings(), agent: 'agent_01HZX8Y' })
  const error = await client.next('Error')
  t.equal(error.code, 'AGENT_ID_NOT_SUPPORTED')
  t.match(error.description, /saved agent configuration/)
  t.same(await client.closed, { code: 1008, reason: 'agent id not supported' })
  t.equal(conn.count('session.update'), 0, 'defaults were never run in its place')
})

t.test('Settings sent without waiting for Welcome, with KeepAlive and audio before SettingsApplied, works', async (t) => {
  const { url, sim } = await startProxy(t, { script: { echoAudio: true } })
  const client = await connect(t, url)
  // All of it in the same tick as the open: nothing was read yet.
  client.send({ type: 'KeepAlive' })
  client.send(settings())
  client.send({ type: 'KeepAlive' })
  const audio = Buffer.alloc(480, 7)
  client.sendAudio(audio)
  await client.next('SettingsApplied')
  t.same(client.types().slice(0, 2), ['Welcome', 'SettingsApplied'])
  const conn = await sim.nextConnection()
  await client.until(() => client.audio.length > 0, 'the echoed audio')
  t.same(Buffer.concat(client.audio), audio)
  t.same(conn.received.filter((e) => e.type === 'input_audio_buffer.append').map((e) => e.audioBytes), [480])
  t.equal(conn.count('KeepAlive'), 0)
  t.same(errorsOf(client), [])
  t.same(sim.violations(), NO_VIOLATIONS)
})
