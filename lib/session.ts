// One Deepgram client ↔ one OpenAI Realtime upstream: the imperative shell around the
// turn engine. It owns the sockets, timers, audio conversion and counters; it maps
// content events (transcripts, audio) directly and hands every turn decision to the
// engine (lib/engine.ts), carrying out the commands the engine returns.
//
// "What happens to a FunctionCallResponse?" → `onClientText` turns it into an engine
// intent; the engine forwards the output and decides when the follow-up goes.

import { randomUUID } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import type { RawData } from 'ws'
import { InputAudioConverter, OutputAudioConverter } from './audio.js'
import type { ClientAudioFormat } from './audio.js'
import type { Command, EngineInput, EngineOptions, EngineState, InjectBehavior } from './engine.js'
import { activeResponseId, initialState, pendingCounts, responseInProgress, step } from './engine.js'
import { SettingsError, planSettings, speakFields, thinkFields, isObject } from './mapping.js'
import type { ProxyMetrics } from './metrics.js'
import type { ConfigAck, ServerMessage, SettingsMessage } from './protocol/deepgram.js'
import { CLIENT_MESSAGE_TYPES, ErrorCode, UNSUPPORTED_CLIENT_MESSAGE_TYPES, WarningCode } from './protocol/deepgram.js'
import type { SessionFields, UpstreamEvent } from './protocol/openai.js'
import { ENGINE_EVENT_TYPES, obj, str } from './protocol/openai.js'
import type { EventDirection, LiveSession, SessionDetail, SessionSummary, TimelineEvent, TypeCounts, UpstreamState } from './registry.js'

/** Per-session limits and timings (the README's "Limits" has what a client sees when each trips). */
export interface SessionLimits {
  /** Largest upstream frame accepted, bytes. */
  maxUpstreamFrameBytes: number
  /** Audio held before the session is configured, bytes. */
  maxPendingAudioBytes: number
  /** Upstream WebSocket handshake timeout, ms. */
  upstreamConnectTimeoutMs: number
  /** Agent audio is dropped while this many bytes wait for a slow client… */
  maxClientBufferedBytes: number
  /** …and the client is closed once it has stayed that slow this long, ms. */
  slowClientTimeoutMs: number
  /** Text messages a client may send per second; beyond, Error and close (a flood). */
  maxClientMessagesPerSecond: number
  /** Upstream ping period, ms; an upstream that has not answered the previous ping is dead. 0 = off. */
  upstreamPingIntervalMs: number
  /** Client ping period, ms; a client that has not answered the previous ping is gone. 0 = off. */
  clientPingIntervalMs: number
}

export interface SessionOptions extends SessionLimits {
  client: WebSocket
  remoteAddress: string
  /** The app's logger; the session logs through one child of it. */
  logger: Logger
  /** Bindings for every line of this session (e.g. its trace context). */
  logBindings?: Record<string, unknown>
  metrics: ProxyMetrics
  upstreamUrl: string
  apiKey: string | undefined
  engine?: Partial<Omit<EngineOptions, 'idPrefix'>>
  /** Called once, after both legs are closed. */
  onClosed: (session: Session) => void
}

const TIMELINE_SIZE = 200
const ASSISTANT_TEXT_MEMORY = 64
const AUDIO_DELTA_TYPE = 'response.output_audio.delta'
const APPEND_TYPE = 'input_audio_buffer.append'
const DELTA_KEY = '"delta":"'
const RESPONSE_ID_KEY = '"response_id":"'
const BINARY = { binary: true }

/** An audio stream of the timeline; `key` is the one #record keys its runs by (direction + type), built once. */
interface AudioStream { direction: EventDirection, type: string, key: string }
const audioStream = (direction: EventDirection, type: string): AudioStream => ({ direction, type, key: direction + type })
const AUDIO_STREAMS = {
  clientIn: audioStream('client->proxy', 'binary'),
  upstreamOut: audioStream('proxy->upstream', APPEND_TYPE),
  upstreamIn: audioStream('upstream->proxy', AUDIO_DELTA_TYPE),
  clientOut: audioStream('proxy->client', 'binary'),
  clientDropped: audioStream('proxy->client', 'binary_dropped')
}
/** How long a closing leg may take to answer our close frame before its socket is destroyed (ws reads `closeTimeout`, 8.23+). */
export const CLOSE_HANDSHAKE_TIMEOUT_MS = 5000

