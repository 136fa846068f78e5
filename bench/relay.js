// The ceiling the proxy is measured against: the thinnest `ws` forwarder that still
// speaks both protocols on the hot path. Client binary frame → one
// input_audio_buffer.append built by string concatenation; upstream
// response.output_audio.delta → its base64 decoded into one binary frame. The
// handshake is the minimum the client and the simulator need (Welcome, one
// session.update, SettingsApplied); there is no engine, no validation, no counters,
// no logging. Whatever the proxy costs beyond this is the price of being a product.
//
// For the conversational benchmark (bench/conversation.js) it also translates the
// turn messages one to one, with no turn logic (no response slot, no queue, no
// record): InjectUserMessage → conversation.item.create + response.create,
// FunctionCallResponse → a function_call_output item + response.create, UpdatePrompt →
// session.update; back, function_call_arguments.done → FunctionCallRequest,
// speech_started → UserStartedSpeaking, output_audio.done → AgentAudioDone, a later
// session.updated → PromptUpdated.

import { randomUUID } from 'node:crypto'
import WebSocket, { WebSocketServer } from 'ws'
import { serveParent } from './child.js'
import { SAMPLE_RATE } from './frame.js'

const upstreamUrl = process.env.BENCH_UPSTREAM_URL
if (upstreamUrl === undefined) throw new Error('bench/relay.js needs BENCH_UPSTREAM_URL (bench/run.js sets it to its simulator)')

const DELTA_EVENT = '{"type":"response.output_audio.delta"'
const DELTA_FIELD = '"delta":"'
/** The session.update of a Settings: the formats, and the prompt and client-side functions when it has them. */
function sessionUpdate (settings) {
  const think = settings?.agent?.think
  return JSON.stringify({
    type: 'session.update',
    event_id: 'relay_update',
    session: {
      type: 'realtime',
      output_modalities: ['audio'],
      audio: {
        input: { format: { type: 'audio/pcm', rate: SAMPLE_RATE } },
        output: { format: { type: 'audio/pcm', rate: SAMPLE_RATE } }
      },
      ...(typeof think?.prompt === 'string' && { instructions: think.prompt }),
      ...(Array.isArray(think?.functions) && { tools: think.functions.map((f) => ({ type: 'function', name: f.name, description: f.description, parameters: f.parameters })) })
    }
  })
}

const server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 1024 * 1024 })
await new Promise((resolve) => server.once('listening', resolve))

server.on('connection', (client) => {
  const upstream = new WebSocket(`${upstreamUrl}?model=gpt-realtime`, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 })
  const prefix = randomUUID().slice(0, 8) + '_a'
  let appendSeq = 0
  let settingsPending = null
  let promptPending = false
  client.send(JSON.stringify({ type: 'Welcome', request_id: randomUUID() }))

  client.on('message', (data, isBinary) => {
    if (isBinary) {
      if (upstream.readyState !== WebSocket.OPEN) return
      upstream.send('{"type":"input_audio_buffer.append","event_id":"' + prefix + (++appendSeq) + '","audio":"' + data.toString('base64') + '"}')
      return
    }
    let message
    try {
      message = JSON.parse(data.toString())
    } catch {
      return
    }
    if (message?.type === 'Settings') {
      if (upstream.readyState === WebSocket.OPEN) upstream.send(sessionUpdate(message))
      else settingsPending = message
      return
    }
    if (upstream.readyState !== WebSocket.OPEN) return
    const id = () => prefix + (++appendSeq)
    if (message?.type === 'InjectUserMessage') {
      upstream.send(JSON.stringify({ type: 'conversation.item.create', event_id: id(), item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: String(message.content) }] } }))
      upstream.send(JSON.stringify({ type: 'response.create', event_id: id() }))
    } else if (message?.type === 'FunctionCallResponse') {
      upstream.send(JSON.stringify({ type: 'conversation.item.create', event_id: id(), item: { type: 'function_call_output', call_id: String(message.id), output: String(message.content) } }))
      upstream.send(JSON.stringify({ type: 'response.create', event_id: id() }))
    } else if (message?.type === 'UpdatePrompt') {
      promptPending = true
      upstream.send(JSON.stringify({ type: 'session.update', event_id: id(), session: { type: 'realtime', instructions: String(message.prompt) } }))
    }
  })
  upstream.on('open', () => {
    if (settingsPending !== null) upstream.send(sessionUpdate(settingsPending))
  })
  upstream.on('message', (data) => {
    const text = data.toString('latin1', 0, DELTA_EVENT.length)
    if (text === DELTA_EVENT) {
      const start = data.indexOf(DELTA_FIELD) + DELTA_FIELD.length
      const end = data.indexOf(0x22, start)
      client.send(Buffer.from(data.toString('latin1', start, end), 'base64'))
      return
    }
    const type = /^\{"type":"([^"]+)"/.exec(data.toString('latin1', 0, 80))?.[1]
    if (type === 'session.updated') {
      client.send(promptPending ? '{"type":"PromptUpdated"}' : '{"type":"SettingsApplied"}')
      promptPending = false
    } else if (type === 'response.output_audio.done') {
      client.send('{"type":"AgentAudioDone"}')
    } else if (type === 'input_audio_buffer.speech_started') {
      client.send('{"type":"UserStartedSpeaking"}')
    } else if (type === 'response.function_call_arguments.done') {
      const event = JSON.parse(data.toString())
      client.send(JSON.stringify({ type: 'FunctionCallRequest', functions: [{ id: event.call_id, name: event.name, arguments: event.arguments, client_side: true }] }))
    }
  })
  client.on('close', () => upstream.readyState === WebSocket.CONNECTING ? upstream.terminate() : upstream.close())
  upstream.on('close', () => client.close())
  client.on('error', () => {})
  upstream.on('error', () => client.close(1011))
})

serveParent({
  ready: { url: `ws://127.0.0.1:${server.address().port}/v1/agent/converse` },
  close: () => new Promise((resolve) => {
    for (const client of server.clients) client.terminate()
    server.close(() => resolve())
  })
})
