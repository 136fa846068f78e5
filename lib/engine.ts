// The turn engine: the only place that decides when `response.create` and
// `session.update` go upstream. A pure, synchronous reducer:
//
//   step(state, input) → [state', commands]
//
// No sockets, clock or logger inside. Inputs carry the time (`at`, ms) as data; the
// session (the imperative shell) feeds it client intents, turn-relevant upstream
// events and timer ticks, and carries out the commands it returns. The rules it
// implements are PROTOCOL.md §4; the README has the table of states.

import type { ConfigAck, ServerMessage } from './protocol/deepgram.js'
import { ErrorCode, WarningCode } from './protocol/deepgram.js'
import type { ConversationItem, SessionFields, UpstreamEvent } from './protocol/openai.js'
import { SESSION_FIELD_NAMES, obj, sessionPayload, str, userText } from './protocol/openai.js'

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
}

export const defaultEngineOptions: Omit<EngineOptions, 'idPrefix'> = {
  createAckMs: 15_000,
  responseMaxMs: 120_000,
  cancelGraceMs: 5_000,
  itemAckMs: 10_000,
  updateAckMs: 15_000,
  maxCreateRetries: 3,
  maxHeldIntents: 64
}

export type InjectBehavior = 'refuse' | 'queue' | 'interrupt'

/** Client intents and the events of the other inputs. `at` is the current time in ms. */
export type EngineInput =
  | { type: 'settings', at: number, fields: SessionFields, context: ConversationItem[], greeting?: string }
  /** A change; `appendInstructions` adds to the instructions in force (UpdatePrompt). */
  | { type: 'configure', at: number, fields: SessionFields, ack: ConfigAck, appendInstructions?: string }
  | { type: 'injectUser', at: number, content: string }
  | { type: 'injectAgent', at: number, message: string, behavior: InjectBehavior }
  | { type: 'functionResult', at: number, callId: string, output: string }
  | { type: 'cancel', at: number }
  | { type: 'agentAudio', at: number, responseId: string }
  | { type: 'upstream', at: number, event: UpstreamEvent }
  | { type: 'timer', at: number, name: string }
  | { type: 'upstreamClosed', at: number }

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export type Command =
  | { kind: 'upstream', event: Record<string, unknown> & { type: string, event_id: string } }
  | { kind: 'client', message: ServerMessage }
  | { kind: 'setTimer', name: string, ms: number }
  | { kind: 'clearTimer', name: string }
  /** The first `session.updated` arrived: held audio may flow. */
  | { kind: 'ready' }
  /** The session cannot continue (its configuration was refused). */
  | { kind: 'close', code: number, reason: string }
  | { kind: 'log', level: LogLevel, msg: string, fields?: Record<string, unknown> }
  | { kind: 'metric', name: 'queueWait', seconds: number }
  | { kind: 'metric', name: 'responseDone', status: string }
  | { kind: 'metric', name: 'conflict' }

/** Why a response is wanted. Bare requests coalesce; ones with instructions stay distinct. */
interface ResponseRequest {
  reasons: string[]
  instructions?: string
  enqueuedAt: number
  retries: number
}

interface InflightCreate {
  eventId: string
  request: ResponseRequest
  cancelOnCreate: boolean
}

interface OpenResponse {
  id: string
  ours: boolean
  cancelRequested: boolean
  /** Holds the slot for a response we know runs but whose id we have not seen. */
  placeholder: boolean
}

