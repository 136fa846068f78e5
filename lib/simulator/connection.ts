// One simulated OpenAI Realtime (GA) session on one WebSocket: it parses client
// events, keeps the session, the conversation and the single in-band response
// slot, and answers the way the real server does. Tests reach in through the
// SimConnection interface: what was received and sent, violation counters, and
// triggers for what only the server decides (server VAD turns).

import type { IncomingHttpHeaders } from 'node:http'
import { WebSocket, type RawData } from 'ws'
import { planAnswer } from './answer.js'
import { base64ByteLength, bytesPerMs, isBase64 } from './audio.js'
import { Conversation, itemNotFound } from './conversation.js'
import { errorEvent, invalidValue, isObject, missingParameter, type Problem, type SimEvent, type SimItem } from './events.js'
import { newId } from './ids.js'
import { BoundedLog } from './log.js'
import { ResponseRun, type CancelReason, type Failure, type ResponseSettings, type ResponseSink, type ResponseStatus } from './response.js'
import { emptyViolations, type SimScript, type ViolationKind, type Violations } from './script.js'
import { defaultSession, mergeSession } from './session.js'
import { noop, Timers } from './timers.js'
import { promptSegment, type Segment } from './usage.js'
import { itemProblem, responseParamsProblem, sessionUpdateProblem, truncateProblem } from './validate.js'
import { EnergyVad } from './vad.js'

export interface SimConnection {
  readonly id: string
  /** `?model=` of the upgrade URL. */
  readonly model: string | null
  readonly headers: IncomingHttpHeaders
  /** Parsed client events, oldest first, the last 5000; appends are kept as `{ type, event_id, audioBytes }`. */
  readonly received: any[]
  /** Server events sent, oldest first, the last 5000; audio deltas are kept without their audio, with `audioBytes`. */
  readonly sent: any[]
  readonly violations: Violations
  /** This connection's script: change it at any time, it is read when it matters. */
  script: SimScript
  /** The current GA session object. */
  readonly session: any
  /** The in-band response holding the slot: set from the moment a create is accepted until its `response.done`. */
  readonly activeResponseId: string | null
  /** How many client events of this type were received (all of them, not only the logged ones). */
  count (type: string): number
  /**
   * Resolves with the next client event of `type` (as logged in `received`) that matches `predicate`,
   * once the simulator has processed it. Only events received from now on count: check `received`
   * or `count()` for earlier ones. Rejects after `timeoutMs` or when the connection closes.
   */
  waitFor (type: string, predicate?: (event: any) => boolean, timeoutMs?: number): Promise<any>
  /** Sends a raw server event; an `event_id` is added when missing. */
  send (event: object): void
  close (code?: number, reason?: string): void
  /** Server VAD heard speech: `input_audio_buffer.speech_started`, and barge-in on an active response when `interrupt_response`. */
  speechStarted (): void
  /**
   * A whole server VAD user turn saying `transcript` (speech_started unless it was, speech_stopped, the
   * commit, its transcription when the session has one), then an automatic response when `create_response`.
   */
  vadTurn (transcript?: string): void
  /** Completes every created response now (the held `response.done` of `neverComplete`). */
  finishResponse (): void
}

export interface ConnectionOptions {
  id: string
  model: string | null
  headers: IncomingHttpHeaders
  script: SimScript
  onViolation (kind: ViolationKind): void
  onClose (connection: Connection): void
}

type Handler = (event: SimEvent, clientEventId: string | null) => void

interface Waiter {
  type: string
  predicate: ((event: any) => boolean) | undefined
  resolve (event: any): void
  reject (error: Error): void
  timer: NodeJS.Timeout
}

