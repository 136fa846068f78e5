// The conversational load (`npm run bench -- --conversation`): sessions that stream the
// microphone (one 20 ms frame every 20 ms, or one of --mic-frame-ms as often; silence
// unless the user barges in) while each runs turns, one at a time:
//
//   say     InjectUserMessage → the spoken answer (AgentAudioDone)
//   call    InjectUserMessage naming get_weather → FunctionCallRequest → FunctionCallResponse
//           → the spoken answer
//   barge   InjectUserMessage → as the answer's first audio arrives, 200 ms of loud
//           microphone audio (the simulator's energy VAD: speech_started, the answer cut,
//           then speech_stopped and server VAD's own answer) → AgentAudioDone of that answer
//   prompt  UpdatePrompt → PromptUpdated
//
// Every message sent carries a token `q<session>x<seq>` that the hop carries upstream;
// the simulator (conversation-stamps.js) times its side by the same keys, so each
// protocol message's trip through the hop is split like the audio frames' are.

import WebSocket from 'ws'
import { FRAME_BYTES, FRAME_MS, frameTemplate, nowMs } from './frame.js'
import { Samples, closeSocket, establish, settingsMessage } from './loadgen.js'

export const FUNCTIONS = [{
  name: 'get_weather',
  description: 'The weather in a city.',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}]
/** Turn kinds in the order a session cycles through them while streaming. */
export const STREAMING_TURNS = ['say', 'call', 'say', 'barge', 'prompt']
/** Back to back (long sessions): no barge-in (answers are instant there), a prompt change now and then. */
export const LONG_TURNS = ['say', 'call', 'say', 'call', 'say', 'call', 'say', 'call', 'say', 'prompt']
const TURN_TIMEOUT_MS = 10_000
/** A barge-in is this much loud microphone audio. */
const BARGE_MS = 200

/** A microphone frame of `frameMs` (a multiple of FRAME_MS): silence, and the audio benchmark's tone (about −23 dBFS, an empty header), loud enough for the VAD. */
function microphone (frameMs) {
  const count = frameMs / FRAME_MS
  return { frameMs, silence: Buffer.alloc(FRAME_BYTES * count), loud: Buffer.concat(Array.from({ length: count }, () => frameTemplate())) }
}
const MICROPHONE = microphone(FRAME_MS)

/** Sessions are numbered across the whole run, so that no two share tokens (a --quick run shares its simulators). */
let nextIndex = 0

/**
 * Opens `count` conversational sessions: each one's Settings name it to the simulator
 * (a token in the prompt) and declare get_weather.
 */
export function openConversations (url, count, frameMs = FRAME_MS) {
  const first = nextIndex
  nextIndex += count
  const mic = frameMs === FRAME_MS ? MICROPHONE : microphone(frameMs)
  return establish(url, count, {
    settings: (index) => settingsMessage({ prompt: `You are a benchmark. q${first + index}x0`, functions: FUNCTIONS }),
    session: (ws, index) => new ConversationSession(ws, first + index, mic)
  })
}

/** What the turns of a run measured: client-side times by key, and counts. */
export class TurnLog {
  /** key → { kind, at }: sent (↑, keyed by token) and received (↓) protocol messages. */
  up = new Map()
  down = new Map()
  /** Turns finished in time, by kind, and those that were not. */
  done = {}
  timedOut = {}
  /** Turn duration (request → its end), by kind. */
  durations = {}
  /** Text messages received, by type, and Warnings by code. */
  messages = {}
  warnings = {}
  /** Only turns started in [since, until] count. */
  since = 0
  until = Infinity

  count (table, key) {
    table[key] = (table[key] ?? 0) + 1
  }
}

export class ConversationSession {
  /** The stream() interface of loadgen.js. */
  measurement = null
  nextDue = 0
  closing = false
  /** @type {TurnLog | null} */
  log = null
  index
  #ws
  #seq = 0
  #mic
  #loudFrames = 0
  #barges = 0
  /** The turn in progress: its kind, state and how it ends. */
  #turn = null

  constructor (ws, index, mic = MICROPHONE) {
    this.#ws = ws
    this.index = index
    this.#mic = mic
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
  }

  get open () {
    return this.#ws.readyState === WebSocket.OPEN
  }

  measure (measurement) {
    this.measurement = measurement
  }