interface InflightUpdate {
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
type SentPurpose =
  | { kind: 'injectItem', itemId: string }
  | { kind: 'functionOutput', itemId: string }
  | { kind: 'contextItem', itemId: string }
  | { kind: 'cancel', responseId: string | null }
  | { kind: 'create', request: ResponseRequest, responseId?: string }
  /** A create the watchdog gave up on: a late answer to it changes nothing. */
  | { kind: 'expiredCreate' }

export interface EngineState {
  options: EngineOptions
  phase: EnginePhase
  seq: number
  /** What the upstream confirmed. */
  applied: SessionFields
  /** What the client asked for: applied + in flight + pending. */
  desired: SessionFields
  pendingFields: SessionFields | null
  pendingAcks: ConfigAck[]
  inflightUpdate: InflightUpdate | null
  inflightCreate: InflightCreate | null
  open: OpenResponse[]
  queue: ResponseRequest[]
  held: EngineInput[]
  /** Context items and greeting of the first Settings, sent once the session is ready. */
  setup: { context: ConversationItem[], greeting?: string }
  awaitingItems: Record<string, true>
  sent: Record<string, SentPurpose>
  calls: Record<string, CallState>
  /** Responses whose function calls await answers: response id → done yet? */
  callResponses: Record<string, boolean>
  /** Responses the watchdog gave up on; their late response.done is still their end. */
  abandoned: string[]
  agentHasSpoken: boolean
  userSpeaking: boolean
}

const SENT_SUBJECT: Record<SentPurpose['kind'], string> = {
  injectItem: 'InjectUserMessage',
  functionOutput: 'FunctionCallResponse',
  contextItem: 'A context message',
  cancel: 'A cancel',
  create: 'response.create',
  expiredCreate: 'response.create'
}

/** Bound on remembered function calls and sent-event correlations per session. */
const MAX_REMEMBERED = 512

export function initialState (options: Partial<EngineOptions> & { idPrefix: string }): EngineState {
  return {
    options: { ...defaultEngineOptions, ...options },
    phase: 'awaiting_settings',
    seq: 0,
    applied: {},
    desired: {},
    pendingFields: null,
    pendingAcks: [],
    inflightUpdate: null,
    inflightCreate: null,
    open: [],
    queue: [],
    held: [],
    setup: { context: [] },
    awaitingItems: {},
    sent: {},
    calls: {},
    callResponses: {},
    abandoned: [],
    agentHasSpoken: false,
    userSpeaking: false
  }
}

/** The reducer. Never throws on any input; `state` is not modified. */
export function step (state: EngineState, input: EngineInput): [EngineState, Command[]] {
  const machine = new Machine(structuredClone(state))
  machine.handle(input)
  return [machine.s, machine.out]
}

/** Read-only views used by the admin API and the session. */
export function responseInProgress (s: EngineState): boolean {
  return s.inflightCreate !== null || s.open.length > 0
}

export function activeResponseId (s: EngineState): string | null {
  const real = s.open.find((r) => !r.placeholder)
  return real?.id ?? null
}

export function pendingCounts (s: EngineState): { responseCreate: number, sessionUpdate: number, functionCalls: number } {
  return {
    responseCreate: s.queue.length,
    sessionUpdate: s.pendingAcks.length + (s.inflightUpdate?.acks.length ?? 0),
    functionCalls: Object.values(s.calls).filter((c) => !c.answered).length
  }
}

/** One step's working copy of the state plus the commands it produces. */
class Machine {
  readonly out: Command[] = []
  constructor (readonly s: EngineState) {}

  handle (input: EngineInput): void {
    if (this.s.phase === 'closing') return
    switch (input.type) {
      case 'settings': return this.settings(input)
      case 'configure': return this.whenStarted(input, () => this.configure(withAppended(this.s.desired, input), input.ack))
      case 'injectUser': return this.whenReady(input, () => this.injectUser(input.content))
      case 'injectAgent': return this.whenReady(input, () => this.injectAgent(input.message, input.behavior, input.at))
      case 'functionResult': return this.functionResult(input.callId, input.output, input.at)
      case 'cancel': return this.cancelActive()
      case 'agentAudio':
        this.s.agentHasSpoken = true
        return
      case 'upstream': return this.upstream(input.event, input.at)
      case 'timer': return this.timer(input.name)
      case 'upstreamClosed': return this.close()
    }
  }

  // ── client intents ────────────────────────────────────────────────────────────

