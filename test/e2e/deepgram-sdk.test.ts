// The official Deepgram SDK (@deepgram/sdk v5) against the proxy and the simulator,
// with nothing changed but the base URL: the drop-in promise of the product. The SDK
// appends /v1/agent/converse, authenticates with `Authorization: Token <apiKey>`,
// sends Settings without waiting for Welcome and delivers agent audio as Blobs.

import t, { type Test } from 'tap'
import { DeepgramClient } from '@deepgram/sdk'
import type { Deepgram } from '@deepgram/sdk'
import { emptyViolations } from '../../lib/simulator/script.js'
import { parseExposition } from '../helpers/admin-prom.js'
import { startProxy } from '../helpers/proxy.js'

type AgentSocket = Awaited<ReturnType<DeepgramClient['agent']['v1']['connect']>>
type Message = Record<string, any> & { type: string }

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}

function settings (think: Deepgram.agent.AgentV1Settings.Agent.Think): Deepgram.agent.AgentV1Settings {
  return {
    type: 'Settings',
    audio: {
      input: { encoding: 'linear16', sample_rate: 24000 },
      output: { encoding: 'linear16', sample_rate: 24000, container: 'none' }
    },
    agent: {
      language: 'en',
      listen: { provider: { type: 'deepgram', version: 'v1', model: 'nova-3' } },
      think,
      speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'alloy' } }
    }
  }
}

const THINK = { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'You are a helpful test agent.', functions: [WEATHER] } as Deepgram.ThinkSettingsV1

/** What the SDK's socket delivered: parsed messages and Blobs, with waits by type. */
class SdkSession {
  readonly messages: Message[] = []
  readonly blobs: Blob[] = []
  readonly closed: Promise<{ code: number, reason: string }>
  #wake: Array<() => void> = []

  constructor (readonly socket: AgentSocket) {
    let closed: (event: { code: number, reason: string }) => void = () => {}
    this.closed = new Promise((resolve) => { closed = resolve })
    socket.on('message', (message) => {
      if (message instanceof Blob) this.blobs.push(message)
      else if (typeof message === 'object') this.messages.push(message as Message)
      this.#notify()
    })
    socket.on('close', (event) => {
      closed({ code: event.code, reason: event.reason })
      this.#notify()
    })
  }

  all (type: string): Message[] {
    return this.messages.filter((m) => m.type === type)
  }

  async until (predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.messages.map((m) => m.type).join(', ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50))
        this.#wake.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async first (type: string, timeoutMs?: number): Promise<Message> {
    await this.until(() => this.all(type).length > 0, type, timeoutMs)
    return this.all(type)[0] as Message
  }

  #notify (): void {
    const wake = this.#wake
    this.#wake = []
    for (const fn of wake) fn()
  }
}

async function sdkConnect (t: Test, port: string, apiKey: string): Promise<SdkSession> {
  const client = new DeepgramClient({ apiKey, baseUrl: `ws://127.0.0.1:${port}` })
  const socket = await client.agent.v1.connect({ reconnectAttempts: 0 })
  const session = new SdkSession(socket)
  socket.connect()
  await socket.waitForOpen()
  t.teardown(() => socket.close())
  return session
}

function portOf (base: string): string {
  return new URL(base).port
}

