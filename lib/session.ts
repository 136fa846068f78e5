// One Deepgram client ↔ one OpenAI Realtime upstream: the imperative shell around the
// turn engine. It wires the sockets to the engine and carries out the engine's
// commands; its own work is I/O: the audio hot path (converters, corking), timers,
// per-session limits (flood, slow client, liveness) and shutdown.
//
// "What happens on barge-in?" → lib/engine/engine.ts `#bargeIn`. "What happens to a
// FunctionCallResponse?" → lib/client-frames.ts decodes it into an intent; the engine
// forwards the output and decides when the follow-up goes.

import { randomUUID } from 'node:crypto'
import pino from 'pino'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import type { RawData } from 'ws'
import { SessionActivity, stream, type Stream } from './activity.js'
import { InputAudioConverter, OutputAudioConverter } from './audio.js'
import type { ClientAudioFormat } from './audio.js'
import { decodeClientText } from './client-frames.js'
import type { Intent } from './client-frames.js'
import { TurnEngine, engineOptions } from './engine/engine.js'
import type { EngineOptions, EngineTimings } from './engine/engine.js'
import { ENGINE_EVENT_TYPES, timerKey } from './engine/io.js'
import type { Command, EngineInput, Timer } from './engine/io.js'
import type { PluginLimits } from './limits.js'
import { watchLiveness } from './liveness.js'
import { callEndpoint } from './functions.js'
import type { FunctionEndpoint } from './functions.js'
import { upstreamUrlFor } from './mapping.js'
import type { SessionPlan, SettingsPolicy } from './mapping.js'
import type { ProxyMetrics } from './metrics.js'
import { CloseCode, CloseReason, truncateReason } from './protocol/codes.js'
import type { ServerMessage } from './protocol/deepgram.js'
import { ErrorCode, UNKNOWN_TYPE, WarningCode } from './protocol/deepgram.js'
import { ECHO_CHARS, isObject, obj, quoted, str } from './protocol/json.js'
import { INPUT_AUDIO_APPEND, SERVER_EVENT_TYPES, UpstreamType, boundedId, upstreamCode } from './protocol/openai.js'
import type { UpstreamEvent } from './protocol/openai.js'
import type { LiveSession, SessionDetail, SessionSummary } from './registry.js'
import { UpstreamLeg, closedFailure } from './upstream.js'
import type { ApiKeyHeader, UpstreamEvents, UpstreamFailure } from './upstream.js'
import { cork } from './ws-cork.js'

/** The per-session limits (lib/limits.ts has them all, with their defaults and what a client sees when each trips). */
export type SessionLimits = Omit<PluginLimits, 'maxSessions' | 'maxClientFrameBytes'>

/**
 * What every session of a plugin shares: built once (`sessionOptions`), not per session.
 * What is a session's own (its socket, its peer, its trace context) the constructor takes.
 */
export interface SessionOptions extends SessionLimits {
  /** The app's logger; the session logs through one child of it. */
  logger: Logger
  metrics: ProxyMetrics
  upstreamUrl: string
  apiKey: string | undefined
  /** Default: the header the upstream URL's host takes (api-key for Azure OpenAI). */
  apiKeyHeader?: ApiKeyHeader
  /** The operator's choices a client's Settings may make: models, function endpoints. */
  policy: SettingsPolicy
  /** The turn engine's options: the watchdog timings and the limits it enforces. */
  engine: EngineOptions
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
  clientIn: stream('client->proxy', 'binary', 'clientReceived'),
  upstreamOut: stream('proxy->upstream', INPUT_AUDIO_APPEND, 'upstreamSent'),
  upstreamIn: stream('upstream->proxy', AUDIO_DELTA_TYPE, 'upstreamReceived'),
  clientOut: stream('proxy->client', 'binary', 'clientSent'),
  clientDropped: stream('proxy->client', 'binary_dropped')
}
/** The upstream's other deltas (words, call arguments) fold into runs in the timeline too. */
const DELTA_STREAMS: ReadonlyMap<string, Stream> = new Map([...SERVER_EVENT_TYPES]
  .filter((type) => type.endsWith('.delta') && type !== AUDIO_DELTA_TYPE)
  .map((type) => [type, stream('upstream->proxy', type, 'upstreamReceived')]))

