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
// Resampling is a streaming polyphase windowed-sinc filter with an exact rational
// phase (no drift over any stream length), stateful across frames, so output does not
// depend on how the input was split into frames: no clicks at frame edges.

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
 * Streaming PCM16 LE mono resampler: a polyphase windowed-sinc FIR. Output sample n
 * lies at input time n × from/to, tracked as an exact fraction (`phase` / `up` of an
 * input sample), so there is no drift over any stream length; it is the weighted sum
 * of the `taps` input samples around that time, with the weights of its phase
 * precomputed (see `kernelFor`). The same sums in the same order whatever the framing:
 * output does not depend on how the input was split into frames.
 *
 * The filter's look-ahead is paid as a constant delay of half the filter (under 1 ms
 * in and out of 24 kHz for 16 and 48 kHz clients, 2 ms from 24 to 8 kHz) rather than
 * by holding output back: an output sample is written as soon as the input sample at
 * its time has arrived, so every frame in gives the frame's duration out (± one sample)
 * and a stream of S input samples gives exactly ⌈S × to/from⌉.
 */
class Pcm16Resampler {
  /** Output rate / gcd: input-sample positions are counted in 1/up steps. */
  readonly #up: number
  /** Input rate / gcd: how far one output sample advances, in 1/up steps. */
  readonly #down: number
  readonly #kernel: Kernel
  /** The unpaired last byte of the previous frame, or -1. */
  #oddByte = -1
  /** Input samples: the last `taps − 1` the next output needs, then this frame's. */
  #history: Float64Array
  /** How many samples of `#history` are filled. */
  #filled = 0
  /** Where in `#history` the next output's taps start. */
  #start = 0
  /** The next output's position past `#start + half − 1`, in 1/up steps. */
  #phase = 0

  constructor (fromRate: number, toRate: number) {
    const divisor = gcd(fromRate, toRate)
    this.#up = toRate / divisor
    this.#down = fromRate / divisor
    this.#kernel = kernelFor(fromRate, toRate, this.#up)
    this.#history = new Float64Array(2 * this.#kernel.taps)
    this.reset()
  }

  reset (): void {
    this.#oddByte = -1
    // Silence before the stream's start: the first outputs are the filter ramping up.
    this.#history.fill(0, 0, this.#kernel.taps - 1)
    this.#filled = this.#kernel.taps - 1
    this.#start = 0
    this.#phase = 0
  }

