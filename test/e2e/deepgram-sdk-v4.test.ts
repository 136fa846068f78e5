// The official Deepgram SDK v4 (`@deepgram/sdk@4`, installed as `@deepgram/sdk-v4`)
// against the proxy and the simulator, with nothing changed but the URL. In Node it
// connects with `ws` and `Authorization: Token <key>`, loses what is sent before the
// socket opens, emits each known message type as its own event (anything else as
// `Unhandled`) and agent audio as Buffers. Every send method it has is used here.

import t, { type Test } from 'tap'
import { AgentEvents, createClient } from '@deepgram/sdk-v4'
import type { AgentLiveClient } from '@deepgram/sdk-v4'
import { emptyViolations } from '../../lib/simulator/script.js'
import { startProxy } from '../helpers/proxy.js'

type Message = Record<string, any> & { type: string }

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}

/** What the v4 client emitted: messages by event (its own parsing), audio Buffers, with waits. */
class V4Session {
  readonly events: Array<{ event: string, message: Message }> = []
  readonly audio: Buffer[] = []
  readonly closed: Promise<void>
  #wake: Array<() => void> = []

  constructor (readonly client: AgentLiveClient) {
    for (const event of Object.values(AgentEvents)) {
      if (event === AgentEvents.Open || event === AgentEvents.Close || event === AgentEvents.Audio) continue
      client.on(event, (message: Message) => {
        this.events.push({ event, message })
        this.#notify()
      })
    }
    client.on(AgentEvents.Audio, (data: Buffer) => {
      this.audio.push(data)
      this.#notify()
    })
    this.closed = new Promise((resolve) => client.on(AgentEvents.Close, () => resolve()))
  }

  /** Messages the SDK emitted as this event. */
  as (event: string): Message[] {
    return this.events.filter((e) => e.event === event).map((e) => e.message)
  }

  async until (predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.events.map((e) => `${e.event}:${e.message.type as string}`).join(', ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50))
        this.#wake.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async first (event: string): Promise<Message> {
    await this.until(() => this.as(event).length > 0, event)
    return this.as(event)[0] as Message
  }

  #notify (): void {
    const wake = this.#wake
    this.#wake = []
    for (const fn of wake) fn()
  }
}

async function v4Connect (t: Test, base: string): Promise<V4Session> {
  const client = createClient('any-key', { agent: { websocket: { options: { url: base.replace('http', 'ws') } } } }).agent()
  const session = new V4Session(client)
  await new Promise<void>((resolve) => client.once(AgentEvents.Open, () => resolve()))
  t.teardown(() => client.disconnect())
  return session
}

t.test('SDK v4: every send method, and the messages it knows parsed into their own events', async (t) => {
  const { base, sim } = await startProxy(t, { script: { audioChunks: 25, chunkIntervalMs: 20 } })
  const session = await v4Connect(t, base)
  const conn = await sim.nextConnection()
  const { client } = session
  const welcome = await session.first(AgentEvents.Welcome)
  t.type(welcome.request_id, 'string')

  client.configure({
    audio: { input: { encoding: 'linear16', sample_rate: 16000 }, output: { encoding: 'linear16', sample_rate: 16000, container: 'none' } },
    agent: {
      listen: { provider: { type: 'deepgram', model: 'nova-3' } },
      think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'You are a test agent.', functions: [WEATHER] },
      speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'alloy' } }
    }
  })
  await session.first(AgentEvents.SettingsApplied)
  client.keepAlive()
  client.updatePrompt('Be brief.')
  await session.first(AgentEvents.PromptUpdated)
  t.equal(conn.session.instructions, 'You are a test agent.\n\nBe brief.')
  client.updateSpeak([{ provider: { type: 'open_ai', model: 'tts-1', voice: 'onyx' } }, { provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }])
  await session.first(AgentEvents.SpeakUpdated)
  t.equal(conn.session.audio.output.voice, 'cedar', 'a list: its first provider, onyx → the closest realtime voice')
  t.match(session.as(AgentEvents.Unhandled).filter((m) => m.type === 'Warning').map((m) => m.code), ['SETTING_IGNORED', 'VOICE_SUBSTITUTED'], 'Warnings: v4 knows no Warning event, so they come as Unhandled')

  client.injectUserMessage('Please get weather for city: Quito')
  const request = await session.first(AgentEvents.FunctionCallRequest)
  const call = request.functions[0]
  t.match(call, { name: 'get_weather', client_side: true })
  client.functionCallResponse({ id: call.id, name: call.name, content: '18 degrees' })
  await session.until(() => session.as(AgentEvents.AgentAudioDone).length === 1, 'the answer heard')
  await session.until(() => session.as(AgentEvents.ConversationText).at(-1)?.role === 'assistant', 'the answer told once heard')
  t.match(session.as(AgentEvents.ConversationText).at(-1), { role: 'assistant', content: /18 degrees/ })

  // v4 sends an agent message as `content`, the field older clients used.
  client.injectUserMessage('And tomorrow?')
  await session.until(() => session.as(AgentEvents.AgentStartedSpeaking).length === 2, 'the agent speaking again')
  client.injectAgentMessage('Sorry to interrupt.')
  await session.first(AgentEvents.InjectionRefused)
  await session.until(() => session.as(AgentEvents.AgentAudioDone).length === 2, 'that answer done')
  client.injectAgentMessage('Anything else?')
  await session.until(() => session.as(AgentEvents.ConversationText).some((m) => m.role === 'assistant' && m.content === 'Anything else?'), 'the agent message said')

  client.send(new ArrayBuffer(3200)) // microphone audio: a binary frame, as the SDK sends it
  t.ok(session.audio.length > 0 && session.audio.every((chunk) => Buffer.isBuffer(chunk) && chunk.length % 2 === 0), 'agent audio as even-length Buffers')
  for (const event of [AgentEvents.Welcome, AgentEvents.SettingsApplied, AgentEvents.PromptUpdated, AgentEvents.SpeakUpdated, AgentEvents.ConversationText, AgentEvents.FunctionCallRequest, AgentEvents.AgentStartedSpeaking, AgentEvents.AgentAudioDone, AgentEvents.InjectionRefused]) {
    t.ok(session.as(event).length > 0, `${event}: emitted as its own event`)
  }
  t.same(session.as(AgentEvents.Error), [], 'no Error')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('SDK v4: Settings the proxy cannot serve end the session (its Error event, then close)', async (t) => {
  const { base } = await startProxy(t)
  const session = await v4Connect(t, base)
  session.client.configure({ audio: { input: { encoding: 'opus', sample_rate: 48000 } }, agent: {} })
  const error = await session.first(AgentEvents.Error)
  t.match(error, { type: 'Error', code: 'UNSUPPORTED_AUDIO_FORMAT' })
  await session.closed
  t.pass('closed by the proxy')
})
