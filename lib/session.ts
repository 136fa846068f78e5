// One Deepgram client ↔ one OpenAI Realtime upstream: the imperative shell around the
// turn engine. It wires the sockets to the engine and carries out the engine's
// commands; its own work is I/O: the audio hot path (converters, corking), timers,
// per-session limits (flood, slow client, liveness) and shutdown.
//
// "What happens on barge-in?" → lib/engine/engine.ts `#bargeIn`. "What happens to a
// FunctionCallResponse?" → lib/client-frames.ts decodes it into an intent; the engine
// forwards the output and decides when the follow-up goes.

import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import type { RawData } from 'ws'
import { SessionActivity, audioStream } from './activity.js'
import { InputAudioConverter, OutputAudioConverter } from './audio.js'
import type { ClientAudioFormat } from './audio.js'
import { decodeClientText } from './client-frames.js'
import type { Intent } from './client-frames.js'
import { TurnEngine } from './engine/engine.js'
import type { EngineTimings } from './engine/engine.js'
import { ENGINE_EVENT_TYPES, timerKey } from './engine/io.js'
import type { Command, EngineInput, Timer } from './engine/io.js'
import type { PluginLimits } from './limits.js'
import { watchLiveness } from './liveness.js'
import type { SessionPlan } from './mapping.js'
import type { ProxyMetrics } from './metrics.js'
import { CloseCode, CloseReason, truncateReason } from './protocol/codes.js'
import type { ServerMessage } from './protocol/deepgram.js'
import { ErrorCode, UNKNOWN_TYPE, WarningCode } from './protocol/deepgram.js'
import { ECHO_CHARS, isObject, obj, str } from './protocol/json.js'
import { INPUT_AUDIO_APPEND, SERVER_EVENT_TYPES, UpstreamType, boundedId, upstreamCode } from './protocol/openai.js'
import type { UpstreamEvent } from './protocol/openai.js'
import type { LiveSession, SessionDetail, SessionSummary } from './registry.js'
import { UpstreamLeg, closedFailure } from './upstream.js'
import type { UpstreamFailure } from './upstream.js'
import { cork } from './ws-cork.js'

/** The per-session limits (lib/limits.ts has them all, with their defaults and what a client sees when each trips). */
export type SessionLimits = Omit<PluginLimits, 'maxSessions' | 'maxClientFrameBytes'>

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
  /** Watchdog timings (the held-message bound is a limit: maxHeldMessages). */
  engine?: EngineTimings
  /** Called once, after both legs are closed. */
  onClosed: (session: Session) => void
}

const AUDIO_DELTA_TYPE = UpstreamType.outputAudioDelta
const DELTA_KEY = '"delta":"'
const RESPONSE_ID_KEY = '"response_id":"'
const BINARY = { binary: true }
/** How often a client not read because of upstream backpressure is checked for resuming. */
const BACKPRESSURE_CHECK_MS = 20

const AUDIO_STREAMS = {
  clientIn: audioStream('client->proxy', 'binary'),
  upstreamOut: audioStream('proxy->upstream', INPUT_AUDIO_APPEND),
  upstreamIn: audioStream('upstream->proxy', AUDIO_DELTA_TYPE),
  clientOut: audioStream('proxy->client', 'binary'),
  clientDropped: audioStream('proxy->client', 'binary_dropped')
}

export class Session implements LiveSession {
  readonly id = randomUUID()
  readonly startedAt = new Date()
  readonly #o: SessionOptions
  readonly #log: Logger
  readonly #client: WebSocket
  readonly #upstream: UpstreamLeg
  readonly #engine: TurnEngine
  readonly #activity = new SessionActivity()
  readonly #timers = new Map<string, NodeJS.Timeout>()
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
  #clientPing: NodeJS.Timeout | undefined
  /** While the client is not read (its upstream is backed up): the check that resumes it. */
  #backpressure: NodeJS.Timeout | undefined

