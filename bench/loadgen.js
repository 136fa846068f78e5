// The load generator: N Deepgram-protocol clients, each configured with Settings
// (linear16 24 kHz both ways) and then streaming one 20 ms mic frame every 20 ms on
// an absolute schedule (session i is offset by i/N of a frame, so the load is spread
// evenly rather than sent in bursts). In echo mode every frame comes back as agent
// audio, so each session is full duplex at 50 frames/s each way.
//
// A frame's send time is taken just before `send`, so if this process falls behind
// its schedule that delay is reported (send lag) but never counted as the hop's.

import WebSocket from 'ws'
import { FRAME_BYTES, FRAME_MS, HEADER_BYTES, MARK_AT, SAMPLE_RATE, SENT_AT, SEQ_AT, STAMP_AT, STAMP_MARK, frameTemplate, nowMs } from './frame.js'

/** The benchmark's Settings: linear16 24 kHz both ways, the prompt given, client-side `functions` if any. */
export function settingsMessage ({ prompt = 'You are a benchmark.', functions } = {}) {
  return JSON.stringify({
    type: 'Settings',
    audio: {
      input: { encoding: 'linear16', sample_rate: SAMPLE_RATE },
      output: { encoding: 'linear16', sample_rate: SAMPLE_RATE, container: 'none' }
    },
    agent: {
      listen: { provider: { type: 'deepgram', model: 'nova-3' } },
      think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt, ...(functions !== undefined && { functions }) },
      speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'alloy' } }
    }
  })
}

const SETTINGS = settingsMessage()

const template = frameTemplate()
const tone = template.subarray(HEADER_BYTES)

/** What one phase of streaming measured, over every session. */
export class Measurement {
  up = new Samples()
  down = new Samples()
  sent = 0
  received = 0
  duplicates = 0
  /** Echoed frames whose audio differs from what was sent. */
  corrupt = 0
  /** Echoed frames without the simulator's stamp: received, but their latency cannot be split. */
  unstamped = 0
  /** Binary bytes that do not make a whole frame. */
  strayBytes = 0
  /** How late this process sent frames against the schedule. */
  sendLag = new Samples()
  /** Text messages received while streaming, by type. */
  messages = {}
  /** Sessions closed by the far end while streaming. */
  dropped = 0
}

export class Samples {
  #values = new Float64Array(1024)
  #count = 0

  add (value) {
    if (this.#count === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2)
      grown.set(this.#values)
      this.#values = grown
    }
    this.#values[this.#count++] = value
  }

  get count () {
    return this.#count
  }

  forEach (fn) {
    for (let i = 0; i < this.#count; i++) fn(this.#values[i])
  }

  /** p50/p95/p99/max in ms (null when empty). */
  summary () {
    if (this.#count === 0) return { p50: null, p95: null, p99: null, max: null }
    const sorted = this.#values.slice(0, this.#count).sort()
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted[sorted.length - 1] }
  }
}

export class BenchSession {
  /** @type {Measurement | null} */
  measurement = null
  seq = 0
  nextDue = 0
  closing = false
  #ws
  /** The first sequence number of the current measurement: echoes of earlier frames are not counted. */
  #base = 0
  #seen = new Uint8Array(1024)

  constructor (ws) {
    this.#ws = ws
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
    ws.on('close', () => {
      if (this.measurement !== null && !this.closing) this.measurement.dropped += 1
    })
  }

  get open () {
    return this.#ws.readyState === WebSocket.OPEN
  }

  /** Frames sent from now on count towards `measurement`. */
  measure (measurement) {
    this.measurement = measurement
    this.#base = this.seq
    this.#seen.fill(0)
  }

  sendFrame () {
    if (!this.open) return
    template.writeUInt32LE(this.seq++, SEQ_AT)
    template.writeDoubleLE(nowMs(), SENT_AT)
    // ws copies (and masks) the frame before this returns: one template serves all.
    this.#ws.send(template, { binary: true })
    this.measurement.sent += 1
  }

  close () {
    this.closing = true
    return closeSocket(this.#ws)
  }

  #onMessage (data, isBinary) {
    const measurement = this.measurement
    if (measurement === null) return
    if (!isBinary) {
      const type = /"type":"([^"]*)"/.exec(data.toString())?.[1] ?? 'invalid'
      measurement.messages[type] = (measurement.messages[type] ?? 0) + 1
      return
    }
    const receivedAt = nowMs()
    let offset = 0
    for (; offset + FRAME_BYTES <= data.length; offset += FRAME_BYTES) this.#onFrame(data, offset, receivedAt)
    measurement.strayBytes += data.length - offset
  }