  private settings (input: Extract<EngineInput, { type: 'settings' }>): void {
    if (this.s.phase !== 'awaiting_settings') {
      // A later Settings is a change: apply the difference, acknowledge again.
      this.configure(input.fields, 'SettingsApplied')
      return
    }
    this.s.phase = 'configuring'
    this.s.desired = { ...input.fields }
    this.sendUpdate(input.fields, ['SettingsApplied'])
    // Changes held before Settings apply on top of it now, in the order they came;
    // everything else waits for ready.
    const held = this.s.held
    this.s.held = held.filter((h) => h.type !== 'configure')
    for (const change of held) if (change.type === 'configure') this.handle(change)
    // Context and greeting wait for the first session.updated (no items before it).
    this.s.setup = input.greeting === undefined ? { context: input.context } : { context: input.context, greeting: input.greeting }
  }

  private configure (fields: SessionFields, ack: ConfigAck): void {
    let changes = diff(this.s.desired, fields)
    if (changes.voice !== undefined && this.s.agentHasSpoken) {
      changes = withoutVoice(changes)
      this.refuseVoice()
      if (ack === 'SpeakUpdated' && Object.keys(changes).length === 0) return
    }
    Object.assign(this.s.desired, changes)
    this.s.pendingFields = { ...(this.s.pendingFields ?? {}), ...changes }
    this.s.pendingAcks.push(ack)
    this.pump()
  }

  private injectUser (content: string): void {
    const itemId = this.nextId('it')
    const eventId = this.send({ type: 'conversation.item.create', item: { id: itemId, ...userText(content) } })
    this.remember(eventId, { kind: 'injectItem', itemId })
    this.s.awaitingItems[itemId] = true
    this.setTimer(`item:${itemId}`, this.s.options.itemAckMs)
    this.client({ type: 'ConversationText', role: 'user', content })
  }

  private injectAgent (message: string, behavior: InjectBehavior, at: number): void {
    const request: ResponseRequest = { reasons: ['inject_agent_message'], instructions: sayExactly(message), enqueuedAt: at, retries: 0 }
    const busy = responseInProgress(this.s) || this.s.queue.length > 0 || this.s.userSpeaking
    if (busy && behavior === 'refuse') {
      const why = this.s.userSpeaking ? 'the user is speaking' : 'the agent is responding'
      this.client({ type: 'InjectionRefused', message: `Agent message not injected: ${why}. Send it again later, or with behavior "queue" or "interrupt".` })
      return
    }
    if (behavior === 'interrupt') {
      this.cancelActive()
      this.s.queue.unshift(request)
    } else {
      this.s.queue.push(request)
    }
    this.pump()
  }

  private functionResult (callId: string, output: string, at: number): void {
    const call = this.s.calls[callId]
    if (call === undefined) {
      this.client({ type: 'Warning', code: WarningCode.unknownFunctionCall, description: `FunctionCallResponse for unknown function call id "${callId}": nothing was forwarded.` })
      return
    }
    if (call.answered) {
      this.client({ type: 'Warning', code: WarningCode.duplicateFunctionCallResponse, description: `Function call "${callId}" was already answered: this answer was not forwarded.` })
      return
    }
    call.answered = true
    // Legal mid-response: the output is forwarded at once; only the follow-up waits.
    const itemId = this.nextId('it')
    const eventId = this.send({ type: 'conversation.item.create', item: { id: itemId, type: 'function_call_output', call_id: callId, output } })
    this.remember(eventId, { kind: 'functionOutput', itemId })
    this.followUpIfAnswered(call.responseId, at)
    this.pump()
  }

  private cancelActive (): void {
    for (const response of this.s.open) {
      if (response.placeholder || response.cancelRequested) continue
      response.cancelRequested = true
      const eventId = this.send({ type: 'response.cancel', response_id: response.id })
      this.remember(eventId, { kind: 'cancel', responseId: response.id })
    }
    // A cancel before response.created is a no-op upstream: cancel by id when it arrives.
    if (this.s.inflightCreate !== null) this.s.inflightCreate.cancelOnCreate = true
  }

  // ── upstream events ───────────────────────────────────────────────────────────

