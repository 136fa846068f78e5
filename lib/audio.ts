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
// Defaults follow Deepgram's Voice Agent API specification (its AsyncAPI document, which
// the SDKs' types are generated from): input linear16 at 24000 Hz, output linear16 at
// 24000 Hz, output container "none". Deepgram's older "Configure the Voice Agent" page
// still says 16000 Hz for input; the specification is the newer word. A missing, null or
// empty field takes its default; G.711 without a sample_rate means 8000 Hz.
//
// Resampling is SpeexDSP's resampler in WebAssembly (see Pcm16Resampler): streaming,
// stateful across frames, so output does not depend on how the input was split into
// frames.

import createSpeexModule from '@echogarden/speex-resampler-wasm/simd'
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
export const DEFAULT_INPUT_FORMAT: Readonly<ClientAudioFormat> = { encoding: 'linear16', sampleRate: OPENAI_PCM_RATE }
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

/** Until a converter needs one: shared (a converter never writes into it), so an idle session holds no buffer. */
const NO_SCRATCH = Buffer.alloc(0)

/** Client → upstream: converts raw client audio bytes into the base64 payload of input_audio_buffer.append. Stateful per session. */
export class InputAudioConverter {
  readonly #pcm16: boolean
  readonly #resampler: Pcm16Resampler | undefined
  /** The unpaired last byte of a PCM16 frame (24 kHz passthrough), or -1. */
  #oddByte = -1
  #scratch: Buffer = NO_SCRATCH

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
      const bytes = resampler.fromBytes(chunk)
      return bytes === 0 ? '' : heap().toString('base64', scratch.output.pointer, scratch.output.pointer + bytes)
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
      const bytes = resampler.fromBase64(base64Delta)
      const out = Buffer.allocUnsafe(bytes)
      heap().copy(out, 0, scratch.output.pointer, scratch.output.pointer + bytes)
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
 * Streaming PCM16 LE mono resampler: SpeexDSP's (xiph.org), a polyphase windowed-sinc
 * filter, compiled to WebAssembly with SIMD (@echogarden/speex-resampler-wasm). Its
 * phase is exact integer arithmetic, so there is no drift over any stream length, and
 * its output does not depend on how the input was split into frames: no clicks at
 * frame edges. The filter's delay (at QUALITY: 1.3 ms between 48 and 24 kHz, 2 ms
 * between 16 and 24 kHz, 4 ms between 8 and 24 kHz) comes out as silence in front
 * rather than as output held back: a stream of S input samples gives exactly
 * ⌈S × to/from⌉ output samples, so every 20 ms frame in gives 20 ms out (± one sample).
 *
 * One WebAssembly module serves the process; each resampler owns a state in its memory
 * (a few KB), freed when the resampler is garbage-collected. Frames pass through one
 * scratch area there: client bytes (or a decoded base64 delta) are written straight
 * into it, and the output is read straight out of it.
 */
class Pcm16Resampler {
  readonly #ratio: number
  /** The SpeexResamplerState, in WebAssembly memory. */
  readonly #state: number
  /** The unpaired last byte of the previous frame, or -1. */
  #oddByte = -1