  #onFrame (data, offset, receivedAt) {
    const measurement = this.measurement
    const seq = data.readUInt32LE(offset + SEQ_AT)
    if (seq < this.#base) return // sent before this measurement began
    const index = seq - this.#base
    if (seq >= this.seq) {
      measurement.strayBytes += FRAME_BYTES // never sent: not a frame of ours
      return
    }
    if (index >= this.#seen.length) {
      const grown = new Uint8Array(Math.max(index + 1, this.#seen.length * 2))
      grown.set(this.#seen)
      this.#seen = grown
    }
    if (this.#seen[index] === 1) {
      measurement.duplicates += 1
      return
    }
    this.#seen[index] = 1
    measurement.received += 1
    if (!tone.equals(data.subarray(offset + HEADER_BYTES, offset + FRAME_BYTES))) measurement.corrupt += 1
    const sentAt = data.readDoubleLE(offset + SENT_AT)
    if (data.readUInt32LE(offset + MARK_AT) !== STAMP_MARK) {
      measurement.unstamped += 1
      return
    }
    const echoedAt = data.readDoubleLE(offset + STAMP_AT)
    measurement.up.add(echoedAt - sentAt)
    measurement.down.add(receivedAt - echoedAt)
  }
}

/** Closes a client socket (1000), or drops one still connecting; resolves once it is closed. */
export function closeSocket (ws) {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve()
  return new Promise((resolve) => {
    ws.once('close', resolve)
    if (ws.readyState === WebSocket.OPEN) ws.close(1000)
    else ws.terminate()
  })
}

/**
 * Opens `count` sessions (at most `concurrency` handshakes at a time), each sending
 * Settings at once and established on SettingsApplied. Failures are counted by reason.
 * `settings(index)` and `session(ws, index)` make another kind of session (bench/conversation.js).
 */
export async function establish (url, count, { concurrency = 20, timeoutMs = 10_000, settings = () => SETTINGS, session = (ws) => new BenchSession(ws) } = {}) {
  const sessions = []
  const failures = {}
  let next = 0
  const worker = async () => {
    while (next < count) {
      const index = next++
      try {
        sessions.push(session(await connect(url, settings(index), timeoutMs), index))
      } catch (error) {
        failures[error.message] = (failures[error.message] ?? 0) + 1
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return { sessions, failures }
}

function connect (url, settings, timeoutMs) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    const fail = (reason) => {
      clearTimeout(timer)
      ws.removeAllListeners('message')
      ws.on('error', () => {})
      ws.terminate()
      reject(new Error(reason))
    }
    const timer = setTimeout(() => fail('no SettingsApplied in time'), timeoutMs)
    ws.on('error', (error) => fail(`socket error: ${error.code ?? error.message}`))
    ws.on('unexpected-response', (_request, response) => fail(`HTTP ${response.statusCode}`))
    ws.on('close', (code) => fail(`closed (${code}) before SettingsApplied`))
    ws.on('open', () => ws.send(settings))
    ws.on('message', (data, isBinary) => {
      if (isBinary || !data.toString().includes('"type":"SettingsApplied"')) return
      clearTimeout(timer)
      ws.removeAllListeners()
      resolve(ws)
    })
  })
}

/**
 * Streams every session on its schedule into `measurement` until `stop()`;
 * `measure(next)` switches to a new measurement without a gap in the stream. Frames
 * missed while this process was busy are sent late (catch-up), so the rate stays exact.
 */
export function stream (sessions, measurement, frameMs = FRAME_MS) {
  const start = nowMs() + frameMs
  let current = measurement
  sessions.forEach((session, index) => {
    session.measure(current)
    session.nextDue = start + index * frameMs / sessions.length
  })
  let timer
  const tick = () => {
    const now = nowMs()
    for (const session of sessions) {
      while (session.nextDue <= now) {
        current.sendLag.add(now - session.nextDue)
        session.sendFrame()
        session.nextDue += frameMs
      }
    }
    timer = setTimeout(tick, 1)
  }
  timer = setTimeout(tick, frameMs)
  return {
    measure (next) {
      current = next
      for (const session of sessions) session.measure(next)
    },
    stop: () => clearTimeout(timer)
  }
}

/** Resolves once every frame sent has come back, or after `timeoutMs`. */
export async function drain (measurement, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (measurement.received < measurement.sent && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