  private upstream (event: UpstreamEvent, at: number): void {
    switch (event.type) {
      case 'session.updated': return this.sessionUpdated(at)
      case 'response.created': return this.responseCreated(obj(event, 'response'), at)
      case 'response.done': return this.responseDone(obj(event, 'response'), at)
      case 'error': return this.upstreamError(obj(event, 'error'))
      case 'conversation.item.added':
      case 'conversation.item.done': return this.itemAcknowledged(str(obj(event, 'item'), 'id'), at)
      case 'response.function_call_arguments.done': return this.functionCall(event)
      case 'input_audio_buffer.speech_started':
        this.s.userSpeaking = true
        return
      case 'input_audio_buffer.speech_stopped':
        this.s.userSpeaking = false
    }
  }

  private sessionUpdated (at: number): void {
    const update = this.s.inflightUpdate
    if (update === null) return
    this.s.inflightUpdate = null
    this.clearTimer(`update:${update.eventId}`)
    Object.assign(this.s.applied, update.fields)
    for (const ack of update.acks) this.client({ type: ack })
    if (this.s.phase === 'configuring') this.becomeReady(at)
    this.pump()
  }

  /** First session.updated: the conversation may start, in the order the client set it up. */
  private becomeReady (at: number): void {
    this.s.phase = 'ready'
    this.out.push({ kind: 'ready' })
    const { context, greeting } = this.s.setup
    this.s.setup = { context: [] }
    for (const item of context) {
      const itemId = this.nextId('it')
      const eventId = this.send({ type: 'conversation.item.create', item: { id: itemId, ...item } })
      this.remember(eventId, { kind: 'contextItem', itemId })
    }
    if (greeting !== undefined) this.s.queue.push({ reasons: ['greeting'], instructions: sayExactly(greeting), enqueuedAt: at, retries: 0 })
    const held = this.s.held
    this.s.held = []
    for (const input of held) this.handle(input)
  }

  private responseCreated (response: Record<string, unknown> | undefined, at: number): void {
    const id = str(response, 'id')
    if (id === undefined || isOutOfBand(response)) return
    const inflight = this.s.inflightCreate
    // Our creates carry their event id in metadata, echoed here. A server-VAD response
    // has `metadata: null`; an upstream that drops the field entirely gets the benefit
    // of the doubt (a wrong guess is repaired by the conflict error, see upstreamError).
    const ours = inflight !== null && (response === undefined || !('metadata' in response) ||
      str(obj(response, 'metadata'), 'proxy_event_id') === inflight.eventId)
    if (this.s.open.some((r) => r.id === id)) return
    // A response we were told runs (conflict) now has a name.
    this.dropPlaceholder()
    const entry: OpenResponse = { id, ours, cancelRequested: false, placeholder: false }
    this.s.open.push(entry)
    this.setTimer(`response:${id}`, this.s.options.responseMaxMs)
    if (ours && inflight !== null) {
      const sent = this.s.sent[inflight.eventId]
      if (sent?.kind === 'create') sent.responseId = id
      this.s.inflightCreate = null
      this.clearTimer(`create:${inflight.eventId}`)
      this.metricQueueWait(inflight.request, at)
      if (inflight.cancelOnCreate) this.cancelActive()
    }
  }