const SESSION = Symbol('session')

type ClientSocket = WebSocket & { [SESSION]: Session }

function sessionOf (client: WebSocket): Session {
  return (client as ClientSocket)[SESSION]
}

export class Session implements LiveSession {
  readonly id = randomUUID()
  /** When the session started, in ms since the epoch (a number, not a `Date` object kept for the session's life). */
  readonly startedAt = Date.now()
  readonly #o: SessionOptions
  #log: Logger
  readonly #client: WebSocket
  readonly #remoteAddress: string
  /** The upstream connection in use; a renewal or a reconnect replaces it. */
  #upstream: UpstreamLeg<Session>
  /** Every upstream connection not closed yet (a replaced one may still be closing). */
  readonly #legs = new Set<UpstreamLeg<Session>>()
  #connects = 0
  /** The upstream URL in use: the operator's, with the model the first Settings chose. */
  #upstreamUrl: string
  /** Server-side functions' endpoints, by name (as the latest Settings or UpdateThink declared them). */
  #endpoints: ReadonlyMap<string, FunctionEndpoint> = NO_ENDPOINTS
  /** Aborts the endpoint calls in flight when the session ends. */
  #calls: AbortController | undefined
  /** The next connection, while it waits for its backoff. */
  #connectTimer: NodeJS.Timeout | undefined
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
  /** Bytes per ms of the agent's audio as the upstream sends it (PCM16 at 24 kHz, or G.711). */
  #upstreamAudioBytesPerMs = 48
  #tags: string[] = []
  /** How the session ended, for its summary record. */
  #ended: { code: number, reason: string } | undefined
  #conflicts = 0
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

  /**
   * `logBindings` label every line of this session (e.g. its trace context); `remoteAddress`
   * is the client's, as `/connections` shows it.
   */
  constructor (options: SessionOptions, client: WebSocket, remoteAddress: string, logBindings?: Record<string, unknown>) {
    this.#o = options
    this.#upstreamUrl = options.upstreamUrl
    this.#client = client
    this.#remoteAddress = remoteAddress
    this.#log = flatChild(options.logger, { sessionId: this.id, ...logBindings })
    this.#engine = new TurnEngine(`${this.id.slice(0, 8)}_`, options.engine)
    ;(this.#client as ClientSocket)[SESSION] = this
    this.#client.on('message', Session.#onClientMessage)
    this.#client.on('close', Session.#onClientSocketClose)
    this.#client.on('error', Session.#onClientSocketError)
    this.#sendClient({ type: 'Welcome', request_id: this.id })
    // A client that vanished without a close (a dead network path) would otherwise hold
    // its session, and its upstream, until the upstream's own limit.
    this.#clientPing = watchLiveness(this.#client, options.clientPingIntervalMs, Session.#onClientDead, this)
    this.#upstream = this.#openUpstream()
  }

  // The sockets' listeners and the upstream legs' events are shared by every session
  // (`this` is the socket, which names its session): an idle session holds no closures.
  // Each runs its handler through #safely, so whatever it throws ends this session only.

  static #onClientMessage (this: WebSocket, data: RawData, isBinary: boolean): void {
    const session = sessionOf(this)
    session.#safely(session.#onClientFrame, data, isBinary)
  }

