// WAV files for the browsers' fake microphone (Chromium's --use-file-for-fake-audio-capture).

import { writeFile } from 'node:fs/promises'

export interface ToneWav {
  sampleRate?: number
  /** Silence before the tone, the tone, and silence after it, in seconds. */
  before?: number
  seconds?: number
  after?: number
  frequency?: number
  /** Of full scale. */
  amplitude?: number
}

/** 16-bit mono PCM WAV: `before` s of silence, a sine tone of `seconds` s, `after` s of silence. */
export async function writeToneWav (path: string, { sampleRate = 48000, before = 0, seconds = 1, after = 0, frequency = 440, amplitude = 0.3 }: ToneWav = {}): Promise<void> {
  const samples = Math.round(sampleRate * (before + seconds + after))
  const wav = Buffer.alloc(44 + samples * 2)
  wav.write('RIFF', 0)
  wav.writeUInt32LE(36 + samples * 2, 4)
  wav.write('WAVEfmt ', 8)
  wav.writeUInt32LE(16, 16)
  wav.writeUInt16LE(1, 20) // PCM
  wav.writeUInt16LE(1, 22) // mono
  wav.writeUInt32LE(sampleRate, 24)
  wav.writeUInt32LE(sampleRate * 2, 28)
  wav.writeUInt16LE(2, 32)
  wav.writeUInt16LE(16, 34)
  wav.write('data', 36)
  wav.writeUInt32LE(samples * 2, 40)
  const from = Math.round(sampleRate * before)
  const to = from + Math.round(sampleRate * seconds)
  for (let i = from; i < to; i++) wav.writeInt16LE(Math.round(amplitude * 32767 * Math.sin(2 * Math.PI * frequency * i / sampleRate)), 44 + i * 2)
  await writeFile(path, wav)
}