t.test('official SDK: Settings → SettingsApplied → InjectUserMessage → text and audio', async (t) => {
  const { base, sim } = await startProxy(t)
  const session = await sdkConnect(t, portOf(base), 'any-key')
  const conn = await sim.nextConnection()

  // The SDK does not wait for Welcome: Settings goes as soon as the socket is open.
  session.socket.sendSettings(settings(THINK))
  await session.first('SettingsApplied')
  const welcome = await session.first('Welcome')
  t.type(welcome.request_id, 'string', 'Welcome carries the session id')

  session.socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'Hello from the SDK' })
  await session.until(() => session.all('ConversationText').some((m) => m.role === 'assistant'), 'the assistant ConversationText')
  await session.first('AgentAudioDone')
  t.same(session.all('ConversationText').map((m) => [m.role, m.content]), [
    ['user', 'Hello from the SDK'],
    ['assistant', 'You said: Hello from the SDK.']
  ])
  t.ok(session.blobs.length > 0, 'agent audio arrived as binary (Blobs)')
  const bytes = (await Promise.all(session.blobs.map((blob) => blob.arrayBuffer()))).reduce((sum, buffer) => sum + buffer.byteLength, 0)
  t.ok(bytes > 0 && bytes % 2 === 0, `PCM16 audio, an even byte count (${bytes})`)
  t.equal(session.all('AgentStartedSpeaking').length, 1, 'AgentStartedSpeaking once')

  t.notMatch(JSON.stringify(conn.headers), 'any-key', 'the client\'s key never reaches the upstream')
  t.same(session.all('Error'), [], 'no Error')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('official SDK: function call round trip', async (t) => {
  const { base, sim } = await startProxy(t)
  const session = await sdkConnect(t, portOf(base), 'any-key')
  const conn = await sim.nextConnection()
  session.socket.sendSettings(settings(THINK))
  await session.first('SettingsApplied')

  session.socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'Please get weather for city: Lisbon' })
  const request = await session.first('FunctionCallRequest')
  const call = request.functions[0]
  t.match(call, { name: 'get_weather', client_side: true })
  t.same(JSON.parse(call.arguments), { city: 'Lisbon' })

  session.socket.sendFunctionCallResponse({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: '22 degrees and clear' })
  await session.until(() => session.all('ConversationText').some((m) => m.role === 'assistant'), 'the assistant answer')
  const answer = session.all('ConversationText').find((m) => m.role === 'assistant')
  t.match(answer?.content, /22 degrees and clear/, 'the assistant answer mentions the function result')
  await session.first('AgentAudioDone')
  t.equal(conn.count('response.create'), 2, 'the inject and one follow-up')
  t.same(session.all('Error'), [], 'no Error')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('official SDK: think as a list of providers (the v5 type allows an array)', async (t) => {
  const { base, sim } = await startProxy(t)
  const session = await sdkConnect(t, portOf(base), 'any-key')
  const conn = await sim.nextConnection()
  session.socket.sendSettings(settings([THINK]))
  await session.first('SettingsApplied')
  t.equal(conn.session.instructions, 'You are a helpful test agent.', 'the prompt of the first think provider reached the upstream')
  t.same(conn.session.tools.map((tool: { name: string }) => tool.name), ['get_weather'], 'its functions reached the upstream')

  session.socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'get weather, city: Quito' })
  const request = await session.first('FunctionCallRequest', 1000)
  t.equal(request.functions[0]?.name, 'get_weather')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('official SDK with PROXY_AUTH_TOKENS: the Token header authenticates', async (t) => {
  const { base, sim, proxy } = await startProxy(t, { env: { PROXY_AUTH_TOKENS: 'tok1' } })
  const port = portOf(base)
  // What the SDK put on its upgrade requests (an extra listener only reads them).
  const upgrades: Array<{ url: string | undefined, authorization: string | undefined, protocol: string | undefined }> = []
  proxy.app.server.on('upgrade', (request: import('node:http').IncomingMessage) => {
    upgrades.push({ url: request.url, authorization: request.headers.authorization, protocol: request.headers['sec-websocket-protocol'] })
  })

  const session = await sdkConnect(t, port, 'tok1')
  t.same(upgrades, [{ url: '/v1/agent/converse', authorization: 'Token tok1', protocol: undefined }], 'the SDK authenticated with the Authorization: Token header only')
  session.socket.sendSettings(settings(THINK))
  await session.first('SettingsApplied')
  session.socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'Authenticated hello' })
  await session.until(() => session.all('ConversationText').some((m) => m.role === 'assistant'), 'the assistant answer')
  t.equal(session.all('ConversationText').find((m) => m.role === 'assistant')?.content, 'You said: Authenticated hello.')

  // A wrong key: the upgrade is refused before any WebSocket opens.
  const wrong = await new DeepgramClient({ apiKey: 'tok2', baseUrl: `ws://127.0.0.1:${port}` }).agent.v1.connect({ reconnectAttempts: 0 })
  let opened = false
  wrong.on('open', () => { opened = true })
  const failed = new Promise<void>((resolve) => {
    wrong.on('error', () => resolve())
    wrong.on('close', () => resolve())
  })
  wrong.connect()
  t.teardown(() => wrong.close())
  await failed
  t.equal(opened, false, 'a wrong token never opens a socket')
  t.equal(upgrades.at(-1)?.authorization, 'Token tok2')
  const metrics = parseExposition(await (await fetch(`${base}/metrics`)).text())
  t.equal(metrics.value('dgproxy_sessions_rejected_total', { reason: 'auth' }), 1, 'refused for auth, counted once')
  t.equal(sim.connections.length, 1, 'no upstream connection for the refused client')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