  private responseDone (response: Record<string, unknown> | undefined, at: number): void {
    if (isOutOfBand(response)) return // never frees the slot (rule 8)
    const id = str(response, 'id')
    const status = str(response, 'status') ?? 'unknown'
    const index = this.s.open.findIndex((r) => r.id === id)
    if (index >= 0) {
      this.s.open.splice(index, 1)
      this.clearTimer(`response:${id}`)
      this.clearTimer(`cancel:${id}`)
    } else if (id !== undefined && this.s.abandoned.includes(id)) {
      this.s.abandoned = this.s.abandoned.filter((abandoned) => abandoned !== id)
    } else {
      if (!this.dropPlaceholder()) this.log('debug', 'response.done for an unknown response', { responseId: id })
      // If our create was never confirmed, this done may be its (late) end: its id was
      // never seen, so nothing else will free it.
    }
    this.forget((purpose) => purpose.kind === 'cancel' && (purpose.responseId === id || purpose.responseId === null))
    if (id !== undefined) this.forget((purpose) => purpose.kind === 'create' && purpose.responseId === id)
    this.out.push({ kind: 'metric', name: 'responseDone', status })
    if (status === 'failed') {
      const error = obj(obj(response, 'status_details'), 'error')
      const code = str(error, 'code') ?? str(error, 'type') ?? ErrorCode.responseFailed
      this.client({ type: 'Error', code, description: `The agent's response failed upstream (${code}).` })
    }
    if (id !== undefined) {
      this.discoverCalls(id, response)
      if (id in this.s.callResponses) {
        this.s.callResponses[id] = true
        this.followUpIfAnswered(id, at)
      }
    }
    this.pump()
  }

  private upstreamError (error: Record<string, unknown> | undefined): void {
    const code = str(error, 'code') ?? str(error, 'type') ?? 'upstream_error'
    const eventId = str(error, 'event_id')
    if (code === 'conversation_already_has_active_response') this.out.push({ kind: 'metric', name: 'conflict' })

    const purpose = eventId === undefined ? undefined : this.s.sent[eventId]
    if (eventId !== undefined) delete this.s.sent[eventId]

    if (purpose?.kind === 'expiredCreate') {
      this.log('info', 'late error for a create the watchdog already gave up on', { errorCode: code })
      return
    }
    if (purpose?.kind === 'create') {
      // A rejected create produces no response.created/done: its slot is free again.
      // (If a response was attributed to it, that response was not ours: it stays open.)
      const cancelled = this.s.inflightCreate !== null && this.s.inflightCreate.eventId === eventId && this.s.inflightCreate.cancelOnCreate
      if (this.s.inflightCreate?.eventId === eventId) {
        this.s.inflightCreate = null
        this.clearTimer(`create:${eventId}`)
      }
      const request = purpose.request
      if (code === 'conversation_already_has_active_response') {
        this.log('warn', 'response.create rejected: another response is active; retrying after it ends', { errorCode: code })
        for (const response of this.s.open) response.ours = false
        if (this.s.open.length === 0) {
          // The running response is unseen: hold the slot for it, under the same watchdog.
          const id = `unknown:${eventId}`
          this.s.open.push({ id, ours: false, cancelRequested: false, placeholder: true })
          this.setTimer(`response:${id}`, this.s.options.responseMaxMs)
        }
        if (cancelled) {
          this.pump()
          return // cancelled before it started: nothing to retry
        }
        if (request.retries < this.s.options.maxCreateRetries) {
          this.requeueFirst(request)
          return
        }
      }
      this.client({ type: 'Error', code, description: describeUpstreamCode(code, 'response.create') })
      this.pump()
      return
    }

    const update = this.s.inflightUpdate
    if (update !== null && eventId === update.eventId) {
      this.s.inflightUpdate = null
      this.clearTimer(`update:${update.eventId}`)
      if (this.s.phase === 'configuring') {
        this.client({ type: 'Error', code, description: describeUpstreamCode(code, 'Settings') })
        this.closeWith(1008, `settings refused upstream: ${code}`)
        return
      }
      if (code === 'cannot_update_voice' && update.fields.voice !== undefined) {
        // The upstream says the agent has spoken; keep every other change: resend without the voice.
        this.s.agentHasSpoken = true
        this.refuseVoice()
        const rest = withoutVoice(update.fields)
        this.s.pendingFields = { ...rest, ...(this.s.pendingFields ?? {}) }
        this.s.pendingAcks.unshift(...update.acks.filter((ack) => ack !== 'SpeakUpdated'))
      } else {
        this.s.desired = { ...this.s.applied, ...(this.s.pendingFields ?? {}) }
        this.client({ type: 'Error', code, description: describeUpstreamCode(code, update.acks.join(', ')) })
      }
      this.pump()
      return
    }

    if (purpose?.kind === 'cancel' || code === 'response_cancel_not_active') {
      this.log('debug', 'cancel had nothing to cancel', { errorCode: code })
      return
    }
    if (purpose?.kind === 'injectItem') {
      delete this.s.awaitingItems[purpose.itemId]
      this.clearTimer(`item:${purpose.itemId}`)
    }
    this.client({ type: 'Error', code, description: describeUpstreamCode(code, purpose === undefined ? undefined : SENT_SUBJECT[purpose.kind]) })
  }