  static #onClientSocketClose (this: WebSocket, code: number, reason: Buffer): void {
    const session = sessionOf(this)
    session.#safely(session.#onClientClose, code, reason)
  }

  static #onClientSocketError (this: WebSocket, error: Error): void {
    const session = sessionOf(this)
    session.#safely(session.#onClientError, error, undefined)
  }

  static #onClientDead (session: Session): void {
    session.#safely(session.#dropDeadClient, undefined, undefined)
  }

  static readonly #upstreamEvents: UpstreamEvents<Session> = {
    opened: (session, leg) => session.#safely(session.#onUpstreamOpen, leg, undefined),
    frame: (session, leg, data, isBinary) => {
      if (leg === session.#upstream) session.#safely(session.#onUpstreamFrame, data, isBinary)
    },
    failed: (session, leg, failure) => session.#safely(session.#upstreamFailed, leg, failure),
    socketError: (session, _leg, error) => session.#safely(session.#onUpstreamSocketError, error, undefined),
    closed: (session, leg, code) => session.#safely(session.#onUpstreamClose, leg, code)
  }

  /** Runs a socket handler: whatever it throws ends this session only, never the process. */
  #safely<A, B> (handler: (this: Session, a: A, b: B) => void, a: A, b: B): void {
    try {
      handler.call(this, a, b)
    } catch (error) {
      this.#internalError(error)
    }
  }

  #dropDeadClient (): void {
    this.#log.info('client did not answer a ping: dropping the session')
    this.#client.terminate()
  }

  /** A new upstream connection; events of one that was replaced meanwhile are ignored. */
  #openUpstream (): UpstreamLeg<Session> {
    const o = this.#o
    this.#connects++
    const leg = new UpstreamLeg({
      url: this.#upstreamUrl,
      apiKey: o.apiKey,
      ...(o.apiKeyHeader !== undefined && { apiKeyHeader: o.apiKeyHeader }),
      maxFrameBytes: o.maxUpstreamFrameBytes,
      connectTimeoutMs: o.upstreamConnectTimeoutMs,
      pingIntervalMs: o.upstreamPingIntervalMs,
      owner: this,
      events: Session.#upstreamEvents
    })
    this.#legs.add(leg)
    return leg
  }

  #onUpstreamOpen (leg: UpstreamLeg<Session>): void {
    if (leg !== this.#upstream) return
    if (this.#connects > 1) this.#feed({ type: 'upstreamOpened', at: performance.now() })
    if (this.#engine.audioFlows) this.#flushHeldAudio()
  }

  #onUpstreamSocketError (error: Error & { code?: string }): void {
    this.#log.warn({ errorCode: error.code, reason: error.message }, 'upstream socket error')
  }

  // ── LiveSession (admin API) ─────────────────────────────────────────────────

  summary (): SessionSummary {
    const engine = this.#engine
    const activity = this.#activity
    return {
      id: this.id,
      startedAt: new Date(this.startedAt).toISOString(),
      remoteAddress: this.#remoteAddress,
      phase: this.#closing ? 'closing' : engine.phase,
      responseInProgress: engine.responseInProgress,
      activeResponseId: engine.activeResponseId,
      upstream: { state: this.#upstream.state, connects: this.#connects, sent: activity.counts('upstreamSent'), received: activity.counts('upstreamReceived') },
      client: { sent: activity.counts('clientSent'), received: activity.counts('clientReceived') },
      pending: engine.pending,
      tags: [...this.#tags],
      usage: { ...engine.usage }
    }
  }

  get inTurn (): boolean {
    return this.#engine.inTurn
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
      this.#activity.recordAudio(AUDIO_STREAMS.clientIn, chunk.length)
      this.#onClientAudio(chunk)
      return
    }
    if (this.#flooding()) return
    const frame = decodeClientText(toBuffer(data), { maxBytes: this.#o.maxClientMessageBytes, maxDepth: this.#o.maxClientJsonDepth, policy: this.#o.policy })
    this.#activity.count(this.#activity.clientReceived, frame.type)
    if (frame.recorded) this.#activity.record('client->proxy', frame.type)
    const { action } = frame
    switch (action.kind) {
      case 'settings': return this.#onSettings(action.plan)
      case 'intent':
        for (const warning of action.warnings) this.#sendClient(warning)
        if (action.serverFunctions !== undefined && action.intent.type === 'configure') {
          this.#endpoints = endpointsKept(action.serverFunctions)
          return this.#feedIntent({ ...action.intent, serverFunctions: [...action.serverFunctions.keys()] })
        }
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
    this.#upstreamAudioBytesPerMs = plan.output.encoding === 'linear16' ? 48 : 8
    if (this.#engine.phase === 'awaiting_settings') {
      if (plan.tags.length > 0) {
        // Tags label every later line of this session (they come with the first Settings).
        this.#tags = plan.tags
        this.#log = flatChild(this.#log, { tags: plan.tags })
      }
      if (plan.model !== undefined) this.#useModel(plan.model)
    }
    this.#endpoints = endpointsKept(plan.serverFunctions)
    const serverFunctions = [...plan.serverFunctions.keys()]
    this.#feedIntent(plan.greeting === undefined
      ? { type: 'settings', fields: plan.fields, context: plan.context, history: plan.history, serverFunctions }
      : { type: 'settings', fields: plan.fields, context: plan.context, greeting: plan.greeting, history: plan.history, serverFunctions })
  }

  /**
   * The first Settings chose the model (OPENAI_REALTIME_MODELS): the upstream opened at the
   * upgrade is replaced by one for that model, before anything is sent on it.
   */
  #useModel (model: string): void {
    const url = upstreamUrlFor(this.#o.upstreamUrl, model)
    if (url === this.#upstreamUrl) return
    this.#upstreamUrl = url
    const old = this.#upstream
    old.retired = true
    old.close(1000, 'another model was chosen')
    this.#upstream = this.#openUpstream()
  }

  /** A server-side function: its endpoint is called, and its output goes to the engine like a client's answer. */
  #callFunction (callId: string, name: string, args: string): void {
    const endpoint = this.#endpoints.get(name)
    this.#calls ??= new AbortController()
    const output = endpoint === undefined
      ? Promise.resolve(JSON.stringify({ error: 'this function is no longer declared' }))
      : callEndpoint(endpoint, args, { allowlist: this.#o.policy.functionEndpoints, timeoutMs: this.#o.functionEndpointTimeoutMs, maxResponseBytes: this.#o.maxFunctionResponseBytes, signal: this.#calls.signal })
    output.then(this.#guard((text: string) => {
      if (this.#closing) return
      const failure = failureOf(text)
      if (failure !== undefined) this.#sendClient({ type: 'Warning', code: WarningCode.functionCallFailed, description: `Function ${quoted(name)} failed: ${quoted(failure)}. The model was told.` })
      this.#feed({ type: 'functionResult', at: performance.now(), callId, output: text, serverSide: true })
    }))
  }

  #onClientAudio (chunk: Buffer): void {
    if (!this.#engine.audioFlows || !this.#upstream.isOpen) {
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
    this.#sendUpstreamText('{"type":"input_audio_buffer.append","event_id":"' + this.#engine.idPrefix + 'a' + (++this.#appendSeq) + '","audio":"' + audio + '"}')
    this.#activity.recordAudio(AUDIO_STREAMS.upstreamOut, chunk.length)
  }

  #flushHeldAudio (): void {
    const held = this.#heldAudio
    this.#heldAudio = []
    this.#heldAudioBytes = 0
    for (const chunk of held) this.#appendAudio(chunk)
  }

  // ── upstream → proxy ────────────────────────────────────────────────────────

  /** A connection failed: before it opened (refused, unreachable) or after (a protocol fault, no pong). The engine decides what follows. */
  #upstreamFailed (leg: UpstreamLeg<Session>, failure: UpstreamFailure): void {
    if (this.#closing || leg !== this.#upstream || leg.retired) return
    this.#log.warn({ errorCode: failure.code }, failure.description)
    const opened = leg.state !== 'connecting'
    leg.retired = true
    this.#feed(opened
      ? { type: 'upstreamLost', at: performance.now(), closeCode: undefined, failure }
      : { type: 'upstreamConnectFailed', at: performance.now(), failure })
  }

  #onUpstreamClose (leg: UpstreamLeg<Session>, code: number): void {
    this.#legs.delete(leg)
    if (this.#closing || leg !== this.#upstream || leg.retired) {
      this.#maybeFinish()
      return
    }
    leg.retired = true
    const failure = closedFailure(code)
    this.#log.info({ errorCode: failure.code, upstreamCloseCode: code }, 'upstream closed')
    this.#feed({ type: 'upstreamLost', at: performance.now(), closeCode: code, failure })
  }

  /** The engine wants a new upstream connection (a renewal, or a reconnect after a backoff). */
  #reconnect (delayMs: number, reason: 'renew' | 'reconnect'): void {
    clearTimeout(this.#connectTimer)
    this.#connectTimer = setTimeout(this.#guard(() => {
      this.#connectTimer = undefined
      if (this.#closing) return
      const old = this.#upstream
      old.retired = true
      old.close(1000, reason === 'renew' ? 'renewing the session' : 'replaced')
      this.#activity.record('proxy->upstream', 'upstream.connect', { code: reason })
      this.#log.info({ reason, connects: this.#connects + 1 }, 'opening a new upstream connection')
      this.#upstream = this.#openUpstream()
    }), delayMs)
    this.#connectTimer.unref()
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
    const responseId = boundedId(str(event, 'response_id') ?? str(obj(event, 'response'), 'id'))
    const delta = DELTA_STREAMS.get(event.type)
    let type: string
    if (delta !== undefined) {
      type = delta.type
      this.#activity.recordDelta(delta, responseId, boundedId(str(event, 'item_id')))
    } else {
      type = SERVER_EVENT_TYPES.has(event.type) ? event.type : UNKNOWN_TYPE
      this.#activity.count(this.#activity.upstreamReceived, type)
      this.#activity.record('upstream->proxy', type, { responseId, itemId: boundedId(str(event, 'item_id') ?? str(obj(event, 'item'), 'id')), code: upstreamCode(str(obj(event, 'error'), 'code')) })
    }
    if (this.#log.isLevelEnabled('debug')) this.#log.debug({ direction: 'upstream->proxy', messageType: type, responseId }, 'upstream event')
    if (ENGINE_EVENT_TYPES.has(event.type)) this.#feed({ type: 'upstream', at: performance.now(), event })
  }

  #onAgentAudio (responseId: string, delta: string): void {
    this.#activity.recordAudio(AUDIO_STREAMS.upstreamIn, (delta.length * 3) >>> 2, boundedId(responseId))
    if (this.#output === undefined) return
    const ms = ((delta.length * 3) >>> 2) / this.#upstreamAudioBytesPerMs
    if (responseId !== this.#engine.audibleResponse) {
      // Another response's first audio (or a muted one's): the engine decides.
      this.#feed({ type: 'agentAudio', at: performance.now(), responseId })
      if (responseId !== this.#engine.audibleResponse) {
        this.#engine.noteAudio(responseId, ms, false)
        return
      }
    }
    const audio = this.#output.push(delta)
    if (audio.length > 0 && this.#clientBackedUp()) {
      this.#engine.noteAudio(responseId, ms, false)
      this.#o.metrics.droppedFrames('slow_client')
      this.#activity.recordAudio(AUDIO_STREAMS.clientDropped, audio.length)
      return
    }
    this.#engine.noteAudio(responseId, ms, true)
    if (audio.length === 0) return
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
      case 'connectUpstream':
        this.#reconnect(command.delayMs, command.reason)
        return
      case 'callFunction':
        this.#callFunction(command.callId, command.name, command.arguments)
        return
      case 'log':
        this.#log[command.level](command.fields ?? {}, command.msg)
        return
      case 'metric':
        switch (command.name) {
          case 'queueWait': return this.#o.metrics.queueWait(command.seconds)
          case 'responseDone': return this.#o.metrics.responseDone(command.status)
          case 'conflict':
            this.#conflicts++
            return this.#o.metrics.activeResponseConflict()
          case 'timeToFirstAudio': return this.#o.metrics.timeToFirstAudio(command.seconds)
          case 'tokens': return this.#o.metrics.tokens(command.usage)
        }
    }
  }

  #setTimer (timer: Timer, ms: number): void {
    const key = timerKey(timer)
    clearTimeout(this.#timers.get(key))
    const handle = setTimeout(Session.#onTimer, ms, this, timer, key)
    handle.unref()
    this.#timers.set(key, handle)
  }

  /** Shared by every engine timer (the timer carries its session), like the socket listeners. */
  static #onTimer (session: Session, timer: Timer, key: string): void {
    session.#safely(session.#timerFired, timer, key)
  }

  #timerFired (timer: Timer, key: string): void {
    this.#timers.delete(key)
    if (!this.#closing) this.#feed({ type: 'timer', at: performance.now(), timer })
  }

  // ── I/O helpers ─────────────────────────────────────────────────────────────

  #sendUpstreamRaw (text: string, type: string): void {
    this.#activity.count(this.#activity.upstreamSent, type)
    this.#sendUpstreamText(text)
  }

  /**
   * Sends, uncounted (audio is counted with its timeline run). Corked for the tick: what
   * one read brings about (frames of a burst, an item and its response.create) leaves in
   * one write.
   */
  #sendUpstreamText (text: string): void {
    this.#upstream.cork()
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
    // Corked like agent audio: the messages of one engine step (AgentAudioDone, ConversationText, History…) leave in one write.
    cork(this.#client)
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
    this.#ended ??= { code, reason: CloseReason.clientClosed }
    this.#shutdown(CloseCode.normal, CloseReason.clientClosed)
  }

  /**
   * Closes both legs (idempotent); the session is finished once both are closed. Timers
   * and buffers go first, so that nothing of this session outlives a failure below.
   */
  #shutdown (code: number, reason: string): void {
    if (!this.#closing) {
      this.#closing = true
      this.#ended ??= { code, reason }
      this.#releaseTimers()
      this.#heldAudio = []
      this.#heldAudioBytes = 0
      this.#feed({ type: 'upstreamClosed', at: performance.now() })
      for (const leg of this.#legs) leg.close(1000, 'client session ended')
      if (this.#client.readyState === WebSocket.OPEN) this.#client.close(code, truncateReason(reason))
    }
    this.#maybeFinish()
  }

  #releaseTimers (): void {
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
    clearInterval(this.#clientPing)
    clearTimeout(this.#connectTimer)
    this.#calls?.abort()
    if (this.#backpressure !== undefined) this.#resumeReadingClient()
  }

  #maybeFinish (): void {
    if (this.#finished) return
    const clientDone = this.#client.readyState === WebSocket.CLOSED
    if (!clientDone || [...this.#legs].some((leg) => !leg.isClosed)) return // whichever leg closes last calls back here
    this.#finished = true
    this.#logSummary()
    this.#o.onClosed(this)
  }

  /** One record per session, at its end: what it was, what it cost. */
  #logSummary (): void {
    const usage = this.#engine.usage
    this.#log.info({
      durationMs: Math.round(Date.now() - this.startedAt),
      closeCode: this.#ended?.code,
      closeReason: this.#ended?.reason,
      responses: usage.responses,
      usage: { ...usage },
      conflicts: this.#conflicts,
      upstreamConnections: this.#connects,
      tags: this.#tags
    }, 'session summary')
  }
}

/** What went wrong, if an endpoint's output reports a failure (`{"error": "…"}`, as callEndpoint words them). */
function failureOf (output: string): string | undefined {
  if (!output.startsWith('{"error"')) return undefined
  try {
    const parsed: unknown = JSON.parse(output)
    return isObject(parsed) && typeof parsed.error === 'string' ? parsed.error : undefined
  } catch {
    return undefined
  }
}

/** The options a plugin's sessions share, from its limits and the engine's watchdog timings. */
export function sessionOptions (shared: Omit<SessionOptions, 'engine'>, timings: EngineTimings = {}): SessionOptions {
  return {
    ...shared,
    engine: engineOptions({
      ...timings,
      maxHeldIntents: shared.maxHeldMessages,
      maxPromptChars: shared.maxPromptChars,
      maxQueuedResponses: shared.maxQueuedResponses,
      renewAfterMs: shared.upstreamRenewAfterMs,
      reconnectAttempts: shared.upstreamReconnectAttempts
    })
  }
}

/**
 * A child logger whose bindings are one flat string. pino appends each binding to its
 * parent's as a string concatenation, which V8 keeps as a tree of the pieces (≈ 750 B for
 * a session's bindings, against ≈ 200 B as one string) for as long as the session lives.
 */
function flatChild (parent: Logger, bindings: Record<string, unknown>): Logger {
  const child = parent.child(bindings)
  const held = child as unknown as Record<symbol, unknown>
  const text = held[pino.symbols.chindingsSym]
  if (typeof text === 'string') held[pino.symbols.chindingsSym] = Buffer.from(text).toString()
  return child
}

/** No server-side functions: shared, so a session without them keeps no map of its own. */
const NO_ENDPOINTS: ReadonlyMap<string, FunctionEndpoint> = new Map()

function endpointsKept (declared: ReadonlyMap<string, FunctionEndpoint>): ReadonlyMap<string, FunctionEndpoint> {
  return declared.size === 0 ? NO_ENDPOINTS : declared
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
