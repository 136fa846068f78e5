// The audio hot path between Deepgram Voice Agent clients and the OpenAI Realtime API.
//
// OpenAI accepts `audio/pcm` (PCM16 LE mono at 24 kHz only), `audio/pcmu` and
// `audio/pcma` (G.711 at 8 kHz). Deepgram clients choose their own formats in
// `Settings.audio`, so:
//
// | client format                  | upstream     | per-frame work                        |
// |--------------------------------|--------------|---------------------------------------|
// | linear16 @ 24000               | audio/pcm    | base64 only (odd-byte carry)          |
// | linear16 @ 8000–96000 (other)  | audio/pcm    | resample to / from 24 kHz             |
// | mulaw @ 8000                   | audio/pcmu   | base64 only                           |
// | alaw @ 8000                    | audio/pcma   | base64 only                           |
//
// Anything else (opus, mp3, flac, aac, containers…) is refused at Settings with an
// AudioFormatError, rather than being streamed as noise.
//
// Defaults follow Deepgram's "Configure the Voice Agent" reference: input linear16 at
// 16000 Hz, output linear16 at 24000 Hz, output container "none". The @deepgram/sdk
// type docs say 24000 for input instead; DEFAULT_INPUT_FORMAT is the one place to
// change should that prove to be Deepgram's behaviour. A missing, null or empty field
// takes its default; G.711 without a sample_rate means 8000 Hz.
//
// Resampling is streaming linear interpolation with an exact rational phase (no
// drift over any stream length) and, when downsampling, a 4th-order Butterworth
// low-pass in front to keep aliasing down. Both are stateful across frames, so output
// does not depend on how the input was split into frames: no clicks at frame edges.

import { ErrorCode } from './protocol/deepgram.js'

export type OpenAIAudioFormat = { type: 'audio/pcm', rate: 24000 } | { type: 'audio/pcmu' } | { type: 'audio/pcma' }

/** A client's audio format, normalized: `encoding` is 'linear16', 'mulaw' or 'alaw'. */
export interface ClientAudioFormat { encoding: string, sampleRate: number }

/** The Deepgram fields this module reads from `Settings.audio.input` / `.output`. */
export interface DeepgramAudioSpec { encoding?: unknown, sample_rate?: unknown, container?: unknown }

export class AudioFormatError extends Error {
  readonly code = ErrorCode.unsupportedAudio
  override name = 'AudioFormatError'
}

/** The only PCM rate OpenAI Realtime accepts. */
export const OPENAI_PCM_RATE = 24000
/** G.711 (mulaw / alaw) is 8 kHz by definition. */
export const G711_RATE = 8000
export const MIN_LINEAR16_RATE = 8000
export const MAX_LINEAR16_RATE = 96000
export const DEFAULT_INPUT_FORMAT: Readonly<ClientAudioFormat> = { encoding: 'linear16', sampleRate: 16000 }
export const DEFAULT_OUTPUT_FORMAT: Readonly<ClientAudioFormat> = { encoding: 'linear16', sampleRate: OPENAI_PCM_RATE }

const SUPPORTED = `linear16 (PCM16 mono, ${MIN_LINEAR16_RATE}–${MAX_LINEAR16_RATE} Hz; ` +
  `${OPENAI_PCM_RATE} avoids resampling), mulaw (${G711_RATE} Hz) or alaw (${G711_RATE} Hz)`

/**
 * Validate and map a Deepgram input/output audio spec to the upstream format.
 * Throws AudioFormatError with a message a user can act on (what was asked, what is
 * supported). A missing spec, encoding or sample_rate takes Deepgram's default.
 */