/** PCM16 mono at 24 kHz: `ms` of a tone loud enough for the simulator's energy VAD, or of silence. */
function pcm (ms: number, amplitude: number): Buffer {
  const samples = 24 * ms
  const audio = Buffer.alloc(samples * 2)
  for (let i = 0; i < samples; i++) audio.writeInt16LE(Math.round(amplitude * 32767 * Math.sin(2 * Math.PI * 440 * i / 24000)), i * 2)
  return audio
}

t.test('official SDK: every send method the v5 socket has, and every message type the proxy sends, through the SDK\'s own parsing', async (t) => {
  // Responses last a while (25 chunks, 20 ms apart), so an agent message can arrive mid-response; the energy VAD hears the audio sent.
  const { base, sim } = await startProxy(t, { script: { energyVad: true, audioChunks: 25, chunkIntervalMs: 20 } })
  const session = await sdkConnect(t, portOf(base), 'any-key')
  const conn = await sim.nextConnection()
  const socket = session.socket
  const sends = ['sendSettings', 'sendUpdateListen', 'sendUpdateThink', 'sendUpdateSpeak', 'sendInjectUserMessage', 'sendInjectAgentMessage', 'sendFunctionCallResponse', 'sendKeepAlive', 'sendUpdatePrompt', 'sendForceEndTurn', 'sendMedia']
  const methods = new Set<string>()
  for (let proto = Object.getPrototypeOf(socket); proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) if (/^send[A-Z]/.test(name)) methods.add(name)
  }
  // Protected in the SDK's types: what the public methods send through.
  for (const internal of ['sendBinary', 'sendJson']) methods.delete(internal)
  t.same([...methods].sort(), [...sends].sort(), 'the SDK\'s send methods, each used below')
  const warnings = (code: string): Message[] => session.all('Warning').filter((m) => m.code === code)

  socket.sendSettings(settings(THINK))
  await session.first('SettingsApplied')
  socket.sendKeepAlive({ type: 'KeepAlive' })

  socket.sendUpdatePrompt({ type: 'UpdatePrompt', prompt: 'Answer in one sentence.' })
  await session.first('PromptUpdated')
  t.equal(conn.session.instructions, 'You are a helpful test agent.\n\nAnswer in one sentence.', 'UpdatePrompt appends')

  socket.sendUpdateThink({ type: 'UpdateThink', think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'You are a weather bot.', functions: [WEATHER] } })
  await session.first('ThinkUpdated')
  t.equal(conn.session.instructions, 'You are a weather bot.', 'UpdateThink replaces')

  // A list, as every SDK's type allows: the first provider the proxy can serve, the closest realtime voice for nova.
  socket.sendUpdateSpeak({ type: 'UpdateSpeak', speak: [{ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }, { provider: { type: 'open_ai', model: 'tts-1', voice: 'nova' } }] })
  await session.first('SpeakUpdated')
  t.equal(conn.session.audio.output.voice, 'coral', 'nova → coral upstream')
  t.equal(warnings('SETTING_IGNORED').length, 1, 'a Warning for the provider not used')
  t.match(warnings('VOICE_SUBSTITUTED'), [{ description: /"coral" speaks instead/ }], 'a Warning naming the voice that speaks')

  socket.sendUpdateListen({ type: 'UpdateListen', listen: { provider: { type: 'deepgram', version: 'v2', model: 'flux-general-en', keyterms: ['Deepgram', 'Lisbon'], eot_threshold: 0.8 } } })
  await session.first('ListenUpdated')
  t.match(conn.session.audio.input.transcription, { model: 'gpt-4o-mini-transcribe', prompt: 'Deepgram, Lisbon' }, 'keyterms: the transcription prompt')
  t.match(warnings('UPDATE_LISTEN_UNSUPPORTED_FIELDS_CHANGED'), [{ description: /eot_threshold/ }])

  socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'Please get weather for city: Lisbon' })
  const request = await session.first('FunctionCallRequest')
  const call = request.functions[0]
  t.match(call, { name: 'get_weather', client_side: true })
  socket.sendFunctionCallResponse({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: '22 degrees' })
  await session.until(() => session.all('AgentAudioDone').length === 1, 'the answer heard to its end')

  // An agent message while the agent speaks is refused (Deepgram's default behavior); one in silence is said.
  socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'Tell me more' })
  await session.until(() => session.all('AgentStartedSpeaking').length === 2, 'the agent speaking again')
  socket.sendInjectAgentMessage({ type: 'InjectAgentMessage', message: 'Interrupting you.' })
  await session.first('InjectionRefused')
  await session.until(() => session.all('AgentAudioDone').length === 2, 'that answer done')
  socket.sendInjectAgentMessage({ type: 'InjectAgentMessage', message: 'One moment please.' })
  await session.until(() => session.all('ConversationText').some((m) => m.role === 'assistant' && m.content === 'One moment please.'), 'the agent message said')
  await session.until(() => session.all('AgentAudioDone').length === 3, 'and heard')

  // The microphone: speech, then silence, through the SDK's sendMedia; the simulator's VAD hears it.
  for (const chunk of [pcm(400, 0.3), pcm(800, 0)]) for (let at = 0; at < chunk.length; at += 960) socket.sendMedia(chunk.subarray(at, at + 960))
  await session.first('UserStartedSpeaking')
  await session.until(() => session.all('ConversationText').some((m) => m.role === 'user' && m.content === '(spoken audio)'), 'the user\'s words transcribed')
  await session.until(() => session.all('AgentAudioDone').length === 4, 'the answer to speech')

  socket.sendForceEndTurn({ type: 'ForceEndTurn' })
  await session.until(() => conn.count('input_audio_buffer.commit') === 1, 'ForceEndTurn commits the user\'s audio upstream')

  for (const type of ['Welcome', 'SettingsApplied', 'PromptUpdated', 'ThinkUpdated', 'SpeakUpdated', 'ListenUpdated', 'ConversationText', 'UserStartedSpeaking', 'FunctionCallRequest', 'AgentStartedSpeaking', 'AgentAudioDone', 'InjectionRefused', 'Warning']) {
    t.ok(session.all(type).length > 0, `${type} parsed by the SDK`)
  }
  t.ok(session.blobs.length > 0, 'agent audio as Blobs')
  t.same(session.all('Error'), [], 'no Error: the session goes on')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('official SDK: History reaches the SDK, one message per side of each turn, after the answer is heard', async (t) => {
  const { base } = await startProxy(t)
  const session = await sdkConnect(t, portOf(base), 'any-key')
  session.socket.sendSettings(settings(THINK))
  await session.first('SettingsApplied')
  session.socket.sendInjectUserMessage({ type: 'InjectUserMessage', content: 'Hello' })
  await session.until(() => session.all('History').length === 2, 'History of both sides')
  t.match(session.all('History'), [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'You said: Hello.' }], 'History for each turn')
  t.same(session.all('History').map((m) => m.content), session.all('ConversationText').map((m) => m.content), 'the same words as ConversationText, in the same order')
})