  sendFrame () {
    if (!this.open) return
    const frame = this.#loudFrames > 0 ? this.#mic.loud : this.#mic.silence
    if (this.#loudFrames > 0) this.#loudFrames--
    this.#ws.send(frame, { binary: true })
    this.measurement.sent += 1
  }

  close () {
    this.closing = true
    return closeSocket(this.#ws)
  }

  /** Runs one turn of `kind`; resolves when it ended or timed out. */
  turn (kind, log) {
    this.log = log
    return new Promise((resolve) => {
      const startedAt = nowMs()
      const finish = (ok) => {
        clearTimeout(timer)
        this.#turn = null
        if (startedAt < log.since || startedAt > log.until) return resolve()
        log.count(ok ? log.done : log.timedOut, kind)
        if (ok) (log.durations[kind] ??= new Samples()).add(nowMs() - startedAt)
        resolve()
      }
      const timer = setTimeout(() => finish(false), TURN_TIMEOUT_MS)
      this.#turn = { kind, finish, called: false, barged: false, audioAfterBarge: false, prompt: null }
      if (kind === 'prompt') {
        this.#turn.prompt = this.#token()
        this.#send({ type: 'UpdatePrompt', prompt: `Also mention ${this.#turn.prompt}.` }, this.#turn.prompt)
      } else {
        const token = this.#token()
        const content = kind === 'call' ? `get weather, city: ${token}` : kind === 'barge' ? `tell me a story ${token}` : `hello ${token}`
        this.#send({ type: 'InjectUserMessage', content }, token)
      }
    })
  }

  #token () {
    return `q${this.index}x${++this.#seq}`
  }

  #send (message, token) {
    if (!this.open) return
    this.log.up.set(token, { kind: message.type, at: nowMs() })
    this.#ws.send(JSON.stringify(message))
  }

  #received (key, kind) {
    this.log?.down.set(key, { kind, at: nowMs() })
  }

  #onMessage (data, isBinary) {
    const turn = this.#turn
    if (isBinary) {
      if (turn?.kind === 'barge') {
        if (!turn.barged && this.#loudFrames === 0 && !turn.bargeSent) {
          turn.bargeSent = true
          this.#loudFrames = Math.ceil(BARGE_MS / this.#mic.frameMs)
        } else if (turn.barged) {
          turn.audioAfterBarge = true
        }
      }
      return
    }
    const text = data.toString()
    const type = /"type":"([^"]*)"/.exec(text)?.[1] ?? 'invalid'
    const log = this.log
    if (log !== null) log.count(log.messages, type)
    switch (type) {
      case 'Warning':
        if (log !== null) log.count(log.warnings, /"code":"([^"]*)"/.exec(text)?.[1] ?? 'unknown')
        return
      case 'UserStartedSpeaking':
        this.#received(`barge:${this.index}:${++this.#barges}`, type)
        if (turn?.kind === 'barge') turn.barged = true
        return
      case 'FunctionCallRequest': {
        const message = JSON.parse(text)
        for (const call of message.functions) {
          const asked = /q\d+x\d+/.exec(call.arguments)?.[0]
          if (asked !== undefined) this.#received(`fc:${asked}`, type)
          const token = this.#token()
          this.#send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: `sunny ${token}` }, token)
        }
        if (turn !== null) turn.called = true
        return
      }
      case 'PromptUpdated':
        if (turn?.kind !== 'prompt') return
        this.#received(`prompt:${turn.prompt}`, type)
        turn.finish(true)
        return
      case 'AgentAudioDone':
        if (turn === null) return
        if (turn.kind === 'say' || (turn.kind === 'call' && turn.called) || (turn.kind === 'barge' && turn.audioAfterBarge)) turn.finish(true)
    }
  }
}

/** The up and down trips of every keyed message both ends saw, in ms, by the client message's type. */
export function tripsByKind (log, stamps, from, to) {
  const up = {}
  const down = {}
  const add = (table, kind, ms) => (table[kind] ??= new Samples()).add(ms)
  for (const [token, { kind, at }] of log.up) {
    const simAt = stamps.up[token]
    if (simAt !== undefined && at >= from && at <= to) add(up, kind, simAt - at)
  }
  for (const [key, { kind, at }] of log.down) {
    const simAt = stamps.down[key]
    if (simAt !== undefined && at >= from && at <= to) add(down, kind, at - simAt)
  }
  const all = (table) => {
    const merged = new Samples()
    for (const samples of Object.values(table)) samples.forEach((value) => merged.add(value))
    return { ...merged.summary(), count: merged.count }
  }
  return { up: summaries(up), down: summaries(down), upAll: all(up), downAll: all(down) }
}

/** p50/p95/p99/max and count of each table entry. */
export function summaries (table) {
  return Object.fromEntries(Object.entries(table).map(([kind, samples]) => [kind, { ...samples.summary(), count: samples.count }]))
}

/** Runs `kinds` in turn on every session, each on its own schedule (one turn every `intervalMs`, offset by session) until `stop()`. */
export function converse (sessions, log, { intervalMs, kinds = STREAMING_TURNS }) {
  const state = { stopped: false }
  const loops = sessions.map(async (session, index) => {
    await sleep(intervalMs * index / sessions.length)
    let due = nowMs()
    // Sessions start at different kinds, so that any window holds a mix of them.
    for (let k = index; !state.stopped && session.open; k++) {
      await session.turn(kinds[k % kinds.length], log)
      due = Math.max(due + intervalMs, nowMs())
      await sleep(due - nowMs())
    }
  })
  return {
    /** No turn starts after this; `finished` resolves once the last ones ended. */
    stop: () => { state.stopped = true },
    finished: () => Promise.all(loops)
  }
}

/** Runs `count` turns back to back on every session (`first`: the index of the first turn in `kinds`). */
export async function turnsBackToBack (sessions, log, count, first = 0, kinds = LONG_TURNS) {
  await Promise.all(sessions.map(async (session) => {
    for (let k = first; k < first + count && session.open; k++) await session.turn(kinds[k % kinds.length], log)
  }))
}

export function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}