export function toOpenAIFormat (
  spec: DeepgramAudioSpec | null | undefined,
  direction: 'input' | 'output'
): { upstream: OpenAIAudioFormat, client: ClientAudioFormat } {
  const where = `audio.${direction}`
  if (spec === null || spec === undefined) spec = {}
  if (typeof spec !== 'object') {
    throw new AudioFormatError(`${where} must be an object such as {"encoding":"linear16","sample_rate":24000}; got ${describe(spec)}`)
  }
  const encoding = readEncoding(spec.encoding, where)
  const sampleRate = readSampleRate(spec.sample_rate, encoding, direction, where)
  // Deepgram's input spec has no container; only the output one is checked.
  if (direction === 'output') checkContainer(spec.container, where)
  return { upstream: upstreamFormat(encoding), client: { encoding, sampleRate } }
}

/** Duration in ms of `bytes` of audio in the given client format (for buffering limits / commit minimums). */
export function audioDurationMs (format: ClientAudioFormat, bytes: number): number {
  return bytes * 1000 / (bytesPerSample(format) * format.sampleRate)
}

/** Client → upstream: converts raw client audio bytes into the base64 payload of input_audio_buffer.append. Stateful per session. */
export class InputAudioConverter {
  readonly #pcm16: boolean
  readonly #resampler: Pcm16Resampler | undefined
  /** The unpaired last byte of a PCM16 frame (24 kHz passthrough), or -1. */
  #oddByte = -1
  #scratch: Buffer = Buffer.alloc(0)

  constructor (client: ClientAudioFormat) {
    const { encoding, sampleRate } = checkClientFormat(client, 'input')
    this.#pcm16 = encoding === 'linear16'
    this.#resampler = this.#pcm16 && sampleRate !== OPENAI_PCM_RATE
      ? new Pcm16Resampler(sampleRate, OPENAI_PCM_RATE)
      : undefined
  }

  /** Returns the base64 audio for this chunk ('' when nothing complete yet, e.g. a single odd byte). */
  push (chunk: Buffer): string {
    const resampler = this.#resampler
    if (resampler !== undefined) {
      const out = this.#scratchOf(resampler.outputBytes(chunk.length))
      const bytes = resampler.process(chunk, out)
      return bytes === 0 ? '' : out.toString('base64', 0, bytes)
    }
    if (!this.#pcm16) return chunk.toString('base64')
    return this.#passthroughPcm16(chunk)
  }

  #passthroughPcm16 (chunk: Buffer): string {
    if (this.#oddByte < 0) {
      const even = chunk.length & ~1
      if (even === chunk.length) return chunk.toString('base64')
      this.#oddByte = chunk[even]!
      return even === 0 ? '' : chunk.toString('base64', 0, even)
    }
    const total = chunk.length + 1
    const even = total & ~1
    if (even === 0) return ''
    const out = this.#scratchOf(even)
    out[0] = this.#oddByte
    chunk.copy(out, 1, 0, even - 1)
    this.#oddByte = even < total ? chunk[chunk.length - 1]! : -1
    return out.toString('base64', 0, even)
  }

  #scratchOf (bytes: number): Buffer {
    if (this.#scratch.length < bytes) this.#scratch = growScratch(this.#scratch, bytes)
    return this.#scratch
  }
}

/** Upstream → client: decodes the base64 `delta` of response.output_audio.delta straight into a Buffer in the client's format (resampling 24k → client rate for linear16). Stateful per session; returned Buffers always have even length for linear16. */
export class OutputAudioConverter {
  readonly #pcm16: boolean
  readonly #resampler: Pcm16Resampler | undefined
  /** The unpaired last byte of an upstream delta (24 kHz passthrough), or -1. */
  #oddByte = -1
  /** Decoded upstream PCM waiting to be resampled; reused across deltas. */
  #decoded: Buffer = Buffer.alloc(0)

  constructor (client: ClientAudioFormat) {
    const { encoding, sampleRate } = checkClientFormat(client, 'output')
    this.#pcm16 = encoding === 'linear16'
    this.#resampler = this.#pcm16 && sampleRate !== OPENAI_PCM_RATE
      ? new Pcm16Resampler(OPENAI_PCM_RATE, sampleRate)
      : undefined
  }

