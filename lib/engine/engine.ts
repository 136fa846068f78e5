// The turn engine: the one place that decides anything turn-related. When
// `response.create`, `session.update`, cancels, truncations and items go upstream; what
// the client is told and hears (barge-in, AgentStartedSpeaking and its latencies,
// AgentAudioDone, ConversationText and History as heard); what the conversation record
// holds; and when the upstream is renewed or reconnected and what it is given then.
//
// A sans-IO state machine: `step(input)` → commands. No sockets, clock or logger inside;
// inputs carry the time (`at`, ms) as data, and the session (the imperative shell) feeds
// it client intents, upstream events and timer ticks and carries out what it returns.
// Deterministic: the same inputs in the same order give the same commands. Its state is
// mutated in place, so a step costs what its input changes, never a copy of the whole
// state. The rules it implements are docs/turn-engine.md.

import type { ConfigAck, ServerMessage } from '../protocol/deepgram.js'
import { ErrorCode, WarningCode } from '../protocol/deepgram.js'
import { quoted } from '../protocol/json.js'
import type { ConversationItem, SessionFields } from '../protocol/openai.js'
import { SESSION_FIELD_NAMES, sessionPayload, userText } from '../protocol/openai.js'
import type { UpstreamFailure } from '../upstream.js'
import type { AnnouncedCall, Command, EngineInput, InjectBehavior, LogLevel, Timer, UpstreamCommand, UpstreamInput, Usage } from './io.js'
import { decodeUpstream } from './io.js'
import { ConversationRecord } from './record.js'
import { LazyMap, LazySet } from '../lazy.js'
import type { AgentTurn } from './turns.js'
import { heardAt, heardText, newTurn, withDelta } from './turns.js'

export type EnginePhase = 'awaiting_settings' | 'configuring' | 'ready' | 'closing'

export interface EngineOptions {
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
  /** The agent's words wait at most this long for the user's transcription of the turn they answer. */
  transcriptWaitMs: number
  /** First pause between reconnect attempts; it doubles with each attempt. */
  reconnectBackoffMs: number
  /** Intents held before the session is ready. */
  maxHeldIntents: number
  /** Longest instructions, in characters; a change beyond is refused (PROMPT_TOO_LONG). */
  maxPromptChars: number
  /** Responses waiting for the slot; an agent message beyond is refused. */
  maxQueuedResponses: number
  /** Renew the upstream at this age, at the first quiet moment; 0 = never. */
  renewAfterMs: number
  /** Reconnects after the upstream closes or drops mid-session. */
  reconnectAttempts: number
}

/** The engine's watchdog timings and retry bound, as the plugin's `engine` option takes them (the rest are limits). */
export const ENGINE_TIMINGS = ['createAckMs', 'responseMaxMs', 'cancelGraceMs', 'itemAckMs', 'updateAckMs', 'maxCreateRetries', 'transcriptWaitMs', 'reconnectBackoffMs'] as const
export type EngineTimings = Partial<Pick<EngineOptions, typeof ENGINE_TIMINGS[number]>>

export const defaultEngineOptions: EngineOptions = {
  createAckMs: 15_000,
  responseMaxMs: 120_000,
  cancelGraceMs: 5_000,
  itemAckMs: 10_000,
  updateAckMs: 15_000,
  maxCreateRetries: 3,
  transcriptWaitMs: 3_000,
  reconnectBackoffMs: 250,
  maxHeldIntents: 64,
  maxPromptChars: 100_000,
  maxQueuedResponses: 16,
  renewAfterMs: 3_000_000,
  reconnectAttempts: 3
}

/**
 * The options with their defaults filled in. Build them once and give the same object to
 * every session's engine: they are the same for all (a copy per session was 200 bytes).
 */
export function engineOptions (o: Partial<EngineOptions> = {}): EngineOptions {
  const options = { ...defaultEngineOptions }
  for (const name of Object.keys(defaultEngineOptions) as Array<keyof EngineOptions>) options[name] = o[name] ?? options[name]
  return options
}

/** Why a response is wanted. Bare requests coalesce; ones with instructions stay distinct. */
export interface ResponseRequest {
  reasons: string[]
  instructions?: string
  enqueuedAt: number
  retries: number
  /** What a bare request answers (see `readyOrder`). */
  answers?: Answers
}

/**
 * What a bare request answers: items the upstream acknowledged at these positions, and
 * the outputs of these calls (acknowledged, or not yet); `afterReplay` when some of it
 * reaches the current upstream only in the conversation replayed into it (the request
 * outlived the upstream it was asked on).
 */
export interface Answers {
  orders: number[]
  calls: string[]
  afterReplay: boolean
}

/** Our `response.create`, sent, its `response.created` not seen yet. */
export interface Creating {
  eventId: string
  request: ResponseRequest
  /** A cancel came before the response existed: cancel it by id when it does. */
  cancelOnCreate: boolean
  /** The user barged in before it existed: none of its audio plays. */
  muteOnCreate: boolean
}

/** An in-band response holding the slot: one we saw (`response.created`), or a placeholder. */
export type OpenResponse =
  | { kind: 'seen', key: string, cancelRequested: boolean, createdOrder: number, answersConversation: boolean }
  /** The upstream said a response runs (a conflict) that we never saw: hold the slot for it. */
  | { kind: 'placeholder', key: string, cancelRequested: boolean }

/** A response the watchdog gave up on: remembered for its late response.done, and as the one a conflict may name. */
export interface Abandoned { key: string, createdOrder?: number, answersConversation: boolean }

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
  arguments: string
  /** Its function_call item upstream. */
  itemId: string | undefined
  answered: boolean
  /** The server calls its endpoint (the client was told `client_side: false`). */
  serverSide: boolean
  /** Position of the acknowledgement of its output item (undefined until then). */
  outputAckOrder: number | undefined
}

/** Upstream event ids we sent and still expect an answer (or an error) for. */
export type SentPurpose =
  | { kind: 'injectItem', itemId: string }
  | { kind: 'functionOutput', itemId: string, callId: string }
  | { kind: 'contextItem', itemId: string }
  /** `callId`: a replayed function call (refused, it no longer stands). */
  | { kind: 'replayItem', itemId: string, callId?: string, outputOf?: string }
  | { kind: 'cancel', responseId: string | null }
  | { kind: 'create', request: ResponseRequest, responseId?: string }
  /** A create the watchdog gave up on: a late answer to it changes nothing. */
  | { kind: 'expiredCreate', instructed: boolean, muted: boolean }
  /** Conversation edits: a truncation or deletion of what the client did not hear, a commit. */
  | { kind: 'edit', what: 'truncate' | 'delete' | 'commit' }

/** What the client hears and is told of the conversation. */
interface Speech {
  /** When the user's turn ended (or the client asked for a response); 0 = never. */
  turnAnchor: number
  /** response.created times, by response id, until its response.done. */
  createdAt: LazyMap<string, number>
  /** The response whose audio reached the client last (its AgentStartedSpeaking was sent). */
  speaking: string | null
  /** The response barge-in interrupted: none of its audio plays. */
  muted: string | null
  userSpeaking: boolean
  agentHasSpoken: boolean
  /** In-band responses, until their words are told as heard. */
  turns: LazyMap<string, AgentTurn>
  /** Committed user audio whose transcription is on its way: item id → its position. */
  pendingUser: LazyMap<string, number>
  /** The agent's words waiting for those transcriptions (a bounded time). */
  heldTexts: ServerMessage[]
  /** Send `History` messages (Settings.flags.history, on unless false). */
  history: boolean
  /** Functions the server calls itself, by name. */
  serverFunctions: LazySet<string>
  /** ForceEndTurn commits on their way: each commit that lands starts that turn's response. */
  pendingCommits: number
  /** The user stopped speaking and server VAD will answer: its response has not been created yet. */
  vadTurnDue: boolean
  /** The item server VAD committed for that turn, once it is. */
  dueTurnItem: string | undefined
}

