// The turn engine: the one place that decides anything turn-related, i.e. when
// `response.create`, `session.update`, cancels and items go upstream, and what the
// client is told and hears (barge-in, AgentStartedSpeaking and its latencies,
// AgentAudioDone, ConversationText).
//
// A sans-IO state machine: `step(input)` → commands. No sockets, clock or logger inside;
// inputs carry the time (`at`, ms) as data, and the session (the imperative shell) feeds
// it client intents, upstream events and timer ticks and carries out what it returns.
// Deterministic: the same inputs in the same order give the same commands. Its state is
// mutated in place, so a step costs what its input changes, never a copy of the whole
// state. The rules it implements are docs/turn-engine.md.

import type { ConfigAck, ServerMessage } from '../protocol/deepgram.js'
import { ErrorCode, WarningCode } from '../protocol/deepgram.js'
import type { ConversationItem, SessionFields } from '../protocol/openai.js'
import { SESSION_FIELD_NAMES, sessionPayload, userText } from '../protocol/openai.js'
import type { AnnouncedCall, Command, EngineInput, InjectBehavior, LogLevel, Timer, UpstreamCommand, UpstreamInput } from './io.js'
import { decodeUpstream } from './io.js'
import { Transcripts } from './transcripts.js'

export type EnginePhase = 'awaiting_settings' | 'configuring' | 'ready' | 'closing'

export interface EngineOptions {
  /** Prefix of every event_id and item id this session sends (unique per session). */
  idPrefix: string
  /** No `response.created` this long after our `response.create`: give the slot back. */
  createAckMs: number
  /** A response still running after this long is cancelled… */
  responseMaxMs: number
  /** …and if its `response.done` still has not come after this, the slot is freed anyway. */
  cancelGraceMs: number
  /** An injected user item not acknowledged within this is reported as failed. */
  itemAckMs: number
  /** A `session.update` not answered within this is reported as failed. */
  updateAckMs: number
  /** How often a create rejected for a conflict is retried. */
  maxCreateRetries: number
  /** Intents held before the session is ready. */
  maxHeldIntents: number
  /** Longest instructions, in characters; a change beyond is refused (PROMPT_TOO_LONG). */
  maxPromptChars: number
  /** Responses waiting for the slot; an agent message beyond is refused. */
  maxQueuedResponses: number
}

/** The engine's watchdog timings and retry bound, as the plugin's `engine` option takes them. */
export type EngineTimings = Partial<Omit<EngineOptions, 'idPrefix' | 'maxHeldIntents' | 'maxPromptChars' | 'maxQueuedResponses'>>

export const defaultEngineOptions: Omit<EngineOptions, 'idPrefix'> = {
  createAckMs: 15_000,
  responseMaxMs: 120_000,
  cancelGraceMs: 5_000,
  itemAckMs: 10_000,
  updateAckMs: 15_000,
  maxCreateRetries: 3,
  maxHeldIntents: 64,
  maxPromptChars: 100_000,
  maxQueuedResponses: 16
}

/** Why a response is wanted. Bare requests coalesce; ones with instructions stay distinct. */
export interface ResponseRequest {
  reasons: string[]
  instructions?: string
  enqueuedAt: number
  retries: number
}

/** Our `response.create`, sent, its `response.created` not seen yet. */
export interface Creating {
  eventId: string
  request: ResponseRequest
  /** A cancel came before the response existed: cancel it by id when it does. */
  cancelOnCreate: boolean
}

/** An in-band response holding the slot: one we saw (`response.created`), or a placeholder. */
export type OpenResponse =
  | { kind: 'seen', key: string, cancelRequested: boolean }
  /** The upstream said a response runs (a conflict) that we never saw: hold the slot for it. */
  | { kind: 'placeholder', key: string, cancelRequested: boolean }

/** The single in-band response slot: free when nothing is creating and nothing is open. */
export interface ResponseSlot {
  creating: Creating | null
  open: OpenResponse[]
}

export interface InflightUpdate {
  eventId: string
  fields: SessionFields
  acks: ConfigAck[]
}

interface CallState {
  responseId: string
  name: string
  answered: boolean
}

/** Upstream event ids we sent and still expect an answer (or an error) for. */
export type SentPurpose =
  | { kind: 'injectItem', itemId: string }
  | { kind: 'functionOutput', itemId: string }
  | { kind: 'contextItem', itemId: string }
  | { kind: 'cancel', responseId: string | null }
  | { kind: 'create', request: ResponseRequest, responseId?: string }
  /** A create the watchdog gave up on: a late answer to it changes nothing. */
  | { kind: 'expiredCreate' }

/** What the client hears: the speaking response, the one barge-in muted, latency anchors. */
interface Speech {
  /** When the user's turn ended (or the client asked for a response); 0 = never. */
  turnAnchor: number
  /** response.created times, by response id, until its response.done. */
  createdAt: Map<string, number>
  /** The response whose audio reached the client last (its AgentStartedSpeaking was sent). */
  speaking: string | null
  /** The response barge-in interrupted: none of its audio plays. */
  muted: string | null
  userSpeaking: boolean
  agentHasSpoken: boolean
}