const LOG_LIMIT = 5000
const DEFAULT_WAIT_MS = 5000
const MAX_APPEND_BYTES = 15 * 1024 * 1024
const MIN_COMMIT_MS = 100
const DEFAULT_TRANSCRIPT = 'Hello.'
// OpenAI's close reason, whatever the simulated maximum is, so a proxy that reads it is tested.
const MAX_DURATION_REASON = 'Your session hit the maximum duration of 60 minutes.'
// setTimeout's ceiling (~24.8 days): a longer maximum is as good as none.
const MAX_TIMER_MS = 2 ** 31 - 1
// Server VAD without silence_duration_ms (semantic_vad) ends a turn after this much quiet.
const DEFAULT_SILENCE_MS = 500
// The events that only make sense in a configured session (docs/protocol.md: nothing before session.updated).
const NEEDS_SESSION = new Set(['input_audio_buffer.append', 'conversation.item.create', 'response.create'])

export class Connection implements SimConnection {
  readonly id: string
  readonly model: string | null
  readonly headers: IncomingHttpHeaders
  readonly violations = emptyViolations()
  script: SimScript

  readonly #ws: WebSocket
  readonly #options: ConnectionOptions
  readonly #timers = new Timers()
  readonly #received = new BoundedLog<SimEvent>(LOG_LIMIT)
  readonly #sent = new BoundedLog<SimEvent>(LOG_LIMIT)
  readonly #counts = new Map<string, number>()
  readonly #waiters = new Set<Waiter>()
  readonly #conversation = new Conversation()
  readonly #conversationId = newId('conv')
  readonly #running = new Set<ResponseRun>()
  readonly #sink: ResponseSink = {
    emit: (event) => this.#emit(event),
    append: (item) => this.#conversation.append(item),
    spoke: (itemId, contentIndex, bytes, words, format) => this.#conversation.addAudio(itemId, contentIndex, bytes, bytesPerMs(format), words)
  }

  readonly #vad = new EnergyVad()
  /** Transcriptions held until the next in-band response.created / response.done (`transcriptionAfter`). */
  readonly #heldTranscriptions: Array<{ until: 'response.created' | 'response.done', deliver (): void }> = []

  #session: SimEvent
  /** The in-band response that holds the conversation's only response slot. */
  #responseSlot: ResponseRun | null = null
  #echo: { run: ResponseRun, item: SimItem } | null = null
  /** What the last response read: the next one's cached prefix is what they share. */
  #lastInput: readonly Segment[] = []
  #bufferedBytes = 0
  #appendedBytes = 0
  /** The user item a started (not yet committed) VAD turn will create. */
  #speechItemId: string | null = null
  #sessionUpdatedSent = false
  #audioEmitted = false
  #closed = false

  // The GA client events: one handler each; any other type is unknown.
  readonly #handlers: Record<string, Handler> = {
    'session.update': (event, id) => this.#onSessionUpdate(event, id),
    'input_audio_buffer.append': (event, id) => this.#onAppend(event, id),
    'input_audio_buffer.commit': (_event, id) => this.#onCommit(id),
    'input_audio_buffer.clear': () => this.#onClear(),
    'conversation.item.create': (event, id) => this.#onItemCreate(event, id),
    'conversation.item.retrieve': (event, id) => this.#onItemRetrieve(event, id),
    'conversation.item.delete': (event, id) => this.#onItemDelete(event, id),
    'conversation.item.truncate': (event, id) => this.#onItemTruncate(event, id),
    'response.create': (event, id) => this.#onResponseCreate(event, id),
    'response.cancel': (event, id) => this.#onResponseCancel(event, id),
    // WebRTC/SIP only: over a WebSocket the client plays the audio, nothing is buffered here.
    'output_audio_buffer.clear': noop
  }

  constructor (ws: WebSocket, options: ConnectionOptions) {
    this.#ws = ws
    this.#options = options
    this.id = options.id
    this.model = options.model
    this.headers = options.headers
    this.script = options.script
    this.#session = defaultSession(options.model, options.script.maxSessionMs)
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
    ws.on('close', () => this.#dispose())
    // A protocol error (oversized frame, bad UTF-8) closes the socket; 'close' follows.
    ws.on('error', noop)
  }

  /** Greets the client with the session as it starts, and ends it at the maximum duration, like the real server. */
  start (): void {
    this.#emit({ type: 'session.created', session: structuredClone(this.#session) })
    const maxMs = this.script.maxSessionMs
    if (maxMs > 0) this.#timers.after(Math.min(maxMs, MAX_TIMER_MS), () => this.close(1001, MAX_DURATION_REASON))
  }

  get received (): any[] {
    return this.#received.toArray()
  }

  get sent (): any[] {
    return this.#sent.toArray()
  }

  get session (): any {
    return this.#session
  }

  get activeResponseId (): string | null {
    return this.#responseSlot?.id ?? null
  }

  count (type: string): number {
    return this.#counts.get(type) ?? 0
  }

  waitFor (type: string, predicate?: (event: any) => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<any> {
    if (this.#closed) return Promise.reject(new Error(`Connection ${this.id} is closed: no ${type} will arrive`))
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        type,
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter)
          reject(new Error(`Timed out after ${timeoutMs} ms waiting for client event ${type} on ${this.id}`))
        }, timeoutMs)
      }
      this.#waiters.add(waiter)
    })
  }

  send (event: object): void {
    this.#emit({ ...event })
  }

  close (code = 1000, reason = ''): void {
    this.#timers.stop()
    try {
      this.#ws.close(code, reason)
    } catch {
      // A code no close frame can carry (1005, 1006) or an oversized reason: drop the socket instead.
      this.#ws.terminate()
    }
  }

  /** Drops the socket at once (simulator shutdown). */
  terminate (): void {
    this.#ws.terminate()
    this.#dispose()
  }

  speechStarted (): void {
    if (!this.#closed) this.#speechStarted(this.#inputAudioMs())
  }

  vadTurn (transcript = DEFAULT_TRANSCRIPT): void {
    if (this.#closed) return
    if (this.#speechItemId === null) this.speechStarted()
    this.#turnEnded(transcript, this.#inputAudioMs())
  }

  finishResponse (): void {
    for (const run of [...this.#running]) {
      if (!run.created) continue
      run.cancelPending()
      for (let step = run.takeStep(); step !== undefined; step = run.takeStep()) step.run()
      this.#finish(run, 'completed')
    }
  }

  #onMessage (data: RawData, isBinary: boolean): void {
    if (this.#closed) return
    if (isBinary) {
      this.#refuse(null, { code: 'invalid_value', message: 'Binary frames are not accepted: send JSON text events, with audio base64-encoded in input_audio_buffer.append.' })
      return
    }
    let event: unknown
    try {
      event = JSON.parse((data as Buffer).toString('utf8'))
    } catch {
      this.#refuse(null, { code: 'invalid_json', message: 'The event is not valid JSON: each text frame must carry one JSON client event.' })
      return
    }
    if (!isObject(event)) {
      this.#refuse(null, invalidValue('event', event))
      return
    }
    const clientEventId = typeof event.event_id === 'string' && event.event_id !== '' ? event.event_id : null
    const logged = this.#record(event)
    if (typeof event.type !== 'string') {
      this.#refuse(clientEventId, missingParameter('type'))
      return
    }
    if (clientEventId === null) this.#violate('missingEventId')
    this.#handle(event, clientEventId)
    this.#notify(logged)
    this.#closeIfScripted(event.type)
  }

  #handle (event: SimEvent, clientEventId: string | null): void {
    if (NEEDS_SESSION.has(event.type) && !this.#sessionUpdatedSent) this.#violate('beforeSessionUpdated')
    const rejection = this.#takeRejection(event.type)
    if (rejection !== undefined) {
      const message = rejection.message ?? `Rejected by the simulator script with ${rejection.code}.`
      this.#emit(errorEvent({ code: rejection.code, message }, clientEventId))
      return
    }
    const handler = this.#handlers[event.type]
    if (handler === undefined) {
      this.#violate('unknownEventType')
      this.#emit(errorEvent(invalidValue('type', event.type, Object.keys(this.#handlers)), clientEventId))
      return
    }
    handler(event, clientEventId)
  }

  #onSessionUpdate (event: SimEvent, clientEventId: string | null): void {
    const problem = sessionUpdateProblem(event.session)
    if (problem !== null) return this.#refuse(clientEventId, problem)
    const next = mergeSession(this.#session, event.session)
    const voiceChanged = JSON.stringify(next.audio.output.voice) !== JSON.stringify(this.#session.audio.output.voice)
    if (voiceChanged && this.#audioEmitted) {
      return this.#fail(clientEventId, {
        code: 'cannot_update_voice',
        message: 'Cannot update a conversation\'s voice if assistant audio is present.',
        param: null
      })
    }
    // The real API applies it anyway; the proxy must not send it (docs/turn-engine.md rule 6).
    if (this.#responseSlot !== null) this.#violate('sessionUpdateDuringResponse')
    this.#session = next
    const session = structuredClone(next)
    this.#timers.soon(this.script.sessionUpdatedDelayMs, () => {
      this.#sessionUpdatedSent = true
      this.#emit({ type: 'session.updated', session })
    })
  }

  #onAppend (event: SimEvent, clientEventId: string | null): void {
    const { audio } = event
    if (typeof audio !== 'string') return this.#refuse(clientEventId, missingParameter('audio'))
    if (!isBase64(audio)) {
      return this.#refuse(clientEventId, { code: 'invalid_value', message: 'Invalid \'audio\': expected base64-encoded audio bytes.', param: 'audio' })
    }
    const bytes = base64ByteLength(audio)
    if (bytes > MAX_APPEND_BYTES) {
      return this.#refuse(clientEventId, { code: 'invalid_value', message: `Audio of ${bytes} bytes exceeds the 15 MiB limit of one append: split it.`, param: 'audio' })
    }
    this.#bufferedBytes += bytes
    this.#appendedBytes += bytes
    if (this.script.echoAudio) this.#echoAudio(audio, bytes)
    else if (this.script.energyVad) this.#listen(audio, bytes)
  }

  // The energy VAD: a real microphone's audio drives turns like the server's VAD does.
  #listen (audio: string, bytes: number): void {
    const turnDetection = this.#session.audio.input.turn_detection
    if (!isObject(turnDetection)) return
    const { format } = this.#session.audio.input
    const perMs = bytesPerMs(format)
    const silenceMs = typeof turnDetection.silence_duration_ms === 'number' ? turnDetection.silence_duration_ms : DEFAULT_SILENCE_MS
    const startMs = (this.#appendedBytes - bytes) / perMs
    for (const event of this.#vad.feed(Buffer.from(audio, 'base64'), format, startMs, this.script.energyVadThreshold, silenceMs)) {
      if (event.type === 'speech_started') this.#speechStarted(event.audioStartMs)
      else this.#turnEnded(this.script.spokenTranscript, event.audioEndMs)
    }
    // Between turns the server keeps only the audio a turn would start with.
    if (!this.#vad.speaking) {
      const paddingMs = typeof turnDetection.prefix_padding_ms === 'number' ? turnDetection.prefix_padding_ms : 0
      this.#bufferedBytes = Math.min(this.#bufferedBytes, Math.round(paddingMs * perMs))
    }
  }

  #speechStarted (audioStartMs: number): void {
    this.#speechItemId ??= newId('item')
    this.#emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: audioStartMs, item_id: this.#speechItemId })
    const turnDetection = this.#session.audio.input.turn_detection
    const barged = this.#responseSlot
    if (isObject(turnDetection) && turnDetection.interrupt_response !== false && barged?.created) {
      this.#finish(barged, 'cancelled', { reason: 'turn_detected' })
    }
  }

  #turnEnded (said: string, audioEndMs: number): void {
    this.#emit({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: audioEndMs, item_id: this.#speechItemId })
    this.#commitUserAudio(said)
    const turnDetection = this.#session.audio.input.turn_detection
    // Without turn detection there is no server VAD, hence no automatic response; nor while the slot is held.
    if (isObject(turnDetection) && turnDetection.create_response !== false && this.#responseSlot === null) {
      this.#startResponse({})
    }
  }

  #onCommit (clientEventId: string | null): void {
    const bufferedMs = this.#bufferedBytes / bytesPerMs(this.#session.audio.input.format)
    if (bufferedMs < MIN_COMMIT_MS) {
      return this.#fail(clientEventId, {
        code: 'input_audio_buffer_commit_empty',
        message: `Error committing input audio buffer: buffer too small. Expected at least ${MIN_COMMIT_MS}ms of audio, but buffer only has ${bufferedMs.toFixed(2)}ms of audio.`
      })
    }
    this.#commitUserAudio(this.script.spokenTranscript)
  }

  #onClear (): void {
    this.#bufferedBytes = 0
    this.#vad.reset()
    this.#emit({ type: 'input_audio_buffer.cleared' })
  }

  #onItemCreate (event: SimEvent, clientEventId: string | null): void {
    const problem = itemProblem(event.item)
    if (problem !== null) return this.#refuse(clientEventId, problem)
    const givenId = event.item.id
    const item = {
      ...structuredClone(event.item),
      id: typeof givenId === 'string' && givenId !== '' ? givenId : newId('item'),
      object: 'realtime.item',
      status: 'completed'
    }
    const previousItemId = this.#conversation.append(item)
    this.#recordGivenAudio(item)
    const acknowledged = structuredClone(item)
    this.#timers.soon(this.script.itemAckDelayMs, () => {
      this.#emit({ type: 'conversation.item.added', previous_item_id: previousItemId, item: acknowledged })
      this.#emit({ type: 'conversation.item.done', previous_item_id: previousItemId, item: structuredClone(acknowledged) })
    })
  }

  // Audio a client put in an item itself counts like audio the server heard or spoke.
  #recordGivenAudio (item: SimItem): void {
    if (item.type !== 'message' || !Array.isArray(item.content)) return
    const { input, output } = this.#session.audio
    for (const [index, part] of item.content.entries()) {
      if (!isObject(part) || typeof part.audio !== 'string' || !isBase64(part.audio)) continue
      const format = part.type === 'output_audio' ? output.format : input.format
      const said = typeof part.transcript === 'string' ? part.transcript : ''
      this.#conversation.addAudio(item.id, index, base64ByteLength(part.audio), bytesPerMs(format), said)
    }
  }

  #onItemRetrieve (event: SimEvent, clientEventId: string | null): void {
    const item = this.#conversation.find(event.item_id)
    if (item === undefined) return this.#fail(clientEventId, itemNotFound(event.item_id))
    this.#emit({ type: 'conversation.item.retrieved', item: structuredClone(item) })
  }

  #onItemDelete (event: SimEvent, clientEventId: string | null): void {
    if (!this.#conversation.delete(event.item_id)) return this.#fail(clientEventId, itemNotFound(event.item_id))
    this.#emit({ type: 'conversation.item.deleted', item_id: event.item_id })
  }

  #onItemTruncate (event: SimEvent, clientEventId: string | null): void {
    const malformed = truncateProblem(event)
    if (malformed !== null) return this.#refuse(clientEventId, malformed)
    const { item_id: itemId, content_index: contentIndex, audio_end_ms: audioEndMs } = event
    const refused = this.#conversation.truncate(itemId, contentIndex, audioEndMs)
    if (refused !== null) {
      this.#violate('refusedTruncates')
      return this.#fail(clientEventId, refused)
    }
    this.#emit({ type: 'conversation.item.truncated', item_id: itemId, content_index: contentIndex, audio_end_ms: audioEndMs })
  }

  #onResponseCreate (event: SimEvent, clientEventId: string | null): void {
    const problem = responseParamsProblem(event.response)
    if (problem !== null) return this.#refuse(clientEventId, problem)
    if (this.script.neverCreate) return
    const params: SimEvent = event.response ?? {}
    const holder = this.#responseSlot
    if (params.conversation !== 'none' && holder !== null) {
      this.#violate('activeResponseConflicts')
      return this.#fail(clientEventId, {
        code: 'conversation_already_has_active_response',
        message: `Conversation already has an active response in progress: ${holder.id}. Wait until the response is finished before creating a new one.`
      })
    }
    this.#startResponse(params)
  }

  #onResponseCancel (event: SimEvent, clientEventId: string | null): void {
    const wanted = event.response_id
    const run = wanted === undefined || wanted === null
      ? this.#responseSlot
      : [...this.#running].find((candidate) => candidate.id === wanted)
    // A response whose response.created is not out yet cannot be cancelled: docs/turn-engine.md rule 7.
    if (!run?.created) {
      return this.#fail(clientEventId, { code: 'response_cancel_not_active', message: 'Cancellation failed: no active response found' })
    }
    this.#finish(run, 'cancelled', { reason: 'client_cancelled' })
  }

  /** Takes the slot (in-band) at once; `response.created` follows after `responseCreatedDelayMs`. */
  #startResponse (params: SimEvent): void {
    const run = new ResponseRun(this.#responseSettings(params))
    if (run.settings.inBand) this.#responseSlot = run
    this.#running.add(run)
    this.#timers.soon(this.script.responseCreatedDelayMs, () => this.#create(run, params))
  }

  #create (run: ResponseRun, params: SimEvent): void {
    run.created = true
    this.#read(run, params)
    this.#emit({ type: 'response.created', response: run.snapshot('in_progress') })
    if (run.settings.inBand) this.#releaseTranscriptions('response.created')
    const failure = this.script.failResponses.shift()
    if (failure !== undefined) return this.#finish(run, 'failed', { failure })
    const tools = params.tools ?? this.#session.tools
    const answer = planAnswer({
      instructions: params.instructions,
      items: Array.isArray(params.input) ? params.input : this.#conversation.heard(),
      tools,
      toolChoice: params.tool_choice ?? this.#session.tool_choice,
      parallelCalls: this.script.parallelCalls
    })
    run.plan(answer, this.script, this.#sink)
    this.#advance(run)
  }

  /** What the response reads, for its usage: instructions, tools, then the conversation or its own input. */
  #read (run: ResponseRun, params: SimEvent): void {
    const input = [
      promptSegment(params.instructions ?? this.#session.instructions, params.tools ?? this.#session.tools),
      ...this.#conversation.segments(Array.isArray(params.input) ? params.input : undefined)
    ]
    run.read(input, this.#lastInput)
    this.#lastInput = input
  }

  #advance (run: ResponseRun): void {
    const step = run.nextStep
    if (step !== undefined) {
      run.cancelPending = this.#timers.after(step.delayMs, () => {
        run.takeStep()?.run()
        this.#advance(run)
      })
    } else if (this.script.neverComplete) {
      run.cancelPending = noop
    } else {
      run.cancelPending = this.#timers.after(this.script.responseDoneDelayMs, () => this.#finish(run, 'completed'))
    }
  }

  #finish (run: ResponseRun, status: ResponseStatus, details: { reason?: CancelReason, failure?: Failure } = {}): void {
    if (!this.#running.delete(run)) return
    run.cancelPending()
    run.end(status)
    if (this.#responseSlot === run) this.#responseSlot = null
    if (this.#echo?.run === run) this.#echo = null
    this.#emit({ type: 'response.done', response: run.snapshot(status, details) })
    if (!run.settings.inBand) return
    this.#emit(rateLimitsUpdated())
    this.#releaseTranscriptions('response.done')
  }

  #responseSettings (params: SimEvent): ResponseSettings {
    const outOfBand = params.conversation === 'none'
    const session = this.#session
    return {
      inBand: !outOfBand,
      conversationId: outOfBand ? null : this.#conversationId,
      outputModalities: params.output_modalities ?? session.output_modalities,
      format: params.audio?.output?.format ?? session.audio.output.format,
      voice: params.audio?.output?.voice ?? session.audio.output.voice,
      maxOutputTokens: params.max_output_tokens ?? session.max_output_tokens,
      metadata: params.metadata ?? null
    }
  }

  // Streaming mode: one in-band response, opened by the first append, carries an
  // echo of every append until it is cancelled or the connection closes.
  #echoAudio (audio: string, bytes: number): void {
    let echo = this.#echo
    if (echo === null) {
      if (this.#responseSlot !== null) return
      const run = new ResponseRun(this.#responseSettings({}))
      run.created = true
      this.#responseSlot = run
      this.#running.add(run)
      this.#read(run, {})
      this.#emit({ type: 'response.created', response: run.snapshot('in_progress') })
      echo = { run, item: run.openEcho(this.script, this.#sink) }
      this.#echo = echo
    }
    echo.run.echo(echo.item, audio, bytes, this.#sink)
  }

  /** The buffered audio becomes a user item saying `said`; its transcription follows when the session has one. */
  #commitUserAudio (said: string): SimItem {
    const item: SimItem = {
      id: this.#speechItemId ?? newId('item'),
      object: 'realtime.item',
      type: 'message',
      status: 'completed',
      role: 'user',
      content: [{ type: 'input_audio', transcript: null }]
    }
    const format = this.#session.audio.input.format
    const audioMs = this.#bufferedBytes / bytesPerMs(format)
    this.#conversation.addAudio(item.id, 0, this.#bufferedBytes, bytesPerMs(format), said)
    this.#speechItemId = null
    this.#bufferedBytes = 0
    this.#vad.reset()
    const previousItemId = this.#conversation.append(item)
    this.#emit({ type: 'input_audio_buffer.committed', previous_item_id: previousItemId, item_id: item.id })
    this.#emit({ type: 'conversation.item.added', previous_item_id: previousItemId, item: structuredClone(item) })
    this.#emit({ type: 'conversation.item.done', previous_item_id: previousItemId, item: structuredClone(item) })
    if (this.#session.audio.input.transcription !== null) this.#transcribe(item, said, audioMs)
    return item
  }

  // Input transcription runs beside the model, so it may land after the response has started, or fail.
  #transcribe (item: SimItem, said: string, audioMs: number): void {
    const fails = this.script.failTranscriptions > 0
    if (fails) this.script.failTranscriptions -= 1
    const deliver = (): void => this.#timers.soon(this.script.transcriptionDelayMs, () => {
      if (fails) {
        this.#emit({ type: 'conversation.item.input_audio_transcription.failed', item_id: item.id, content_index: 0, error: TRANSCRIPTION_ERROR })
        return
      }
      item.content[0].transcript = said
      this.#emit({
        type: 'conversation.item.input_audio_transcription.completed',
        item_id: item.id,
        content_index: 0,
        transcript: said,
        usage: { type: 'duration', seconds: Math.ceil(audioMs / 1000) }
      })
    })
    const until = this.script.transcriptionAfter
    if (until === 'committed') deliver()
    else this.#heldTranscriptions.push({ until, deliver })
  }

  #releaseTranscriptions (moment: 'response.created' | 'response.done'): void {
    if (this.#heldTranscriptions.length === 0) return
    const held = this.#heldTranscriptions.splice(0)
    for (const entry of held) {
      if (entry.until === moment) entry.deliver()
      else this.#heldTranscriptions.push(entry)
    }
  }

  #inputAudioMs (): number {
    return Math.round(this.#appendedBytes / bytesPerMs(this.#session.audio.input.format))
  }

  #emit (event: SimEvent): void {
    if (this.#closed || this.#ws.readyState !== WebSocket.OPEN) return
    const sent: SimEvent = { type: event.type, event_id: event.event_id ?? newId('event'), ...event }
    if (sent.type === 'response.output_audio.delta') {
      this.#audioEmitted = true
      const { delta, ...rest } = sent
      this.#sent.push({ ...rest, audioBytes: typeof delta === 'string' ? base64ByteLength(delta) : 0 })
    } else {
      this.#sent.push(sent)
    }
    this.#ws.send(JSON.stringify(sent))
  }

  #record (event: SimEvent): SimEvent {
    let logged = event
    if (event.type === 'input_audio_buffer.append') {
      const audioBytes = typeof event.audio === 'string' ? Math.max(0, Math.floor(base64ByteLength(event.audio))) : 0
      logged = { type: event.type, event_id: event.event_id, audioBytes }
    }
    this.#received.push(logged)
    if (typeof event.type === 'string') this.#counts.set(event.type, this.count(event.type) + 1)
    return logged
  }

  #notify (logged: SimEvent): void {
    if (this.#waiters.size === 0) return
    for (const waiter of [...this.#waiters]) {
      if (waiter.type !== logged.type) continue
      let matches: boolean
      try {
        matches = waiter.predicate?.(logged) ?? true
      } catch (error) {
        this.#settle(waiter)
        waiter.reject(error as Error)
        continue
      }
      if (matches) {
        this.#settle(waiter)
        waiter.resolve(logged)
      }
    }
  }

  #settle (waiter: Waiter): void {
    clearTimeout(waiter.timer)
    this.#waiters.delete(waiter)
  }

  #takeRejection (type: string): SimScript['rejectNext'][number] | undefined {
    const index = this.script.rejectNext.findIndex((rejection) => rejection.type === type)
    return index === -1 ? undefined : this.script.rejectNext.splice(index, 1)[0]
  }

  #closeIfScripted (type: string): void {
    const closeAfter = this.script.closeAfter
    if (closeAfter === null || closeAfter.type !== type) return
    this.script.closeAfter = null
    this.close(closeAfter.code, closeAfter.reason ?? '')
  }

  /** Answers a malformed event: an error, and a violation the proxy is accountable for. */
  #refuse (clientEventId: string | null, problem: Problem): void {
    this.#violate('invalidEvent')
    this.#emit(errorEvent(problem, clientEventId))
  }

  /** Answers a well-formed event the current state does not allow. */
  #fail (clientEventId: string | null, problem: Problem): void {
    this.#emit(errorEvent(problem, clientEventId))
  }

  #violate (kind: ViolationKind): void {
    this.violations[kind] += 1
    this.#options.onViolation(kind)
  }

  #dispose (): void {
    if (this.#closed) return
    this.#closed = true
    this.#timers.stop()
    this.#running.clear()
    this.#responseSlot = null
    this.#echo = null
    for (const waiter of [...this.#waiters]) {
      this.#settle(waiter)
      waiter.reject(new Error(`Connection ${this.id} closed before client event ${waiter.type} arrived`))
    }
    this.#options.onClose(this)
  }
}

// The shape OpenAI documents for a transcription that failed.
const TRANSCRIPTION_ERROR = Object.freeze({ type: 'transcription_error', code: 'audio_unintelligible', message: 'The audio could not be transcribed.', param: null })

function rateLimitsUpdated (): SimEvent {
  return {
    type: 'rate_limits.updated',
    rate_limits: [
      { name: 'requests', limit: 5000, remaining: 4999, reset_seconds: 0.012 },
      { name: 'tokens', limit: 40000, remaining: 39000, reset_seconds: 1.5 }
    ]
  }
}
