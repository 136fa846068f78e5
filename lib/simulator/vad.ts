// An energy-based server VAD for real microphones: the RMS of each 20 ms frame
// of appended audio against a threshold. Speech starts after 100 ms of loud
// frames (dated at the first of them) and stops after `silenceMs` of quiet
// frames (dated at the first quiet one). One pass over the samples per append,
// no allocation beyond decoding the base64.

import { formatType, g711Table, sampleRate } from './audio.js'

export type VadEvent = { type: 'speech_started', audioStartMs: number } | { type: 'speech_stopped', audioEndMs: number }

const FRAME_MS = 20
const SPEECH_START_MS = 100

export class EnergyVad {
  #speaking = false
  #loudMs = 0
  #loudSinceMs = 0
  #quietMs = 0
  #format: unknown = undefined
  // The frame in progress, carried across appends.
  #sumSquares = 0
  #frameSamples = 0

  get speaking (): boolean {
    return this.#speaking
  }

  /**
   * Feeds one append of `audio` in `format`, whose first sample is at `startMs` of the input
   * audio; returns the VAD events it caused, in order (usually none).
   */
  feed (audio: Buffer, format: unknown, startMs: number, threshold: number, silenceMs: number): VadEvent[] {
    const type = formatType(format)
    if (type !== this.#format) {
      this.#format = type
      this.#sumSquares = 0
      this.#frameSamples = 0
    }
    const rate = sampleRate(format)
    const perFrame = rate * FRAME_MS / 1000
    const table = g711Table(type)
    const count = table === null ? audio.length >> 1 : audio.length
    const events: VadEvent[] = []
    const loudSquares = (threshold * 32768) ** 2 * perFrame
    for (let i = 0; i < count; i++) {
      const sample = table === null ? audio.readInt16LE(i * 2) : table[audio[i] as number] as number
      this.#sumSquares += sample * sample
      if (++this.#frameSamples < perFrame) continue
      const endMs = startMs + (i + 1) * 1000 / rate
      const event = this.#frame(this.#sumSquares >= loudSquares, endMs, silenceMs)
      if (event !== null) events.push(event)
      this.#sumSquares = 0
      this.#frameSamples = 0
    }
    return events
  }

  /** Forgets a speech in progress (the turn was committed or cleared by other means). */
  reset (): void {
    this.#speaking = false
    this.#loudMs = 0
    this.#quietMs = 0
  }

  #frame (loud: boolean, endMs: number, silenceMs: number): VadEvent | null {
    if (!this.#speaking) {
      if (!loud) {
        this.#loudMs = 0
        return null
      }
      if (this.#loudMs === 0) this.#loudSinceMs = endMs - FRAME_MS
      this.#loudMs += FRAME_MS
      if (this.#loudMs < SPEECH_START_MS) return null
      this.#speaking = true
      this.#quietMs = 0
      return { type: 'speech_started', audioStartMs: Math.round(this.#loudSinceMs) }
    }
    if (loud) {
      this.#quietMs = 0
      return null
    }
    this.#quietMs += FRAME_MS
    if (this.#quietMs < silenceMs) return null
    const audioEndMs = Math.round(endMs - this.#quietMs)
    this.reset()
    return { type: 'speech_stopped', audioEndMs }
  }
}
