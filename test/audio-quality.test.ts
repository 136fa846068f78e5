// The resampler's quality floor, with the yardsticks of `npm run bench:audio`
// (bench/audio-signals.js): each conversion a session makes, streamed in 20 ms frames
// through the converters as sessions call them. The floors are what was measured here
// (README, "Audio quality") less a margin; the resampler is deterministic, so a
// conversion that falls below one has changed, not drifted.

import t from 'tap'
import { FLAT, measureQuality } from '../bench/audio-signals.js'
import { InputAudioConverter, OutputAudioConverter } from '../lib/audio.js'

const OPENAI_RATE = 24000

/** A new stream through the converter that a session at `from` → `to` uses, PCM16 in and out. */
function converter (from: number, to: number): (frame: Buffer) => Buffer {
  if (to === OPENAI_RATE) {
    const input = new InputAudioConverter({ encoding: 'linear16', sampleRate: from })
    return (frame) => Buffer.from(input.push(frame), 'base64')
  }
  const output = new OutputAudioConverter({ encoding: 'linear16', sampleRate: to })
  return (frame) => output.push(frame.toString('base64'))
}

// [from, to, SNR floor in dB]: 3 dB under what this test measured on its half second
// of speech (81.3–85.3 dB; the reference, libsamplerate's best sinc, gets the same to
// within 0.1 dB in the benchmark).
const FLOORS: Array<[number, number, number]> = [
  [16000, 24000, 80],
  [48000, 24000, 82],
  [24000, 16000, 81],
  [24000, 48000, 80],
  [8000, 24000, 78],
  [24000, 8000, 78],
  [44100, 24000, 80],
  [24000, 44100, 79]
]

for (const [from, to, snrFloor] of FLOORS) {
  t.test(`${from} → ${to} Hz keeps speech, stays flat and lets nothing alias`, async (t) => {
    const quality = measureQuality(() => converter(from, to), from, to, { seconds: 0.5, tones: 12 })
    t.ok(quality.snr >= snrFloor, `SNR on speech ${quality.snr.toFixed(1)} dB ≥ ${snrFloor} dB`)
    t.ok(quality.flatDb <= 0.05, `flat within ${quality.flatDb.toFixed(3)} dB up to ${FLAT} × the lower Nyquist`)
    t.ok(quality.rippleDb <= 2.5, `within ${quality.rippleDb.toFixed(2)} dB up to 0.9 × the lower Nyquist (a roll-off at the top)`)
    t.ok(quality.spurDb <= -75, `images / aliases of in-band tones ${quality.spurDb.toFixed(1)} dB ≤ −75 dB`)
    if (from > to) t.ok(quality.aliasDb! <= -80, `tones above the target's Nyquist come out at ${quality.aliasDb!.toFixed(1)} dB ≤ −80 dB`)
  })
}
