// Property test of the turn engine against a strict model of the OpenAI Realtime
// upstream (test/helpers/upstream-model.ts), including barge-in (speech start/stop,
// truncation of what the client did not hear), forced turn ends, upstream drops and
// renewals (a new model replaces the upstream; the conversation is replayed into it). fast-check generates schedules that mix
// client intents (later Settings, UpdatePrompt/Speak/Think, InjectUserMessage,
// InjectAgentMessage with each behavior, FunctionCallResponse for real, late, duplicate
// and unknown ids, cancel, agent audio), deliveries of the model's pending events (always
// in emission order, arbitrarily late), the model's own moves (streaming, server VAD,
// out-of-band and unknown responses), watchdog timers and upstream closes. The model
// processes what the engine sends synchronously; only its answers are delayed.
//
// Checked after every step: the upstream never saw an in-band response.create or a
// session.update while a response was active, nor an item/create before session.updated
// (a server-VAD response whose response.created is still on its way is a race the engine
// cannot prevent: counted apart, and it must recover); the engine never throws; every
// response.create has a reason (greeting, acknowledged user message, agent message,
// answered calls of an ended response, or the retry of a conflict); FunctionCallResponse
// is forwarded once or warned about; at most one bare request waits (docs/turn-engine.md
// rule 3); with nothing
// on the wire, the engine's slot matches the upstream's. Once drained: nothing pending,
// every wanted response created, every configuration change answered, in order.
//
// Watchdogs fire only when a real clock could fire them against this upstream: when what
// they wait for is lost, refused or already over; the response deadline may always expire.
//
// ENGINE_PROPERTY_SEED=<n> picks another seed; ENGINE_PROPERTY_IGNORE=<regexp> skips
// matching failures (to look past a known bug); ENGINE_PROPERTY_TRACE=<n> prints more of
// the counterexample's trace.

import fc from 'fast-check'
import t from 'tap'
import { TurnEngine, type Creating, type EngineState } from '../lib/engine/engine.js'
import { ENGINE_EVENT_TYPES, timerKey, type Command, type EngineInput, type InjectBehavior, type Timer } from '../lib/engine/io.js'
import { WarningCode, type ConfigAck, type ServerMessage } from '../lib/protocol/deepgram.js'
import { assistantText, userText, type ConversationItem, type FunctionTool, type SessionFields } from '../lib/protocol/openai.js'
import { AUDIO_DELTA_MS, UPSTREAM_MESSAGE_MARK, UpstreamModel, prng } from './helpers/upstream-model.js'
import { MAX_RECORD_CHARS, MAX_RECORD_ITEMS } from '../lib/engine/record.js'

const NUM_RUNS = 10_000
/** Failures matching ENGINE_PROPERTY_IGNORE (a regexp) are skipped: for looking past a known bug. */
const IGNORED = process.env.ENGINE_PROPERTY_IGNORE === undefined ? undefined : new RegExp(process.env.ENGINE_PROPERTY_IGNORE)
const CONFLICT = 'conversation_already_has_active_response'
const ACKS: ConfigAck[] = ['SettingsApplied', 'PromptUpdated', 'SpeakUpdated', 'ThinkUpdated']
const REASONS = ['greeting', 'inject_user_message', 'inject_agent_message', 'function_call_output', 'force_end_turn', 'resumed_turn'] as const
/** Reasons a response without instructions serves: one that answers the conversation answers them all. */
type BareReason = Exclude<typeof REASONS[number], 'greeting' | 'inject_agent_message'>
const BARE_REASONS: readonly string[] = REASONS.filter((reason) => reason !== 'greeting' && reason !== 'inject_agent_message')

/** A bare reason owed a response; `ready` is the delivery position after which a response sees what it answers. */
interface BareCredit { reason: BareReason, ready: () => number | undefined }

// ── schedules ───────────────────────────────────────────────────────────────────

type Intent =
  | { k: 'configure', ack: ConfigAck, v: number, append: boolean }
  | { k: 'injectUser', v: number }
  | { k: 'injectAgent', behavior: InjectBehavior, v: number }
  | { k: 'functionResult', which: 'real' | 'late' | 'duplicate' | 'unknown', pick: number }
  | { k: 'cancel' }
  | { k: 'agentAudio' }
  | { k: 'forceEndTurn' }

type Move =
  | { k: 'deliver', n: number }
  | { k: 'advance', n: number }
  | { k: 'speechStart' }
  | { k: 'speechStop' }
  | { k: 'outOfBand' }
  | { k: 'ghostDone' }
  | { k: 'timer', pick: number }
  | { k: 'close' }
  /** The upstream drops or goes away mid-session (the engine reconnects, or ends the session for a code that no reconnect helps). */
  | { k: 'drop', code: number }

type Action = Intent | Move
type Step = Action & { r: number }

interface Schedule {
  /** Feed the engine every upstream event, not only the ones the session feeds it (ENGINE_EVENT_TYPES). */
  feedAll: boolean
  /** Settings with transcription: the model sends the user's words after each commit. */
  transcribe: boolean
  greeting: string | null
  context: number
  voice: number
  pre: Step[]
  steps: Step[]
}

const seed = fc.nat()
const withSeed = <A extends Action>(arb: fc.Arbitrary<A>): fc.Arbitrary<A & { r: number }> =>
  fc.tuple(arb, seed).map(([a, r]) => ({ ...a, r }))

const configureArb = (acks: ConfigAck[]): fc.Arbitrary<Intent> =>
  fc.record({ k: fc.constant('configure' as const), ack: fc.constantFrom(...acks), v: fc.nat(2), append: fc.boolean() })

const earlyIntentArb: fc.Arbitrary<Step> = withSeed(fc.oneof(
  configureArb(['PromptUpdated', 'SpeakUpdated', 'ThinkUpdated']),
  fc.record({ k: fc.constant('injectUser' as const), v: fc.nat(2) }),
  fc.record({ k: fc.constant('injectAgent' as const), behavior: fc.constantFrom<InjectBehavior>('refuse', 'queue', 'interrupt'), v: fc.nat(2) }),
  fc.record({ k: fc.constant('functionResult' as const), which: fc.constant('unknown' as const), pick: fc.nat(3) }),
  fc.constant({ k: 'cancel' as const })
))