  private itemAcknowledged (itemId: string | undefined, at: number): void {
    if (itemId === undefined) return
    this.forget((purpose) => 'itemId' in purpose && purpose.itemId === itemId)
    if (this.s.awaitingItems[itemId] !== true) return
    delete this.s.awaitingItems[itemId]
    this.clearTimer(`item:${itemId}`)
    this.enqueueBare('inject_user_message', at)
    this.pump()
  }

  private functionCall (event: UpstreamEvent): void {
    const callId = str(event, 'call_id')
    const responseId = str(event, 'response_id')
    if (callId === undefined || responseId === undefined) return
    this.registerCall(callId, responseId, str(event, 'name') ?? '', str(event, 'arguments') ?? '{}')
  }

  /** Calls listed in response.done that never had their arguments.done. */
  private discoverCalls (responseId: string, response: Record<string, unknown> | undefined): void {
    const output = response?.output
    if (!Array.isArray(output)) return
    for (const item of output) {
      if (str(item, 'type') !== 'function_call') continue
      if (str(item, 'status') === 'incomplete') continue // cut off (cancelled): never complete
      const callId = str(item, 'call_id')
      if (callId !== undefined) this.registerCall(callId, responseId, str(item, 'name') ?? '', str(item, 'arguments') ?? '{}')
    }
  }

  private registerCall (callId: string, responseId: string, name: string, args: string): void {
    if (callId in this.s.calls) return
    this.s.calls[callId] = { responseId, name, answered: false }
    this.s.callResponses[responseId] ??= !this.s.open.some((r) => r.id === responseId) && !this.s.abandoned.includes(responseId)
    this.bound(this.s.calls, (c) => c.answered)
    this.client({ type: 'FunctionCallRequest', functions: [{ id: callId, name, arguments: args, client_side: true }] })
  }

  /** One follow-up per response, once it is done and every call it carried is answered. */
  private followUpIfAnswered (responseId: string, at: number): void {
    if (this.s.callResponses[responseId] !== true) return
    const unanswered = Object.values(this.s.calls).some((c) => c.responseId === responseId && !c.answered)
    if (unanswered) return
    delete this.s.callResponses[responseId]
    this.enqueueBare('function_call_output', at)
  }

  // ── timers (watchdogs) ───────────────────────────────────────────────────────