/** The upstream connection as the engine sees it. */
interface Link {
  /** `down` from a loss or a renewal until the new upstream's first session.updated. */
  state: 'live' | 'down'
  /** Connection attempts of the current streak of losses (see STABLE_LINK_MS). */
  attempts: number
  /** When the current upstream took the session. */
  liveSince: number
  /** The current (or coming) connection replaces one for a planned renewal, not a loss. */
  planned: boolean
  /** The upstream is old enough to be renewed at the next quiet moment. */
  renewDue: boolean
  /** The position at which the conversation replayed into this upstream was all in it (undefined while it is not, or never will be known). */
  replayedAt: number | undefined
  /** The engine asked for a new connection and waits for it to open. */
  connecting: boolean
  /** The loss took a user's turn whose words are not known (no transcription, or not yet): it cannot be answered. */
  lostTurn: boolean
}

export interface EngineState {
  phase: EnginePhase
  seq: number
  /** Position of the upstream event being handled, counted from 1. */
  order: number
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
  awaitingItems: LazySet<string>
  /** Items of the conversation replayed to a new upstream and not acknowledged yet. */
  replaying: LazySet<string>
  sent: LazyMap<string, SentPurpose>
  calls: LazyMap<string, CallState>
  /** Responses whose function calls await answers: response id → done yet? */
  callResponses: LazyMap<string, boolean>
  /** Responses the watchdog gave up on; their late response.done is still their end. */
  abandoned: Abandoned[]
  speech: Speech
  record: ConversationRecord
  link: Link
  usage: Usage & { responses: number }
}

const SENT_SUBJECT: Record<SentPurpose['kind'], string> = {
  injectItem: 'InjectUserMessage',
  functionOutput: 'FunctionCallResponse',
  contextItem: 'A context message',
  replayItem: 'A replayed conversation item',
  cancel: 'A cancel',
  create: 'response.create',
  expiredCreate: 'response.create',
  edit: 'A conversation edit'
}

const CONFLICT = 'conversation_already_has_active_response'
/** The upstream ends the session: going away, as at OpenAI's maximum session duration. */
const GOING_AWAY = 1001
/** Close codes after which a new upstream is worth trying: going away (its maximum duration), a drop, a server fault or restart. */
const RECONNECTABLE_CLOSES: ReadonlySet<number> = new Set([1001, 1006, 1011, 1012, 1013])
/** An upstream that kept the session this long was sound: losing it later starts a new streak of reconnects. */
const STABLE_LINK_MS = 30_000
/** Failures no reconnect fixes: a refused key. */
const FINAL_FAILURES: ReadonlySet<string> = new Set([ErrorCode.upstreamUnauthorized, ErrorCode.upstreamProtocolError])

/** Bound on remembered function calls and sent-event correlations per session. */
const MAX_REMEMBERED = 512
/**
 * Answered calls remembered (to refuse a second answer; for the conflict rule, when their
 * outputs were acknowledged) once their response's follow-up is on its way: the record,
 * not this map, is the conversation, so a long session's calls must not pile up here.
 */
const MAX_ANSWERED_CALLS = 32
/** Responses the watchdog abandoned, remembered for their late response.done. */
const MAX_ABANDONED = 16
/** response.created times and agent turns kept (a response without response.done must not grow them). */
const MAX_CREATED_AT = 16
const MAX_TURNS = 16

export class TurnEngine {
  /** Prefix of every event_id and item id this session sends (unique per session). */
  readonly idPrefix: string
  readonly options: EngineOptions
  readonly #s: EngineState
  #out: Command[] = []
  /** The time of the input being handled. */
  #now = 0