  /** Exactly how many bytes the next `process` of `inputBytes` bytes writes. */
  outputBytes (inputBytes: number): number {
    const samples = Math.floor((inputBytes + (this.#oddByte >= 0 ? 1 : 0)) / 2)
    // Outputs k = 0, 1, … need #start + ⌊(#phase + k × down) / up⌋ + taps ≤ filled.
    const room = this.#filled + samples - this.#kernel.taps - this.#start
    return room < 0 ? 0 : 2 * Math.ceil(((room + 1) * this.#up - this.#phase) / this.#down)
  }

  /** Resamples `src` into `dst` (which must hold `outputBytes(src.length)`); returns bytes written. */
  process (src: Uint8Array, dst: Uint8Array): number {
    this.#decode(src)
    const written = this.#filter(dst)
    // Keep only what later outputs need (fewer than `taps` samples).
    this.#history.copyWithin(0, this.#start, this.#filled)
    this.#filled -= this.#start
    this.#start = 0
    return written
  }

  /** Appends PCM16 LE bytes (after any byte carried from the last frame) to `#history`. */
  #decode (src: Uint8Array): void {
    const count = Math.floor((src.length + (this.#oddByte >= 0 ? 1 : 0)) / 2)
    if (this.#history.length < this.#filled + count) {
      const grown = new Float64Array(Math.max(this.#filled + count, 2 * this.#history.length))
      grown.set(this.#history.subarray(0, this.#filled))
      this.#history = grown
    }
    const samples = this.#history
    let k = this.#filled
    const end = k + count
    let read = 0
    if (this.#oddByte >= 0 && count > 0) {
      samples[k++] = ((this.#oddByte | (src[0]! << 8)) << 16) >> 16
      read = 1
      this.#oddByte = -1
    }
    for (; k < end; k++, read += 2) samples[k] = ((src[read]! | (src[read + 1]! << 8)) << 16) >> 16
    if (read < src.length) this.#oddByte = src[read]!
    this.#filled = end
  }

  #filter (dst: Uint8Array): number {
    const samples = this.#history
    const { taps, rowsPerStep, coefficients } = this.#kernel
    const up = this.#up
    const down = this.#down
    const last = this.#filled - taps
    let start = this.#start
    let phase = this.#phase
    let written = 0
    while (start <= last) {
      let row = Math.round(phase * rowsPerStep) * taps
      let sum = 0
      for (let i = start, end = start + taps; i < end; i++) sum += samples[i]! * coefficients[row++]!
      // The filter overshoots on steep full-scale edges: saturate rather than wrap.
      const value = Math.round(sum)
      const clamped = value > 32767 ? 32767 : value < -32768 ? -32768 : value
      dst[written++] = clamped & 0xff
      dst[written++] = (clamped >> 8) & 0xff
      phase += down
      while (phase >= up) {
        phase -= up
        start++
      }
    }
    this.#start = start
    this.#phase = phase
    return written
  }
}

/**
 * The filter for one pair of rates: `rows` phases of `taps` coefficients each, row r
 * for an output r / rowsPerStep of an input sample past the middle of its taps.
 */
interface Kernel { taps: number, rowsPerStep: number, coefficients: Float64Array }

/**
 * The filter's half-length in samples of the lower of the two rates (it spans more
 * input samples when downsampling). With the cutoff and window below, measured by
 * `npm run bench:audio`: flat within ±0.1 dB up to 0.9 × the lower Nyquist frequency,
 * and what would alias (or image) into that band attenuated by about 39 dB.
 */
const HALF_TAPS = 16
/** Cutoff (−6 dB) as a fraction of the lower Nyquist frequency. */
const CUTOFF = 1
/** Kaiser window shape: the trade between stopband attenuation and transition width. */
const KAISER_BETA = 6
/** Bound on a kernel's coefficients (256 KB): odd rate pairs with many phases get the nearest of fewer. */
const MAX_COEFFICIENTS = 32768
/** Kernels by rate pair, shared by every session at those rates (read-only); bounded. */
const kernels = new Map<string, Kernel>()
const MAX_KERNELS = 16

function kernelFor (fromRate: number, toRate: number, up: number): Kernel {
  const key = `${fromRate}:${toRate}`
  const cached = kernels.get(key)
  if (cached !== undefined) return cached
  const kernel = designKernel(fromRate, toRate, up)
  if (kernels.size >= MAX_KERNELS) kernels.delete(kernels.keys().next().value!)
  kernels.set(key, kernel)
  return kernel
}

function designKernel (fromRate: number, toRate: number, up: number): Kernel {
  // In units of input samples: the cutoff and the half-length scale with the input rate.
  const cutoff = CUTOFF * Math.min(fromRate, toRate) / fromRate
  const half = Math.ceil(HALF_TAPS * Math.max(1, fromRate / toRate))
  const taps = 2 * half
  // Exact phases when there are few of them; else the nearest of as many as fit, plus a
  // last row one whole input sample on, where rounding may land.
  const exact = up * taps <= MAX_COEFFICIENTS
  const rows = exact ? up : Math.floor(MAX_COEFFICIENTS / taps) - 1
  const coefficients = new Float64Array((exact ? rows : rows + 1) * taps)
  const windowNorm = 1 / besselI0(KAISER_BETA)
  for (let row = 0; row < coefficients.length / taps; row++) {
    let sum = 0
    for (let m = 0; m < taps; m++) {
      const t = m - (half - 1) - row / rows
      const x = t / half
      const window = x * x >= 1 ? 0 : besselI0(KAISER_BETA * Math.sqrt(1 - x * x)) * windowNorm
      const value = cutoff * sinc(cutoff * t) * window
      coefficients[row * taps + m] = value
      sum += value
    }
    // Unity gain at DC in every phase: no ripple at the phase rate.
    for (let m = 0; m < taps; m++) coefficients[row * taps + m]! /= sum
  }
  return { taps, rowsPerStep: rows / up, coefficients }
}

function sinc (x: number): number {
  return x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x)
}

/** The modified Bessel function of the first kind, order 0 (its power series). */
function besselI0 (x: number): number {
  let sum = 1
  let term = 1
  const quarterSquare = x * x / 4
  for (let k = 1; term > sum * 1e-16; k++) {
    term *= quarterSquare / (k * k)
    sum += term
  }
  return sum
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