  constructor (fromRate: number, toRate: number) {
    this.#ratio = toRate / fromRate
    this.#state = speex._speex_resampler_init(1, fromRate, toRate, QUALITY, scratch.error)
    // Rates are validated before this: only an exhausted WebAssembly memory (2 GB) fails.
    if (this.#state === 0) throw new Error(`could not start a ${fromRate} → ${toRate} Hz resampler (SpeexDSP error ${speex.HEAP32[scratch.error >> 2]})`)
    states.register(this, this.#state)
  }

  reset (): void {
    this.#oddByte = -1
    speex._speex_resampler_reset_mem(this.#state)
  }

  /** Resamples `chunk`; returns how many bytes of output `heap()` now holds at `scratch.output.pointer`. */
  fromBytes (chunk: Uint8Array): number {
    const at = this.#stage(chunk.length)
    heap().set(chunk, at)
    return this.#run(at - scratch.input.pointer + chunk.length)
  }

  /** Resamples the PCM16 bytes of a base64 string, as `fromBytes`. */
  fromBase64 (base64: string): number {
    const at = this.#stage(base64DecodedCapacity(base64.length))
    return this.#run(at - scratch.input.pointer + heap().write(base64, at, 'base64'))
  }

  /** Makes room for `bytes` more input and puts any carried byte first; returns where the new bytes go. */
  #stage (bytes: number): number {
    // ⌈S × ratio⌉ samples are out after S in, so n more give at most ⌈n × ratio⌉ (room for one more).
    reserve(bytes + 1, 2 * (Math.ceil((bytes + 1) / 2 * this.#ratio) + 1))
    if (this.#oddByte < 0) return scratch.input.pointer
    heap()[scratch.input.pointer] = this.#oddByte
    this.#oddByte = -1
    return scratch.input.pointer + 1
  }

  /** Resamples the `bytes` staged at `scratch.input.pointer`, keeping an odd last byte for the next frame. */
  #run (bytes: number): number {
    if ((bytes & 1) === 1) this.#oddByte = heap()[scratch.input.pointer + bytes - 1]!
    const samples = bytes >> 1
    if (samples === 0) return 0
    const lengths = speex.HEAPU32
    const inLength = scratch.lengths >> 2
    lengths[inLength] = samples
    lengths[inLength + 1] = scratch.output.bytes >> 1
    speex._speex_resampler_process_int(this.#state, 0, scratch.input.pointer, scratch.lengths, scratch.output.pointer, scratch.lengths + 4)
    if (lengths[inLength] !== samples) throw new Error(`the resampler took ${lengths[inLength]} of ${samples} samples`)
    return 2 * lengths[inLength + 1]!
  }
}

/** SpeexDSP's default quality (of 0–10): `npm run bench:audio` shows what it gives and costs. */
const QUALITY = 4

const speex = await createSpeexModule()

/** Frees a resampler's state in WebAssembly memory once the resampler is gone. */
const states = new FinalizationRegistry<number>((state) => speex._speex_resampler_destroy(state))

/** A region of WebAssembly memory that grows when needed. */
interface Area { pointer: number, bytes: number }

/**
 * Where frames pass through WebAssembly memory, shared by every resampler: a frame is
 * resampled in one synchronous call, so no two use it at once.
 */
const scratch = {
  input: { pointer: 0, bytes: 0 },
  output: { pointer: 0, bytes: 0 },
  /** Two uint32: the input and output lengths, in samples, passed to and returned by speex. */
  lengths: allocate(8),
  error: allocate(4)
}

/** Makes the scratch areas hold at least these many bytes. */
function reserve (inputBytes: number, outputBytes: number): void {
  if (scratch.input.bytes < inputBytes) grow(scratch.input, inputBytes)
  if (scratch.output.bytes < outputBytes) grow(scratch.output, outputBytes)
}

/** Replaces `area` with one of at least `bytes` (geometrically more, to grow rarely). */
function grow (area: Area, bytes: number): void {
  const size = Math.max(bytes, 2 * area.bytes, 4096)
  speex._free(area.pointer)
  // Empty until the new one exists, so a failed allocation leaves nothing dangling.
  area.pointer = area.bytes = 0
  area.pointer = allocate(size)
  area.bytes = size
}

function allocate (bytes: number): number {
  const pointer = speex._malloc(bytes)
  // Only when the WebAssembly memory is at its 2 GB limit.
  if (pointer === 0) throw new Error(`out of WebAssembly memory for ${bytes} bytes of audio`)
  return pointer
}

let heapView: Buffer = Buffer.alloc(0)

/** WebAssembly memory as a Buffer; a new one after the memory grew (which detaches the old). */
function heap (): Buffer {
  const memory = speex.HEAPU8
  if (heapView.buffer !== memory.buffer) heapView = Buffer.from(memory.buffer, memory.byteOffset, memory.byteLength)
  return heapView
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

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return typeof value
}