  private timer (name: string): void {
    const [kind, ...rest] = name.split(':')
    const key = rest.join(':')
    switch (kind) {
      case 'create': {
        const inflight = this.s.inflightCreate
        if (inflight === null || inflight.eventId !== key) return
        this.s.inflightCreate = null
        this.s.sent[key] = { kind: 'expiredCreate' }
        this.log('warn', 'no response.created after response.create: slot released', { eventId: key })
        this.client({ type: 'Warning', code: WarningCode.responseTimeout, description: 'The agent did not start responding in time; the request was dropped.' })
        return this.pump()
      }
      case 'response': {
        const response = this.s.open.find((r) => r.id === key)
        if (response === undefined) return
        this.log('warn', 'response still running at its deadline: cancelling', { responseId: key })
        if (!response.cancelRequested) {
          response.cancelRequested = true
          // An unseen response has no id to name: a bare cancel targets whatever is active.
          const eventId = this.send(response.placeholder ? { type: 'response.cancel' } : { type: 'response.cancel', response_id: key })
          this.remember(eventId, { kind: 'cancel', responseId: response.placeholder ? null : key })
        }
        this.setTimer(`cancel:${key}`, this.s.options.cancelGraceMs)
        return
      }
      case 'cancel': {
        const index = this.s.open.findIndex((r) => r.id === key)
        if (index < 0) return
        this.s.open.splice(index, 1)
        this.s.abandoned.push(key)
        if (this.s.abandoned.length > 16) this.s.abandoned.shift()
        this.log('error', 'response never ended, even after cancel: slot released', { responseId: key })
        this.client({ type: 'Warning', code: WarningCode.responseTimeout, description: 'The agent\'s response did not finish in time and was abandoned.' })
        return this.pump()
      }
      case 'item': {
        if (this.s.awaitingItems[key] !== true) return
        delete this.s.awaitingItems[key]
        this.client({ type: 'Error', code: ErrorCode.injectNotAcknowledged, description: 'The injected user message was not acknowledged upstream in time; no response was requested for it.' })
        return
      }
      case 'update': {
        const update = this.s.inflightUpdate
        if (update === null || update.eventId !== key) return
        this.s.inflightUpdate = null
        this.client({ type: 'Error', code: ErrorCode.upstreamTimeout, description: 'The upstream did not confirm the settings in time.' })
        if (this.s.phase === 'configuring') return this.closeWith(1011, 'upstream did not confirm settings')
        this.s.desired = { ...this.s.applied, ...(this.s.pendingFields ?? {}) }
        return this.pump()
      }
    }
  }

  // ── the slot ─────────────────────────────────────────────────────────────────

  /** Sends what may go now: a deferred session.update first, then the next response. */
  private pump (): void {
    if (this.s.phase !== 'ready' || responseInProgress(this.s)) return
    if (this.s.pendingFields !== null) {
      if (this.s.inflightUpdate !== null) return
      let fields = this.s.pendingFields
      let acks = this.s.pendingAcks
      if (fields.voice !== undefined && this.s.agentHasSpoken) {
        // The agent spoke while this change waited: the voice can no longer change.
        fields = withoutVoice(fields)
        acks = acks.filter((ack) => ack !== 'SpeakUpdated')
        this.refuseVoice()
      }
      this.s.pendingFields = null
      this.s.pendingAcks = []
      if (Object.keys(fields).length === 0) {
        for (const ack of acks) this.client({ type: ack })
      } else {
        this.sendUpdate(fields, acks)
      }
    }
    const request = this.s.queue.shift()
    if (request === undefined) return
    const eventId = this.nextId('ev')
    const response: Record<string, unknown> = { metadata: { proxy_event_id: eventId } }
    if (request.instructions !== undefined) response.instructions = request.instructions
    this.out.push({ kind: 'upstream', event: { type: 'response.create', event_id: eventId, response } })
    this.remember(eventId, { kind: 'create', request })
    this.s.inflightCreate = { eventId, request, cancelOnCreate: false }
    this.setTimer(`create:${eventId}`, this.s.options.createAckMs)
  }

  private sendUpdate (fields: SessionFields, acks: ConfigAck[]): void {
    const eventId = this.send({ type: 'session.update', session: sessionPayload(fields) })
    this.s.inflightUpdate = { eventId, fields, acks }
    this.setTimer(`update:${eventId}`, this.s.options.updateAckMs)
  }

  /** OpenAI refuses the whole update (cannot_update_voice) once the agent spoke: warn, keep the rest. */
  private refuseVoice (): void {
    this.s.desired.voice = this.s.applied.voice
    this.client({ type: 'Warning', code: WarningCode.voiceChangeRefused, description: 'The voice cannot change after the agent has spoken in this session; the other changes were applied.' })
  }

  /** Removes the stand-in for an unseen response (and its timers); true if there was one. */
  private dropPlaceholder (): boolean {
    const index = this.s.open.findIndex((r) => r.placeholder)
    if (index < 0) return false
    const [placeholder] = this.s.open.splice(index, 1)
    this.clearTimer(`response:${placeholder?.id ?? ''}`)
    this.clearTimer(`cancel:${placeholder?.id ?? ''}`)
    return true
  }