export interface EngineState {
  phase: EnginePhase
  seq: number
  /** What the upstream confirmed. */
  applied: SessionFields
  /** What the client asked for: applied + in flight + pending. */
  desired: SessionFields
  pendingFields: SessionFields | null
  pendingAcks: ConfigAck[]
  inflightUpdate: InflightUpdate | null
  slot: ResponseSlot
  queue: ResponseRequest[]
  held: EngineInput[]
  /** Context items and greeting of the first Settings, sent once the session is ready. */
  setup: { context: ConversationItem[], greeting?: string }
  awaitingItems: Set<string>
  sent: Map<string, SentPurpose>
  calls: Map<string, CallState>
  /** Responses whose function calls await answers: response id → done yet? */
  callResponses: Map<string, boolean>
  /** Responses the watchdog gave up on; their late response.done is still their end. */
  abandoned: string[]
  speech: Speech
}

const SENT_SUBJECT: Record<SentPurpose['kind'], string> = {
  injectItem: 'InjectUserMessage',
  functionOutput: 'FunctionCallResponse',
  contextItem: 'A context message',
  cancel: 'A cancel',
  create: 'response.create',
  expiredCreate: 'response.create'
}

const CONFLICT = 'conversation_already_has_active_response'

/** Bound on remembered function calls and sent-event correlations per session. */
const MAX_REMEMBERED = 512
/** Responses the watchdog abandoned, remembered for their late response.done. */
const MAX_ABANDONED = 16
/** response.created times kept (a response without response.done must not grow the map). */
const MAX_CREATED_AT = 16

export class TurnEngine {
  readonly options: EngineOptions
  readonly #s: EngineState
  readonly #transcripts = new Transcripts()
  #out: Command[] = []

