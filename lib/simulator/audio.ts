// Synthetic agent audio, generated once per format and kept as base64: a quiet
// 400 Hz tone for PCM16 (a whole number of periods per chunk, so chunks join
// without clicks) and G.711 silence for μ-law / A-law.

export type AudioFormatType = 'audio/pcm' | 'audio/pcmu' | 'audio/pcma'

export const AUDIO_FORMAT_TYPES: readonly AudioFormatType[] = ['audio/pcm', 'audio/pcmu', 'audio/pcma']

const CHUNK_MS = 40
const PCM_RATE = 24000
const G711_RATE = 8000
const TONE_HZ = 400
const TONE_AMPLITUDE = 0.1 * 32767
const PCMU_SILENCE = 0xff
const PCMA_SILENCE = 0xd5

export interface AudioChunk {
  base64: string
  bytes: number
}

const chunks = new Map<AudioFormatType, AudioChunk>()

/** One chunk of agent audio (40 ms) in the given format. */
export function audioChunk (format: unknown): AudioChunk {
  const type = formatType(format)
  let chunk = chunks.get(type)
  if (chunk === undefined) {
    const bytes = type === 'audio/pcm' ? tone() : Buffer.alloc(G711_RATE * CHUNK_MS / 1000, type === 'audio/pcmu' ? PCMU_SILENCE : PCMA_SILENCE)
    chunk = { base64: bytes.toString('base64'), bytes: bytes.length }
    chunks.set(type, chunk)
  }
  return chunk
}

/** Bytes per millisecond of audio in the given format (PCM16 24 kHz or G.711 8 kHz). */
export function bytesPerMs (format: unknown): number {
  return formatType(format) === 'audio/pcm' ? PCM_RATE * 2 / 1000 : G711_RATE / 1000
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

function formatType (format: unknown): AudioFormatType {
  const type = (format as { type?: unknown } | null | undefined)?.type
  return AUDIO_FORMAT_TYPES.includes(type as AudioFormatType) ? type as AudioFormatType : 'audio/pcm'
}

function tone (): Buffer {
  const samples = PCM_RATE * CHUNK_MS / 1000
  const pcm = Buffer.alloc(samples * 2)
  for (let i = 0; i < samples; i++) {
    pcm.writeInt16LE(Math.round(TONE_AMPLITUDE * Math.sin(2 * Math.PI * TONE_HZ * i / PCM_RATE)), i * 2)
  }
  return pcm
}