/** Close codes towards the client, by what ended the session. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  serviceRestart: 1012,
  tryAgainLater: 1013
} as const

export class Session implements LiveSession {
  readonly id = randomUUID()
  readonly startedAt = new Date()
  readonly #o: SessionOptions
  readonly #log: Logger
  readonly #client: WebSocket
  #upstream: WebSocket | undefined
  #upstreamState: UpstreamState = 'connecting'
  #engine: EngineState
  readonly #timers = new Map<string, NodeJS.Timeout>()
  /** Upstream events produced before the upstream socket opened. */
  #outbox: string[] = []
  /** Client audio received before the session was configured. */
  #heldAudio: Buffer[] = []
  #heldAudioBytes = 0
  #warnedHeldAudio = false
  #input: InputAudioConverter | undefined
  #output: OutputAudioConverter | undefined
  /** What the converters were built for: a later Settings keeps a converter (its carried byte, its filter state) unless its format changed. */
  #inputFormat: ClientAudioFormat | undefined
  #outputFormat: ClientAudioFormat | undefined
  #appendSeq = 0
  #closing = false
  #finished = false
  // Flood limit: text messages counted per one-second window.
  #messageWindowStart = 0
  #messagesInWindow = 0
  /** When the client's send buffer went over the limit; undefined while it is not. */
  #slowSince: number | undefined
  #upstreamPing: NodeJS.Timeout | undefined
  #clientPing: NodeJS.Timeout | undefined
  // Per-response bookkeeping for AgentStartedSpeaking / barge-in.
  #turnAnchor = 0
  #createdAt = new Map<string, number>()
  #speakingResponse: string | null = null
  #mutedResponse: string | null = null
  #assistantTextItems: string[] = []
  /** Items responses produced; other assistant items (the client's context) are not the agent speaking now. */
  #responseItems: string[] = []
  readonly #counts = {
    upstreamSent: {} as TypeCounts,
    upstreamReceived: {} as TypeCounts,
    clientSent: {} as TypeCounts,
    clientReceived: {} as TypeCounts
  }

  readonly #timeline: TimelineEvent[] = []
  readonly #audioRun = new Map<string, TimelineEvent>()

  constructor (options: SessionOptions) {
    this.#o = options
    this.#client = options.client
    this.#log = options.logger.child({ sessionId: this.id, ...options.logBindings })
    this.#engine = initialState({ ...options.engine, idPrefix: `${this.id.slice(0, 8)}_` })
    this.#client.on('message', (data, isBinary) => {
      try {
        this.#onClientFrame(data, isBinary)
      } catch (error) {
        this.#internalError(error)
      }
    })
    this.#client.on('close', (code, reason) => this.#onClientClose(code, reason.toString()))
    this.#client.on('error', (error) => this.#onClientError(error))
    this.#sendClient({ type: 'Welcome', request_id: this.id })
    // A client that vanished without a close (a dead network path) would otherwise hold
    // its session, and its upstream, until the upstream's own limit.
    this.#clientPing = this.#watchLiveness(this.#client, options.clientPingIntervalMs, () => {
      this.#log.info('client did not answer a ping: dropping the session')
      this.#client.terminate()
    })
    this.#connectUpstream()
  }

  // ── LiveSession (admin API) ─────────────────────────────────────────────────

  summary (): SessionSummary {
    const engine = this.#engine
    return {
      id: this.id,
      startedAt: this.startedAt.toISOString(),
      remoteAddress: this.#o.remoteAddress,
      phase: this.#closing ? 'closing' : engine.phase,
      responseInProgress: responseInProgress(engine),
      activeResponseId: activeResponseId(engine),
      upstream: { state: this.#upstreamState, connects: 1, sent: { ...this.#counts.upstreamSent }, received: { ...this.#counts.upstreamReceived } },
      client: { sent: { ...this.#counts.clientSent }, received: { ...this.#counts.clientReceived } },
      pending: pendingCounts(engine),
      tags: [],
      usage: { responses: 0, inputTokens: 0, outputTokens: 0, inputAudioTokens: 0, outputAudioTokens: 0, cachedInputTokens: 0 }
    }
  }

  detail (): SessionDetail {
    return { ...this.summary(), events: this.#timeline.map((event) => ({ ...event })) }
  }

  close (code: number, reason: string): void {
    this.#shutdown(code, reason)
  }

  // ── client → proxy ──────────────────────────────────────────────────────────

  #onClientFrame (data: RawData, isBinary: boolean): void {
    if (this.#closing) return
    if (isBinary) {
      const chunk = toBuffer(data)
      this.#count(this.#counts.clientReceived, 'binary')
      this.#recordAudio(AUDIO_STREAMS.clientIn, chunk.length)
      this.#onClientAudio(chunk)
      return
    }
    if (this.#flooding()) return
    let message: unknown
    try {
      message = JSON.parse(data.toString())
    } catch {
      this.#count(this.#counts.clientReceived, 'invalid')
      this.#sendClient({ type: 'Error', code: ErrorCode.unparsable, description: 'A text frame was not valid JSON. Send JSON messages as text and audio as binary frames.' })
      return
    }
    const type = isObject(message) && typeof message.type === 'string' ? message.type : undefined
    this.#count(this.#counts.clientReceived, type ?? 'invalid')
    this.#record('client->proxy', type ?? 'invalid')
    if (type === undefined || !isObject(message)) {
      this.#sendClient({ type: 'Error', code: ErrorCode.unparsable, description: 'A message must be a JSON object with a string "type".' })
      return
    }
    try {
      this.#onClientMessage(type, message)
    } catch (error) {
      if (!(error instanceof SettingsError)) throw error
      this.#sendClient({ type: 'Error', code: error.code, description: error.message })
    }
  }

  #onClientMessage (type: string, message: Record<string, unknown>): void {
    const at = performance.now()
    switch (type) {
      case 'Settings': return this.#onSettings(message as SettingsMessage, at)
      case 'UpdatePrompt':
        if (typeof message.prompt !== 'string') return this.#badField('UpdatePrompt', 'prompt', 'a string')
        return this.#feed({ type: 'configure', at, fields: {}, ack: 'PromptUpdated', appendInstructions: message.prompt })
      case 'UpdateSpeak':
        return this.#configure(speakFields(message.speak), 'SpeakUpdated', at)
      case 'UpdateThink': {
        const { fields, warnings } = thinkFields(message.think)
        for (const warning of warnings) this.#sendClient(warning)
        return this.#configure(fields, 'ThinkUpdated', at)
      }
      case 'InjectUserMessage':
        if (typeof message.content !== 'string' || message.content === '') return this.#badField('InjectUserMessage', 'content', 'a non-empty string')
        this.#turnAnchor = at
        return this.#feed({ type: 'injectUser', at, content: message.content })
      case 'InjectAgentMessage': {
        const text = typeof message.message === 'string' ? message.message : message.content
        if (typeof text !== 'string' || text === '') return this.#badField('InjectAgentMessage', 'message', 'a non-empty string')
        this.#turnAnchor = at
        return this.#feed({ type: 'injectAgent', at, message: text, behavior: injectBehavior(message.behavior) })
      }
      case 'FunctionCallResponse': {
        if (typeof message.id !== 'string') return this.#badField('FunctionCallResponse', 'id', 'the function call id')
        const output = typeof message.content === 'string' ? message.content : JSON.stringify(message.content ?? null)
        this.#turnAnchor = at
        return this.#feed({ type: 'functionResult', at, callId: message.id, output })
      }
      case 'KeepAlive':
        return // never forwarded: OpenAI has no such event
    }
    if ((UNSUPPORTED_CLIENT_MESSAGE_TYPES as readonly string[]).includes(type)) {
      this.#sendClient({ type: 'Warning', code: WarningCode.unsupportedMessage, description: `${type} is not supported by this proxy and was ignored.` })
      return
    }
    this.#sendClient({ type: 'Error', code: ErrorCode.unparsable, description: `Unknown message type "${type}". Known types: ${CLIENT_MESSAGE_TYPES.join(', ')}.` })
  }

  #onSettings (settings: SettingsMessage, at: number): void {
    const plan = planSettings(settings)
    for (const warning of plan.warnings) this.#sendClient(warning)
    if (!sameFormat(this.#inputFormat, plan.input)) {
      this.#inputFormat = plan.input
      this.#input = new InputAudioConverter(plan.input)
    }
    if (!sameFormat(this.#outputFormat, plan.output)) {
      this.#outputFormat = plan.output
      this.#output = new OutputAudioConverter(plan.output)
    }
    const first = this.#engine.phase === 'awaiting_settings'
    if (first) this.#turnAnchor = at
    this.#feed(plan.greeting === undefined
      ? { type: 'settings', at, fields: plan.fields, context: plan.context }
      : { type: 'settings', at, fields: plan.fields, context: plan.context, greeting: plan.greeting })
  }

  #configure (fields: SessionFields, ack: ConfigAck, at: number): void {
    this.#feed({ type: 'configure', at, fields, ack })
  }

  #badField (type: string, field: string, expected: string): void {
    this.#sendClient({ type: 'Error', code: ErrorCode.unparsable, description: `${type} needs "${field}" as ${expected}.` })
  }

  #onClientAudio (chunk: Buffer): void {
    if (this.#engine.phase !== 'ready' || this.#upstreamState !== 'open') {
      if (this.#heldAudioBytes + chunk.length > this.#o.maxPendingAudioBytes) {
        this.#o.metrics.droppedFrames('audio_before_ready')
        if (!this.#warnedHeldAudio) {
          this.#warnedHeldAudio = true
          this.#sendClient({ type: 'Warning', code: WarningCode.audioBufferFull, description: `More than ${this.#o.maxPendingAudioBytes} bytes of audio arrived before the session was configured; later audio is dropped until it is.` })
        }
        return
      }
      this.#heldAudio.push(chunk)
      this.#heldAudioBytes += chunk.length
      return
    }
    this.#appendAudio(chunk)
  }

  #appendAudio (chunk: Buffer): void {
    const audio = this.#input?.push(chunk) ?? ''
    if (audio === '') return
    // Built by concatenation: base64 never needs JSON escaping.
    if (this.#upstreamState === 'open') cork(this.#upstream)
    this.#sendUpstreamRaw('{"type":"input_audio_buffer.append","event_id":"' + this.#engine.options.idPrefix + 'a' + (++this.#appendSeq) + '","audio":"' + audio + '"}', APPEND_TYPE)
    this.#recordAudio(AUDIO_STREAMS.upstreamOut, chunk.length)
  }

  #flushHeldAudio (): void {
    const held = this.#heldAudio
    this.#heldAudio = []
    this.#heldAudioBytes = 0
    for (const chunk of held) this.#appendAudio(chunk)
  }

  // ── upstream ────────────────────────────────────────────────────────────────

  #connectUpstream (): void {
    const headers: Record<string, string> = {}
    if (this.#o.apiKey !== undefined) headers.Authorization = `Bearer ${this.#o.apiKey}`
    const upstream = new WebSocket(this.#o.upstreamUrl, {
      headers,
      maxPayload: this.#o.maxUpstreamFrameBytes,
      handshakeTimeout: this.#o.upstreamConnectTimeoutMs,
      perMessageDeflate: false,
      ...{ closeTimeout: CLOSE_HANDSHAKE_TIMEOUT_MS } // not in @types/ws 8.18
    })
    this.#upstream = upstream
    upstream.on('open', () => {
      this.#upstreamState = 'open'
      const outbox = this.#outbox
      this.#outbox = []
      for (const text of outbox) upstream.send(text)
      if (this.#engine.phase === 'ready') this.#flushHeldAudio()
      const everyMs = this.#o.upstreamPingIntervalMs
      this.#upstreamPing = this.#watchLiveness(upstream, everyMs, () => {
        this.#upstreamFailed(ErrorCode.upstreamUnresponsive, `The upstream did not answer a ping within ${everyMs} ms; the connection is presumed dead.`, CloseCode.internal, 'upstream unresponsive')
        upstream.terminate()
      })
    })
    upstream.on('message', (data, isBinary) => {
      try {
        this.#onUpstreamFrame(data, isBinary)
      } catch (error) {
        this.#internalError(error)
      }
    })
    upstream.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0
      res.resume()
      const [code, clientCode] = status === 401 || status === 403
        ? [ErrorCode.upstreamUnauthorized, CloseCode.internal]
        : status === 429
          ? [ErrorCode.upstreamRateLimited, CloseCode.tryAgainLater]
          : [ErrorCode.upstreamUnavailable, status >= 500 ? CloseCode.tryAgainLater : CloseCode.internal]
      this.#upstreamFailed(code, `The upstream refused the connection (HTTP ${status}).`, clientCode, `upstream refused (HTTP ${status})`)
      upstream.terminate()
    })
    upstream.on('error', (error) => {
      if (this.#upstreamState !== 'connecting') {
        const wsCode = (error as Error & { code?: string }).code ?? ''
        if (!wsCode.startsWith('WS_ERR_')) {
          this.#log.warn({ err: error }, 'upstream socket error')
          return
        }
        // A protocol fault (an oversized or invalid frame): say so, and do not wait for a close handshake.
        this.#upstreamFailed(ErrorCode.upstreamProtocolError, wsCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? `The upstream sent a frame larger than ${this.#o.maxUpstreamFrameBytes} bytes (MAX_UPSTREAM_FRAME_BYTES).`
          : `The upstream sent an invalid WebSocket frame (${error.message}).`, CloseCode.internal, 'upstream protocol error')
        upstream.terminate()
        return
      }
      const timedOut = /timed out/i.test(error.message)
      this.#upstreamFailed(timedOut ? ErrorCode.upstreamTimeout : ErrorCode.upstreamUnavailable,
        timedOut ? 'The upstream did not answer the connection in time.' : 'The upstream could not be reached.',
        CloseCode.tryAgainLater, timedOut ? 'upstream connect timeout' : 'upstream unreachable')
    })
    upstream.on('close', (code, reason) => this.#onUpstreamClose(code, reason.toString()))
  }

  #upstreamFailed (code: string, description: string, closeCode: number, reason: string): void {
    if (this.#closing) return
    this.#log.warn({ errorCode: code }, description)
    this.#sendClient({ type: 'Error', code, description })
    this.#shutdown(closeCode, reason)
  }

  #onUpstreamClose (code: number, reason: string): void {
    this.#upstreamState = 'closed'
    if (this.#closing) {
      this.#maybeFinish()
      return
    }
    this.#feed({ type: 'upstreamClosed', at: performance.now() })
    // The session's end is the upstream's: say why, then close with a matching code.
    const clientCode = code === 1000 || code === 1001 || code === 1011 || code === 1013 ? code : CloseCode.internal
    const description = code === 1001
      ? 'The upstream ended the session (its maximum duration was reached or it is going away).'
      : `The upstream closed the connection (code ${code}${reason === '' ? '' : `: ${reason}`}).`
    this.#log.info({ errorCode: ErrorCode.upstreamClosed, upstreamCloseCode: code }, 'upstream closed')
    this.#sendClient({ type: 'Error', code: ErrorCode.upstreamClosed, description })
    this.#shutdown(clientCode, truncateReason(`upstream closed (${code})`))
  }

  #onUpstreamFrame (data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.#count(this.#counts.upstreamReceived, 'binary')
      return
    }
    const buffer = toBuffer(data)
    // Cheap dispatch for the hot event: find the type near the start, no JSON.parse.
    const typeAt = buffer.indexOf(AUDIO_DELTA_TYPE)
    if (typeAt >= 0 && typeAt < 40 && buffer[typeAt + AUDIO_DELTA_TYPE.length] === 0x22) {
      const delta = stringField(buffer, DELTA_KEY)
      const responseId = stringField(buffer, RESPONSE_ID_KEY)
      if (delta !== undefined && responseId !== undefined) {
        this.#onAgentAudio(responseId, delta)
        return
      }
    }
    let event: UpstreamEvent
    try {
      const parsed: unknown = JSON.parse(buffer.toString())
      if (!isObject(parsed) || typeof parsed.type !== 'string') throw new Error('not an event')
      event = parsed as UpstreamEvent
    } catch {
      this.#count(this.#counts.upstreamReceived, 'invalid')
      this.#log.warn('upstream sent a frame that is not a JSON event; ignored')
      return
    }
    if (event.type === AUDIO_DELTA_TYPE) {
      const delta = str(event, 'delta')
      const responseId = str(event, 'response_id')
      if (delta !== undefined && responseId !== undefined) this.#onAgentAudio(responseId, delta)
      return
    }
    this.#onUpstreamEvent(event)
  }

  #onUpstreamEvent (event: UpstreamEvent): void {
    const at = performance.now()
    this.#count(this.#counts.upstreamReceived, event.type)
    const response = obj(event, 'response')
    const responseId = str(event, 'response_id') ?? str(response, 'id')
    const error = obj(event, 'error')
    this.#record('upstream->proxy', event.type, { responseId, itemId: str(event, 'item_id') ?? str(obj(event, 'item'), 'id'), code: str(error, 'code') })
    if (this.#log.isLevelEnabled('debug')) this.#log.debug({ direction: 'upstream->proxy', messageType: event.type, responseId }, 'upstream event')

    switch (event.type) {
      case 'input_audio_buffer.speech_started':
        // Barge-in: stop the interrupted response's audio at once.
        this.#mutedResponse = this.#speakingResponse ?? activeResponseId(this.#engine)
        this.#output?.reset()
        this.#sendClient({ type: 'UserStartedSpeaking' })
        break
      case 'input_audio_buffer.speech_stopped':
        this.#turnAnchor = at
        break
      case 'conversation.item.input_audio_transcription.completed': {
        const transcript = str(event, 'transcript')
        if (transcript !== undefined && transcript !== '') this.#sendClient({ type: 'ConversationText', role: 'user', content: transcript })
        break
      }
      case 'response.created':
        if (responseId !== undefined) {
          this.#createdAt.set(responseId, at)
          this.#speakingResponse = null
        }
        break
      case 'response.output_audio_transcript.done':
        this.#assistantText(str(event, 'item_id'), str(event, 'transcript'))
        break
      case 'response.output_text.done':
        this.#assistantText(str(event, 'item_id'), str(event, 'text'))
        break
      case 'response.output_item.added':
        remember(this.#responseItems, str(obj(event, 'item'), 'id'))
        break
      case 'conversation.item.done':
        this.#assistantItemDone(obj(event, 'item'))
        break
      case 'response.output_audio.done':
        if (responseId !== undefined && responseId === this.#speakingResponse && responseId !== this.#mutedResponse) {
          this.#sendClient({ type: 'AgentAudioDone' })
        }
        break
      case 'response.done':
        if (responseId !== undefined) this.#createdAt.delete(responseId)
        if (responseId === this.#mutedResponse) this.#mutedResponse = null
        break
    }
    if (ENGINE_EVENT_TYPES.has(event.type)) this.#feed({ type: 'upstream', at, event })
    if (event.type === 'error' && str(error, 'code') === 'conversation_already_has_active_response') {
      this.#log.warn({ errorCode: 'conversation_already_has_active_response' }, 'upstream reported an active-response conflict')
    }
  }

  #onAgentAudio (responseId: string, delta: string): void {
    this.#count(this.#counts.upstreamReceived, AUDIO_DELTA_TYPE)
    this.#recordAudio(AUDIO_STREAMS.upstreamIn, (delta.length * 3) >>> 2, responseId)
    if (responseId === this.#mutedResponse || this.#output === undefined) return
    if (this.#speakingResponse !== responseId) {
      this.#speakingResponse = responseId
      const now = performance.now()
      const created = this.#createdAt.get(responseId) ?? now
      const anchor = this.#turnAnchor > 0 && this.#turnAnchor <= created ? this.#turnAnchor : created
      this.#o.metrics.timeToFirstAudio((now - anchor) / 1000)
      this.#sendClient({
        type: 'AgentStartedSpeaking',
        total_latency: round3((now - anchor) / 1000),
        tts_latency: round3((now - created) / 1000),
        ttt_latency: round3((created - anchor) / 1000)
      })
      this.#feed({ type: 'agentAudio', at: now, responseId })
    }
    const audio = this.#output.push(delta)
    if (audio.length === 0) return
    if (this.#clientBackedUp()) {
      this.#o.metrics.droppedFrames('slow_client')
      this.#recordAudio(AUDIO_STREAMS.clientDropped, audio.length)
      return
    }
    this.#count(this.#counts.clientSent, 'binary')
    this.#recordAudio(AUDIO_STREAMS.clientOut, audio.length, responseId)
    cork(this.#client)
    this.#client.send(audio, BINARY)
  }

  /** ConversationText for the assistant, once per item. */
  #assistantText (itemId: string | undefined, text: string | undefined): void {
    if (text === undefined || text === '') return
    if (itemId !== undefined && this.#assistantTextItems.includes(itemId)) return
    remember(this.#assistantTextItems, itemId)
    this.#sendClient({ type: 'ConversationText', role: 'assistant', content: text })
  }

  #assistantItemDone (item: Record<string, unknown> | undefined): void {
    if (str(item, 'role') !== 'assistant' || !Array.isArray(item?.content)) return
    if (!this.#responseItems.includes(str(item, 'id') ?? '')) return
    const text = (item.content as unknown[]).map((part) => str(part, 'transcript') ?? str(part, 'text') ?? '').join('')
    this.#assistantText(str(item, 'id'), text)
  }

  // ── the engine ──────────────────────────────────────────────────────────────

  #feed (input: EngineInput): void {
    const [next, commands] = step(this.#engine, input)
    this.#engine = next
    for (const command of commands) this.#run(command)
  }

  #run (command: Command): void {
    switch (command.kind) {
      case 'upstream':
        this.#sendUpstreamRaw(JSON.stringify(command.event), command.event.type)
        this.#record('proxy->upstream', command.event.type, { eventId: command.event.event_id, responseId: str(command.event, 'response_id') })
        if (this.#log.isLevelEnabled('debug')) this.#log.debug({ direction: 'proxy->upstream', messageType: command.event.type }, 'upstream event sent')
        return
      case 'client':
        this.#sendClient(command.message)
        return
      case 'setTimer': {
        clearTimeout(this.#timers.get(command.name))
        const timer = setTimeout(() => {
          this.#timers.delete(command.name)
          try {
            if (!this.#closing) this.#feed({ type: 'timer', at: performance.now(), name: command.name })
          } catch (error) {
            this.#internalError(error)
          }
        }, command.ms)
        timer.unref()
        this.#timers.set(command.name, timer)
        return
      }
      case 'clearTimer':
        clearTimeout(this.#timers.get(command.name))
        this.#timers.delete(command.name)
        return
      case 'ready':
        if (this.#upstreamState === 'open') this.#flushHeldAudio()
        return
      case 'close':
        this.#shutdown(command.code, command.reason)
        return
      case 'log':
        this.#log[command.level](command.fields ?? {}, command.msg)
        return
      case 'metric':
        if (command.name === 'queueWait') this.#o.metrics.queueWait(command.seconds)
        else if (command.name === 'responseDone') this.#o.metrics.responseDone(command.status)
        else this.#o.metrics.activeResponseConflict()
    }
  }

  // ── I/O helpers ─────────────────────────────────────────────────────────────

  #sendUpstreamRaw (text: string, type: string): void {
    this.#count(this.#counts.upstreamSent, type)
    if (this.#upstreamState === 'open' && this.#upstream !== undefined) {
      this.#upstream.send(text)
    } else if (this.#upstreamState === 'connecting') {
      this.#outbox.push(text)
    }
  }

  #sendClient (message: ServerMessage): void {
    if (this.#client.readyState !== WebSocket.OPEN) return
    this.#count(this.#counts.clientSent, message.type)
    this.#record('proxy->client', message.type, { code: 'code' in message ? message.code : undefined })
    if (message.type === 'Error') this.#o.metrics.clientError(message.code)
    if (message.type === 'Error' || message.type === 'Warning') this.#log.info({ direction: 'proxy->client', messageType: message.type, errorCode: message.code }, message.description)
    this.#client.send(JSON.stringify(message))
  }

  #count (counts: TypeCounts, type: string): void {
    counts[type] = (counts[type] ?? 0) + 1
  }

  /**
   * Bounded timeline. Audio frames (entries with `bytes`) fold into one entry per
   * direction and type until a protocol event comes between them.
   */
  #record (direction: EventDirection, type: string, extra?: Partial<TimelineEvent>): void {
    const audio = extra?.bytes !== undefined
    const key = direction + type
    const run = audio ? this.#audioRun.get(key) : undefined
    if (run !== undefined) {
      run.bytes = (run.bytes ?? 0) + (extra?.bytes ?? 0)
      run.frames = (run.frames ?? 1) + 1
      run.at = isoNow()
      return
    }
    if (!audio) this.#audioRun.clear()
    const event: TimelineEvent = { at: isoNow(), direction, type }
    if (extra !== undefined) {
      for (const [name, value] of Object.entries(extra)) {
        if (value !== undefined) (event as unknown as Record<string, unknown>)[name] = value
      }
    }
    if (audio) this.#audioRun.set(key, event)
    this.#timeline.push(event)
    if (this.#timeline.length > TIMELINE_SIZE) this.#timeline.shift()
  }

  /** #record of one audio frame: folding into the current run (the usual case) allocates nothing. */
  #recordAudio (stream: AudioStream, bytes: number, responseId?: string): void {
    const run = this.#audioRun.get(stream.key)
    if (run === undefined) {
      this.#record(stream.direction, stream.type, responseId === undefined ? { bytes } : { bytes, responseId })
      return
    }
    run.bytes = (run.bytes ?? 0) + bytes
    run.frames = (run.frames ?? 1) + 1
    run.at = isoNow()
  }

  // ── limits and faults ───────────────────────────────────────────────────────

  /** A client sending more text messages per second than allowed is flooding: Error, then close. */
  #flooding (): boolean {
    const limit = this.#o.maxClientMessagesPerSecond
    if (limit <= 0) return false
    const now = performance.now()
    if (now - this.#messageWindowStart >= 1000) {
      this.#messageWindowStart = now
      this.#messagesInWindow = 0
    }
    if (++this.#messagesInWindow <= limit) return false
    this.#sendClient({ type: 'Error', code: ErrorCode.clientMessageRate, description: `More than ${limit} text messages in one second; the session was closed. Send audio as binary frames (they do not count).` })
    this.#shutdown(CloseCode.policy, 'message rate limit exceeded')
    return true
  }

  /**
   * A slow reader must not grow memory without bound: while more than the limit waits in
   * its send buffer, agent audio is dropped (counted in metrics); once it has stayed that
   * slow for too long, it is closed.
   */
  #clientBackedUp (): boolean {
    if (this.#client.bufferedAmount <= this.#o.maxClientBufferedBytes) {
      this.#slowSince = undefined
      return false
    }
    const now = performance.now()
    const slowForMs = this.#o.slowClientTimeoutMs
    if (this.#slowSince === undefined) this.#slowSince = now
    else if (now - this.#slowSince > slowForMs && !this.#closing) {
      this.#sendClient({ type: 'Error', code: ErrorCode.clientTooSlow, description: `The client did not read agent audio for more than ${slowForMs} ms; the session was closed.` })
      this.#shutdown(CloseCode.policy, 'client too slow: agent audio backed up')
    }
    return true
  }

  /** Liveness: a peer that stops answering pings (a dead path, a hung or vanished peer) is given up. */
  #watchLiveness (socket: WebSocket, everyMs: number, onDead: () => void): NodeJS.Timeout | undefined {
    if (everyMs <= 0 || this.#closing) return undefined
    let awaitingPong = false
    socket.on('pong', () => { awaitingPong = false })
    const timer = setInterval(() => {
      if (awaitingPong) {
        onDead()
        return
      }
      awaitingPong = true
      socket.ping()
    }, everyMs)
    timer.unref()
    return timer
  }

  /** Oversized or malformed client frames: ws already closes with 1009/1002; count and log them. */
  #onClientError (error: Error & { code?: string }): void {
    if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.#o.metrics.droppedFrames('client_frame_too_large')
    this.#log.warn({ err: error, errorCode: error.code }, 'client socket error')
  }

  /** A bug must end this session only, never the process or other sessions. */
  #internalError (error: unknown): void {
    this.#log.error({ err: error }, 'internal error; closing the session')
    if (this.#closing) return
    this.#sendClient({ type: 'Error', code: ErrorCode.internal, description: 'The proxy failed while handling this session and closed it. Reconnect to start a new session.' })
    try {
      this.#shutdown(CloseCode.internal, 'internal error')
    } catch {
      this.#client.terminate()
      this.#upstream?.terminate()
    }
  }

  // ── shutdown ────────────────────────────────────────────────────────────────

  #onClientClose (code: number, reason: string): void {
    this.#log.info({ clientCloseCode: code, reason }, 'client closed')
    this.#shutdown(CloseCode.normal, 'client closed')
  }

  /** Closes both legs (idempotent); the session is finished once both are closed. */
  #shutdown (code: number, reason: string): void {
    if (!this.#closing) {
      this.#closing = true
      this.#feed({ type: 'upstreamClosed', at: performance.now() })
      for (const timer of this.#timers.values()) clearTimeout(timer)
      this.#timers.clear()
      clearInterval(this.#upstreamPing)
      clearInterval(this.#clientPing)
      this.#heldAudio = []
      this.#outbox = []
      const upstream = this.#upstream
      if (upstream !== undefined && upstream.readyState === WebSocket.OPEN) upstream.close(1000, 'client session ended')
      else if (upstream !== undefined && upstream.readyState === WebSocket.CONNECTING) upstream.terminate()
      if (this.#client.readyState === WebSocket.OPEN) this.#client.close(code, truncateReason(reason))
    }
    this.#maybeFinish()
  }

  #maybeFinish (): void {
    if (this.#finished) return
    const clientDone = this.#client.readyState === WebSocket.CLOSED
    const upstreamDone = this.#upstream === undefined || this.#upstream.readyState === WebSocket.CLOSED
    if (!clientDone || !upstreamDone) return // whichever leg closes last calls back here
    this.#finished = true
    this.#o.onClosed(this)
  }
}

function sameFormat (current: ClientAudioFormat | undefined, next: ClientAudioFormat): boolean {
  return current !== undefined && current.encoding === next.encoding && current.sampleRate === next.sampleRate
}

function injectBehavior (value: unknown): InjectBehavior {
  return value === 'queue' || value === 'interrupt' ? value : 'refuse'
}

/** Adds an id to a bounded memory of the last ASSISTANT_TEXT_MEMORY ids. */
function remember (ids: string[], id: string | undefined): void {
  if (id === undefined || ids.includes(id)) return
  ids.push(id)
  if (ids.length > ASSISTANT_TEXT_MEMORY) ids.shift()
}

function toBuffer (data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}

/** Reads a JSON string field (`key` is `"name":"`) without parsing the whole frame (base64 and ids have no escapes). */
function stringField (buffer: Buffer, key: string): string | undefined {
  const start = buffer.indexOf(key)
  if (start < 0) return undefined
  const from = start + key.length
  const end = buffer.indexOf(0x22, from)
  if (end < 0) return undefined
  const value = buffer.toString('latin1', from, end)
  return value.includes('\\') ? undefined : value
}

/**
 * Corks a leg's socket until the end of this tick: the frames written to it meanwhile
 * (a burst read from the other leg in one go) leave in one writev, not one syscall each.
 */
function cork (ws: WebSocket | undefined): void {
  const socket = (ws as unknown as { _socket?: Duplex | null } | undefined)?._socket
  if (socket == null || socket.writableCorked > 0) return
  socket.cork()
  process.nextTick(uncork, socket)
}

function uncork (socket: Duplex): void {
  socket.uncork()
}

let isoMs = 0
let isoText = ''
/** The current time as an ISO string, formatted at most once per millisecond whatever the frame rate. */
function isoNow (): string {
  const now = Date.now()
  if (now !== isoMs) {
    isoMs = now
    isoText = new Date(now).toISOString()
  }
  return isoText
}

function round3 (seconds: number): number {
  return Math.round(seconds * 1000) / 1000
}

/** WebSocket close reasons are at most 123 bytes. */
function truncateReason (reason: string): string {
  return Buffer.byteLength(reason) <= 123 ? reason : Buffer.from(reason).subarray(0, 120).toString() + '...'
}