  constructor (options: Partial<EngineOptions> & { idPrefix: string }) {
    this.options = { ...defaultEngineOptions, ...options }
    this.#s = {
      phase: 'awaiting_settings',
      seq: 0,
      applied: {},
      desired: {},
      pendingFields: null,
      pendingAcks: [],
      inflightUpdate: null,
      slot: { creating: null, open: [] },
      queue: [],
      held: [],
      setup: { context: [] },
      awaitingItems: new Set(),
      sent: new Map(),
      calls: new Map(),
      callResponses: new Map(),
      abandoned: [],
      speech: { turnAnchor: 0, createdAt: new Map(), speaking: null, muted: null, userSpeaking: false, agentHasSpoken: false }
    }
  }

  /** Consumes one input; returns what to do. Never throws on any input. */
  step (input: EngineInput): Command[] {
    this.#out = []
    if (this.#s.phase !== 'closing') {
      this.#noteTurnAnchor(input)
      this.#handle(input)
    }
    return this.#out
  }

  // ── read-only views (admin API, the session's hot path, tests) ───────────────

  /** The state, for reading only. */
  get state (): Readonly<EngineState> {
    return this.#s
  }

  get phase (): EnginePhase {
    return this.#s.phase
  }

  /** Upstream has (or may have) an active in-band response. */
  get responseInProgress (): boolean {
    return this.#s.slot.creating !== null || this.#s.slot.open.length > 0
  }

  get activeResponseId (): string | null {
    return this.#s.slot.open.find((r) => r.kind === 'seen')?.key ?? null
  }

  /** The response whose audio goes to the client now; any other response's audio is an `agentAudio` input. */
  get audibleResponse (): string | null {
    const { speaking, muted } = this.#s.speech
    return speaking === muted ? null : speaking
  }

  get pending (): { responseCreate: number, sessionUpdate: number, functionCalls: number } {
    let functionCalls = 0
    for (const call of this.#s.calls.values()) if (!call.answered) functionCalls++
    return {
      responseCreate: this.#s.queue.length,
      sessionUpdate: this.#s.pendingAcks.length + (this.#s.inflightUpdate?.acks.length ?? 0),
      functionCalls
    }
  }

  // ── dispatch ─────────────────────────────────────────────────────────────────

  #handle (input: EngineInput): void {
    const s = this.#s
    switch (input.type) {
      case 'settings': return this.#settings(input)
      case 'configure': return this.#whenStarted(input, () => this.#configure(withAppended(s.desired, input), input.ack))
      case 'injectUser': return this.#whenReady(input, () => this.#injectUser(input.content))
      case 'injectAgent': return this.#whenReady(input, () => this.#injectAgent(input.message, input.behavior, input.at))
      case 'functionResult': return this.#functionResult(input.callId, input.output, input.at)
      case 'cancel': return this.#cancelActive()
      case 'agentAudio': return this.#agentAudio(input.responseId, input.at)
      case 'upstream': {
        const event = decodeUpstream(input.event)
        if (event !== undefined) this.#upstream(event, input.at)
        return
      }
      case 'timer': return this.#timer(input.timer)
      case 'upstreamClosed': return this.#close()
    }
  }

  /** When the client asked for a response (or the user's turn ended): the start of AgentStartedSpeaking's latency. */
  #noteTurnAnchor (input: EngineInput): void {
    switch (input.type) {
      case 'injectUser':
      case 'injectAgent':
      case 'functionResult':
        this.#s.speech.turnAnchor = input.at
        return
      case 'settings':
        if (this.#s.phase === 'awaiting_settings') this.#s.speech.turnAnchor = input.at
    }
  }

  #upstream (event: UpstreamInput, at: number): void {
    const speech = this.#s.speech
    switch (event.type) {
      case 'session.updated': return this.#sessionUpdated(at)
      case 'response.created':
        rememberBounded(speech.createdAt, event.responseId, at, MAX_CREATED_AT)
        speech.speaking = null
        return this.#responseCreated(event, at)
      case 'response.done':
        if (event.responseId !== undefined) speech.createdAt.delete(event.responseId)
        if (event.responseId === speech.muted) speech.muted = null
        return this.#responseDone(event, at)
      case 'error': return this.#upstreamError(event.code, event.eventId)
      case 'item.added': return this.#itemAcknowledged(event.itemId, at)
      case 'item.done':
        this.#clientMaybe(this.#transcripts.assistantItemDone(event.itemId, event.assistantText))
        return this.#itemAcknowledged(event.itemId, at)
      case 'function_call.done': return this.#registerCall(event.call, event.responseId)
      case 'speech.started': return this.#bargeIn()
      case 'speech.stopped':
        speech.turnAnchor = at
        speech.userSpeaking = false
        return
      case 'audio.done':
        if (event.responseId !== undefined && event.responseId === speech.speaking && event.responseId !== speech.muted) this.#client({ type: 'AgentAudioDone' })
        return
      case 'transcript.done': return this.#clientMaybe(this.#transcripts.assistantDone(event.itemId, event.text))
      case 'output_item.added': return this.#transcripts.responseItem(event.itemId)
      case 'user.transcript': return this.#clientMaybe(this.#transcripts.userTranscript(event.text))
    }
  }

  // ── client intents ────────────────────────────────────────────────────────────

  #settings (input: Extract<EngineInput, { type: 'settings' }>): void {
    const s = this.#s
    if (s.phase !== 'awaiting_settings') {
      // A later Settings is a change: apply the difference, acknowledge again.
      this.#configure(input.fields, 'SettingsApplied')
      return
    }
    s.phase = 'configuring'
    const fields = this.#withinPromptBound(input.fields)
    s.desired = { ...fields }
    this.#sendUpdate(fields, ['SettingsApplied'])
    // Changes held before Settings apply on top of it now, in the order they came;
    // everything else waits for ready.
    const held = s.held
    s.held = held.filter((h) => h.type !== 'configure')
    for (const change of held) if (change.type === 'configure') this.#handle(change)
    // Context and greeting wait for the first session.updated (no items before it).
    s.setup = input.greeting === undefined ? { context: input.context } : { context: input.context, greeting: input.greeting }
  }

  #configure (fields: SessionFields, ack: ConfigAck): void {
    const s = this.#s
    const bounded = this.#withinPromptBound(fields)
    let changes = diff(s.desired, bounded)
    // A message whose only change was refused is answered by the Warning alone.
    if (bounded !== fields && Object.keys(changes).length === 0 && ack !== 'SettingsApplied') return
    if (changes.voice !== undefined && s.speech.agentHasSpoken) {
      changes = withoutVoice(changes)
      this.#refuseVoice()
      if (ack === 'SpeakUpdated' && Object.keys(changes).length === 0) return
    }
    Object.assign(s.desired, changes)
    s.pendingFields = { ...(s.pendingFields ?? {}), ...changes }
    s.pendingAcks.push(ack)
    this.#pump()
  }

  #injectUser (content: string): void {
    const itemId = this.#nextId('it')
    const eventId = this.#send({ type: 'conversation.item.create', item: { id: itemId, ...userText(content) } })
    this.#remember(eventId, { kind: 'injectItem', itemId })
    this.#s.awaitingItems.add(itemId)
    this.#setTimer({ kind: 'itemAck', itemId }, this.options.itemAckMs)
    this.#client({ type: 'ConversationText', role: 'user', content })
  }

  #injectAgent (message: string, behavior: InjectBehavior, at: number): void {
    const s = this.#s
    const request: ResponseRequest = { reasons: ['inject_agent_message'], instructions: sayExactly(message), enqueuedAt: at, retries: 0 }
    const busy = this.responseInProgress || s.queue.length > 0 || s.speech.userSpeaking
    if (busy && behavior === 'refuse') {
      const why = s.speech.userSpeaking ? 'the user is speaking' : 'the agent is responding'
      this.#client({ type: 'InjectionRefused', message: `Agent message not injected: ${why}. Send it again later, or with behavior "queue" or "interrupt".` })
      return
    }
    if (s.queue.length >= this.options.maxQueuedResponses) {
      this.#client({ type: 'InjectionRefused', message: `Agent message not injected: ${s.queue.length} responses already wait their turn (MAX_QUEUED_RESPONSES). Send it again later.` })
      return
    }
    if (behavior === 'interrupt') {
      this.#cancelActive()
      s.queue.unshift(request)
    } else {
      s.queue.push(request)
    }
    this.#pump()
  }

  #functionResult (callId: string, output: string, at: number): void {
    const call = this.#s.calls.get(callId)
    if (call === undefined) {
      this.#client({ type: 'Warning', code: WarningCode.unknownFunctionCall, description: `FunctionCallResponse for unknown function call id "${callId}": nothing was forwarded.` })
      return
    }
    if (call.answered) {
      this.#client({ type: 'Warning', code: WarningCode.duplicateFunctionCallResponse, description: `Function call "${callId}" was already answered: this answer was not forwarded.` })
      return
    }
    call.answered = true
    // Legal mid-response: the output is forwarded at once; only the follow-up waits.
    const itemId = this.#nextId('it')
    const eventId = this.#send({ type: 'conversation.item.create', item: { id: itemId, type: 'function_call_output', call_id: callId, output } })
    this.#remember(eventId, { kind: 'functionOutput', itemId })
    this.#followUpIfAnswered(call.responseId, at)
    this.#pump()
  }

  #cancelActive (): void {
    const slot = this.#s.slot
    for (const response of slot.open) {
      if (response.kind === 'placeholder' || response.cancelRequested) continue
      response.cancelRequested = true
      const eventId = this.#send({ type: 'response.cancel', response_id: response.key })
      this.#remember(eventId, { kind: 'cancel', responseId: response.key })
    }
    // A cancel before response.created is a no-op upstream: cancel by id when it arrives.
    if (slot.creating !== null) slot.creating.cancelOnCreate = true
  }

  // ── what the client hears ────────────────────────────────────────────────────

  /** Audio of a response that is not the audible one: a new response starts speaking, unless barge-in muted it. */
  #agentAudio (responseId: string, at: number): void {
    const speech = this.#s.speech
    if (responseId === speech.muted || responseId === speech.speaking) return
    speech.speaking = responseId
    speech.agentHasSpoken = true
    const created = speech.createdAt.get(responseId) ?? at
    const anchor = speech.turnAnchor > 0 && speech.turnAnchor <= created ? speech.turnAnchor : created
    this.#out.push({ kind: 'metric', name: 'timeToFirstAudio', seconds: (at - anchor) / 1000 })
    this.#client({
      type: 'AgentStartedSpeaking',
      total_latency: round3((at - anchor) / 1000),
      tts_latency: round3((at - created) / 1000),
      ttt_latency: round3((created - anchor) / 1000)
    })
  }

  /** The user started speaking: the response being heard (or the one running, not heard yet) goes silent at once. */
  #bargeIn (): void {
    const speech = this.#s.speech
    speech.muted = speech.speaking ?? this.activeResponseId
    this.#out.push({ kind: 'resetOutputAudio' })
    this.#client({ type: 'UserStartedSpeaking' })
    speech.userSpeaking = true
  }

  // ── upstream events: the slot ────────────────────────────────────────────────

  #sessionUpdated (at: number): void {
    const s = this.#s
    const update = s.inflightUpdate
    if (update === null) return
    s.inflightUpdate = null
    this.#clearTimer({ kind: 'updateAck', eventId: update.eventId })
    Object.assign(s.applied, update.fields)
    for (const ack of update.acks) this.#client({ type: ack })
    if (s.phase === 'configuring') this.#becomeReady(at)
    this.#pump()
  }

  /** First session.updated: the conversation may start, in the order the client set it up. */
  #becomeReady (at: number): void {
    const s = this.#s
    s.phase = 'ready'
    this.#out.push({ kind: 'ready' })
    const { context, greeting } = s.setup
    s.setup = { context: [] }
    for (const item of context) {
      const itemId = this.#nextId('it')
      const eventId = this.#send({ type: 'conversation.item.create', item: { id: itemId, ...item } })
      this.#remember(eventId, { kind: 'contextItem', itemId })
    }
    if (greeting !== undefined) s.queue.push({ reasons: ['greeting'], instructions: sayExactly(greeting), enqueuedAt: at, retries: 0 })
    const held = s.held
    s.held = []
    for (const input of held) this.#handle(input)
  }

  #responseCreated (event: Extract<UpstreamInput, { type: 'response.created' }>, at: number): void {
    if (event.outOfBand) return
    const slot = this.#s.slot
    const creating = slot.creating
    const id = event.responseId
    // Our creates carry their event id in metadata, echoed here. A server-VAD response
    // has `metadata: null`; an upstream that drops the field entirely gets the benefit
    // of the doubt (a wrong guess is repaired by the conflict error, see #createRefused).
    const ours = creating !== null && (event.proxyEventId === undefined || event.proxyEventId === creating.eventId)
    if (slot.open.some((r) => r.key === id)) return
    // A response we were told runs (conflict) now has a name.
    this.#dropPlaceholder()
    slot.open.push({ kind: 'seen', key: id, cancelRequested: false })
    this.#setTimer({ kind: 'responseDeadline', responseKey: id }, this.options.responseMaxMs)
    if (ours && creating !== null) {
      const sent = this.#s.sent.get(creating.eventId)
      if (sent?.kind === 'create') sent.responseId = id
      slot.creating = null
      this.#clearTimer({ kind: 'createAck', eventId: creating.eventId })
      this.#out.push({ kind: 'metric', name: 'queueWait', seconds: Math.max(0, at - creating.request.enqueuedAt) / 1000 })
      if (creating.cancelOnCreate) this.#cancelActive()
    }
  }

  #responseDone (event: Extract<UpstreamInput, { type: 'response.done' }>, at: number): void {
    if (event.outOfBand) return // never frees the slot
    const s = this.#s
    const id = event.responseId
    const index = s.slot.open.findIndex((r) => r.key === id)
    if (index >= 0) {
      s.slot.open.splice(index, 1)
      this.#clearResponseTimers(id as string)
    } else if (id !== undefined && s.abandoned.includes(id)) {
      s.abandoned = s.abandoned.filter((abandoned) => abandoned !== id)
      // It was still running: the slot a placeholder held for an unseen response was its.
      this.#dropPlaceholder()
    } else if (!this.#dropPlaceholder()) {
      // If our create was never confirmed, this done may be its (late) end: its id was
      // never seen, so nothing else would free it.
      this.#log('debug', 'response.done for an unknown response', { responseId: id })
    }
    for (const [eventId, purpose] of s.sent) {
      if ((purpose.kind === 'cancel' && (purpose.responseId === id || purpose.responseId === null)) ||
        (id !== undefined && purpose.kind === 'create' && purpose.responseId === id)) s.sent.delete(eventId)
    }
    this.#out.push({ kind: 'metric', name: 'responseDone', status: event.status })
    if (event.status === 'failed') {
      const code = event.failureCode ?? ErrorCode.responseFailed
      this.#client({ type: 'Error', code, description: `The agent's response failed upstream (${code}).` })
    }
    if (id !== undefined) {
      for (const call of event.calls) this.#registerCall(call, id)
      if (s.callResponses.has(id)) {
        s.callResponses.set(id, true)
        this.#followUpIfAnswered(id, at)
      }
    }
    this.#pump()
  }

  /** An `error`, split by what it refused: a create, an update, an item, a cancel, or nothing of ours. */
  #upstreamError (code: string, eventId: string | undefined): void {
    const s = this.#s
    if (code === CONFLICT) this.#out.push({ kind: 'metric', name: 'conflict' })
    const purpose = eventId === undefined ? undefined : s.sent.get(eventId)
    if (eventId !== undefined) s.sent.delete(eventId)
    if (purpose?.kind === 'expiredCreate') {
      this.#log('info', 'late error for a create the watchdog already gave up on', { errorCode: code })
    } else if (purpose?.kind === 'create' && eventId !== undefined) {
      this.#createRefused(code, eventId, purpose.request)
    } else if (s.inflightUpdate !== null && eventId === s.inflightUpdate.eventId) {
      this.#updateRefused(code, s.inflightUpdate)
    } else if (purpose?.kind === 'cancel' || code === 'response_cancel_not_active') {
      this.#log('debug', 'cancel had nothing to cancel', { errorCode: code })
    } else {
      this.#otherRefused(code, purpose)
    }
    if (code === CONFLICT) this.#log('warn', 'upstream reported an active-response conflict', { errorCode: CONFLICT })
  }

  /** A rejected create produces no response.created/done: its slot is free again. */
  #createRefused (code: string, eventId: string, request: ResponseRequest): void {
    const slot = this.#s.slot
    const creating = slot.creating?.eventId === eventId ? slot.creating : null
    if (creating !== null) {
      slot.creating = null
      this.#clearTimer({ kind: 'createAck', eventId })
    }
    if (code === CONFLICT) {
      this.#log('warn', 'response.create rejected: another response is active; retrying after it ends', { errorCode: code })
      if (slot.open.length === 0) {
        // The running response is unseen: hold the slot for it, under the same watchdog.
        const key = `unknown:${eventId}`
        slot.open.push({ kind: 'placeholder', key, cancelRequested: false })
        this.#setTimer({ kind: 'responseDeadline', responseKey: key }, this.options.responseMaxMs)
      }
      if (creating?.cancelOnCreate === true) {
        this.#pump()
        return // cancelled before it started: nothing to retry
      }
      if (request.retries < this.options.maxCreateRetries) {
        this.#requeueFirst(request)
        return
      }
    }
    this.#client({ type: 'Error', code, description: describeUpstreamCode(code, 'response.create') })
    this.#pump()
  }

  #updateRefused (code: string, update: InflightUpdate): void {
    const s = this.#s
    s.inflightUpdate = null
    this.#clearTimer({ kind: 'updateAck', eventId: update.eventId })
    if (s.phase === 'configuring') {
      this.#client({ type: 'Error', code, description: describeUpstreamCode(code, 'Settings') })
      this.#closeWith(1008, `settings refused upstream: ${code}`)
      return
    }
    if (code === 'cannot_update_voice' && update.fields.voice !== undefined) {
      // The upstream says the agent has spoken; keep every other change: resend without the voice.
      s.speech.agentHasSpoken = true
      this.#refuseVoice()
      s.pendingFields = { ...withoutVoice(update.fields), ...(s.pendingFields ?? {}) }
      s.pendingAcks.unshift(...update.acks.filter((ack) => ack !== 'SpeakUpdated'))
    } else {
      s.desired = { ...s.applied, ...(s.pendingFields ?? {}) }
      this.#client({ type: 'Error', code, description: describeUpstreamCode(code, update.acks.join(', ')) })
    }
    this.#pump()
  }

  /** An error about an item we sent, or about nothing we can name. */
  #otherRefused (code: string, purpose: SentPurpose | undefined): void {
    if (purpose?.kind === 'injectItem') {
      this.#s.awaitingItems.delete(purpose.itemId)
      this.#clearTimer({ kind: 'itemAck', itemId: purpose.itemId })
    }
    this.#client({ type: 'Error', code, description: describeUpstreamCode(code, purpose === undefined ? undefined : SENT_SUBJECT[purpose.kind]) })
  }

  #itemAcknowledged (itemId: string | undefined, at: number): void {
    if (itemId === undefined) return
    const s = this.#s
    for (const [eventId, purpose] of s.sent) {
      if ('itemId' in purpose && purpose.itemId === itemId) s.sent.delete(eventId)
    }
    if (!s.awaitingItems.delete(itemId)) return
    this.#clearTimer({ kind: 'itemAck', itemId })
    this.#enqueueBare('inject_user_message', at)
    this.#pump()
  }

  #registerCall (call: AnnouncedCall, responseId: string): void {
    const s = this.#s
    if (s.calls.has(call.callId)) return
    s.calls.set(call.callId, { responseId, name: call.name, answered: false })
    if (!s.callResponses.has(responseId)) {
      s.callResponses.set(responseId, !s.slot.open.some((r) => r.key === responseId) && !s.abandoned.includes(responseId))
      boundMap(s.callResponses, () => false)
    }
    boundMap(s.calls, (c) => c.answered)
    this.#client({ type: 'FunctionCallRequest', functions: [{ id: call.callId, name: call.name, arguments: call.arguments, client_side: true }] })
  }

  /** One follow-up per response, once it is done and every call it carried is answered. */
  #followUpIfAnswered (responseId: string, at: number): void {
    const s = this.#s
    if (s.callResponses.get(responseId) !== true) return
    for (const call of s.calls.values()) if (call.responseId === responseId && !call.answered) return
    s.callResponses.delete(responseId)
    this.#enqueueBare('function_call_output', at)
  }

  // ── timers (watchdogs) ───────────────────────────────────────────────────────

  #timer (timer: Timer): void {
    switch (timer.kind) {
      case 'createAck': return this.#createAckExpired(timer.eventId)
      case 'responseDeadline': return this.#responseDeadline(timer.responseKey)
      case 'cancelGrace': return this.#cancelGraceExpired(timer.responseKey)
      case 'itemAck': return this.#itemAckExpired(timer.itemId)
      case 'updateAck': return this.#updateAckExpired(timer.eventId)
    }
  }

  #createAckExpired (eventId: string): void {
    const s = this.#s
    if (s.slot.creating?.eventId !== eventId) return
    s.slot.creating = null
    s.sent.set(eventId, { kind: 'expiredCreate' })
    this.#log('warn', 'no response.created after response.create: slot released', { eventId })
    this.#client({ type: 'Warning', code: WarningCode.responseTimeout, description: 'The agent did not start responding in time; the request was dropped.' })
    this.#pump()
  }

  #responseDeadline (key: string): void {
    const response = this.#s.slot.open.find((r) => r.key === key)
    if (response === undefined) return
    this.#log('warn', 'response still running at its deadline: cancelling', { responseId: key })
    if (!response.cancelRequested) {
      response.cancelRequested = true
      // An unseen response has no id to name: a bare cancel targets whatever is active.
      const placeholder = response.kind === 'placeholder'
      const eventId = this.#send(placeholder ? { type: 'response.cancel' } : { type: 'response.cancel', response_id: key })
      this.#remember(eventId, { kind: 'cancel', responseId: placeholder ? null : key })
    }
    this.#setTimer({ kind: 'cancelGrace', responseKey: key }, this.options.cancelGraceMs)
  }

  #cancelGraceExpired (key: string): void {
    const s = this.#s
    const index = s.slot.open.findIndex((r) => r.key === key)
    if (index < 0) return
    s.slot.open.splice(index, 1)
    s.abandoned.push(key)
    if (s.abandoned.length > MAX_ABANDONED) s.abandoned.shift()
    this.#log('error', 'response never ended, even after cancel: slot released', { responseId: key })
    this.#client({ type: 'Warning', code: WarningCode.responseTimeout, description: 'The agent\'s response did not finish in time and was abandoned.' })
    this.#pump()
  }

  #itemAckExpired (itemId: string): void {
    if (!this.#s.awaitingItems.delete(itemId)) return
    this.#client({ type: 'Error', code: ErrorCode.injectNotAcknowledged, description: 'The injected user message was not acknowledged upstream in time; no response was requested for it.' })
  }

  #updateAckExpired (eventId: string): void {
    const s = this.#s
    if (s.inflightUpdate?.eventId !== eventId) return
    s.inflightUpdate = null
    this.#client({ type: 'Error', code: ErrorCode.upstreamTimeout, description: 'The upstream did not confirm the settings in time.' })
    if (s.phase === 'configuring') return this.#closeWith(1011, 'upstream did not confirm settings')
    s.desired = { ...s.applied, ...(s.pendingFields ?? {}) }
    this.#pump()
  }

  // ── the slot ─────────────────────────────────────────────────────────────────

  /** Sends what may go now: a deferred session.update first, then the next response. */
  #pump (): void {
    const s = this.#s
    if (s.phase !== 'ready' || this.responseInProgress) return
    if (s.pendingFields !== null) {
      if (s.inflightUpdate !== null) return
      let fields = s.pendingFields
      let acks = s.pendingAcks
      if (fields.voice !== undefined && s.speech.agentHasSpoken) {
        // The agent spoke while this change waited: the voice can no longer change.
        fields = withoutVoice(fields)
        acks = acks.filter((ack) => ack !== 'SpeakUpdated')
        this.#refuseVoice()
      }
      s.pendingFields = null
      s.pendingAcks = []
      if (Object.keys(fields).length === 0) {
        for (const ack of acks) this.#client({ type: ack })
      } else {
        this.#sendUpdate(fields, acks)
      }
    }
    const request = s.queue.shift()
    if (request === undefined) return
    const eventId = this.#nextId('ev')
    const response: Record<string, unknown> = { metadata: { proxy_event_id: eventId } }
    if (request.instructions !== undefined) response.instructions = request.instructions
    this.#out.push({ kind: 'upstream', event: { type: 'response.create', event_id: eventId, response } })
    this.#remember(eventId, { kind: 'create', request })
    s.slot.creating = { eventId, request, cancelOnCreate: false }
    this.#setTimer({ kind: 'createAck', eventId }, this.options.createAckMs)
  }

  #sendUpdate (fields: SessionFields, acks: ConfigAck[]): void {
    const eventId = this.#send({ type: 'session.update', session: sessionPayload(fields) })
    this.#s.inflightUpdate = { eventId, fields, acks }
    this.#setTimer({ kind: 'updateAck', eventId }, this.options.updateAckMs)
  }

  /** The fields without an instructions change beyond maxPromptChars (refused with a Warning; the instructions in force stay). */
  #withinPromptBound (fields: SessionFields): SessionFields {
    const instructions = fields.instructions
    if (instructions === undefined || instructions.length <= this.options.maxPromptChars) return fields
    this.#client({ type: 'Warning', code: WarningCode.promptTooLong, description: `The instructions would be ${instructions.length} characters long; the limit is ${this.options.maxPromptChars} (MAX_PROMPT_CHARS). That change was refused; the instructions in force stay.` })
    const rest = { ...fields }
    delete rest.instructions
    return rest
  }

  /** OpenAI refuses the whole update (cannot_update_voice) once the agent spoke: warn, keep the rest. */
  #refuseVoice (): void {
    this.#s.desired.voice = this.#s.applied.voice
    this.#client({ type: 'Warning', code: WarningCode.voiceChangeRefused, description: 'The voice cannot change after the agent has spoken in this session; the other changes were applied.' })
  }

  /** Removes the stand-in for an unseen response (and its timers); true if there was one. */
  #dropPlaceholder (): boolean {
    const open = this.#s.slot.open
    const index = open.findIndex((r) => r.kind === 'placeholder')
    if (index < 0) return false
    const [placeholder] = open.splice(index, 1)
    this.#clearResponseTimers((placeholder as OpenResponse).key)
    return true
  }

  #clearResponseTimers (key: string): void {
    this.#clearTimer({ kind: 'responseDeadline', responseKey: key })
    this.#clearTimer({ kind: 'cancelGrace', responseKey: key })
  }

  /** A refused request goes first again; a bare one absorbs bare follow-ups queued meanwhile. */
  #requeueFirst (request: ResponseRequest): void {
    const queue = this.#s.queue
    const retry = { ...request, retries: request.retries + 1 }
    if (retry.instructions === undefined) {
      const index = queue.findIndex((r) => r.instructions === undefined)
      if (index >= 0) {
        const [bare] = queue.splice(index, 1)
        retry.reasons = [...retry.reasons, ...(bare?.reasons ?? [])]
      }
    }
    queue.unshift(retry)
  }

  #enqueueBare (reason: string, at: number): void {
    const bare = this.#s.queue.find((r) => r.instructions === undefined)
    if (bare !== undefined) bare.reasons.push(reason)
    else this.#s.queue.push({ reasons: [reason], enqueuedAt: at, retries: 0 })
  }

  // ── helpers ──────────────────────────────────────────────────────────────────

  #whenStarted (input: EngineInput, run: () => void): void {
    if (this.#s.phase === 'awaiting_settings') this.#hold(input)
    else run()
  }

  #whenReady (input: EngineInput, run: () => void): void {
    if (this.#s.phase !== 'ready') this.#hold(input)
    else run()
  }

  #hold (input: EngineInput): void {
    const s = this.#s
    if (s.held.length >= this.options.maxHeldIntents) {
      this.#client({ type: 'Error', code: ErrorCode.tooManyHeldMessages, description: `More than ${this.options.maxHeldIntents} messages arrived before the session was configured; this one was dropped.` })
      return
    }
    s.held.push(input)
  }

  #close (): void {
    const s = this.#s
    s.phase = 'closing'
    s.slot = { creating: null, open: [] }
    s.inflightUpdate = null
    s.queue = []
    s.held = []
    s.pendingFields = null
    s.pendingAcks = []
    s.awaitingItems.clear()
  }

  #closeWith (code: number, reason: string): void {
    this.#close()
    this.#out.push({ kind: 'close', code, reason })
  }

  #send (event: { type: string } & Record<string, unknown>): string {
    const eventId = this.#nextId('ev')
    const sent: UpstreamCommand = { ...event, event_id: eventId }
    this.#out.push({ kind: 'upstream', event: sent })
    return eventId
  }

  #remember (eventId: string, purpose: SentPurpose): void {
    this.#s.sent.set(eventId, purpose)
    boundMap(this.#s.sent, () => true)
  }

  #nextId (kind: string): string {
    this.#s.seq += 1
    return `${this.options.idPrefix}${kind}${this.#s.seq}`
  }

  #client (message: ServerMessage): void {
    this.#out.push({ kind: 'client', message })
  }

  #clientMaybe (message: ServerMessage | undefined): void {
    if (message !== undefined) this.#client(message)
  }

  #setTimer (timer: Timer, ms: number): void {
    this.#out.push({ kind: 'setTimer', timer, ms })
  }

  #clearTimer (timer: Timer): void {
    this.#out.push({ kind: 'clearTimer', timer })
  }

  #log (level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.#out.push(fields === undefined ? { kind: 'log', level, msg } : { kind: 'log', level, msg, fields })
  }
}