  constructor (idPrefix: string, options: EngineOptions = defaultEngineOptions) {
    this.idPrefix = idPrefix
    this.options = options
    this.#s = {
      phase: 'awaiting_settings',
      seq: 0,
      order: 0,
      applied: {},
      desired: {},
      pendingFields: null,
      pendingAcks: [],
      inflightUpdate: null,
      slot: { creating: null, open: [] },
      queue: [],
      held: [],
      setup: { context: [] },
      awaitingItems: new LazySet(),
      replaying: new LazySet(),
      sent: new LazyMap(),
      calls: new LazyMap(),
      callResponses: new LazyMap(),
      abandoned: [],
      speech: {
        turnAnchor: 0,
        createdAt: new LazyMap(),
        speaking: null,
        muted: null,
        userSpeaking: false,
        agentHasSpoken: false,
        turns: new LazyMap(),
        pendingUser: new LazyMap(),
        heldTexts: [],
        history: true,
        serverFunctions: new LazySet(),
        pendingCommits: 0,
        vadTurnDue: false,
        dueTurnItem: undefined
      },
      record: new ConversationRecord(),
      link: { state: 'live', attempts: 0, liveSince: 0, planned: false, renewDue: false, connecting: false, replayedAt: 0, lostTurn: false },
      usage: { responses: 0, inputTokens: 0, outputTokens: 0, inputAudioTokens: 0, outputAudioTokens: 0, cachedInputTokens: 0 }
    }
  }

  /** Consumes one input; returns what to do. Never throws on any input. */
  step (input: EngineInput): Command[] {
    const out: Command[] = []
    this.#out = out
    this.#now = input.at
    if (this.#s.phase !== 'closing') {
      this.#noteTurnAnchor(input)
      this.#handle(input)
    }
    // Not kept between steps: an idle session would hold its last commands.
    this.#out = []
    return out
  }

  /**
   * The audio hot path, per delta of the audible response (or of a muted one): `ms` of
   * audio produced, and whether it reached the client. Counts only; no commands.
   */
  noteAudio (responseId: string, ms: number, sent: boolean): void {
    const turn = this.#s.speech.turns.get(responseId)
    if (turn === undefined) return
    turn.producedMs += ms
    if (sent) turn.sentMs += ms
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

  /** A response in progress, or a response's words not told yet (its audio still playing out, or held for the user's transcript). */
  get inTurn (): boolean {
    return this.responseInProgress || this.#s.speech.turns.size > 0 || this.#s.speech.heldTexts.length > 0
  }

  get activeResponseId (): string | null {
    return this.#s.slot.open.find((r) => r.kind === 'seen')?.key ?? null
  }

  /** The response whose audio goes to the client now; any other response's audio is an `agentAudio` input. */
  get audibleResponse (): string | null {
    const { speaking, muted } = this.#s.speech
    return speaking === muted ? null : speaking
  }

  /** Client audio may go upstream: configured, and connected to an upstream that has the session. */
  get audioFlows (): boolean {
    return this.#s.phase === 'ready' && this.#s.link.state === 'live'
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

  get usage (): Readonly<Usage & { responses: number }> {
    return this.#s.usage
  }

  // ── dispatch ─────────────────────────────────────────────────────────────────

  #handle (input: EngineInput): void {
    const s = this.#s
    switch (input.type) {
      case 'settings': return this.#settings(input)
      case 'configure': return this.#whenStarted(input, () => {
        if (input.serverFunctions !== undefined) s.speech.serverFunctions = new LazySet(input.serverFunctions)
        this.#configure(withAppended(s.desired, input), input.ack)
      })
      case 'injectUser': return this.#whenLinked(input, () => this.#injectUser(input.content))
      case 'injectAgent': return this.#whenLinked(input, () => this.#injectAgent(input.message, input.behavior, input.at))
      case 'functionResult': return this.#functionResult(input)
      case 'forceEndTurn': return this.#whenLinked(input, () => this.#forceEndTurn())
      case 'cancel': return this.#cancelActive()
      case 'agentAudio': return this.#agentAudio(input.responseId, input.at)
      case 'upstream': {
        const event = decodeUpstream(input.event)
        s.order++
        if (event !== undefined) this.#upstream(event, input.at)
        return
      }
      case 'timer': return this.#timer(input.timer)
      case 'upstreamClosed': return this.#close()
      case 'upstreamLost': return this.#upstreamLost(input.closeCode, input.failure, input.at)
      case 'upstreamOpened': return this.#upstreamOpened()
      case 'upstreamConnectFailed': return this.#connectFailed(input.failure, input.at)
    }
  }

  /** When the client asked for a response (or the user's turn ended): the start of AgentStartedSpeaking's latency. */
  #noteTurnAnchor (input: EngineInput): void {
    switch (input.type) {
      case 'injectUser':
      case 'injectAgent':
      case 'functionResult':
      case 'forceEndTurn':
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
        if (!event.outOfBand) speech.vadTurnDue = false
        return this.#responseCreated(event, at)
      case 'response.done':
        if (event.responseId !== undefined) speech.createdAt.delete(event.responseId)
        if (event.responseId === speech.muted) speech.muted = null
        return this.#responseDone(event, at)
      case 'error': return this.#upstreamError(event.code, event.eventId)
      case 'item.added': return this.#itemAcknowledged(event.itemId, at)
      case 'item.done':
        if (event.itemId !== undefined && event.assistantText !== undefined) this.#itemText(event.itemId, event.assistantText)
        return this.#itemAcknowledged(event.itemId, at)
      case 'function_call.done': return this.#registerCall(event.call, event.responseId)
      case 'speech.started': return this.#bargeIn(at)
      case 'speech.stopped':
        speech.turnAnchor = at
        speech.userSpeaking = false
        // Server VAD commits the turn and answers it next: no renewal in between.
        speech.vadTurnDue = this.#s.applied.turnDetection?.create_response !== false
        speech.dueTurnItem = undefined
        return this.#maybeRenew()
      case 'audio.done': return this.#audioDone(event.responseId)
      case 'transcript.done':
        if (event.itemId !== undefined && event.text !== undefined) this.#itemText(event.itemId, event.text)
        return
      case 'transcript.delta':
        if (event.itemId !== undefined && event.delta !== undefined) this.#itemDelta(event.itemId, event.delta)
        return
      case 'output_item.added': return this.#outputItemAdded(event.itemId, event.responseId, event.message)
      case 'audio.committed': return this.#audioCommitted(event.itemId, at)
      case 'user.transcript': return this.#userTranscript(event.itemId, event.text)
      case 'user.transcript.failed': return this.#userTranscriptFailed(event.itemId)
    }
  }

  // ── client intents ────────────────────────────────────────────────────────────

  #settings (input: Extract<EngineInput, { type: 'settings' }>): void {
    const s = this.#s
    if (input.history !== undefined) s.speech.history = input.history
    if (input.serverFunctions !== undefined) s.speech.serverFunctions = new LazySet(input.serverFunctions)
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
    this.#s.record.message(itemId, 'user', content)
    this.#tell('user', content)
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

  #functionResult (input: Extract<EngineInput, { type: 'functionResult' }>): void {
    const { callId, output, at } = input
    const call = this.#s.calls.get(callId)
    // A server-side output the call no longer wants (cancelled, answered by the client, forgotten) is dropped quietly.
    if (input.serverSide === true && (call === undefined || call.answered)) return
    if (call === undefined) {
      this.#client({ type: 'Warning', code: WarningCode.unknownFunctionCall, description: `FunctionCallResponse for unknown function call id ${quoted(callId)}: nothing was forwarded.` })
      return
    }
    if (call.answered) {
      this.#client({ type: 'Warning', code: WarningCode.duplicateFunctionCallResponse, description: `Function call ${quoted(callId)} was already answered: this answer was not forwarded.` })
      return
    }
    call.answered = true
    this.#s.record.answer(callId, output)
    if (input.serverSide === true) this.#client({ type: 'FunctionCallResponse', id: callId, name: call.name, content: output })
    // Legal mid-response: the output is forwarded at once; only the follow-up waits. An
    // answer in the gap between two upstreams reaches the new one with the replayed record.
    if (this.#s.link.state === 'live') {
      const itemId = this.#nextId('it')
      const eventId = this.#send({ type: 'conversation.item.create', item: { id: itemId, type: 'function_call_output', call_id: callId, output } })
      this.#remember(eventId, { kind: 'functionOutput', itemId, callId })
    }
    if (this.#s.speech.history) {
      this.#client({ type: 'History', function_calls: [{ id: callId, name: call.name, client_side: !call.serverSide, arguments: call.arguments, response: output }] })
    }
    this.#followUpIfAnswered(call.responseId, at)
    this.#pump()
  }

  /** The client ends the user's turn now (push-to-talk, DTMF): commit what was said; its response comes once the commit is in. */
  #forceEndTurn (): void {
    const eventId = this.#send({ type: 'input_audio_buffer.commit' })
    this.#remember(eventId, { kind: 'edit', what: 'commit' })
    this.#s.speech.pendingCommits++
  }

  #cancelActive (): void {
    const slot = this.#s.slot
    for (const response of slot.open) this.#cancelResponse(response)
    // A cancel before response.created is a no-op upstream: cancel by id when it arrives.
    if (slot.creating !== null) slot.creating.cancelOnCreate = true
  }

  #cancelResponse (response: OpenResponse): void {
    if (response.kind === 'placeholder' || response.cancelRequested) return
    response.cancelRequested = true
    const eventId = this.#send({ type: 'response.cancel', response_id: response.key })
    this.#remember(eventId, { kind: 'cancel', responseId: response.key })
  }

  // ── what the client hears ────────────────────────────────────────────────────

  /** Audio of a response that is not the audible one: a new response starts speaking, unless barge-in muted it. */
  #agentAudio (responseId: string, at: number): void {
    const speech = this.#s.speech
    if (responseId === speech.muted || responseId === speech.speaking) return
    speech.speaking = responseId
    speech.agentHasSpoken = true
    const turn = this.#turn(responseId)
    turn.firstSentAt = at
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

  #audioDone (responseId: string | undefined): void {
    const speech = this.#s.speech
    if (responseId === undefined || responseId !== speech.speaking || responseId === speech.muted) return
    const turn = speech.turns.get(responseId)
    if (turn?.audioDoneSent === true) return
    if (turn !== undefined) turn.audioDoneSent = true
    this.#client({ type: 'AgentAudioDone' })
  }

  /**
   * The user started speaking. The running response goes silent at once (heard or not,
   * and so does one whose create is still on its way), and so does the one being heard,
   * which may be playing out after its response.done: what the client heard of each is
   * kept, the rest is cut from the conversation upstream.
   */
  #bargeIn (at: number): void {
    const s = this.#s
    const speech = s.speech
    const running = this.activeResponseId
    // (With nothing to interrupt, one talked over before stays silent: its audio may still come.)
    speech.muted = running ?? speech.speaking ?? speech.muted
    this.#out.push({ kind: 'resetOutputAudio' })
    this.#client({ type: 'UserStartedSpeaking' })
    speech.userSpeaking = true
    speech.vadTurnDue = false
    if (s.slot.creating !== null) {
      s.slot.creating.muteOnCreate = true
      s.slot.creating.cancelOnCreate = true
    }
    if (speech.speaking !== null && speech.speaking !== running) this.#interruptTurn(speech.speaking, at)
    if (running !== null) this.#interruptTurn(running, at)
  }

  /** Barge-in cuts one response's turn where the client stopped hearing it. */
  #interruptTurn (responseId: string, at: number): void {
    const s = this.#s
    const turn = s.speech.turns.get(responseId)
    if (turn === undefined || turn.settled || turn.heardMs !== undefined) return
    turn.heardMs = heardAt(turn, at)
    if (turn.firstSentAt !== undefined && !turn.audioDoneSent) {
      // The interrupted audio ends here for the client.
      turn.audioDoneSent = true
      this.#client({ type: 'AgentAudioDone' })
    }
    const open = s.slot.open.find((r) => r.key === responseId)
    // Server VAD with interrupt_response cancels by itself; without it, we do.
    if (open !== undefined && s.applied.turnDetection?.interrupt_response !== true) this.#cancelResponse(open)
    if (turn.done) this.#settleTurn(turn)
  }

  #outputItemAdded (itemId: string | undefined, responseId: string | undefined, message: boolean): void {
    if (itemId === undefined || responseId === undefined || !message) return
    // (A response whose response.created never came still speaks: its words are told too.)
    const turn = this.#turn(responseId)
    if (turn.items.includes(itemId)) return
    turn.items.push(itemId)
    this.#s.record.message(itemId, 'assistant', undefined)
  }

  /** The first text the upstream gives for an assistant item (its transcript, text, or the item's own content). */
  #itemText (itemId: string, text: string): void {
    for (const turn of this.#s.speech.turns.values()) {
      if (!turn.items.includes(itemId) || turn.texts.has(itemId)) continue
      turn.texts.set(itemId, text)
      turn.partial.delete(itemId)
    }
  }

  #itemDelta (itemId: string, delta: string): void {
    for (const turn of this.#s.speech.turns.values()) {
      if (turn.items.includes(itemId) && !turn.texts.has(itemId)) turn.partial.set(itemId, withDelta(turn.partial.get(itemId), delta))
    }
  }

  /**
   * A response's words are told once the client heard them: all of them when its audio
   * has played out (or it had none), the part heard when barge-in cut it, nothing when it
   * was cut before any audio. What was not heard is cut upstream too.
   */
  #settleTurn (turn: AgentTurn, editUpstream = true): void {
    if (turn.settled) return
    turn.settled = true
    this.#clearTimer({ kind: 'playedOut', responseId: turn.responseId })
    const cut = turn.heardMs !== undefined
    const fraction = !cut ? 1 : turn.producedMs > 0 ? (turn.heardMs as number) / turn.producedMs : 0
    for (const [index, itemId] of turn.items.entries()) {
      // The heard audio is the first item's; any item after it was not heard at all.
      const itemFraction = index === 0 ? fraction : (cut ? 0 : 1)
      const text = heardText(turn.texts.get(itemId) ?? turn.partial.get(itemId) ?? '', itemFraction)
      this.#s.record.setText(itemId, text === '' ? undefined : text)
      if (text !== '') this.#tell('assistant', text)
      if (!cut || !editUpstream) continue
      if (itemFraction <= 0) {
        const eventId = this.#send({ type: 'conversation.item.delete', item_id: itemId })
        this.#remember(eventId, { kind: 'edit', what: 'delete' })
      } else if (itemFraction < 1) {
        const eventId = this.#send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: turn.heardMs })
        this.#remember(eventId, { kind: 'edit', what: 'truncate' })
      }
    }
    this.#s.speech.turns.delete(turn.responseId)
    this.#maybeRenew()
  }

  /** ConversationText (and History) for one side of the conversation; the agent's wait for the user's transcription of the turn they answer. */
  #tell (role: 'user' | 'assistant', content: string): void {
    const speech = this.#s.speech
    const messages: ServerMessage[] = [{ type: 'ConversationText', role, content }]
    if (speech.history) messages.push({ type: 'History', role, content })
    if (role === 'assistant' && speech.pendingUser.size > 0) {
      if (speech.heldTexts.length === 0) this.#setTimer({ kind: 'transcriptWait' }, this.options.transcriptWaitMs)
      speech.heldTexts.push(...messages)
      return
    }
    for (const message of messages) this.#client(message)
  }

  #releaseHeldTexts (): void {
    const speech = this.#s.speech
    if (speech.heldTexts.length === 0) return
    this.#clearTimer({ kind: 'transcriptWait' })
    const held = speech.heldTexts
    speech.heldTexts = []
    for (const message of held) this.#client(message)
  }

  #audioCommitted (itemId: string | undefined, at: number): void {
    const s = this.#s
    if (s.speech.vadTurnDue) s.speech.dueTurnItem = itemId
    if (itemId !== undefined && s.applied.transcription != null) {
      s.speech.pendingUser.set(itemId, s.order)
      if (s.speech.pendingUser.size > MAX_TURNS) s.speech.pendingUser.delete(s.speech.pendingUser.keys().next().value as string)
      s.record.message(itemId, 'user', undefined)
    }
    if (s.speech.pendingCommits > 0) {
      s.speech.pendingCommits--
      this.#enqueueBare('force_end_turn', at, { orders: [s.order], calls: [], afterReplay: false })
      this.#pump()
    }
  }

  #userTranscript (itemId: string | undefined, text: string | undefined): void {
    const speech = this.#s.speech
    if (itemId !== undefined) {
      speech.pendingUser.delete(itemId)
      this.#s.record.setText(itemId, text === '' ? undefined : text)
    }
    if (text !== undefined && text !== '') this.#tell('user', text)
    if (speech.pendingUser.size === 0) this.#releaseHeldTexts()
    this.#maybeRenew()
  }

  #userTranscriptFailed (itemId: string | undefined): void {
    const speech = this.#s.speech
    if (itemId !== undefined) {
      speech.pendingUser.delete(itemId)
      this.#s.record.setText(itemId, undefined)
    }
    this.#client({ type: 'Warning', code: WarningCode.transcriptionFailed, description: 'What the user said could not be transcribed; the agent still heard it.' })
    if (speech.pendingUser.size === 0) this.#releaseHeldTexts()
    this.#maybeRenew()
  }

  #turn (responseId: string): AgentTurn {
    const turns = this.#s.speech.turns
    let turn = turns.get(responseId)
    if (turn === undefined) {
      turn = newTurn(responseId, this.#s.order)
      turns.set(responseId, turn)
      if (turns.size > MAX_TURNS) turns.delete(turns.keys().next().value as string)
    }
    return turn
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
    else if (s.link.state === 'down') this.#relinked()
    this.#pump()
  }

  /** First session.updated: the conversation may start, in the order the client set it up. */
  #becomeReady (at: number): void {
    const s = this.#s
    s.phase = 'ready'
    s.link.liveSince = at
    this.#out.push({ kind: 'ready' })
    this.#renewLater()
    const { context, greeting } = s.setup
    s.setup = { context: [] }
    for (const item of context) {
      const itemId = this.#nextId('it')
      const eventId = this.#send({ type: 'conversation.item.create', item: { id: itemId, ...item } })
      this.#remember(eventId, { kind: 'contextItem', itemId })
      recordContext(s.record, itemId, item)
    }
    if (greeting !== undefined) s.queue.push({ reasons: ['greeting'], instructions: sayExactly(greeting), enqueuedAt: at, retries: 0 })
    this.#replayHeld()
  }

  #replayHeld (): void {
    const s = this.#s
    const held = s.held
    s.held = []
    for (const input of held) this.#handle(input)
  }

  #responseCreated (event: Extract<UpstreamInput, { type: 'response.created' }>, at: number): void {
    if (event.outOfBand) return
    const s = this.#s
    const slot = s.slot
    const creating = slot.creating
    const id = event.responseId
    // Our creates carry their event id in metadata, echoed here. A server-VAD response
    // has `metadata: null`; an upstream that drops the field entirely gets the benefit
    // of the doubt (a wrong guess is repaired by the conflict error, see #createRefused).
    const ours = creating !== null && (event.proxyEventId === undefined || event.proxyEventId === creating.eventId)
    if (slot.open.some((r) => r.key === id)) return
    // A response we were told runs (conflict) now has a name.
    this.#dropPlaceholder()
    // A response that answers the conversation (server VAD's, or our create without
    // instructions) answers every bare request whose items it saw: those go.
    const answersConversation = this.#answersConversation(event.proxyEventId, ours ? creating : null)
    slot.open.push({ kind: 'seen', key: id, cancelRequested: false, createdOrder: s.order, answersConversation })
    // Its response.created says when it saw the conversation (even if audio came first).
    this.#turn(id).createdOrder = s.order
    this.#setTimer({ kind: 'responseDeadline', responseKey: id }, this.options.responseMaxMs)
    if (answersConversation) {
      s.queue = s.queue.filter((r) => {
        const ready = this.#readyOrder(r)
        return ready === undefined || ready >= s.order
      })
    }
    const late = event.proxyEventId == null ? undefined : s.sent.get(event.proxyEventId)
    if (late?.kind === 'expiredCreate' && late.muted) {
      // A create given up on, that the user talked over meanwhile, came after all: it is not heard.
      this.#muteCreated(id)
      this.#cancelActive()
    }
    if (ours && creating !== null) {
      const sent = s.sent.get(creating.eventId)
      if (sent?.kind === 'create') sent.responseId = id
      slot.creating = null
      this.#clearTimer({ kind: 'createAck', eventId: creating.eventId })
      this.#out.push({ kind: 'metric', name: 'queueWait', seconds: Math.max(0, at - creating.request.enqueuedAt) / 1000 })
      // The user spoke before it existed: it is cut before anything of it is heard.
      if (creating.muteOnCreate) this.#muteCreated(id)
      if (creating.cancelOnCreate) this.#cancelActive()
    }
  }

  #muteCreated (responseId: string): void {
    this.#s.speech.muted = responseId
    this.#turn(responseId).heardMs = 0
  }

  #responseDone (event: Extract<UpstreamInput, { type: 'response.done' }>, at: number): void {
    if (event.outOfBand) return // never frees the slot
    const s = this.#s
    const id = event.responseId
    const index = s.slot.open.findIndex((r) => r.key === id)
    if (index >= 0) {
      s.slot.open.splice(index, 1)
      this.#clearResponseTimers(id as string)
    } else if (id !== undefined && s.abandoned.some((abandoned) => abandoned.key === id)) {
      s.abandoned = s.abandoned.filter((abandoned) => abandoned.key !== id)
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
    if (event.usage !== undefined) this.#countUsage(event.usage)
    if (event.status === 'failed') {
      const code = event.failureCode ?? 'no reason given'
      this.#client({ type: 'Warning', code: WarningCode.thinkRequestFailed, description: `The agent's response failed upstream (${code}); the session goes on.` })
    }
    if (id !== undefined) {
      for (const call of event.calls) this.#registerCall(call, id)
      if (event.status !== 'completed') this.#cancelCallsOf(id)
      if (s.callResponses.has(id)) {
        s.callResponses.set(id, true)
        this.#followUpIfAnswered(id, at)
      }
      this.#turnDone(id, at)
    }
    this.#pump()
  }

  /** A response's audio is all produced: its words are told now, or once the client has played it out. */
  #turnDone (responseId: string, at: number): void {
    const turn = this.#s.speech.turns.get(responseId)
    if (turn === undefined) return
    turn.done = true
    if (turn.heardMs !== undefined || turn.firstSentAt === undefined || turn.sentMs === 0) {
      this.#settleTurn(turn)
      return
    }
    this.#setTimer({ kind: 'playedOut', responseId }, Math.max(0, turn.firstSentAt + turn.sentMs - at))
  }

  #countUsage (usage: Usage): void {
    const total = this.#s.usage
    total.responses++
    total.inputTokens += usage.inputTokens
    total.outputTokens += usage.outputTokens
    total.inputAudioTokens += usage.inputAudioTokens
    total.outputAudioTokens += usage.outputAudioTokens
    total.cachedInputTokens += usage.cachedInputTokens
    this.#out.push({ kind: 'metric', name: 'tokens', usage })
  }

  /**
   * Calls a response announced but that response was cut (cancelled, failed): they no
   * longer stand. The client is told (FunctionCallCancelled), and their items leave the
   * conversation so the model is not left with a question nobody answers.
   */
  #cancelCallsOf (responseId: string): void {
    this.#cancelCalls((call) => call.responseId === responseId)
  }

  /** Cancels the unanswered calls that match; true if there were any. */
  #cancelCalls (matches: (call: CallState, callId: string) => boolean): boolean {
    const s = this.#s
    const cancelled: Array<{ id: string, name: string }> = []
    for (const [callId, call] of s.calls) {
      if (call.answered || !matches(call, callId)) continue
      s.calls.delete(callId)
      // A response with a call cut short gets no follow-up: its turn was cut.
      s.callResponses.delete(call.responseId)
      s.record.dropCall(callId)
      cancelled.push({ id: callId, name: call.name })
      if (call.itemId !== undefined && s.link.state === 'live') {
        const eventId = this.#send({ type: 'conversation.item.delete', item_id: call.itemId })
        this.#remember(eventId, { kind: 'edit', what: 'delete' })
      }
    }
    if (cancelled.length === 0) return false
    this.#client({ type: 'FunctionCallCancelled', functions: cancelled })
    return true
  }

  /** An `error`, split by what it refused: a create, an update, an item, a cancel, an edit, or nothing of ours. */
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
    } else if (purpose?.kind === 'edit') {
      // A commit with nothing to commit (the turn was already taken), an item already gone: nothing to undo.
      this.#log('debug', `${purpose.what} refused upstream`, { errorCode: code })
      if (purpose.what === 'commit') {
        s.speech.pendingCommits = Math.max(0, s.speech.pendingCommits - 1)
        this.#client({ type: 'Warning', code: WarningCode.forceEndTurnUnsupported, description: 'ForceEndTurn did not end a turn: the user had said nothing since the last one.' })
      }
    } else if (purpose?.kind === 'replayItem') {
      this.#log('warn', 'a replayed conversation item was refused upstream', { errorCode: code })
      // A call the new upstream does not have cannot be answered there. Its item is in no
      // conversation (the old one's id names nothing here): nothing to delete.
      const call = purpose.callId === undefined ? undefined : s.calls.get(purpose.callId)
      if (call !== undefined) {
        call.itemId = undefined
        this.#cancelCalls((_call, callId) => callId === purpose.callId)
      }
      if (s.replaying.delete(purpose.itemId) && s.replaying.size === 0) this.#replayDone()
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
      if (slot.open.length === 0) {
        // The running response is unseen: hold the slot for it, under the same watchdog.
        const key = `unknown:${eventId}`
        slot.open.push({ kind: 'placeholder', key, cancelRequested: false })
        this.#setTimer({ kind: 'responseDeadline', responseKey: key }, this.options.responseMaxMs)
      }
      if (creating?.cancelOnCreate === true) {
        this.#log('warn', 'response.create rejected: another response is active; it was cancelled before it started', { errorCode: code })
        this.#pump()
        return // cancelled before it started: nothing to retry
      }
      if (this.#answeredByRunning(request)) {
        this.#log('info', 'response.create rejected: the running response was created after everything it answers; not retried', { errorCode: code })
        this.#pump()
        return
      }
      this.#log('warn', 'response.create rejected: another response is active; retrying after it ends', { errorCode: code })
      if (request.retries < this.options.maxCreateRetries) {
        this.#requeueFirst(request)
        return
      }
    }
    this.#client({ type: 'Warning', code, description: describeUpstreamCode(code, 'response.create') })
    this.#pump()
  }

  /**
   * A bare request refused because a response runs: that response (the last one seen
   * starting, even one the watchdog gave up on) already answers it when it answers the
   * conversation and was created after every item the request answers was in it.
   * Retrying would make the model answer twice. A request with its own instructions
   * (greeting, agent message) is never answered by another.
   */
  #answeredByRunning (request: ResponseRequest): boolean {
    const ready = this.#readyOrder(request)
    if (ready === undefined) return false
    let latest = -1
    let answers = false
    for (const r of [...this.#s.abandoned, ...this.#s.slot.open]) {
      if (!('createdOrder' in r) || r.createdOrder === undefined || r.createdOrder <= latest) continue
      latest = r.createdOrder
      answers = r.answersConversation
    }
    return answers && latest > ready
  }

  /** Whether a new response answers the conversation: server VAD's, or ours without instructions (a late one the watchdog gave up on too). */
  #answersConversation (proxyEventId: string | null | undefined, ours: Creating | null): boolean {
    if (ours !== null) return ours.request.instructions === undefined
    const purpose = proxyEventId == null ? undefined : this.#s.sent.get(proxyEventId)
    if (purpose?.kind === 'expiredCreate') return !purpose.instructed
    if (purpose?.kind === 'create') return purpose.request.instructions === undefined
    return true
  }

  /**
   * The position after which a response saw everything a bare request answers: the last
   * of its items' acknowledgements (undefined while one has not come, and always for a
   * request with instructions: those are never answered by another response).
   */
  #readyOrder (request: ResponseRequest): number | undefined {
    const answers = request.answers
    if (request.instructions !== undefined || answers === undefined) return undefined
    let ready = Math.max(0, ...answers.orders)
    if (answers.afterReplay) {
      const replayedAt = this.#s.link.replayedAt
      if (replayedAt === undefined) return undefined
      ready = Math.max(ready, replayedAt)
    }
    for (const callId of answers.calls) {
      const acked = this.#s.calls.get(callId)?.outputAckOrder
      if (acked === undefined) return undefined
      ready = Math.max(ready, acked)
    }
    return ready
  }

  #updateRefused (code: string, update: InflightUpdate): void {
    const s = this.#s
    s.inflightUpdate = null
    this.#clearTimer({ kind: 'updateAck', eventId: update.eventId })
    if (s.link.state === 'down') return this.#newUpstreamRefused(update, code)
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
      this.#client({ type: 'Warning', code, description: describeUpstreamCode(code, update.acks.join(', ')) })
    }
    this.#pump()
  }

  /** An error about an item we sent, or about nothing we can name: the session goes on. */
  #otherRefused (code: string, purpose: SentPurpose | undefined): void {
    if (purpose?.kind === 'injectItem') {
      this.#s.awaitingItems.delete(purpose.itemId)
      this.#clearTimer({ kind: 'itemAck', itemId: purpose.itemId })
    }
    this.#client({ type: 'Warning', code, description: describeUpstreamCode(code, purpose === undefined ? undefined : SENT_SUBJECT[purpose.kind]) })
  }

  #itemAcknowledged (itemId: string | undefined, at: number): void {
    if (itemId === undefined) return
    const s = this.#s
    for (const [eventId, purpose] of s.sent) {
      if (!('itemId' in purpose) || purpose.itemId !== itemId) continue
      s.sent.delete(eventId)
      const outputOf = purpose.kind === 'functionOutput' ? purpose.callId : purpose.kind === 'replayItem' ? purpose.outputOf : undefined
      const call = outputOf === undefined ? undefined : s.calls.get(outputOf)
      if (call !== undefined) call.outputAckOrder = s.order
    }
    if (s.replaying.delete(itemId) && s.replaying.size === 0) this.#replayDone()
    if (!s.awaitingItems.delete(itemId)) return
    this.#clearTimer({ kind: 'itemAck', itemId })
    this.#enqueueBare('inject_user_message', at, { orders: [s.order], calls: [], afterReplay: false })
    this.#pump()
  }

  #registerCall (call: AnnouncedCall, responseId: string): void {
    const s = this.#s
    if (s.calls.has(call.callId)) return
    const serverSide = s.speech.serverFunctions.has(call.name)
    s.calls.set(call.callId, { responseId, name: call.name, arguments: call.arguments, itemId: call.itemId, answered: false, serverSide, outputAckOrder: undefined })
    if (!s.callResponses.has(responseId)) {
      s.callResponses.set(responseId, !s.slot.open.some((r) => r.key === responseId) && !s.abandoned.some((abandoned) => abandoned.key === responseId))
      boundMap(s.callResponses, () => false)
    }
    forgetAnsweredCalls(s)
    boundMap(s.calls, (c) => c.answered)
    s.record.call(call.callId, call.callId, call.name, call.arguments)
    this.#client({ type: 'FunctionCallRequest', functions: [{ id: call.callId, name: call.name, arguments: call.arguments, client_side: !serverSide }] })
    if (serverSide) this.#out.push({ kind: 'callFunction', callId: call.callId, name: call.name, arguments: call.arguments })
  }

  /** One follow-up per response, once it is done and every call it carried is answered. */
  #followUpIfAnswered (responseId: string, at: number): void {
    const s = this.#s
    if (s.callResponses.get(responseId) !== true) return
    const calls: string[] = []
    for (const [callId, call] of s.calls) {
      if (call.responseId !== responseId) continue
      if (!call.answered) return
      calls.push(callId)
    }
    s.callResponses.delete(responseId)
    // Outputs answered on an upstream since lost were never acknowledged there.
    this.#enqueueBare('function_call_output', at, { orders: [], calls, afterReplay: s.link.state === 'down' })
  }

  // ── the upstream connection: renewal and reconnects ─────────────────────────

  /** The current upstream may be renewed once it is this old (0 = never). */
  #renewLater (): void {
    if (this.options.renewAfterMs > 0) this.#setTimer({ kind: 'renewDue' }, this.options.renewAfterMs)
  }

  /** A planned renewal goes at the first quiet moment: nothing in flight, nobody speaking, every word told. */
  #maybeRenew (): void {
    const s = this.#s
    if (!s.link.renewDue || s.phase !== 'ready' || s.link.state !== 'live' || !this.#quiet()) return
    s.link.renewDue = false
    // The renewal's own connection is the first attempt of a streak, as after a loss.
    s.link.attempts = 1
    this.#linkDown(true, this.#now)
    this.#log('info', 'renewing the upstream connection at a quiet moment', { reason: 'age' })
    this.#connect(0, 'renew')
  }

  /** Nothing in flight, nobody speaking, every word told: a new upstream can take over unnoticed. */
  #quiet (): boolean {
    const s = this.#s
    return !this.responseInProgress && s.queue.length === 0 && s.inflightUpdate === null && s.pendingFields === null && this.pending.functionCalls === 0 &&
      !s.speech.userSpeaking && s.awaitingItems.size === 0 && s.replaying.size === 0 && s.speech.turns.size === 0 &&
      s.speech.pendingUser.size === 0 && s.speech.pendingCommits === 0 && !s.speech.vadTurnDue && s.speech.heldTexts.length === 0
  }

  /**
   * The upstream closed or dropped under an open session: reconnect if it can help, else
   * the session ends. An upstream that ends the session (1001: OpenAI's maximum duration)
   * at a quiet moment lost nothing: it is renewed like a planned renewal, unseen.
   */
  #upstreamLost (closeCode: number | undefined, failure: UpstreamFailure, at: number): void {
    const s = this.#s
    const reconnectable = closeCode === undefined ? failure.code === ErrorCode.upstreamUnresponsive : RECONNECTABLE_CLOSES.has(closeCode)
    if (s.phase !== 'ready' || !reconnectable || this.options.reconnectAttempts === 0) {
      this.#endWith(failure)
      return
    }
    // A connection that stayed up a while starts a new streak; one lost soon after it came
    // back counts against the streak (an upstream that keeps closing must end the session).
    if (at - s.link.liveSince >= STABLE_LINK_MS) s.link.attempts = 0
    if (s.link.attempts >= this.options.reconnectAttempts) {
      this.#endWith(failure)
      return
    }
    const renewal = closeCode === GOING_AWAY && s.link.state === 'live' && this.#quiet()
    if (renewal) this.#log('info', 'the upstream ended the session at a quiet moment: renewing it', { upstreamCloseCode: closeCode })
    else this.#log('warn', 'upstream lost mid-session: reconnecting', { upstreamCloseCode: closeCode, errorCode: failure.code })
    this.#linkDown(renewal, at)
    s.link.attempts++
    this.#connect(this.#backoff(), renewal ? 'renew' : 'reconnect')
  }

  /** The wait before the next attempt of a streak: none for the first, then reconnectBackoffMs, doubling. */
  #backoff (): number {
    const attempt = this.#s.link.attempts
    return attempt <= 1 ? 0 : this.options.reconnectBackoffMs * 2 ** (attempt - 2)
  }

  #connectFailed (failure: UpstreamFailure, at: number): void {
    const s = this.#s
    s.link.connecting = false
    if (s.phase !== 'ready' || s.link.state === 'live' || s.link.attempts >= this.options.reconnectAttempts || FINAL_FAILURES.has(failure.code)) {
      this.#endWith(failure)
      return
    }
    s.link.attempts++
    this.#log('warn', 'reconnecting the upstream failed: trying again', { errorCode: failure.code, attempt: s.link.attempts, at })
    this.#connect(this.#backoff(), 'reconnect')
  }

  #connect (delayMs: number, reason: 'renew' | 'reconnect'): void {
    this.#s.link.connecting = true
    this.#out.push({ kind: 'connectUpstream', delayMs, reason })
  }

  /** A new upstream is open: it is given the session configuration in force (the acknowledgements still owed go with it). */
  #upstreamOpened (): void {
    const s = this.#s
    if (s.link.state !== 'down') return
    s.link.connecting = false
    const acks = s.pendingAcks
    s.pendingFields = null
    s.pendingAcks = []
    this.#sendUpdate({ ...s.desired }, acks)
  }

  /** The new upstream confirmed the session: the conversation is replayed into it, and the session goes on. */
  #relinked (): void {
    const s = this.#s
    s.link.state = 'live'
    s.link.liveSince = this.#now
    this.#out.push({ kind: 'ready' })
    this.#renewLater()
    for (const item of s.record.replayItems()) {
      const itemId = this.#nextId('it')
      const eventId = this.#send({ type: 'conversation.item.create', item: { id: itemId, ...item } })
      this.#remember(eventId, {
        kind: 'replayItem',
        itemId,
        ...(item.type === 'function_call' && { callId: item.call_id }),
        ...(item.type === 'function_call_output' && { outputOf: item.call_id })
      })
      s.replaying.add(itemId)
    }
    if (s.replaying.size > 0) this.#setTimer({ kind: 'replayAck' }, this.options.itemAckMs)
    else s.link.replayedAt = s.order
    if (!s.link.planned || s.link.lostTurn) {
      const lost = s.link.lostTurn ? ', except the user\'s last turn (what they said around the drop did not all reach the agent, and it was not answered): it needs to be said again' : ''
      this.#client({ type: 'Warning', code: WarningCode.upstreamReconnected, description: `The connection to the agent dropped and was restored; the conversation so far was carried over${lost}.` })
      s.link.lostTurn = false
    }
    this.#replayHeld()
  }

  /** Every replayed item is in the new upstream's conversation (or refused there): requests waiting for the replay may go. */
  #replayDone (): void {
    this.#s.link.replayedAt = this.#s.order
    this.#clearTimer({ kind: 'replayAck' })
    this.#pump()
  }

  /**
   * The upstream in use is gone (or being replaced): what was in flight there is released.
   * A request whose response never started waits again; an injected message still waiting
   * for its acknowledgement asks for its response now (its text is in the record, replayed
   * first); calls already asked of the client stand.
   */
  #linkDown (planned: boolean, at: number): void {
    const s = this.#s
    s.link.state = 'down'
    s.link.planned = planned
    s.link.replayedAt = undefined
    const creating = s.slot.creating
    if (creating !== null) {
      this.#clearTimer({ kind: 'createAck', eventId: creating.eventId })
      if (!creating.cancelOnCreate) this.#requeueFirst(creating.request, false)
    }
    // A response the loss cut before the client heard any of it (not talked over, not
    // cancelled, no calls asked) is asked for again: the user would otherwise get no answer.
    for (const response of s.slot.open) {
      if (response.kind !== 'seen' || response.cancelRequested || s.speech.muted === response.key || s.callResponses.has(response.key)) continue
      if (s.speech.turns.get(response.key)?.firstSentAt !== undefined) continue
      let request: ResponseRequest | undefined
      for (const purpose of s.sent.values()) if (purpose.kind === 'create' && purpose.responseId === response.key) request = purpose.request
      if (request !== undefined) this.#requeueFirst(request, false)
      else if (response.answersConversation) this.#enqueueBare('resumed_turn', at, { orders: [], calls: [], afterReplay: true })
    }
    // What the waiting requests answer reaches the next upstream in its replay.
    for (const request of s.queue) if (request.answers !== undefined) request.answers.afterReplay = true
    for (const response of s.slot.open) this.#clearResponseTimers(response.key)
    for (const responseId of s.callResponses.keys()) s.callResponses.set(responseId, true)
    s.slot = { creating: null, open: [] }
    for (const itemId of s.awaitingItems) {
      this.#clearTimer({ kind: 'itemAck', itemId })
      this.#enqueueBare('inject_user_message', at, { orders: [], calls: [], afterReplay: true })
    }
    s.awaitingItems.clear()
    s.replaying.clear()
    if (s.inflightUpdate !== null) {
      this.#clearTimer({ kind: 'updateAck', eventId: s.inflightUpdate.eventId })
      s.pendingAcks.unshift(...s.inflightUpdate.acks)
      s.inflightUpdate = null
    }
    s.sent.clear()
    s.abandoned = []
    const speech = s.speech
    // What was playing stops with the upstream, but the client still plays all the audio it
    // was sent: each turn's words are told as far as its audio reached the client.
    for (const turn of speech.turns.values()) {
      if (turn.heardMs === undefined && turn.firstSentAt !== undefined && turn.sentMs < turn.producedMs) turn.heardMs = Math.floor(turn.sentMs)
      if (turn.firstSentAt !== undefined && !turn.audioDoneSent && turn.responseId === this.audibleResponse) {
        turn.audioDoneSent = true
        this.#client({ type: 'AgentAudioDone' })
      }
      this.#settleTurn(turn, false)
    }
    speech.turns.clear()
    speech.speaking = null
    speech.muted = null
    // The user speaking, or a ForceEndTurn whose commit had not landed: that turn's audio
    // (its beginning, at least) went with the upstream.
    if (speech.userSpeaking || speech.pendingCommits > 0) s.link.lostTurn = true
    speech.userSpeaking = false
    speech.pendingCommits = 0
    // Server VAD took the user's turn and had not started its answer: the next upstream
    // answers it if the user's words are known (the replay carries them); if not, the
    // turn went with this upstream, and the client is told so.
    // (A transcription on its way leaves the text unknown in the record.)
    if (speech.vadTurnDue) {
      const item = speech.dueTurnItem
      if (item !== undefined && s.record.textOf(item) !== undefined) this.#enqueueBare('resumed_turn', at, { orders: [], calls: [], afterReplay: true })
      else s.link.lostTurn = true
    }
    speech.vadTurnDue = false
    speech.dueTurnItem = undefined
    speech.pendingUser.clear()
    this.#releaseHeldTexts()
    for (const responseId of s.callResponses.keys()) this.#followUpIfAnswered(responseId, at)
  }

  /** A new upstream that will not take the session's configuration (refused, or no answer) is a failed attempt. */
  #newUpstreamRefused (update: InflightUpdate, code: string): void {
    this.#s.pendingAcks.unshift(...update.acks)
    this.#connectFailed({ code: ErrorCode.upstreamUnavailable, description: `A new upstream connection did not take the session's configuration (${code}).`, closeCode: 1011, reason: 'upstream refused the session' }, this.#now)
  }

  #endWith (failure: UpstreamFailure): void {
    this.#client({ type: 'Error', code: failure.code, description: failure.description })
    this.#closeWith(failure.closeCode, failure.reason)
  }

  // ── timers (watchdogs) ───────────────────────────────────────────────────────

  #timer (timer: Timer): void {
    switch (timer.kind) {
      case 'createAck': return this.#createAckExpired(timer.eventId)
      case 'responseDeadline': return this.#responseDeadline(timer.responseKey)
      case 'cancelGrace': return this.#cancelGraceExpired(timer.responseKey)
      case 'itemAck': return this.#itemAckExpired(timer.itemId)
      case 'updateAck': return this.#updateAckExpired(timer.eventId)
      case 'playedOut': {
        const turn = this.#s.speech.turns.get(timer.responseId)
        if (turn !== undefined) this.#settleTurn(turn)
        return
      }
      case 'transcriptWait': return this.#releaseHeldTexts()
      case 'replayAck':
        // Items the new upstream never acknowledged: the conversation goes on without waiting for them.
        if (this.#s.replaying.size === 0) return
        this.#log('warn', 'replayed conversation items not acknowledged in time', { items: this.#s.replaying.size })
        this.#s.replaying.clear()
        return this.#pump()
      case 'renewDue':
        this.#s.link.renewDue = true
        return this.#maybeRenew()
    }
  }

  #createAckExpired (eventId: string): void {
    const s = this.#s
    const creating = s.slot.creating
    if (creating?.eventId !== eventId) return
    s.slot.creating = null
    s.sent.set(eventId, { kind: 'expiredCreate', instructed: creating.request.instructions !== undefined, muted: creating.muteOnCreate })
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
    const response = s.slot.open.splice(index, 1)[0]!
    s.abandoned.push(response.kind === 'seen' ? { key, createdOrder: response.createdOrder, answersConversation: response.answersConversation } : { key, answersConversation: false })
    // Given up on: what it said is told once heard, as if it had ended.
    this.#turnDone(key, this.#now)
    if (s.abandoned.length > MAX_ABANDONED) s.abandoned.shift()
    this.#log('error', 'response never ended, even after cancel: slot released', { responseId: key })
    this.#client({ type: 'Warning', code: WarningCode.responseTimeout, description: 'The agent\'s response did not finish in time and was abandoned.' })
    this.#pump()
  }

  #itemAckExpired (itemId: string): void {
    if (!this.#s.awaitingItems.delete(itemId)) return
    this.#client({ type: 'Warning', code: WarningCode.injectNotAcknowledged, description: 'The injected user message was not acknowledged upstream in time; no response was requested for it.' })
  }

  #updateAckExpired (eventId: string): void {
    const s = this.#s
    const update = s.inflightUpdate
    if (update?.eventId !== eventId) return
    s.inflightUpdate = null
    if (s.link.state === 'down') return this.#newUpstreamRefused(update, 'timeout')
    if (s.phase === 'configuring') {
      this.#client({ type: 'Error', code: ErrorCode.upstreamTimeout, description: 'The upstream did not confirm the settings in time.' })
      return this.#closeWith(1011, 'upstream did not confirm settings')
    }
    this.#client({ type: 'Warning', code: WarningCode.upstreamTimeout, description: 'The upstream did not confirm a settings change in time; it may not be in force.' })
    s.desired = { ...s.applied, ...(s.pendingFields ?? {}) }
    this.#pump()
  }

  // ── the slot ─────────────────────────────────────────────────────────────────

  /** Sends what may go now: a deferred session.update first, then the next response. */
  #pump (): void {
    const s = this.#s
    if (s.phase !== 'ready' || s.link.state !== 'live' || this.responseInProgress) return
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
    // Replayed items go first: a response before they are in would not see them.
    const request = s.replaying.size > 0 ? undefined : s.queue.shift()
    if (request === undefined) {
      this.#maybeRenew()
      return
    }
    const eventId = this.#nextId('ev')
    const response: Record<string, unknown> = { metadata: { proxy_event_id: eventId } }
    if (request.instructions !== undefined) response.instructions = request.instructions
    this.#out.push({ kind: 'upstream', event: { type: 'response.create', event_id: eventId, response } })
    this.#remember(eventId, { kind: 'create', request })
    s.slot.creating = { eventId, request, cancelOnCreate: false, muteOnCreate: false }
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

  /** A refused (or lost) request goes first again; a bare one absorbs bare follow-ups queued meanwhile. */
  #requeueFirst (request: ResponseRequest, refused = true): void {
    const queue = this.#s.queue
    const retry = { ...request, retries: request.retries + (refused ? 1 : 0) }
    if (retry.instructions === undefined) {
      const index = queue.findIndex((r) => r.instructions === undefined)
      if (index >= 0) {
        const [bare] = queue.splice(index, 1)
        retry.reasons = [...retry.reasons, ...(bare?.reasons ?? [])]
        retry.answers = mergeAnswers(retry.answers, bare?.answers)
      }
    }
    queue.unshift(retry)
  }

  /** Queues a bare request (merged into the one waiting, if any). */
  #enqueueBare (reason: string, at: number, answers: Answers): void {
    const bare = this.#s.queue.find((r) => r.instructions === undefined)
    if (bare !== undefined) {
      bare.reasons.push(reason)
      bare.answers = mergeAnswers(bare.answers, answers)
    } else {
      this.#s.queue.push({ reasons: [reason], enqueuedAt: at, retries: 0, answers })
    }
  }

  // ── helpers ──────────────────────────────────────────────────────────────────

  #whenStarted (input: EngineInput, run: () => void): void {
    if (this.#s.phase === 'awaiting_settings') this.#hold(input)
    else run()
  }

  /** Intents that go upstream wait for a configured session on a live upstream. */
  #whenLinked (input: EngineInput, run: () => void): void {
    if (this.#s.phase !== 'ready' || this.#s.link.state !== 'live') this.#hold(input)
    else run()
  }

  #hold (input: EngineInput): void {
    const s = this.#s
    if (s.held.length >= this.options.maxHeldIntents) {
      this.#client({ type: 'Warning', code: WarningCode.tooManyHeldMessages, description: `More than ${this.options.maxHeldIntents} messages arrived before the session was ready; this one was dropped.` })
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
    s.replaying.clear()
    s.speech.turns.clear()
    s.speech.heldTexts = []
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
    return `${this.idPrefix}${kind}${this.#s.seq}`
  }

  #client (message: ServerMessage): void {
    this.#out.push({ kind: 'client', message })
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
function boundMap<T> (map: LazyMap<string, T>, doneWith: (value: T) => boolean): void {
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

/** Keeps the newest MAX_ANSWERED_CALLS answered calls whose follow-up is no longer awaited. */
function forgetAnsweredCalls (s: EngineState): void {
  const done = (call: CallState): boolean => call.answered && !s.callResponses.has(call.responseId)
  let excess = -MAX_ANSWERED_CALLS
  for (const call of s.calls.values()) if (done(call)) excess++
  for (const [callId, call] of s.calls) {
    if (excess <= 0) return
    if (!done(call)) continue
    s.calls.delete(callId)
    excess--
  }
}

function rememberBounded<T> (map: LazyMap<string, T>, key: string, value: T, max: number): void {
  map.set(key, value)
  if (map.size > max) map.delete(map.keys().next().value as string)
}

function mergeAnswers (a: Answers | undefined, b: Answers | undefined): Answers | undefined {
  if (a === undefined || b === undefined) return a ?? b
  return { orders: [...a.orders, ...b.orders], calls: [...a.calls, ...b.calls], afterReplay: a.afterReplay || b.afterReplay }
}

/** A context message in the record (the text of messages; calls with their outputs). */
function recordContext (record: ConversationRecord, key: string, item: ConversationItem): void {
  if (item.type === 'message') {
    record.message(key, item.role, item.content[0]?.text)
  } else if (item.type === 'function_call') {
    record.call(key, item.call_id, item.name, item.arguments)
  } else {
    record.answer(item.call_id, item.output)
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

function round3 (seconds: number): number {
  return Math.round(seconds * 1000) / 1000
}

export function sayExactly (text: string): string {
  return `Say exactly the following, word for word, and nothing else: "${text}"`
}

/** A description for a client message built from the upstream's structured code, never its message text. */
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
