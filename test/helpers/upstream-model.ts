// A strict, deterministic model of the OpenAI Realtime (GA) upstream, for property tests
// of the turn engine. It receives the client events the engine sends and answers with
// server events the way the API does:
//
// - one in-band response at a time; a `response.create` while one is active is answered
//   with `error` conversation_already_has_active_response carrying the create's event_id
//   (no response.created, no response.done);
// - response.created echoes `response.metadata` (server-VAD responses have `metadata: null`);
//   content events come in random legal orders; every response ends with response.done;
// - response.cancel ends the active response with status "cancelled", or is answered with
//   response_cancel_not_active;
// - conversation.item.create → conversation.item.added / .done echoing the item id.
//
// Client events are processed synchronously when the engine sends them; only the model's
// outgoing events wait in `outbox` until the test delivers them. Every protocol breach by
// the engine is recorded in `violations`. A conflict the engine could not have prevented
// (a server-VAD response started while its response.created was still on its way) is a
// race, counted in `raceConflicts`, not a violation.

export type Random = () => number

export interface ServerEvent {
  type: string
  event_id: string
  [field: string]: unknown
}

interface Draft {
  type: string
  [field: string]: unknown
}

export type ResponseOrigin = 'client' | 'vad'

interface ModelResponse {
  id: string
  origin: ResponseOrigin
  createEventId: string | null
  metadata: unknown
  chunks: Draft[][]
  output: Array<Record<string, unknown>>
  /** An output item announced (output_item.added) and not finished yet. */
  partial: Record<string, unknown> | null
  fail: boolean
  createdDelivered: boolean
  /** Created by a create with its own instructions (greeting, agent message): it answers nothing the user said. */
  instructed: boolean
}

export interface ModelOptions {
  /** A client event (create, update, item) silently lost: only a watchdog recovers. */
  loseP: number
  refuseCreateP: number
  refuseUpdateP: number
  refuseItemP: number
  /** A response ends with status "failed". */
  failP: number
  /** A response without instructions calls 1–3 functions in parallel. */
  callsP: number
  /** Speech start cancels the active response (turn_detection.interrupt_response). */
  interruptP: number
}

export const defaultModelOptions: ModelOptions = {
  loseP: 0.01,
  refuseCreateP: 0.04,
  refuseUpdateP: 0.03,
  refuseItemP: 0.02,
  failP: 0.08,
  callsP: 0.4,
  interruptP: 0.5
}

const FUNCTION_NAMES = ['get_weather', 'get_time', 'book_table']

/** The audio one delta of the model carries, in ms (the test world reports it to the engine so). */
export const AUDIO_DELTA_MS = 40

/** Starts the `message` of every upstream error: clients must never see it. */
export const UPSTREAM_MESSAGE_MARK = 'upstream-message-text:'