  push (base64Delta: string): Buffer {
    const resampler = this.#resampler
    if (resampler !== undefined) {
      const capacity = base64DecodedCapacity(base64Delta.length)
      if (this.#decoded.length < capacity) this.#decoded = growScratch(this.#decoded, capacity)
      const decodedBytes = this.#decoded.write(base64Delta, 0, 'base64')
      const input = this.#decoded.subarray(0, decodedBytes)
      const out = Buffer.allocUnsafe(resampler.outputBytes(decodedBytes))
      resampler.process(input, out)
      return out
    }
    if (!this.#pcm16) return Buffer.from(base64Delta, 'base64')
    return this.#passthroughPcm16(base64Delta)
  }

  /** Drop any partial state (call on barge-in / a new response so the next response starts clean). */
  reset (): void {
    this.#oddByte = -1
    this.#resampler?.reset()
  }

  #passthroughPcm16 (base64Delta: string): Buffer {
    if (this.#oddByte < 0) {
      const out = Buffer.from(base64Delta, 'base64')
      if ((out.length & 1) === 0) return out
      this.#oddByte = out[out.length - 1]!
      return out.subarray(0, out.length - 1)
    }
    const out = Buffer.allocUnsafe(1 + base64DecodedCapacity(base64Delta.length))
    out[0] = this.#oddByte
    const total = 1 + out.write(base64Delta, 1, 'base64')
    const even = total & ~1
    this.#oddByte = even < total ? out[even]! : -1
    return out.subarray(0, even)
  }
}

/**
 * Streaming PCM16 LE mono resampler: linear interpolation between neighbouring input
 * samples, positions tracked as an exact fraction (`phase` / `up` of an input sample)
 * so that the output length over a stream is exactly input × to/from (less the one
 * held-back input sample) and frame boundaries are invisible. When downsampling, the
 * input first goes through a Butterworth low-pass at 0.4 × the output rate, which
 * keeps most of the energy above the new Nyquist from folding back into the band.
 *
 * Latency is one input sample: an output sample is written once the input sample
 * after it has arrived.
 */
class Pcm16Resampler {
  /** Output rate / gcd: input-sample positions are counted in 1/up steps. */
  readonly #up: number
  /** Input rate / gcd: how far one output sample advances, in 1/up steps. */
  readonly #down: number
  readonly #lowPass: LowPass | undefined
  /** The unpaired last byte of the previous frame, or -1. */
  #oddByte = -1
  #primed = false
  /** The last input sample (after the low-pass), the left neighbour of the next output. */
  #last = 0
  /** Position of the next output sample to the right of `#last`, in 1/up steps. */
  #phase = 0
  /** This frame's input samples; reused across frames. */
  #samples = new Float64Array(0)

  constructor (fromRate: number, toRate: number) {
    const divisor = gcd(fromRate, toRate)
    this.#up = toRate / divisor
    this.#down = fromRate / divisor
    this.#lowPass = toRate < fromRate ? new LowPass(0.4 * toRate, fromRate) : undefined
  }

  reset (): void {
    this.#oddByte = -1
    this.#primed = false
    this.#last = 0
    this.#phase = 0
    this.#lowPass?.reset()
  }

