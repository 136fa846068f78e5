// Synthetic agent audio, generated once per format and kept as base64: a quiet
// 400 Hz tone (a whole number of periods per chunk, so chunks join without
// clicks), as PCM16 24 kHz or G.711 μ-law / A-law 8 kHz. G.711 is coded here
// both ways: the tone is encoded, and the energy VAD decodes what clients send.

export type AudioFormatType = 'audio/pcm' | 'audio/pcmu' | 'audio/pcma'

export const AUDIO_FORMAT_TYPES: readonly AudioFormatType[] = ['audio/pcm', 'audio/pcmu', 'audio/pcma']

export const CHUNK_MS = 40
const PCM_RATE = 24000
const G711_RATE = 8000
const TONE_HZ = 400
const TONE_AMPLITUDE = 0.1 * 32767

export interface AudioChunk {
  base64: string
  bytes: number
}

const chunks = new Map<AudioFormatType, AudioChunk>()

/** One chunk of agent audio (`CHUNK_MS`) in the given format. */
export function audioChunk (format: unknown): AudioChunk {
  const type = formatType(format)
  let chunk = chunks.get(type)
  if (chunk === undefined) {
    const bytes = tone(type)
    chunk = { base64: bytes.toString('base64'), bytes: bytes.length }
    chunks.set(type, chunk)
  }
  return chunk
}

/** Bytes per millisecond of audio in the given format (PCM16 24 kHz or G.711 8 kHz). */
export function bytesPerMs (format: unknown): number {
  return formatType(format) === 'audio/pcm' ? PCM_RATE * 2 / 1000 : G711_RATE / 1000
}

/** Samples per second of the given format. */
export function sampleRate (format: unknown): number {
  return formatType(format) === 'audio/pcm' ? PCM_RATE : G711_RATE
}

/** Decoded length of a base64 string, without decoding it. */
export function base64ByteLength (base64: string): number {
  let padding = 0
  if (base64.endsWith('==')) padding = 2
  else if (base64.endsWith('=')) padding = 1
  return (base64.length / 4) * 3 - padding
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

export function isBase64 (value: string): boolean {
  return value.length % 4 === 0 && BASE64.test(value)
}

export function formatType (format: unknown): AudioFormatType {
  const type = (format as { type?: unknown } | null | undefined)?.type
  return AUDIO_FORMAT_TYPES.includes(type as AudioFormatType) ? type as AudioFormatType : 'audio/pcm'
}

/**
 * Linear samples (-32768…32767) of the G.711 byte values, or null for PCM16, whose
 * samples are read from the bytes directly.
 */
export function g711Table (type: AudioFormatType): Int16Array | null {
  if (type === 'audio/pcmu') return (mulawTable ??= Int16Array.from({ length: 256 }, (_, byte) => mulawDecode(byte)))
  if (type === 'audio/pcma') return (alawTable ??= Int16Array.from({ length: 256 }, (_, byte) => alawDecode(byte)))
  return null
}

let mulawTable: Int16Array | undefined
let alawTable: Int16Array | undefined

function tone (type: AudioFormatType): Buffer {
  const rate = type === 'audio/pcm' ? PCM_RATE : G711_RATE
  const samples = rate * CHUNK_MS / 1000
  const sample = (i: number): number => Math.round(TONE_AMPLITUDE * Math.sin(2 * Math.PI * TONE_HZ * i / rate))
  if (type === 'audio/pcm') {
    const pcm = Buffer.alloc(samples * 2)
    for (let i = 0; i < samples; i++) pcm.writeInt16LE(sample(i), i * 2)
    return pcm
  }
  const encode = type === 'audio/pcmu' ? mulawEncode : alawEncode
  return Buffer.from(Array.from({ length: samples }, (_, i) => encode(sample(i))))
}

// G.711 segment coding (ITU-T G.711): a sign, a 3-bit exponent and a 4-bit mantissa.
const MULAW_BIAS = 0x84
const MULAW_CLIP = 32635

function exponentOf (magnitude: number): number {
  let exponent = 7
  for (let mask = 0x4000; (magnitude & mask) === 0 && exponent > 0; mask >>= 1) exponent--
  return exponent
}

export function mulawEncode (sample: number): number {
  const sign = sample < 0 ? 0x80 : 0
  const magnitude = Math.min(Math.abs(sample), MULAW_CLIP) + MULAW_BIAS
  const exponent = exponentOf(magnitude)
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f
  return ~(sign | (exponent << 4) | mantissa) & 0xff
}

export function mulawDecode (byte: number): number {
  const code = ~byte & 0xff
  const exponent = (code >> 4) & 0x07
  const magnitude = ((((code & 0x0f) << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS
  return code & 0x80 ? -magnitude : magnitude
}

export function alawEncode (sample: number): number {
  const sign = sample >= 0 ? 0x80 : 0
  const magnitude = Math.min(sample >= 0 ? sample : -sample - 1, 32767)
  const exponent = magnitude < 256 ? 0 : exponentOf(magnitude)
  const mantissa = exponent === 0 ? magnitude >> 4 : (magnitude >> (exponent + 3)) & 0x0f
  return (sign | (exponent << 4) | mantissa) ^ 0x55
}

export function alawDecode (byte: number): number {
  const code = byte ^ 0x55
  const exponent = (code >> 4) & 0x07
  const mantissa = code & 0x0f
  const magnitude = exponent === 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1)
  return code & 0x80 ? magnitude : -magnitude
}