  /** A refused request goes first again; a bare one absorbs bare follow-ups queued meanwhile. */
  private requeueFirst (request: ResponseRequest): void {
    const retry = { ...request, retries: request.retries + 1 }
    if (retry.instructions === undefined) {
      const index = this.s.queue.findIndex((r) => r.instructions === undefined)
      if (index >= 0) {
        const [bare] = this.s.queue.splice(index, 1)
        retry.reasons = [...retry.reasons, ...(bare?.reasons ?? [])]
      }
    }
    this.s.queue.unshift(retry)
  }

  private enqueueBare (reason: string, at: number): void {
    const bare = this.s.queue.find((r) => r.instructions === undefined)
    if (bare !== undefined) bare.reasons.push(reason)
    else this.s.queue.push({ reasons: [reason], enqueuedAt: at, retries: 0 })
  }

  // ── helpers ──────────────────────────────────────────────────────────────────

  private whenStarted (input: EngineInput, run: () => void): void {
    if (this.s.phase === 'awaiting_settings') this.hold(input)
    else run()
  }

  private whenReady (input: EngineInput, run: () => void): void {
    if (this.s.phase !== 'ready') this.hold(input)
    else run()
  }

  private hold (input: EngineInput): void {
    if (this.s.held.length >= this.s.options.maxHeldIntents) {
      this.client({ type: 'Error', code: ErrorCode.tooManyHeldMessages, description: `More than ${this.s.options.maxHeldIntents} messages arrived before the session was configured; this one was dropped.` })
      return
    }
    this.s.held.push(input)
  }

  private close (): void {
    this.s.phase = 'closing'
    this.s.inflightCreate = null
    this.s.inflightUpdate = null
    this.s.open = []
    this.s.queue = []
    this.s.held = []
    this.s.pendingFields = null
    this.s.pendingAcks = []
    this.s.awaitingItems = {}
  }

  private closeWith (code: number, reason: string): void {
    this.close()
    this.out.push({ kind: 'close', code, reason })
  }

  private send (event: { type: string } & Record<string, unknown>): string {
    const eventId = this.nextId('ev')
    this.out.push({ kind: 'upstream', event: { ...event, event_id: eventId } })
    return eventId
  }

  private forget (matches: (purpose: SentPurpose) => boolean): void {
    for (const [eventId, purpose] of Object.entries(this.s.sent)) if (matches(purpose)) delete this.s.sent[eventId]
  }

  private remember (eventId: string, purpose: SentPurpose): void {
    this.s.sent[eventId] = purpose
    this.bound(this.s.sent, () => true)
  }

  /** Drops the oldest removable entries of a per-session record beyond the bound. */
  private bound<T> (record: Record<string, T>, removable: (value: T) => boolean): void {
    const keys = Object.keys(record)
    let excess = keys.length - MAX_REMEMBERED
    for (const key of keys) {
      if (excess <= 0) return
      if (removable(record[key] as T)) {
        delete record[key]
        excess--
      }
    }
  }

  private nextId (kind: string): string {
    this.s.seq += 1
    return `${this.s.options.idPrefix}${kind}${this.s.seq}`
  }

  private client (message: ServerMessage): void {
    this.out.push({ kind: 'client', message })
  }

  private setTimer (name: string, ms: number): void {
    this.out.push({ kind: 'setTimer', name, ms })
  }

  private clearTimer (name: string): void {
    this.out.push({ kind: 'clearTimer', name })
  }

  private log (level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.out.push(fields === undefined ? { kind: 'log', level, msg } : { kind: 'log', level, msg, fields })
  }

  private metricQueueWait (request: ResponseRequest, at: number): void {
    this.out.push({ kind: 'metric', name: 'queueWait', seconds: Math.max(0, at - request.enqueuedAt) / 1000 })
  }
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

/** `response.conversation_id === null` marks an out-of-band response (rule 8). */
function isOutOfBand (response: Record<string, unknown> | undefined): boolean {
  return response !== undefined && 'conversation_id' in response && response.conversation_id === null
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