/**
 * Keeps a per-session map within MAX_REMEMBERED (maps iterate oldest first): the oldest
 * entries that are done with go first, then, if that is not enough, the oldest of all.
 */
function boundMap<T> (map: Map<string, T>, doneWith: (value: T) => boolean): void {
  if (map.size <= MAX_REMEMBERED) return
  for (const [key, value] of map) {
    if (map.size <= MAX_REMEMBERED) return
    if (doneWith(value)) map.delete(key)
  }
  for (const key of map.keys()) {
    if (map.size <= MAX_REMEMBERED) return
    map.delete(key)
  }
}

function rememberBounded<T> (map: Map<string, T>, key: string, value: T, max: number): void {
  map.set(key, value)
  if (map.size > max) map.delete(map.keys().next().value as string)
}

/** Fields of `next` that differ from `current` (deep equality per field). */
function diff (current: SessionFields, next: SessionFields): SessionFields {
  const changes: Record<string, unknown> = {}
  for (const name of SESSION_FIELD_NAMES) {
    const value = next[name]
    if (value !== undefined && JSON.stringify(value) !== JSON.stringify(current[name])) changes[name] = value
  }
  return changes as SessionFields
}

function withAppended (desired: SessionFields, input: Extract<EngineInput, { type: 'configure' }>): SessionFields {
  if (input.appendInstructions === undefined) return input.fields
  const current = desired.instructions
  const instructions = current === undefined || current === '' ? input.appendInstructions : `${current}\n\n${input.appendInstructions}`
  return { ...input.fields, instructions }
}

function withoutVoice (fields: SessionFields): SessionFields {
  const rest = { ...fields }
  delete rest.voice
  return rest
}

function round3 (seconds: number): number {
  return Math.round(seconds * 1000) / 1000
}

export function sayExactly (text: string): string {
  return `Say exactly the following, word for word, and nothing else: "${text}"`
}

/** A description for a client Error built from the upstream's structured code, never its message text. */
export function describeUpstreamCode (code: string, what?: string): string {
  const subject = what === undefined ? 'A request' : what
  const known: Record<string, string> = {
    conversation_already_has_active_response: 'was refused because the agent was still responding',
    cannot_update_voice: 'was refused: the voice cannot change after the agent has spoken',
    invalid_value: 'was refused upstream: a value was invalid',
    unknown_parameter: 'was refused upstream: an unknown parameter was sent',
    invalid_api_key: 'failed: the upstream API key is invalid',
    insufficient_quota: 'failed: the upstream account has no quota left',
    rate_limit_exceeded: 'failed: the upstream rate limit was exceeded',
    input_audio_buffer_commit_empty: 'failed: there was not enough audio to commit'
  }
  return `${subject} ${known[code] ?? 'failed upstream'} (${code}).`
}