const stepArb: fc.Arbitrary<Step> = withSeed(fc.oneof(
  { weight: 30, arbitrary: fc.record({ k: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 12, arbitrary: fc.record({ k: fc.constant('advance' as const), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 5, arbitrary: configureArb(ACKS) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('injectUser' as const), v: fc.nat(2) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('injectAgent' as const), behavior: fc.constantFrom<InjectBehavior>('refuse', 'queue', 'interrupt'), v: fc.nat(2) }) },
  { weight: 10, arbitrary: fc.record({ k: fc.constant('functionResult' as const), which: fc.constantFrom('real' as const, 'late' as const, 'duplicate' as const, 'unknown' as const), pick: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.constant({ k: 'cancel' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'agentAudio' as const }) },
  { weight: 3, arbitrary: fc.constant({ k: 'speechStart' as const }) },
  { weight: 3, arbitrary: fc.constant({ k: 'speechStop' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'outOfBand' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'ghostDone' as const }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('timer' as const), pick: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'forceEndTurn' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drop' as const), code: fc.constantFrom(1001, 1006, 1011, 1001, 1000) }) },
  // Most runs should live long: an upstream close ends the session.
  { weight: 1, arbitrary: fc.record({ k: fc.constant('close' as const), p: fc.nat(4) }).map(({ p }) => p === 0 ? { k: 'close' as const } : { k: 'advance' as const, n: 1 }) }
))

const scheduleArb: fc.Arbitrary<Schedule> = fc.record({
  feedAll: fc.nat(3).map((n) => n === 0),
  transcribe: fc.boolean(),
  greeting: fc.option(fc.constantFrom('Hello!', 'Welcome back.'), { nil: null }),
  context: fc.nat(2),
  voice: fc.nat(2),
  pre: fc.array(earlyIntentArb, { maxLength: 2 }),
  steps: fc.array(stepArb, { maxLength: 60, size: 'max' })
})

// ── intents → engine inputs ─────────────────────────────────────────────────────

const INSTRUCTIONS = ['Be brief.', 'Be formal.', 'Answer in French.']
const VOICES = ['alloy', 'echo', 'shimmer']
const LANGUAGES = ['en', 'fr', 'de']
const TOOLS: FunctionTool[] = [{ type: 'function', name: 'get_weather' }, { type: 'function', name: 'get_time' }]
const USER_LINES = ['What is the weather?', 'Book a table.', 'Thanks!']
const AGENT_LINES = ['One moment please.', 'Your table is booked.', 'Goodbye.']

type Input = EngineInput extends infer I ? I extends EngineInput ? Omit<I, 'at'> : never : never

function configureInput (intent: Extract<Intent, { k: 'configure' }>): Input {
  const v = intent.v
  switch (intent.ack) {
    case 'SettingsApplied': return { type: 'settings', fields: { instructions: INSTRUCTIONS[v], voice: VOICES[(v + 1) % 3] }, context: [] }
    case 'SpeakUpdated': return { type: 'configure', fields: { voice: VOICES[v] }, ack: 'SpeakUpdated' }
    case 'ThinkUpdated': return { type: 'configure', fields: { instructions: INSTRUCTIONS[v], tools: TOOLS.slice(0, 1 + (v % 2)) }, ack: 'ThinkUpdated' }
    case 'ListenUpdated': return { type: 'configure', fields: { transcription: { model: 'gpt-4o-mini-transcribe', language: LANGUAGES[v] } }, ack: 'ListenUpdated' }
    case 'PromptUpdated': return intent.append
      ? { type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: `Note ${v}.` } as Input
      : { type: 'configure', fields: { instructions: INSTRUCTIONS[v] }, ack: 'PromptUpdated' }
  }
}

function settingsInput (schedule: Schedule): Input {
  const fields: SessionFields = { instructions: INSTRUCTIONS[0], voice: VOICES[schedule.voice], tools: TOOLS, turnDetection: { type: 'server_vad', create_response: true, interrupt_response: true } }
  // As every Settings through the proxy has (Deepgram's agents always transcribe the user).
  if (schedule.transcribe) fields.transcription = { model: 'gpt-4o-mini-transcribe' }
  const context: ConversationItem[] = [userText('My name is Ada.'), assistantText('Hello Ada.')].slice(0, schedule.context)
  return schedule.greeting === null ? { type: 'settings', fields, context } : { type: 'settings', fields, context, greeting: schedule.greeting }
}

// ── the world: engine + model + ledgers ─────────────────────────────────────────

type UpEvent = Extract<Command, { kind: 'upstream' }>['event']

function rec (value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null ? value as Record<string, unknown> : undefined
}

function clientOf (cmds: Command[], type?: string): ServerMessage[] {
  return cmds.flatMap((c) => c.kind === 'client' && (type === undefined || c.message.type === type) ? [c.message] : [])
}

function upstreamOf (cmds: Command[]): UpEvent[] {
  return cmds.flatMap((c) => c.kind === 'upstream' ? [c.event] : [])
}

function isAck (type: string): type is ConfigAck {
  return (ACKS as string[]).includes(type)
}

/** Totals over all runs, reported in the test output. */
const totals = { duplicateAnswers: 0, runs: 0, steps: 0, creates: 0, raceConflicts: 0, raceUpdates: 0, responsesDone: 0, functionCalls: 0, cancels: 0, closes: 0, drops: 0, renewals: 0, lostVadTurns: 0 }

class World {
  readonly engine: TurnEngine
  /** The upstream in use; a reconnect or renewal replaces it. */
  model: UpstreamModel
  /** Every upstream this session had, the one in use last. */
  private readonly models: UpstreamModel[] = []
  readonly failures: string[] = []
  readonly trace: string[] = []
  /** Timers the engine has set and not cleared, by key, in the order set. */
  readonly timers = new Map<string, Timer>()
  private at = 0
  closed = false

  // Why responses may be created: credited when a reason arises, debited by each create.
  // Reasons with instructions are counted; bare ones are credits that a response answering
  // the conversation (server VAD's, or a bare create) answers once it saw what they answer.
  private readonly owed: Record<'greeting' | 'inject_agent_message', number> = { greeting: 0, inject_agent_message: 0 }
  private readonly bareCredits: BareCredit[] = []
  /** The credits each create consumed, by its event id (a refused create gets them back). */
  private readonly debited = new Map<string, { bare: BareCredit[], instructed: string[] }>()
  /** Upstream events fed to the engine so far: the engine's notion of order. */
  private position = 0
  private readonly createdAt = new Map<string, number>()
  private readonly outputItems = new Map<string, string>()
  private readonly outputAckAt = new Map<string, number>()
  private readonly cancelledCalls = new Set<string>()
  /** Responses the user talked over: none of their audio may play. */
  private readonly expectMuted = new Set<string>()
  private readonly muteOnCreate = new Set<string>()
  /** Our commits on their way (each one that lands asks for a response). */
  private readonly commits = new Set<string>()
  private commitsPending = 0
  /**
   * The user's turn server VAD took (speech_stopped delivered) and no in-band response has
   * been announced since: its committed item, and whether its words (the transcript) were
   * delivered. A loss meanwhile owes it an answer from the next upstream when they were.
   */
  private vadTurn: { itemId: string | undefined, words: boolean } | null = null
  /** Answers given between two upstreams, not forwarded yet. */
  private readonly heldAnswers = new Set<string>()
  /** Items replayed into the current upstream, not acknowledged yet. */
  private readonly replaying = new Set<string>()
  /** Upstream losses (and renewals) so far: the replay after the n-th goes into the upstream that follows it. */
  private losses = 0
  /** By loss: the position at which the replay after it was all in the new upstream's conversation. */
  private readonly replayedAt = new Map<number, number>()
  private readonly replayEvents = new Map<string, string>()
  private pendingConnect: 'renew' | 'reconnect' | null = null
  private readonly greeting: boolean
  private readonly feedAll: boolean
  private readyDelivered = false
  private readonly injectItems = new Map<string, 'awaiting' | 'acked' | 'failed'>()
  private readonly itemEvents = new Map<string, string>()
  // Function calls as the client saw them.
  private readonly requested = new Set<string>()
  private readonly answered = new Set<string>()
  private readonly doneResponses = new Set<string>()
  private readonly abandoned = new Set<string>()
  private readonly followedUp = new Set<string>()
  private readonly mayFollowUp = new Set<string>()
  // Configuration changes asked for and their answers.
  private readonly configAsked: ConfigAck[] = []
  private readonly configAcks: ConfigAck[] = []
  private readonly heldAsks: ConfigAck[] = []
  private configOtherwise = 0
  // Cancels: our responses the engine must cancel once it hears of them.
  private readonly cancelSent = new Set<string>()
  private readonly cancelOwed = new Set<string>()

  constructor (schedule: Schedule) {
    this.engine = new TurnEngine('x_')
    this.model = new UpstreamModel(prng(0))
    this.models.push(this.model)
    this.greeting = schedule.greeting !== null
    this.feedAll = schedule.feedAll
  }

  get state (): Readonly<EngineState> {
    return this.engine.state
  }

  fail (what: string): void {
    if (IGNORED !== undefined && IGNORED.test(what)) return
    this.failures.push(what)
  }

  /** The response that announced a call, on whichever upstream announced it. */
  private owner (callId: string): string | undefined {
    for (let i = this.models.length - 1; i >= 0; i--) {
      const owner = this.models[i]?.callOwner.get(callId)
      if (owner !== undefined && owner !== 'replayed') return owner
    }
    return undefined
  }

  // ── feeding the engine ────────────────────────────────────────────────────────

  private feed (input: Input): Command[] {
    this.at += 7
    const full = { ...input, at: this.at } as EngineInput
    this.trace.push(`→ ${describeInput(full)}`)
    // A SpeakUpdated dropped after it was queued (the agent spoke meanwhile, or the
    // upstream refused the voice) is answered by the VOICE_CHANGE_NOT_ALLOWED Warning.
    const speakWaiting = (s: Readonly<EngineState>): number => [...s.pendingAcks, ...(s.inflightUpdate?.acks ?? [])].filter((ack) => ack === 'SpeakUpdated').length
    // (An update given up on by its watchdog is accounted for where the timer fires.)
    const expiring = full.type === 'timer' && full.timer.kind === 'updateAck' && this.state.inflightUpdate?.eventId === full.timer.eventId
    const speakBefore = speakWaiting(this.state) - (expiring ? (this.state.inflightUpdate?.acks.filter((ack) => ack === 'SpeakUpdated').length ?? 0) : 0)
    // Replayed items not acknowledged in time: the engine gives up knowing when they arrived.
    if (full.type === 'timer' && full.timer.kind === 'replayAck') this.replaying.clear()
    let cmds: Command[]
    try {
      cmds = this.engine.step(full)
    } catch (err) {
      this.fail(`engine threw on ${input.type}: ${(err as Error).stack ?? String(err)}`)
      return []
    }
    const speakAcked = clientOf(cmds, 'SpeakUpdated').length
    const speakDropped = speakBefore - speakWaiting(this.state) - speakAcked
    const voiceRefused = clientOf(cmds, 'Warning').some((m) => m.type === 'Warning' && m.code === WarningCode.voiceChangeRefused)
    if (speakDropped > 0 && voiceRefused) this.configOtherwise += speakDropped
    totals.steps++
    if (this.closed && cmds.length > 0) this.fail(`commands after the session closed: ${JSON.stringify(cmds)}`)
    // Deepgram's clients take every Error as the end of the session: the engine closes with it.
    const errors = clientOf(cmds, 'Error')
    if (errors.length > 0 && !cmds.some((c) => c.kind === 'close')) this.fail(`Error ${errors.map((m) => m.type === 'Error' ? m.code : '').join(', ')} while the session goes on`)
    for (const cmd of cmds) {
      switch (cmd.kind) {
        case 'upstream':
          this.trace.push(`   ⇡ ${cmd.event.type} ${cmd.event.event_id}${cmd.event.type === 'response.cancel' ? ` ${String(cmd.event.response_id)}` : ''}${cmd.event.type === 'response.create' ? ` for ${(this.state.sent.get(cmd.event.event_id) as { request?: { reasons: string[] } } | undefined)?.request?.reasons.join('+') ?? '?'}` : ''}`)
          this.sent(cmd.event)
          break
        case 'client':
          this.trace.push(`   ⇣ ${cmd.message.type}${'code' in cmd.message ? ` ${cmd.message.code}` : ''}`)
          this.told(cmd.message)
          break
        case 'setTimer':
          this.timers.delete(timerKey(cmd.timer))
          this.timers.set(timerKey(cmd.timer), cmd.timer)
          break
        case 'clearTimer':
          this.timers.delete(timerKey(cmd.timer))
          break
        case 'close':
          this.closed = true
          break
        case 'connectUpstream':
          this.pendingConnect = cmd.reason
          break
      }
    }
    this.checkAlways()
    const reason = this.pendingConnect
    this.pendingConnect = null
    if (reason !== null && !this.closed) this.connect(reason)
    return cmds
  }

  /** An event the engine sends upstream: accounted for, then processed by the model at once. */
  private sent (event: UpEvent): void {
    if (event.type === 'response.create') {
      totals.creates++
      const purpose = this.state.sent.get(event.event_id)
      if (purpose?.kind !== 'create') {
        this.fail(`response.create ${event.event_id} not remembered as a create`)
      } else {
        const consumed = { bare: [] as BareCredit[], instructed: [] as string[] }
        let bareReasons = 0
        for (const reason of purpose.request.reasons) {
          if (!(REASONS as readonly string[]).includes(reason)) {
            this.fail(`response.create with an unknown reason "${reason}"`)
          } else if (BARE_REASONS.includes(reason)) {
            bareReasons++
            const index = this.bareCredits.findIndex((credit) => credit.reason === reason)
            if (index >= 0) consumed.bare.push(...this.bareCredits.splice(index, 1))
          } else {
            const counted = reason as 'greeting' | 'inject_agent_message'
            this.owed[counted]--
            consumed.instructed.push(counted)
            if (this.owed[counted] < 0) {
              this.fail(`response.create ${event.event_id} without a reason: nothing asked for "${reason}"`)
              this.owed[counted] = 0
            }
          }
        }
        // Responses abandoned by the watchdog are not held to the one-follow-up rule here
        // (engine.test.ts pins that corner down).
        if (bareReasons > 0 && consumed.bare.length === 0 && this.mayFollowUp.size === 0) {
          this.fail(`response.create ${event.event_id} answers nothing: every "${purpose.request.reasons.join('", "')}" it was for was answered already (a duplicate answer)`)
        }
        this.debited.set(event.event_id, consumed)
      }
    }
    if (event.type === 'input_audio_buffer.commit') {
      this.commits.add(event.event_id)
      this.commitsPending++
    }
    if (event.type === 'conversation.item.create') {
      const item = rec(event.item)
      // An injected user message: the engine awaits its ack (context items have ids too).
      if (typeof item?.id === 'string' && item.role === 'user' && this.state.awaitingItems.has(item.id)) {
        this.injectItems.set(item.id, 'awaiting')
        this.itemEvents.set(item.id, event.event_id)
      }
      if (typeof item?.id === 'string' && this.state.sent.get(event.event_id)?.kind === 'replayItem') {
        this.replaying.add(item.id)
        this.replayEvents.set(event.event_id, item.id)
      }
      if (typeof item?.id === 'string' && item.type === 'function_call_output') {
        this.outputItems.set(item.id, String(item.call_id))
        this.heldAnswers.delete(String(item.call_id))
      }
    }
    if (event.type === 'response.cancel') {
      totals.cancels++
      this.cancelSent.add(String(event.response_id))
    }
    this.model.receive(event)
  }

  /** A message the engine sends the client. */
  private told (message: ServerMessage): void {
    if (message.type === 'FunctionCallRequest') {
      for (const f of message.functions) {
        if (this.requested.has(f.id)) this.fail(`FunctionCallRequest for ${f.id} sent twice`)
        this.requested.add(f.id)
        totals.functionCalls++
        const owner = this.owner(f.id)
        if (owner === undefined) {
          this.fail(`FunctionCallRequest for ${f.id}, a call the upstream never completed (no function_call_arguments.done)`)
        } else {
          this.followedUp.delete(owner)
        }
      }
    }
    if (message.type === 'FunctionCallCancelled') {
      for (const f of message.functions) {
        if (!this.requested.has(f.id) || this.answered.has(f.id)) this.fail(`FunctionCallCancelled for ${f.id}, which was not an open call`)
        this.cancelledCalls.add(f.id)
      }
    }
    if (isAck(message.type)) this.configAcks.push(message.type)
    if (message.type === 'SettingsApplied' && !this.readyDelivered) this.fail('SettingsApplied before the upstream\'s session.updated')
    if (message.type === 'InjectionRefused') this.owed.inject_agent_message--
    if (message.type === 'History' && 'function_calls' in message) {
      for (const call of message.function_calls) if (!this.answered.has(call.id)) this.fail(`History for ${call.id} before it was answered`)
    }
    if ((message.type === 'Error' || message.type === 'Warning') && message.description.includes(UPSTREAM_MESSAGE_MARK)) {
      this.fail(`${message.type} ${message.code} carries the upstream's message text`)
    }
  }

  // ── one schedule step ─────────────────────────────────────────────────────────

  run (s: Step): void {
    this.model.random = prng(s.r)
    switch (s.k) {
      case 'deliver':
        for (let i = 0; i < s.n; i++) this.deliverOne()
        break
      case 'advance':
        this.trace.push('  (upstream streams)')
        for (let i = 0; i < s.n; i++) this.model.advance()
        break
      case 'speechStart':
        this.trace.push('  (user starts speaking)')
        this.model.speechStart()
        break
      case 'speechStop':
        this.trace.push('  (user stops speaking)')
        this.model.speechStop()
        break
      case 'outOfBand':
        this.trace.push('  (out-of-band response)')
        this.model.outOfBand()
        break
      case 'ghostDone':
        this.trace.push('  (unknown response.done)')
        this.model.ghostDone()
        break
      case 'timer':
        this.fireTimer(s.pick, false)
        break
      case 'close':
        if (this.closed) break
        this.model.close()
        this.feed({ type: 'upstreamClosed' })
        this.closed = true
        totals.closes++
        break
      case 'drop':
        if (this.closed || this.state.phase !== 'ready' || this.state.link.state !== 'live') break
        this.trace.push(`  (the upstream drops: ${s.code})`)
        totals.drops++
        this.lostUpstream()
        this.feed({ type: 'upstreamLost', closeCode: s.code, failure: { code: 'UPSTREAM_CLOSED', description: 'The upstream closed.', closeCode: s.code === 1000 ? 1000 : 1011, reason: `upstream closed (${s.code})` } })
        break
      case 'forceEndTurn':
        this.feed({ type: 'forceEndTurn' })
        break
      case 'configure': return this.configure(s)
      case 'injectUser':
        this.feed({ type: 'injectUser', content: USER_LINES[s.v] ?? 'hi' })
        break
      case 'injectAgent': return this.injectAgent(s.behavior, s.v)
      case 'functionResult': return this.functionResult(s.which, s.pick)
      case 'cancel': return this.cancel()
      case 'agentAudio': {
        // The first audio of the running response, as far as the engine can tell (no delta:
        // nothing to count); the session only ever has audio of a response it heard of.
        const active = this.model.activeResponse
        if (this.state.phase === 'ready' && active !== null && this.model.createdDelivered(active.id)) this.feed({ type: 'agentAudio', responseId: active.id })
        break
      }
    }
    this.checkQuiescent()
  }

  settings (input: Input): void {
    // Changes sent before Settings are held and applied after it.
    this.configAsked.push('SettingsApplied', ...this.heldAsks.splice(0))
    this.feed(input)
  }

  private configure (intent: Extract<Intent, { k: 'configure' }>): void {
    const input = configureInput(intent)
    const before = this.engine.pending.sessionUpdate
    const phase = this.state.phase
    if (phase === 'awaiting_settings') this.heldAsks.push(intent.ack)
    else this.configAsked.push(intent.ack)
    const cmds = this.feed(input)
    if (this.closed || phase === 'awaiting_settings') return
    const refusedVoice = clientOf(cmds, 'Warning').some((m) => m.type === 'Warning' && m.code === WarningCode.voiceChangeRefused)
    const acked = cmds.some((c) => c.kind === 'client' && isAck(c.message.type))
    // A voice-only change after the agent spoke is answered by the Warning alone.
    if (refusedVoice && !acked && this.engine.pending.sessionUpdate === before) this.configOtherwise++
    this.checkQuiescent()
  }

  private injectAgent (behavior: InjectBehavior, v: number): void {
    const phase = this.state.phase
    const creating = this.state.slot.creating
    const idle = phase === 'ready' && !this.engine.responseInProgress && this.state.queue.length === 0 &&
      this.model.outbox.length === 0 && this.model.activeResponse === null && !this.model.userSpeaking
    const active = this.model.activeResponse
    this.owed.inject_agent_message++
    const cmds = this.feed({ type: 'injectAgent', message: AGENT_LINES[v] ?? 'ok', behavior })
    const refused = clientOf(cmds, 'InjectionRefused').length > 0
    if (refused && behavior !== 'refuse') this.fail(`InjectAgentMessage with behavior "${behavior}" was refused`)
    if (refused && idle) this.fail('InjectAgentMessage refused although nothing was going on')
    if (behavior === 'interrupt' && phase === 'ready') this.expectCancel(active, creating)
    this.checkQuiescent()
  }

  private cancel (): void {
    const creating = this.state.slot.creating
    const active = this.model.activeResponse
    this.feed({ type: 'cancel' })
    this.expectCancel(active, creating)
    this.checkQuiescent()
  }

  /** After a cancel: the running response the engine knows of is cancelled now, ours not yet announced once announced. */
  private expectCancel (active: UpstreamModel['activeResponse'], creating: Creating | null): void {
    if (active === null || this.closed) return
    if (this.model.createdDelivered(active.id)) {
      if (!this.cancelSent.has(active.id)) this.fail(`cancel: no response.cancel for the running response ${active.id}`)
    } else if (active.origin === 'client' && creating?.eventId === active.createEventId) {
      this.cancelOwed.add(active.id)
    }
  }

  private functionResult (which: Extract<Intent, { k: 'functionResult' }>['which'], pick: number): void {
    const open = [...this.requested].filter((id) => !this.answered.has(id) && !this.cancelledCalls.has(id))
    const late = open.filter((id) => this.doneResponses.has(this.owner(id) ?? ''))
    const pool = which === 'late' && late.length > 0 ? late : which === 'duplicate' ? [...this.answered] : which === 'unknown' ? [] : open
    const callId = pool.length > 0 ? pool[pick % pool.length] as string : `call_unknown_${pick}`
    this.answer(callId)
    this.checkQuiescent()
  }

  private answer (callId: string): void {
    const fresh = this.requested.has(callId) && !this.answered.has(callId) && !this.cancelledCalls.has(callId)
    if (fresh) {
      this.answered.add(callId)
      this.creditFollowUp(this.owner(callId))
    }
    const linkDown = this.state.link.state === 'down'
    const cmds = this.feed({ type: 'functionResult', callId, output: `{"result":"${callId}"}` })
    if (this.closed) return
    const events = upstreamOf(cmds)
    const outputs = events.filter((e) => e.type === 'conversation.item.create')
    const warned = clientOf(cmds, 'Warning')
    if (fresh && linkDown) {
      // Between two upstreams: it goes to the new one.
      if (events.length > 0 || warned.length > 0) this.fail(`FunctionCallResponse ${callId} between two upstreams: expected it held, got ${JSON.stringify(events)}`)
      this.heldAnswers.add(callId)
    } else if (fresh) {
      if (outputs.length !== 1 || rec(outputs[0]?.item)?.call_id !== callId || rec(outputs[0]?.item)?.type !== 'function_call_output') {
        this.fail(`FunctionCallResponse ${callId}: expected its function_call_output forwarded at once, got ${JSON.stringify(events)}`)
      }
      if (warned.length > 0) this.fail(`FunctionCallResponse ${callId}: unexpected Warning`)
    } else {
      const code = this.answered.has(callId) ? WarningCode.duplicateFunctionCallResponse : WarningCode.unknownFunctionCall
      if (code === WarningCode.duplicateFunctionCallResponse) totals.duplicateAnswers++
      if (events.length > 0) this.fail(`FunctionCallResponse ${callId} (${code}): something was forwarded`)
      if (!warned.some((m) => m.type === 'Warning' && m.code === code)) this.fail(`FunctionCallResponse ${callId}: no ${code} Warning`)
    }
  }

  /**
   * One follow-up per response with calls, once its response.done came and all its calls
   * are answered. A response the watchdog abandoned (its events still on the way) may be
   * followed up any time one of its calls was answered.
   */
  /** A credit whose items reach the next upstream only in its replay: answered by a response created after that replay. */
  private afterReplay (credit: BareCredit): BareCredit {
    const next = this.losses
    return {
      reason: credit.reason,
      ready: () => {
        const replayed = this.replayedAt.get(next)
        return replayed === undefined ? undefined : Math.max(replayed, credit.ready() ?? 0)
      }
    }
  }

  private get linkDown (): boolean {
    return this.state.link.state === 'down'
  }

  private creditFollowUp (responseId: string | undefined): void {
    if (responseId === undefined || this.followedUp.has(responseId)) return
    const calls = [...this.requested].filter((id) => this.owner(id) === responseId)
    // A cut response's calls are cancelled: its answered ones need no follow-up.
    if (calls.some((id) => this.cancelledCalls.has(id))) return
    if (this.abandoned.has(responseId)) {
      if (calls.some((id) => this.answered.has(id))) this.mayFollowUp.add(responseId)
      return
    }
    if (calls.length === 0 || calls.some((id) => !this.answered.has(id))) return
    if (this.doneResponses.has(responseId)) {
      this.followedUp.add(responseId)
      const credit: BareCredit = {
        reason: 'function_call_output',
        ready: () => {
          let ready = 0
          for (const id of calls) {
            const at = this.outputAckAt.get(id)
            if (at === undefined) return undefined
            ready = Math.max(ready, at)
          }
          return ready
        }
      }
      this.bareCredits.push(this.linkDown ? this.afterReplay(credit) : credit)
    }
  }

  /** A replayed item is in the new upstream's conversation (or refused there). */
  private replayed (itemId: string, position: number): void {
    if (this.replaying.delete(itemId) && this.replaying.size === 0) this.replayedAt.set(this.losses, position)
  }

  /** The upstream in use is gone: what it had in flight is lost with it. */
  private lostUpstream (): void {
    this.model.close()
    this.model.outbox.length = 0
    this.losses++
    this.replaying.clear()
    // Injected messages not acknowledged yet are asked for again.
    for (const [itemId, state] of this.injectItems) {
      if (state !== 'awaiting') continue
      this.injectItems.set(itemId, 'acked')
      this.bareCredits.push({ reason: 'inject_user_message', ready: () => undefined })
    }
    // A create that never started is the engine's to send again.
    const creating = this.state.slot.creating
    if (creating !== null && !creating.cancelOnCreate) this.restore(creating.eventId, undefined)
    // So is a response the loss cut before the client heard any of it (not talked over,
    // not cancelled, no calls): ours asks for the same again, server VAD's for an answer.
    const engine = this.state
    for (const response of engine.slot.open) {
      if (response.kind !== 'seen' || response.cancelRequested || engine.speech.muted === response.key || engine.callResponses.has(response.key)) continue
      if (engine.speech.turns.get(response.key)?.firstSentAt !== undefined) continue
      // (A create the watchdog gave up on is no longer the engine's request: its late response is like server VAD's.)
      const createEventId = this.model.createEventOf(response.key)
      if (createEventId !== null && engine.sent.get(createEventId)?.kind === 'create') this.restore(createEventId, undefined)
      else if (this.model.answersConversation(response.key)) this.bareCredits.push({ reason: 'resumed_turn', ready: () => undefined })
    }
    // A user's turn server VAD took and had not answered: answered by the next upstream if its words are in the replay.
    if (this.vadTurn?.words === true) {
      totals.lostVadTurns++
      this.bareCredits.push({ reason: 'resumed_turn', ready: () => undefined })
    }
    this.vadTurn = null
    // Responses cut off by the loss: their calls are followed up once answered.
    for (const callId of this.requested) {
      const owner = this.owner(callId)
      if (owner !== undefined && !this.doneResponses.has(owner)) {
        this.doneResponses.add(owner)
        this.creditFollowUp(owner)
      }
    }
    // Whatever is asked for now reaches the next upstream in its replay.
    for (let i = 0; i < this.bareCredits.length; i++) this.bareCredits[i] = this.afterReplay(this.bareCredits[i]!)
    this.commitsPending = 0
  }

  /** Gives a refused (or lost) create's credits back; with `runningCreatedAt`, not those the running response answers. */
  private restore (createEventId: string, runningCreatedAt: number | undefined): { bare: BareCredit[], instructed: string[] } {
    const consumed = this.debited.get(createEventId)
    if (consumed === undefined) return { bare: [], instructed: [] }
    this.debited.delete(createEventId)
    for (const reason of consumed.instructed) this.owed[reason as 'greeting' | 'inject_agent_message']++
    const bare = consumed.bare.filter((credit) => {
      const ready = credit.ready()
      return runningCreatedAt === undefined || ready === undefined || ready >= runningCreatedAt
    })
    this.bareCredits.push(...bare)
    return { bare, instructed: consumed.instructed }
  }

  /** The engine asked for a new upstream connection: one opens (or, now and then, a reconnect fails). */
  private connect (reason: 'renew' | 'reconnect'): void {
    if (reason === 'renew') {
      totals.renewals++
      this.trace.push('  (the upstream is renewed)')
      this.lostUpstream()
    }
    totals.raceConflicts += this.model.raceConflicts
    totals.raceUpdates += this.model.raceUpdates
    for (const v of this.model.violations.splice(0)) this.fail(`upstream: ${v}`)
    if (reason === 'reconnect' && this.model.random() < 0.2) {
      this.trace.push('  (the reconnect fails)')
      this.feed({ type: 'upstreamConnectFailed', failure: { code: 'UPSTREAM_UNAVAILABLE', description: 'The upstream could not be reached.', closeCode: 1013, reason: 'upstream unreachable' } })
      return
    }
    const next = new UpstreamModel(prng(this.models.length), this.model.options, `u${this.models.length}_`)
    this.models.push(next)
    this.model = next
    this.feed({ type: 'upstreamOpened' })
  }

  // ── upstream → engine ─────────────────────────────────────────────────────────

  deliverOne (): boolean {
    if (this.closed) return false
    const event = this.model.deliver()
    if (event === undefined) return false
    const prevUpdate = this.state.inflightUpdate
    const prevCreating = this.state.slot.creating
    // A new upstream refusing the configuration is a failed reconnect: its acknowledgements are still owed.
    const linkLive = this.state.link.state === 'live'
    const response = rec(event.response)
    const responseId = typeof response?.id === 'string' ? response.id : undefined
    const error = rec(event.error)
    const errorEventId = typeof error?.event_id === 'string' ? error.event_id : undefined
    const fed = this.feedAll || ENGINE_EVENT_TYPES.has(event.type)
    const position = fed ? this.position + 1 : this.position
    let restored: { bare: BareCredit[], instructed: string[] } = { bare: [], instructed: [] }

    if (event.type === 'session.updated' && !this.readyDelivered) {
      this.readyDelivered = true
      if (this.greeting) this.owed.greeting++
    }
    if (event.type === 'conversation.item.added' || event.type === 'conversation.item.done') {
      const id = rec(event.item)?.id
      if (typeof id === 'string' && this.injectItems.get(id) === 'awaiting') {
        this.injectItems.set(id, 'acked')
        this.bareCredits.push({ reason: 'inject_user_message', ready: () => position })
      }
      const callId = typeof id === 'string' ? this.outputItems.get(id) : undefined
      if (callId !== undefined && !this.outputAckAt.has(callId)) this.outputAckAt.set(callId, position)
      if (typeof id === 'string') this.replayed(id, position)
    }
    if (event.type === 'input_audio_buffer.speech_stopped') this.vadTurn = { itemId: undefined, words: false }
    // The user speaks again before the answer: the next turn's answer answers both.
    if (event.type === 'input_audio_buffer.speech_started') this.vadTurn = null
    if (event.type === 'input_audio_buffer.committed' && this.vadTurn !== null && this.vadTurn.itemId === undefined) this.vadTurn.itemId = String(event.item_id)
    if (event.type === 'conversation.item.input_audio_transcription.completed' && this.vadTurn !== null && event.item_id === this.vadTurn.itemId) this.vadTurn.words = true
    if (event.type === 'input_audio_buffer.committed' && this.commitsPending > 0) {
      this.commitsPending--
      this.bareCredits.push({ reason: 'force_end_turn', ready: () => position })
    }
    if (event.type === 'response.created' && responseId !== undefined && response?.conversation_id !== null) {
      this.vadTurn = null
      this.createdAt.set(responseId, position)
      // It answers every bare reason whose items it saw.
      if (this.model.answersConversation(responseId)) {
        for (let i = this.bareCredits.length - 1; i >= 0; i--) {
          const ready = this.bareCredits[i]?.ready()
          if (ready !== undefined && ready < position) this.bareCredits.splice(i, 1)
        }
      }
      const createEventId = this.model.createEventOf(responseId)
      if (createEventId !== null && this.muteOnCreate.has(createEventId)) this.expectMuted.add(responseId)
    }
    if (event.type === 'input_audio_buffer.speech_started') {
      // The running response goes silent, and so does the one being heard (docs/turn-engine.md rule 7).
      for (const interrupted of [this.engine.audibleResponse, this.engine.activeResponseId]) if (interrupted !== null) this.expectMuted.add(interrupted)
      if (this.state.slot.creating !== null) this.muteOnCreate.add(this.state.slot.creating.eventId)
    }
    if (event.type === 'error' && errorEventId !== undefined) {
      const replayItem = this.replayEvents.get(errorEventId)
      if (replayItem !== undefined) this.replayed(replayItem, position)
      for (const [itemId, eventId] of this.itemEvents) {
        if (eventId === errorEventId && this.injectItems.get(itemId) === 'awaiting') this.injectItems.set(itemId, 'failed')
      }
      if (this.commits.delete(errorEventId)) this.commitsPending = Math.max(0, this.commitsPending - 1)
      const purpose = this.state.sent.get(errorEventId)
      // A refused create is owed again, unless the client cancelled it before it started
      // (an interrupt): then it is answered by that cancel, like a created-then-cancelled one.
      const cancelledBeforeStart = prevCreating?.eventId === errorEventId && prevCreating?.cancelOnCreate === true
      if (purpose?.kind === 'create' && error?.code === CONFLICT && !cancelledBeforeStart) {
        const running = this.model.conflictWith(errorEventId)
        // The running response answers what it saw, if it answers the conversation at all.
        restored = this.restore(errorEventId, running === undefined || !this.model.answersConversation(running) ? undefined : this.createdAt.get(running))
      }
    }
    if (event.type === 'response.done' && responseId !== undefined && response?.conversation_id !== null) {
      totals.responsesDone++
      this.doneResponses.add(responseId)
      this.creditFollowUp(responseId)
    }

    if (event.type === 'response.output_audio.delta') this.audio(String(event.response_id))
    if (!fed) {
      this.checkQuiescent()
      return true
    }
    this.position = position
    const cmds = this.feed({ type: 'upstream', event })
    // A new upstream with nothing to replay has all of the conversation once it is configured.
    if (!linkLive && this.state.link.state === 'live' && this.replaying.size === 0) this.replayedAt.set(this.losses, position)
    const refusals = [...clientOf(cmds, 'Error'), ...clientOf(cmds, 'Warning')]

    if (refusals.some((m) => (m.type === 'Error' || m.type === 'Warning') && m.code === CONFLICT)) {
      // Retries exhausted: the Warning is the answer, no retry will come.
      for (const reason of restored.instructed) this.owed[reason as 'greeting' | 'inject_agent_message']--
      for (const credit of restored.bare) this.bareCredits.splice(this.bareCredits.indexOf(credit), 1)
    }
    if (event.type === 'error' && linkLive && errorEventId !== undefined && errorEventId === prevUpdate?.eventId && error?.code !== 'cannot_update_voice') {
      this.configOtherwise += prevUpdate.acks.length
    }
    if (event.type === 'response.created' && responseId !== undefined && this.cancelOwed.delete(responseId)) {
      if (!this.cancelSent.has(responseId) && this.model.isActive(responseId)) this.fail(`cancel before response.created: ${responseId} was not cancelled when it was announced`)
    }
    this.checkQuiescent()
    return true
  }

  /** An audio delta, as the session's hot path reports it: a new response's first audio decides; the rest is counted. */
  private audio (responseId: string): void {
    if (this.state.phase !== 'ready') return
    if (responseId !== this.engine.audibleResponse) this.feed({ type: 'agentAudio', responseId })
    const audible = responseId === this.engine.audibleResponse
    if (audible && this.expectMuted.has(responseId)) this.fail(`audio of ${responseId}, which the user talked over, reaches the client`)
    this.engine.noteAudio(responseId, AUDIO_DELTA_MS, audible)
  }

  // ── timers ────────────────────────────────────────────────────────────────────

  /**
   * Fires a timer the engine set, among those a real clock could fire against this
   * upstream: a watchdog only fires when what it waits for is really not coming
   * (lost, refused, or over), except the response deadline, which may always expire.
   * With `stuckOnly`, only timers that must fire for the system to settle.
   */
  fireTimer (pick: number, stuckOnly: boolean): boolean {
    const legal = [...this.timers].filter(([, timer]) => this.timerLegal(timer, stuckOnly))
    if (legal.length === 0) return false
    const [key, timer] = legal[pick % legal.length] as [string, Timer]
    const update = this.state.link.state === 'live' ? this.state.inflightUpdate : null
    if (timer.kind === 'itemAck' && this.injectItems.get(timer.itemId) === 'awaiting') this.injectItems.set(timer.itemId, 'failed')
    if (timer.kind === 'cancelGrace') {
      this.abandoned.add(timer.responseKey)
      this.creditFollowUp(timer.responseKey)
    }
    this.timers.delete(key)
    this.trace.push(`  (timer ${key} fires)`)
    this.feed({ type: 'timer', timer })
    if (timer.kind === 'updateAck' && update?.eventId === timer.eventId) this.configOtherwise += update.acks.length
    this.checkQuiescent()
    return true
  }

  private timerLegal (timer: Timer, stuckOnly: boolean): boolean {
    switch (timer.kind) {
      case 'createAck': {
        if (this.model.wasLost(timer.eventId)) return true
        if (stuckOnly) return false
        const response = this.model.responseForCreate(timer.eventId)
        return response === undefined || !this.model.isActive(response)
      }
      case 'updateAck': return this.model.wasLost(timer.eventId) || (!stuckOnly && this.model.wasRefused(timer.eventId))
      case 'itemAck': {
        const eventId = this.itemEvents.get(timer.itemId)
        return !stuckOnly || (eventId !== undefined && this.model.wasLost(eventId))
      }
      case 'responseDeadline': return !stuckOnly
      case 'cancelGrace': return !this.model.isActive(timer.responseKey)
      // Playback ends and waits end whatever the upstream does; an upstream may age at any time
      // (but settling needs no renewal).
      case 'playedOut':
      case 'transcriptWait':
      case 'replayAck': return true
      case 'renewDue': return !stuckOnly
    }
  }

  // ── invariants ────────────────────────────────────────────────────────────────

  private checkAlways (): void {
    for (const v of this.model.violations.splice(0)) this.fail(`upstream: ${v}`)
    const bare = this.state.queue.filter((r) => r.instructions === undefined).length
    if (bare > 1) this.fail(`rule 3: ${bare} bare requests wait in the queue (they should have coalesced into one)`)
    const record = this.state.record
    if (record.entries.length > MAX_RECORD_ITEMS || record.chars > MAX_RECORD_CHARS) this.fail(`the conversation record outgrew its bound: ${record.entries.length} entries, ${record.chars} characters`)
  }

  /** Nothing on the wire: the engine's view of the slot must match the upstream's. */
  private checkQuiescent (): void {
    if (this.closed || this.model.outbox.length > 0) return
    const active = this.model.activeResponse
    const inflight = this.state.slot.creating
    const expected = active !== null || (inflight !== null && this.model.wasLost(inflight.eventId))
    if (this.engine.responseInProgress !== expected) {
      this.fail(`quiescent: responseInProgress is ${String(!expected)} but the upstream ${active === null ? 'has no active response' : `runs ${active.id}`}`)
    }
    if (active !== null && this.engine.activeResponseId !== active.id) {
      this.fail(`quiescent: activeResponseId is ${String(this.engine.activeResponseId)}, upstream runs ${active.id}`)
    }
  }

  /** Lets everything pending happen: deliveries, streaming, answers, stuck watchdogs. */
  drain (): void {
    // No new function calls while draining: every follow-up would start another round.
    this.model.options.callsP = 0
    for (let round = 0; round < 3000; round++) {
      if (this.closed) return
      this.model.random = prng(round)
      if (this.deliverOne()) continue
      if (this.model.advance()) continue
      if (this.model.userSpeaking) {
        this.model.speechStop()
        continue
      }
      const unanswered = [...this.requested].find((id) => !this.answered.has(id) && !this.cancelledCalls.has(id))
      if (unanswered !== undefined) {
        this.answer(unanswered)
        continue
      }
      if (this.fireTimer(0, true)) continue
      return
    }
    this.fail('the system did not settle')
  }

  /** Once drained: every intent answered, nothing pending, nothing owed. */
  checkSettled (): void {
    totals.raceConflicts += this.model.raceConflicts
    totals.raceUpdates += this.model.raceUpdates
    this.checkAlways()
    if (this.closed) return
    if (this.state.link.state !== 'live') this.fail('settled: the engine is still without an upstream')
    if (this.heldAnswers.size > 0) this.fail(`settled: answers held between two upstreams never forwarded: ${[...this.heldAnswers].join(', ')}`)
    if (this.bareCredits.length > 0) this.fail(`settled: ${this.bareCredits.length} response(s) wanted for "${this.bareCredits.map((c) => c.reason).join('", "')}" never created`)
    if (this.engine.responseInProgress) this.fail('settled: the engine still thinks a response is in progress')
    const pending = this.engine.pending
    if (pending.responseCreate + pending.sessionUpdate + pending.functionCalls > 0) this.fail(`settled: still pending ${JSON.stringify(pending)}`)
    if (this.state.awaitingItems.size > 0) this.fail('settled: injected items still awaited')
    for (const reason of ['greeting', 'inject_agent_message'] as const) {
      if (this.owed[reason] !== 0) this.fail(`settled: ${this.owed[reason]} response(s) wanted for "${reason}" never created`)
    }
    const answered = this.configAcks.length + this.configOtherwise
    if (answered !== this.configAsked.length) {
      this.fail(`settled: ${this.configAsked.length} configuration messages, ${this.configAcks.length} acknowledged + ${this.configOtherwise} answered by Error/Warning`)
    }
    let i = 0
    for (const ack of this.configAcks) {
      while (i < this.configAsked.length && this.configAsked[i] !== ack) i++
      if (i === this.configAsked.length) {
        this.fail(`acknowledgements out of order: asked ${this.configAsked.join(',')}, got ${this.configAcks.join(',')}`)
        break
      }
      i++
    }
  }
}

function describeInput (input: EngineInput): string {
  switch (input.type) {
    case 'upstream': {
      const e = input.event
      const r = rec(e.response)
      const err = rec(e.error)
      const bits = [e.type]
      if (r !== undefined) bits.push(`${String(r.id)} ${String(r.status)}${r.conversation_id === null ? ' (out-of-band)' : ''}${'metadata' in r ? ` metadata=${JSON.stringify(r.metadata)}` : ''}`)
      if (err !== undefined) bits.push(`${String(err.code)} for ${String(err.event_id)}`)
      if (typeof e.call_id === 'string') bits.push(`${e.call_id} of ${String(e.response_id)}`)
      const item = rec(e.item)
      if (item !== undefined && typeof item.id === 'string') bits.push(item.id)
      return `upstream ${bits.join(' ')}`
    }
    case 'settings': return `Settings ${JSON.stringify(input.fields)}${input.greeting === undefined ? '' : ` greeting=${input.greeting}`}`
    case 'configure': return `configure ${input.ack} ${JSON.stringify(input.fields)}`
    case 'injectAgent': return `InjectAgentMessage ${input.behavior}`
    case 'functionResult': return `FunctionCallResponse ${input.callId}`
    case 'timer': return `timer ${timerKey(input.timer)}`
    default: return input.type
  }
}

function runSchedule (schedule: Schedule): World {
  const world = new World(schedule)
  for (const s of schedule.pre) world.run(s)
  world.settings(settingsInput(schedule))
  for (const s of schedule.steps) world.run(s)
  world.drain()
  world.checkSettled()
  totals.runs++
  return world
}

t.test('turn engine vs a strict model of the Realtime upstream', async (t) => {
  const started = performance.now()
  const details = fc.check(fc.property(scheduleArb, (schedule) => runSchedule(schedule).failures.length === 0), { numRuns: NUM_RUNS, seed: Number(process.env.ENGINE_PROPERTY_SEED ?? 20260301), endOnFailure: process.env.ENGINE_PROPERTY_SHRINK === '0' })
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  t.comment(`${details.numRuns} random schedules in ${seconds}s (seed ${details.seed})`)
  t.comment(`engine steps ${totals.steps}, response.create ${totals.creates}, responses done ${totals.responsesDone}, function calls ${totals.functionCalls} (duplicate answers ${totals.duplicateAnswers}), cancels ${totals.cancels}, upstream closes ${totals.closes}, drops ${totals.drops}, renewals ${totals.renewals}`)
  t.comment(`server-VAD races: ${totals.raceConflicts} conflicts and ${totals.raceUpdates} session.updates the engine could not prevent (all recovered, or the run would fail)`)
  t.comment(`server-VAD turns transcribed but not answered when the upstream was lost: ${totals.lostVadTurns} (each answered by the next upstream, or the run would fail)`)
  if (details.failed) {
    // Re-run the shrunk counterexample to report what broke and how.
    const world = runSchedule(details.counterexample![0])
    t.fail(`invariant broken after ${details.numRuns} runs (shrunk ${details.numShrinks} times): ${world.failures[0] ?? ''}`, {
      failures: [...new Set(world.failures)],
      trace: world.trace.slice(-Number(process.env.ENGINE_PROPERTY_TRACE ?? 120)),
      schedule: JSON.stringify(details.counterexample![0])
    })
  } else {
    t.ok(details.numRuns >= NUM_RUNS, `${details.numRuns} schedules, every invariant held`)
  }
  t.ok(totals.raceConflicts > 0, 'the server-VAD race was exercised')
  t.ok(totals.lostVadTurns > 0, 'a loss between a transcribed server-VAD turn and its answer was exercised')
})