t.test('official SDK: ForceEndTurn ends the user\'s turn', async (t) => {
  const { base, sim } = await startProxy(t)
  const session = await sdkConnect(t, portOf(base), 'any-key')
  session.socket.sendSettings(settings(THINK))
  await session.first('SettingsApplied')
  const conn = await sim.nextConnection()
  session.socket.sendMedia(pcm(400, 0.3))
  await session.until(() => conn.count('input_audio_buffer.append') > 0, 'the audio upstream')
  session.socket.sendForceEndTurn({ type: 'ForceEndTurn' })
  await session.first('AgentAudioDone')
  t.equal(conn.count('input_audio_buffer.commit'), 1, 'the audio buffer committed')
  t.equal(conn.count('response.create'), 1, 'and its response asked for')
  t.equal(session.all('Warning').filter((m) => m.code === 'FORCE_END_TURN_UNSUPPORTED').length, 0)
})

t.test('official SDK: Settings the proxy cannot serve end the session (an Error the SDK parses, then close 1008)', async (t) => {
  const { base, sim } = await startProxy(t)
  const session = await sdkConnect(t, portOf(base), 'any-key')
  await sim.nextConnection()
  session.socket.sendSettings({ ...settings(THINK), audio: { input: { encoding: 'opus', sample_rate: 48000 } } })
  const error = await session.first('Error')
  t.match(error, { code: 'UNSUPPORTED_AUDIO_FORMAT', description: /opus/ })
  t.same(await session.closed, { code: 1008, reason: 'unsupported audio format' })
})