  constructor (options: SessionOptions) {
    this.#o = options
    this.#client = options.client
    this.#log = options.logger.child({ sessionId: this.id, ...options.logBindings })
    this.#engine = new TurnEngine({
      ...options.engine,
      maxHeldIntents: options.maxHeldMessages,
      maxPromptChars: options.maxPromptChars,
      maxQueuedResponses: options.maxQueuedResponses,
      idPrefix: `${this.id.slice(0, 8)}_`
    })
    this.#client.on('message', this.#guard((data: RawData, isBinary: boolean) => this.#onClientFrame(data, isBinary)))
    this.#client.on('close', this.#guard((code: number, reason: Buffer) => this.#onClientClose(code, reason)))
    this.#client.on('error', this.#guard((error: Error) => this.#onClientError(error)))
    this.#sendClient({ type: 'Welcome', request_id: this.id })
    // A client that vanished without a close (a dead network path) would otherwise hold
    // its session, and its upstream, until the upstream's own limit.
    this.#clientPing = watchLiveness(this.#client, options.clientPingIntervalMs, this.#guard(() => {
      this.#log.info('client did not answer a ping: dropping the session')
      this.#client.terminate()
    }))
    this.#upstream = new UpstreamLeg({
      url: options.upstreamUrl,
      apiKey: options.apiKey,
      maxFrameBytes: options.maxUpstreamFrameBytes,
      connectTimeoutMs: options.upstreamConnectTimeoutMs,
      pingIntervalMs: options.upstreamPingIntervalMs,
      onOpen: this.#guard(() => {
        if (this.#engine.phase === 'ready') this.#flushHeldAudio()
      }),
      onFrame: this.#guard((data: RawData, isBinary: boolean) => this.#onUpstreamFrame(data, isBinary)),
      onFailure: this.#guard((failure: UpstreamFailure) => this.#upstreamFailed(failure)),
      onSocketError: this.#guard((error: Error) => this.#log.warn({ errorCode: (error as Error & { code?: string }).code, reason: error.message }, 'upstream socket error')),
      onClose: this.#guard((code: number) => this.#onUpstreamClose(code))
    })
  }

  // ── LiveSession (admin API) ─────────────────────────────────────────────────

  summary (): SessionSummary {
    const engine = this.#engine
    const activity = this.#activity
    return {
      id: this.id,
      startedAt: this.startedAt.toISOString(),
      remoteAddress: this.#o.remoteAddress,
      phase: this.#closing ? 'closing' : engine.phase,
      responseInProgress: engine.responseInProgress,
      activeResponseId: engine.activeResponseId,
      upstream: { state: this.#upstream.state, connects: 1, sent: { ...activity.upstreamSent }, received: { ...activity.upstreamReceived } },
      client: { sent: { ...activity.clientSent }, received: { ...activity.clientReceived } },
      pending: engine.pending,
      tags: [],
      usage: { responses: 0, inputTokens: 0, outputTokens: 0, inputAudioTokens: 0, outputAudioTokens: 0, cachedInputTokens: 0 }
    }
  }

  detail (): SessionDetail {
    return { ...this.summary(), events: this.#activity.events() }
  }

  close (code: number, reason: string): void {
    this.#shutdown(code, reason)
  }

  // ── client → proxy ──────────────────────────────────────────────────────────

  #onClientFrame (data: RawData, isBinary: boolean): void {
    if (this.#closing) return
    if (isBinary) {
      const chunk = toBuffer(data)
      this.#activity.count(this.#activity.clientReceived, 'binary')
      this.#activity.recordAudio(AUDIO_STREAMS.clientIn, chunk.length)
      this.#onClientAudio(chunk)
      return
    }
    if (this.#flooding()) return
    const frame = decodeClientText(toBuffer(data), { maxBytes: this.#o.maxClientMessageBytes, maxDepth: this.#o.maxClientJsonDepth })
    this.#activity.count(this.#activity.clientReceived, frame.type)
    if (frame.recorded) this.#activity.record('client->proxy', frame.type)
    const { action } = frame
    switch (action.kind) {
      case 'settings': return this.#onSettings(action.plan)
      case 'intent':
        for (const warning of action.warnings) this.#sendClient(warning)
        return this.#feedIntent(action.intent)
      case 'reply': return this.#sendClient(action.message)
      case 'end':
        this.#sendClient(action.error)
        return this.#shutdown(action.closeCode, action.reason)
      case 'none':
    }
  }

  #onSettings (plan: SessionPlan): void {
    for (const warning of plan.warnings) this.#sendClient(warning)
    if (!sameFormat(this.#inputFormat, plan.input)) {
      this.#inputFormat = plan.input
      this.#input = new InputAudioConverter(plan.input)
    }
    if (!sameFormat(this.#outputFormat, plan.output)) {
      this.#outputFormat = plan.output
      this.#output = new OutputAudioConverter(plan.output)
    }
    this.#feedIntent(plan.greeting === undefined
      ? { type: 'settings', fields: plan.fields, context: plan.context }
      : { type: 'settings', fields: plan.fields, context: plan.context, greeting: plan.greeting })
  }

  #onClientAudio (chunk: Buffer): void {
    if (this.#engine.phase !== 'ready' || !this.#upstream.isOpen) {
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
    this.#upstream.cork()
    this.#sendUpstreamRaw('{"type":"input_audio_buffer.append","event_id":"' + this.#engine.options.idPrefix + 'a' + (++this.#appendSeq) + '","audio":"' + audio + '"}', INPUT_AUDIO_APPEND)
    this.#activity.recordAudio(AUDIO_STREAMS.upstreamOut, chunk.length)
  }

  #flushHeldAudio (): void {
    const held = this.#heldAudio
    this.#heldAudio = []
    this.#heldAudioBytes = 0
    for (const chunk of held) this.#appendAudio(chunk)
  }

  // ── upstream → proxy ────────────────────────────────────────────────────────

  #upstreamFailed (failure: UpstreamFailure): void {
    if (this.#closing) return
    this.#log.warn({ errorCode: failure.code }, failure.description)
    this.#sendClient({ type: 'Error', code: failure.code, description: failure.description })
    this.#shutdown(failure.closeCode, failure.reason)
  }

  #onUpstreamClose (code: number): void {
    if (this.#closing) {
      this.#maybeFinish()
      return
    }
    this.#feed({ type: 'upstreamClosed', at: performance.now() })
    // The session's end is the upstream's: say why, then close with a matching code.
    const failure = closedFailure(code)
    this.#log.info({ errorCode: failure.code, upstreamCloseCode: code }, 'upstream closed')
    this.#sendClient({ type: 'Error', code: failure.code, description: failure.description })
    this.#shutdown(failure.closeCode, failure.reason)
  }

  #onUpstreamFrame (data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.#activity.count(this.#activity.upstreamReceived, 'binary')
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
      this.#activity.count(this.#activity.upstreamReceived, 'invalid')
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
    // Counted and recorded under known types only, with ids and codes bounded: the upstream's data never grows these.
    const type = SERVER_EVENT_TYPES.has(event.type) ? event.type : UNKNOWN_TYPE
    this.#activity.count(this.#activity.upstreamReceived, type)
    const response = obj(event, 'response')
    const responseId = boundedId(str(event, 'response_id') ?? str(response, 'id'))
    this.#activity.record('upstream->proxy', type, { responseId, itemId: boundedId(str(event, 'item_id') ?? str(obj(event, 'item'), 'id')), code: upstreamCode(str(obj(event, 'error'), 'code')) })
    if (this.#log.isLevelEnabled('debug')) this.#log.debug({ direction: 'upstream->proxy', messageType: type, responseId }, 'upstream event')
    if (ENGINE_EVENT_TYPES.has(event.type)) this.#feed({ type: 'upstream', at: performance.now(), event })
  }

  #onAgentAudio (responseId: string, delta: string): void {
    this.#activity.count(this.#activity.upstreamReceived, AUDIO_DELTA_TYPE)
    this.#activity.recordAudio(AUDIO_STREAMS.upstreamIn, (delta.length * 3) >>> 2, boundedId(responseId))
    if (this.#output === undefined) return
    if (responseId !== this.#engine.audibleResponse) {
      // Another response's first audio (or a muted one's): the engine decides.
      this.#feed({ type: 'agentAudio', at: performance.now(), responseId })
      if (responseId !== this.#engine.audibleResponse) return
    }
    const audio = this.#output.push(delta)
    if (audio.length === 0) return
    if (this.#clientBackedUp()) {
      this.#o.metrics.droppedFrames('slow_client')
      this.#activity.recordAudio(AUDIO_STREAMS.clientDropped, audio.length)
      return
    }
    this.#activity.count(this.#activity.clientSent, 'binary')
    this.#activity.recordAudio(AUDIO_STREAMS.clientOut, audio.length, boundedId(responseId))
    cork(this.#client)
    this.#client.send(audio, BINARY)
  }

  // ── the engine ──────────────────────────────────────────────────────────────

  #feedIntent (intent: Intent): void {
    this.#feed({ ...intent, at: performance.now() } as EngineInput)
  }

  #feed (input: EngineInput): void {
    for (const command of this.#engine.step(input)) this.#run(command)
  }

  #run (command: Command): void {
    switch (command.kind) {
      case 'upstream':
        this.#sendUpstreamRaw(JSON.stringify(command.event), command.event.type)
        this.#activity.record('proxy->upstream', command.event.type, { eventId: command.event.event_id, responseId: str(command.event, 'response_id') })
        if (this.#log.isLevelEnabled('debug')) this.#log.debug({ direction: 'proxy->upstream', messageType: command.event.type }, 'upstream event sent')
        return
      case 'client':
        this.#sendClient(command.message)
        return
      case 'setTimer':
        this.#setTimer(command.timer, command.ms)
        return
      case 'clearTimer': {
        const key = timerKey(command.timer)
        clearTimeout(this.#timers.get(key))
        this.#timers.delete(key)
        return
      }
      case 'ready':
        if (this.#upstream.isOpen) this.#flushHeldAudio()
        return
      case 'resetOutputAudio':
        this.#output?.reset()
        return
      case 'close':
        this.#shutdown(command.code, command.reason)
        return
      case 'log':
        this.#log[command.level](command.fields ?? {}, command.msg)
        return
      case 'metric':
        switch (command.name) {
          case 'queueWait': return this.#o.metrics.queueWait(command.seconds)
          case 'responseDone': return this.#o.metrics.responseDone(command.status)
          case 'conflict': return this.#o.metrics.activeResponseConflict()
          case 'timeToFirstAudio': return this.#o.metrics.timeToFirstAudio(command.seconds)
        }
    }
  }

  #setTimer (timer: Timer, ms: number): void {
    const key = timerKey(timer)
    clearTimeout(this.#timers.get(key))
    const handle = setTimeout(this.#guard(() => {
      this.#timers.delete(key)
      if (!this.#closing) this.#feed({ type: 'timer', at: performance.now(), timer })
    }), ms)
    handle.unref()
    this.#timers.set(key, handle)
  }

  // ── I/O helpers ─────────────────────────────────────────────────────────────

  #sendUpstreamRaw (text: string, type: string): void {
    this.#activity.count(this.#activity.upstreamSent, type)
    this.#upstream.send(text)
    if (this.#backpressure === undefined && this.#upstream.bufferedAmount > this.#o.maxUpstreamBufferedBytes) this.#stopReadingClient()
  }

  /**
   * The upstream reads slower than the client sends: stop reading the client (TCP pushes
   * back on it) rather than buffer, until the upstream has taken half of what waits. If it
   * stays backed up too long, the session ends.
   */
  #stopReadingClient (): void {
    this.#client.pause()
    this.#o.metrics.backpressurePause()
    const since = performance.now()
    this.#backpressure = setInterval(this.#guard(() => {
      if (this.#upstream.bufferedAmount <= this.#o.maxUpstreamBufferedBytes / 2) {
        this.#resumeReadingClient()
      } else if (performance.now() - since > this.#o.slowUpstreamTimeoutMs) {
        this.#resumeReadingClient()
        this.#sendClient({ type: 'Error', code: ErrorCode.upstreamTooSlow, description: `The upstream did not take the session's audio for more than ${this.#o.slowUpstreamTimeoutMs} ms; the session was closed.` })
        this.#shutdown(CloseCode.tryAgainLater, 'upstream too slow')
      }
    }), BACKPRESSURE_CHECK_MS)
    this.#backpressure.unref()
  }

  #resumeReadingClient (): void {
    clearInterval(this.#backpressure)
    this.#backpressure = undefined
    this.#client.resume()
  }

  #sendClient (message: ServerMessage): void {
    if (this.#client.readyState !== WebSocket.OPEN) return
    if (this.#client.bufferedAmount > 2 * this.#o.maxClientBufferedBytes && !(message.type === 'Error' && message.code === ErrorCode.clientTooSlow)) {
      // A client that does not read: protocol messages cannot be dropped like audio, so it goes.
      this.#sendClient({ type: 'Error', code: ErrorCode.clientTooSlow, description: `The client did not read its messages: more than ${2 * this.#o.maxClientBufferedBytes} bytes waited for it; the session was closed.` })
      this.#shutdown(CloseCode.policy, 'client too slow: messages backed up')
      return
    }
    this.#activity.count(this.#activity.clientSent, message.type)
    this.#activity.record('proxy->client', message.type, { code: 'code' in message ? message.code : undefined })
    if (message.type === 'Error') this.#o.metrics.clientError(message.code)
    if (message.type === 'Warning') this.#o.metrics.clientWarning(message.code)
    if (message.type === 'Error' || message.type === 'Warning') this.#log.info({ direction: 'proxy->client', messageType: message.type, errorCode: message.code }, message.description)
    this.#client.send(JSON.stringify(message))
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

  /**
   * Oversized or malformed client frames (ws already closes with 1009/1002): counted and
   * logged at warn without a stack trace, since any client can produce them at will.
   */
  #onClientError (error: Error & { code?: string }): void {
    if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.#o.metrics.droppedFrames('client_frame_too_large')
    this.#log.warn({ errorCode: error.code, reason: error.message }, 'client socket error')
  }

  /** Wraps a socket handler or timer callback: whatever it throws ends this session only, never the process. */
  #guard<A extends unknown[]> (handler: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        handler(...args)
      } catch (error) {
        this.#internalError(error)
      }
    }
  }

  /**
   * A bug must end this session only, never the process or other sessions: the client is
   * told (INTERNAL_SERVER_ERROR, close 1011), every timer is cleared and both legs close,
   * whatever fails on the way.
   */
  #internalError (error: unknown): void {
    try {
      this.#log.error({ err: error }, 'internal error; closing the session')
    } catch {}
    if (this.#closing) return
    try {
      this.#sendClient({ type: 'Error', code: ErrorCode.internal, description: 'The proxy failed while handling this session and closed it. Reconnect to start a new session.' })
    } catch {}
    try {
      this.#shutdown(CloseCode.internal, 'internal error')
    } catch {
      this.#releaseTimers()
      this.#client.terminate()
      this.#upstream.terminate()
    }
  }

  // ── shutdown ────────────────────────────────────────────────────────────────

  #onClientClose (code: number, reason: Buffer): void {
    this.#log.info({ clientCloseCode: code, reason: reason.toString('utf8', 0, ECHO_CHARS) }, CloseReason.clientClosed)
    this.#shutdown(CloseCode.normal, CloseReason.clientClosed)
  }

  /**
   * Closes both legs (idempotent); the session is finished once both are closed. Timers
   * and buffers go first, so that nothing of this session outlives a failure below.
   */
  #shutdown (code: number, reason: string): void {
    if (!this.#closing) {
      this.#closing = true
      this.#releaseTimers()
      this.#heldAudio = []
      this.#heldAudioBytes = 0
      this.#feed({ type: 'upstreamClosed', at: performance.now() })
      this.#upstream.close(1000, 'client session ended')
      if (this.#client.readyState === WebSocket.OPEN) this.#client.close(code, truncateReason(reason))
    }
    this.#maybeFinish()
  }

  #releaseTimers (): void {
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
    clearInterval(this.#clientPing)
    if (this.#backpressure !== undefined) this.#resumeReadingClient()
  }

  #maybeFinish (): void {
    if (this.#finished) return
    const clientDone = this.#client.readyState === WebSocket.CLOSED
    if (!clientDone || !this.#upstream.isClosed) return // whichever leg closes last calls back here
    this.#finished = true
    this.#o.onClosed(this)
  }
}

function sameFormat (current: ClientAudioFormat | undefined, next: ClientAudioFormat): boolean {
  return current !== undefined && current.encoding === next.encoding && current.sampleRate === next.sampleRate
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