  /** Exactly how many bytes the next `process` of `inputBytes` bytes writes. */
  outputBytes (inputBytes: number): number {
    let samples = Math.floor((inputBytes + (this.#oddByte >= 0 ? 1 : 0)) / 2)
    if (!this.#primed && samples > 0) samples -= 1 // the first sample only primes `#last`
    const span = samples * this.#up - this.#phase
    return span > 0 ? 2 * Math.ceil(span / this.#down) : 0
  }

  /** Resamples `src` into `dst` (which must hold `outputBytes(src.length)`); returns bytes written. */
  process (src: Uint8Array, dst: Uint8Array): number {
    const count = this.#decode(src)
    this.#lowPass?.filter(this.#samples, count)
    return this.#interpolate(count, dst)
  }

  /** PCM16 LE bytes (after any byte carried from the last frame) → `#samples`; returns the count. */
  #decode (src: Uint8Array): number {
    const count = Math.floor((src.length + (this.#oddByte >= 0 ? 1 : 0)) / 2)
    if (this.#samples.length < count) this.#samples = new Float64Array(Math.max(count, this.#samples.length * 2))
    const samples = this.#samples
    let read = 0
    let k = 0
    if (this.#oddByte >= 0 && count > 0) {
      samples[k++] = ((this.#oddByte | (src[0]! << 8)) << 16) >> 16
      read = 1
      this.#oddByte = -1
    }
    for (; k < count; k++, read += 2) samples[k] = ((src[read]! | (src[read + 1]! << 8)) << 16) >> 16
    if (read < src.length) this.#oddByte = src[read]!
    return count
  }

  #interpolate (count: number, dst: Uint8Array): number {
    const samples = this.#samples
    const up = this.#up
    const down = this.#down
    const invUp = 1 / up
    let last = this.#last
    let phase = this.#phase
    let written = 0
    let k = 0
    if (!this.#primed && count > 0) {
      this.#primed = true
      last = samples[k++]!
    }
    for (; k < count; k++) {
      const sample = samples[k]!
      for (; phase < up; phase += down) {
        const value = Math.round(last + (sample - last) * phase * invUp)
        const clamped = value > 32767 ? 32767 : value < -32768 ? -32768 : value
        dst[written++] = clamped & 0xff
        dst[written++] = (clamped >> 8) & 0xff
      }
      phase -= up
      last = sample
    }
    this.#last = last
    this.#phase = phase
    return written
  }
}

/**
 * 4th-order Butterworth low-pass: two cascaded biquads (RBJ cookbook), in direct form I
 * and run in one loop. A recursive filter's speed is bound by the latency of its
 * feedback chain; this shape keeps that chain to one multiply and one subtraction per
 * sample and lets the two sections overlap, about twice as fast as two separate passes.
 */
class LowPass {
  readonly #first: BiquadCoefficients
  readonly #second: BiquadCoefficients
  // Inputs of the first section, outputs of the first (= inputs of the second), outputs of the second.
  #x1 = 0
  #x2 = 0
  #m1 = 0
  #m2 = 0
  #y1 = 0
  #y2 = 0

  constructor (cutoffHz: number, sampleRate: number) {
    // The pole-pair Qs of a 4th-order Butterworth.
    this.#first = lowPassBiquad(cutoffHz, sampleRate, 0.5411961)
    this.#second = lowPassBiquad(cutoffHz, sampleRate, 1.3065630)
  }

  /** Filters `samples[0, count)` in place, carrying state over from the previous call. */
  filter (samples: Float64Array, count: number): void {
    const { gain: g, a1, a2 } = this.#first
    const { gain: h, a1: c1, a2: c2 } = this.#second
    let x1 = this.#x1
    let x2 = this.#x2
    let m1 = this.#m1
    let m2 = this.#m2
    let y1 = this.#y1
    let y2 = this.#y2
    for (let i = 0; i < count; i++) {
      const x0 = samples[i]!
      const m0 = (g * (x0 + 2 * x1 + x2) - a2 * m2) - a1 * m1
      const y0 = (h * (m0 + 2 * m1 + m2) - c2 * y2) - c1 * y1
      x2 = x1
      x1 = x0
      m2 = m1
      m1 = m0
      y2 = y1
      y1 = y0
      samples[i] = y0
    }
    this.#x1 = x1
    this.#x2 = x2
    this.#m1 = m1
    this.#m2 = m2
    this.#y1 = y1
    this.#y2 = y2
  }

  reset (): void {
    this.#x1 = this.#x2 = this.#m1 = this.#m2 = this.#y1 = this.#y2 = 0
  }
}

/** A low-pass biquad normalized by a0; its feed-forward taps are gain × (1, 2, 1). */
interface BiquadCoefficients { gain: number, a1: number, a2: number }

function lowPassBiquad (cutoffHz: number, sampleRate: number, q: number): BiquadCoefficients {
  const w0 = 2 * Math.PI * cutoffHz / sampleRate
  const cos = Math.cos(w0)
  const alpha = Math.sin(w0) / (2 * q)
  const a0 = 1 + alpha
  return { gain: (1 - cos) / 2 / a0, a1: -2 * cos / a0, a2: (1 - alpha) / a0 }
}

function readEncoding (value: unknown, where: string): string {
  if (value === undefined || value === null || value === '') return 'linear16'
  if (typeof value !== 'string') {
    throw new AudioFormatError(`${where}.encoding must be a string; got ${describe(value)}. Supported: ${SUPPORTED}`)
  }
  const encoding = value.trim().toLowerCase()
  if (encoding === 'linear16' || encoding === 'mulaw' || encoding === 'alaw') return encoding
  throw new AudioFormatError(
    `${where}.encoding ${describe(value)} is not supported: OpenAI Realtime streams raw audio only, ` +
    `so use ${SUPPORTED}`
  )
}

function readSampleRate (value: unknown, encoding: string, direction: 'input' | 'output', where: string): number {
  if (value === undefined || value === null) {
    if (encoding !== 'linear16') return G711_RATE
    return (direction === 'input' ? DEFAULT_INPUT_FORMAT : DEFAULT_OUTPUT_FORMAT).sampleRate
  }
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new AudioFormatError(`${where}.sample_rate must be an integer number of Hz; got ${describe(value)}. Supported: ${SUPPORTED}`)
  }
  if (encoding === 'linear16') {
    if (value >= MIN_LINEAR16_RATE && value <= MAX_LINEAR16_RATE) return value
    throw new AudioFormatError(
      `${where}.sample_rate ${value} Hz is not supported for linear16: ` +
      `use ${MIN_LINEAR16_RATE}–${MAX_LINEAR16_RATE} Hz (${OPENAI_PCM_RATE} avoids resampling)`
    )
  }
  if (value === G711_RATE) return value
  throw new AudioFormatError(
    `${where}.sample_rate ${value} Hz is not supported for ${encoding}: G.711 (mulaw/alaw) is ${G711_RATE} Hz only. ` +
    `Use sample_rate ${G711_RATE}, or linear16 for other rates`
  )
}

function checkContainer (value: unknown, where: string): void {
  if (value === undefined || value === null || value === '') return
  if (typeof value === 'string' && value.trim().toLowerCase() === 'none') return
  throw new AudioFormatError(
    `${where}.container ${describe(value)} is not supported: only raw 'none' container is supported for streaming. ` +
    'Set container to "none" or omit it'
  )
}

function checkClientFormat (client: ClientAudioFormat, direction: 'input' | 'output'): ClientAudioFormat {
  return toOpenAIFormat({ encoding: client.encoding, sample_rate: client.sampleRate }, direction).client
}

function upstreamFormat (encoding: string): OpenAIAudioFormat {
  if (encoding === 'mulaw') return { type: 'audio/pcmu' }
  if (encoding === 'alaw') return { type: 'audio/pcma' }
  return { type: 'audio/pcm', rate: OPENAI_PCM_RATE }
}

function bytesPerSample (format: ClientAudioFormat): number {
  return format.encoding === 'linear16' ? 2 : 1
}

/** An upper bound on the bytes `length` characters of base64 decode to. */
function base64DecodedCapacity (length: number): number {
  return Math.ceil(length / 4) * 3
}

/** Scratch buffers live as long as the session: keep them off the shared pool, and grow geometrically. */
function growScratch (current: Buffer, bytes: number): Buffer {
  return Buffer.allocUnsafeSlow(Math.max(bytes, current.length * 2, 1024))
}

function gcd (a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b]
  return a
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return typeof value
}