/** A small deterministic PRNG (mulberry32), so a seed replays a run exactly. */
export function prng (seed: number): Random {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function record (value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined
}

function text (value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

export class UpstreamModel {
  readonly outbox: ServerEvent[] = []
  readonly violations: string[] = []
  /** Client events received, by type. */
  readonly received: Record<string, number> = {}
  /** Conflicts caused by the server-VAD race (not the engine's fault). */
  raceConflicts = 0
  /** session.updates received while a not-yet-announced server-VAD response ran. */
  raceUpdates = 0
  closed = false
  random: Random
  /** call_id → response id, for every function call the model announced. */
  readonly callOwner = new Map<string, string>()

  readonly options: ModelOptions
  private seq = 0
  private active: ModelResponse | null = null
  private readonly responses = new Map<string, ModelResponse>()
  private readonly seenEventIds = new Set<string>()
  private readonly lost = new Set<string>()
  private readonly refused = new Set<string>()
  private readonly answeredCalls = new Set<string>()
  private configuredDelivered = false
  /** Items in the conversation: id → audio ms of an assistant audio item (else 0). */
  private readonly items = new Map<string, number>()
  private readonly conflicts = new Map<string, string>()
  /** The input buffer holds audio not committed yet (the user spoke since the last commit). */
  private bufferHasAudio = false
  private updates = 0
  private speaking = false
  private audioSpoken = false
  private voice: string | undefined
  private session: Record<string, unknown> = { type: 'realtime' }

  /** `idPrefix` keeps the ids of two connections apart (the real API's ids are unique). */
  constructor (random: Random, options: Partial<ModelOptions> = {}, private readonly idPrefix = '') {
    this.random = random
    this.options = { ...defaultModelOptions, ...options }
  }

  // ── what the test asks about ──────────────────────────────────────────────────

  /** The in-band response the upstream is running, if any. */
  get activeResponse (): { id: string, origin: ResponseOrigin, createEventId: string | null } | null {
    const a = this.active
    return a === null ? null : { id: a.id, origin: a.origin, createEventId: a.createEventId }
  }

  isActive (responseId: string): boolean {
    return this.active?.id === responseId
  }

  /** The response started for one of our creates, if any. */
  responseForCreate (createEventId: string): string | undefined {
    for (const r of this.responses.values()) if (r.createEventId === createEventId) return r.id
    return undefined
  }

  createdDelivered (responseId: string): boolean {
    return this.responses.get(responseId)?.createdDelivered === true
  }

  /** The create a response was started for (null for server VAD's). */
  createEventOf (responseId: string): string | null {
    return this.responses.get(responseId)?.createEventId ?? null
  }

  /** The response that was running when this create was refused for a conflict. */
  conflictWith (createEventId: string): string | undefined {
    return this.conflicts.get(createEventId)
  }

  /** A response that answers the conversation (server VAD's, or a create without instructions), not one told what to say. */
  answersConversation (responseId: string): boolean {
    const response = this.responses.get(responseId)
    return response !== undefined && !response.instructed
  }

  /** A client event the model never answered (lost) — only a watchdog can recover it. */
  wasLost (eventId: string): boolean {
    return this.lost.has(eventId)
  }

  /** A client event answered with an error. */
  wasRefused (eventId: string): boolean {
    return this.refused.has(eventId)
  }

  get userSpeaking (): boolean {
    return this.speaking
  }

  // ── the wire ──────────────────────────────────────────────────────────────────

  /** Takes the next outgoing event, in emission order, and notes what the engine now knows. */
  deliver (): ServerEvent | undefined {
    const event = this.outbox.shift()
    if (event === undefined) return undefined
    if (event.type === 'session.updated') this.configuredDelivered = true
    if (event.type === 'response.created') {
      const id = text(record(event.response)?.id)
      const response = id === undefined ? undefined : this.responses.get(id)
      if (response !== undefined) response.createdDelivered = true
    }
    return event
  }

  /** A client event, processed as it is sent. */
  receive (event: Record<string, unknown>): void {
    const type = text(event.type) ?? '(no type)'
    this.received[type] = (this.received[type] ?? 0) + 1
    if (this.closed) {
      this.violate(`${type} sent after the upstream closed`)
      return
    }
    const eventId = text(event.event_id)
    if (eventId === undefined) {
      this.violate(`${type} without event_id`)
    } else if (this.seenEventIds.has(eventId)) {
      this.violate(`${type} reuses event_id ${eventId}`)
    } else {
      this.seenEventIds.add(eventId)
    }
    const id = eventId ?? `missing_${this.seq}`
    switch (type) {
      case 'session.update': return this.sessionUpdate(id, record(event.session))
      case 'conversation.item.create': return this.itemCreate(id, record(event.item))
      case 'response.create': return this.responseCreate(id, record(event.response))
      case 'response.cancel': return this.responseCancel(id, text(event.response_id))
      case 'conversation.item.delete': return this.itemDelete(id, text(event.item_id))
      case 'conversation.item.truncate': return this.itemTruncate(id, event)
      case 'input_audio_buffer.commit': return this.commit(id)
      default: this.violate(`unexpected client event ${type}`)
    }
  }

  // ── client events ─────────────────────────────────────────────────────────────

  private sessionUpdate (eventId: string, session: Record<string, unknown> | undefined): void {
    if (this.active !== null) {
      if (this.isRace()) this.raceUpdates++
      else this.violate(`session.update ${eventId} while response ${this.active.id} is active`)
    }
    this.updates++
    if (this.chance(this.options.loseP)) {
      this.lost.add(eventId)
      return
    }
    const voice = text(record(record(session?.audio)?.output)?.voice)
    if (voice !== undefined && voice !== this.voice && this.audioSpoken) {
      return this.refuse(eventId, 'cannot_update_voice')
    }
    // The first update is refused rarely: that ends the session.
    if (this.chance(this.updates === 1 ? this.options.refuseUpdateP / 4 : this.options.refuseUpdateP)) {
      return this.refuse(eventId, 'invalid_value')
    }
    if (voice !== undefined) this.voice = voice
    this.session = { ...this.session, ...session }
    this.emit({ type: 'session.updated', session: this.session })
  }

  private itemCreate (eventId: string, item: Record<string, unknown> | undefined): void {
    if (!this.configuredDelivered) this.violate(`conversation.item.create ${eventId} before session.updated`)
    if (item?.type === 'function_call_output') {
      const callId = text(item.call_id) ?? ''
      if (!this.callOwner.has(callId)) this.violate(`function_call_output for unknown call ${callId}`)
      else if (this.answeredCalls.has(callId)) this.violate(`function_call_output for ${callId} sent twice`)
      this.answeredCalls.add(callId)
    }
    // A replayed function call (a new upstream is given the conversation): its output may
    // follow (were the call lost or refused, the real API would refuse the output: not the proxy's fault).
    if (item?.type === 'function_call') this.callOwner.set(text(item.call_id) ?? '', 'replayed')
    if (this.chance(this.options.loseP)) {
      this.lost.add(eventId)
      return
    }
    if (this.chance(this.options.refuseItemP)) return this.refuse(eventId, 'invalid_value')
    const id = text(item?.id) ?? this.nextId('item')
    this.items.set(id, 0)
    const added = { ...item, id, object: 'realtime.item', status: 'completed' }
    this.emit({ type: 'conversation.item.added', previous_item_id: null, item: added })
    this.emit({ type: 'conversation.item.done', previous_item_id: null, item: added })
  }

  private itemDelete (eventId: string, itemId: string | undefined): void {
    if (itemId === undefined || !this.items.has(itemId)) return this.refuse(eventId, 'item_not_found')
    this.items.delete(itemId)
    this.emit({ type: 'conversation.item.deleted', item_id: itemId })
  }

  /** Only assistant audio can be cut, at a point within its audio (a cut at 0 is a deletion, refused here). */
  private itemTruncate (eventId: string, event: Record<string, unknown>): void {
    const itemId = text(event.item_id)
    const audioMs = itemId === undefined ? undefined : this.items.get(itemId)
    if (audioMs === undefined) return this.refuse(eventId, 'item_not_found')
    const end = event.audio_end_ms
    if (typeof end !== 'number' || !Number.isInteger(end) || end <= 0 || end > audioMs) {
      this.violate(`conversation.item.truncate ${eventId} at ${String(end)} ms of an item with ${audioMs} ms of audio`)
      return this.refuse(eventId, 'invalid_value')
    }
    this.emit({ type: 'conversation.item.truncated', item_id: itemId, content_index: 0, audio_end_ms: end })
  }

  /** A manual commit: the audio since the last commit becomes a user item (no automatic response). */
  private commit (eventId: string): void {
    if (!this.configuredDelivered) this.violate(`input_audio_buffer.commit ${eventId} before session.updated`)
    if (!this.bufferHasAudio) return this.refuse(eventId, 'input_audio_buffer_commit_empty')
    this.commitUserAudio()
  }

  private commitUserAudio (): void {
    this.bufferHasAudio = false
    const itemId = this.nextId('item')
    this.emit({ type: 'input_audio_buffer.committed', previous_item_id: null, item_id: itemId })
    const item = { id: itemId, type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_audio', transcript: null }] }
    this.items.set(itemId, 0)
    this.emit({ type: 'conversation.item.added', previous_item_id: null, item })
    this.emit({ type: 'conversation.item.done', previous_item_id: null, item })
    // With transcription configured, the user's words follow (delivered as late as any event).
    if (record(record(this.session.audio)?.input)?.transcription != null) {
      this.emit({ type: 'conversation.item.input_audio_transcription.completed', item_id: itemId, content_index: 0, transcript: 'What time is it?' })
    }
  }

  private responseCreate (eventId: string, response: Record<string, unknown> | undefined): void {
    if (!this.configuredDelivered) this.violate(`response.create ${eventId} before session.updated`)
    if (response?.conversation === 'none') {
      this.violate(`the engine sent an out-of-band response.create ${eventId}`)
      return
    }
    if (this.chance(this.options.loseP)) {
      this.lost.add(eventId)
      return
    }
    if (this.active !== null) {
      if (this.isRace()) this.raceConflicts++
      else this.violate(`response.create ${eventId} while response ${this.active.id} (${this.active.origin}) is active`)
      this.conflicts.set(eventId, this.active.id)
      return this.refuse(eventId, 'conversation_already_has_active_response')
    }
    if (this.chance(this.options.refuseCreateP)) return this.refuse(eventId, this.random() < 0.5 ? 'invalid_value' : 'rate_limit_exceeded')
    const metadata = record(response?.metadata) ?? null
    const instructed = text(response?.instructions) !== undefined
    this.start('client', eventId, metadata, instructed, instructed)
  }

  private responseCancel (eventId: string, responseId: string | undefined): void {
    const active = this.active
    if (active === null || (responseId !== undefined && responseId !== active.id)) {
      return this.refuse(eventId, 'response_cancel_not_active')
    }
    this.finish(active, 'cancelled')
  }

  // ── the upstream's own moves (scheduled by the test) ─────────────────────────

  /** Streams the next part of the active response; its last part is response.done. */
  advance (): boolean {
    const active = this.active
    if (active === null || this.closed) return false
    const chunk = active.chunks.shift()
    if (chunk === undefined) {
      this.finish(active, active.fail ? 'failed' : 'completed')
    } else {
      for (const draft of chunk) this.emit(draft, active)
    }
    return true
  }

  /** The user starts speaking. Audio only flows once the session is configured (the proxy holds it until then). */
  speechStart (): void {
    if (this.closed || this.speaking || !this.configuredDelivered) return
    this.speaking = true
    this.bufferHasAudio = true
    this.emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: this.seq * 20, item_id: this.nextId('item') })
    if (this.active !== null && this.chance(this.options.interruptP)) this.finish(this.active, 'cancelled')
  }

  /** End of the user's turn: server VAD commits it and, if idle, responds on its own. */
  speechStop (): void {
    if (this.closed || !this.speaking) return
    this.speaking = false
    this.emit({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: this.seq * 20, item_id: `item_${this.idPrefix}${this.seq + 1}` })
    if (this.bufferHasAudio) this.commitUserAudio()
    if (this.active === null) this.start('vad', null, null, false, false)
  }

  /** An out-of-band response (conversation "none") created by someone else on this session. */
  outOfBand (): void {
    if (this.closed) return
    const id = this.nextId('resp')
    const response = { object: 'realtime.response', id, status: 'in_progress', conversation_id: null, metadata: { topic: 'classification' }, output: [] }
    this.emit({ type: 'response.created', response })
    this.emit({ type: 'response.output_text.done', response_id: id, item_id: this.nextId('item'), output_index: 0, content_index: 0, text: 'positive' })
    this.emit({ type: 'response.done', response: { ...response, status: 'completed' } })
  }

  /** A response.done nobody asked for (an id the engine never saw). */
  ghostDone (): void {
    if (this.closed) return
    this.emit({ type: 'response.done', response: { object: 'realtime.response', id: this.nextId('resp_ghost'), status: 'completed', conversation_id: 'conv_1', metadata: null, output: [] } })
  }

  close (): void {
    this.closed = true
    this.active = null
  }

  // ── internals ─────────────────────────────────────────────────────────────────

  private start (origin: ResponseOrigin, createEventId: string | null, metadata: unknown, speakOnly: boolean, instructed: boolean): void {
    const id = this.nextId('resp')
    const withCalls = !speakOnly && this.chance(this.options.callsP)
    const response: ModelResponse = {
      id,
      origin,
      createEventId,
      metadata,
      chunks: withCalls ? this.callChunks(id) : this.speechChunks(id),
      output: [],
      partial: null,
      fail: this.chance(this.options.failP),
      createdDelivered: false,
      instructed
    }
    this.responses.set(id, response)
    this.active = response
    this.emit({ type: 'response.created', response: this.snapshot(response, 'in_progress') })
  }

  private finish (response: ModelResponse, status: 'completed' | 'cancelled' | 'failed'): void {
    // An item cut short is listed as "incomplete" (a function call with partial arguments).
    if (response.partial !== null) response.output.push({ ...response.partial, status: 'incomplete' })
    response.partial = null
    const done = this.snapshot(response, status)
    if (status === 'failed') done.status_details = { type: 'failed', error: { type: 'server_error', code: 'server_error' } }
    if (status === 'cancelled') done.status_details = { type: 'cancelled', reason: 'client_cancelled' }
    this.active = null
    this.emit({ type: 'response.done', response: done })
  }

  private snapshot (response: ModelResponse, status: string): Record<string, unknown> {
    return {
      object: 'realtime.response',
      id: response.id,
      status,
      conversation_id: 'conv_1',
      metadata: response.metadata,
      output: response.output.map((item) => ({ ...item })),
      output_modalities: ['audio']
    }
  }

  /** An assistant message with audio: "done" events of its parts in a random order. */
  private speechChunks (responseId: string): Draft[][] {
    const itemId = this.nextId('item')
    const item = { id: itemId, object: 'realtime.item', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_audio', transcript: 'Hello.' }] }
    const where = { response_id: responseId, item_id: itemId, output_index: 0 }
    const part = { ...where, content_index: 0 }
    const streamed: Draft[] = [{ type: 'response.output_audio.delta', ...part, delta: 'AAAA' }, { type: 'response.output_audio_transcript.delta', ...part, delta: 'Hel' }]
    if (this.random() < 0.5) streamed.push({ type: 'response.output_audio.delta', ...part, delta: 'BBBB' })
    const finals: Draft[] = this.shuffle([
      { type: 'response.output_audio.done', ...part },
      { type: 'response.output_audio_transcript.done', ...part, transcript: 'Hello.' },
      { type: 'response.output_text.done', ...part, text: 'Hello.' },
      { type: 'response.content_part.done', ...part, part: { type: 'audio', transcript: 'Hello.' } },
      { type: 'response.output_item.done', ...where, item },
      { type: 'conversation.item.done', previous_item_id: null, item }
    ])
    const cut = 1 + Math.floor(this.random() * (finals.length - 1))
    return [
      [{ type: 'response.output_item.added', ...where, item: { ...item, status: 'in_progress', content: [] } }, { type: 'response.content_part.added', ...part, part: { type: 'audio' } }],
      streamed,
      finals.slice(0, cut),
      finals.slice(cut)
    ]
  }

  /** 1–3 parallel function calls, each announced by function_call_arguments.done. */
  private callChunks (responseId: string): Draft[][] {
    const count = 1 + Math.floor(this.random() * 3)
    const chunks: Draft[][] = []
    for (let index = 0; index < count; index++) {
      const itemId = this.nextId('item')
      const callId = this.nextId('call')
      const name = FUNCTION_NAMES[Math.floor(this.random() * FUNCTION_NAMES.length)] ?? 'get_weather'
      const args = JSON.stringify({ index })
      const item = { id: itemId, object: 'realtime.item', type: 'function_call', status: 'completed', call_id: callId, name, arguments: args }
      const where = { response_id: responseId, item_id: itemId, output_index: index }
      chunks.push([
        { type: 'response.output_item.added', ...where, item: { ...item, status: 'in_progress', arguments: args.slice(0, 5) } },
        { type: 'response.function_call_arguments.delta', ...where, call_id: callId, delta: args }
      ])
      chunks.push([
        { type: 'response.function_call_arguments.done', ...where, call_id: callId, name, arguments: args },
        { type: 'response.output_item.done', ...where, item },
        { type: 'conversation.item.done', previous_item_id: null, item }
      ])
    }
    return chunks
  }

  private emit (draft: Draft, response?: ModelResponse): void {
    if (this.closed) return
    const event: ServerEvent = { ...draft, event_id: this.nextId('event') }
    if (event.type === 'response.output_audio.delta') {
      this.audioSpoken = true
      const itemId = text(event.item_id)
      // Each delta stands for 40 ms of audio (the tests report it so).
      if (itemId !== undefined) this.items.set(itemId, (this.items.get(itemId) ?? 0) + AUDIO_DELTA_MS)
    }
    if (event.type === 'response.output_item.added' && text(record(event.item)?.id) !== undefined) {
      const itemId = text(record(event.item)?.id) as string
      if (!this.items.has(itemId)) this.items.set(itemId, 0)
    }
    if (event.type === 'response.function_call_arguments.done' && response !== undefined) this.callOwner.set(String(event.call_id), response.id)
    if (event.type === 'response.output_item.added' && response !== undefined) response.partial = record(event.item) ?? null
    if (event.type === 'response.output_item.done' && response !== undefined) {
      const item = record(event.item)
      if (item !== undefined) response.output.push(item)
      response.partial = null
    }
    this.outbox.push(event)
  }

  private refuse (eventId: string, code: string): void {
    this.refused.add(eventId)
    this.emit({ type: 'error', error: { type: 'invalid_request_error', code, message: `${UPSTREAM_MESSAGE_MARK} ${code}`, param: null, event_id: eventId } })
  }

  /** The active response is server VAD's and the engine has not heard of it yet. */
  private isRace (): boolean {
    return this.active !== null && this.active.origin === 'vad' && !this.active.createdDelivered
  }

  private violate (what: string): void {
    this.violations.push(what)
  }

  private chance (p: number): boolean {
    return this.random() < p
  }

  private shuffle<T> (items: T[]): T[] {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1))
      const tmp = out[i] as T
      out[i] = out[j] as T
      out[j] = tmp
    }
    return out
  }

  private nextId (kind: string): string {
    this.seq += 1
    return `${kind}_${this.idPrefix}${this.seq}`
  }
}
