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
