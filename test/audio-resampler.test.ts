// The resampler at the edges of what it is given: full-scale audio, whose filtered
// overshoot must saturate rather than wrap around, and many sessions' worth of
// resamplers coming and going.

import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { fromPcm16, toPcm16 } from '../bench/audio-signals.js'
import { InputAudioConverter, OutputAudioConverter } from '../lib/audio.js'

/** A full-scale square wave: `halfPeriod` samples at 32767, then as many at −32768. */
function square (rate: number, seconds: number, halfPeriod: number): Buffer {
  const samples = new Float64Array(Math.round(rate * seconds))
  for (let i = 0; i < samples.length; i++) samples[i] = Math.floor(i / halfPeriod) % 2 === 0 ? 32767 : -32768
  return toPcm16(samples)
}

/**
 * Lengths of the runs of same-signed samples from the first loud one (before it, the
 * filter rings around zero as the wave starts out of silence), less the first and the
 * last run (cut).
 */
function signRuns (samples: Float64Array): number[] {
  const runs: number[] = []
  let length = 1
  for (let i = samples.findIndex((sample) => Math.abs(sample) >= 16384) + 1; i < samples.length; i++) {
    if ((samples[i]! < 0) === (samples[i - 1]! < 0)) {
      length++
    } else {
      runs.push(length)
      length = 1
    }
  }
  return runs.slice(1)
}

t.test('a full-scale square wave saturates at the filter\'s overshoot instead of wrapping around', async (t) => {
  // The filter rings about 9 % past each edge: 35 700 does not fit in int16 and, wrapped,
  // would come out as −29 800, a full-scale click at every edge.
  const cases = [
    { name: 'agent audio 24 → 16 kHz', from: 24000, to: 16000, convert: (pcm: Buffer) => new OutputAudioConverter({ encoding: 'linear16', sampleRate: 16000 }).push(pcm.toString('base64')) },
    { name: 'agent audio 24 → 48 kHz', from: 24000, to: 48000, convert: (pcm: Buffer) => new OutputAudioConverter({ encoding: 'linear16', sampleRate: 48000 }).push(pcm.toString('base64')) },
    { name: 'client audio 16 → 24 kHz', from: 16000, to: 24000, convert: (pcm: Buffer) => Buffer.from(new InputAudioConverter({ encoding: 'linear16', sampleRate: 16000 }).push(pcm), 'base64') },
    { name: 'client audio 48 → 24 kHz', from: 48000, to: 24000, convert: (pcm: Buffer) => Buffer.from(new InputAudioConverter({ encoding: 'linear16', sampleRate: 48000 }).push(pcm), 'base64') }
  ]
  for (const { name, from, to, convert } of cases) {
    // 300 Hz: each half period is 1.67 ms, `to / 600` samples at the output rate.
    const output = fromPcm16(convert(square(from, 0.2, from / 600)))
    const halfPeriod = to / 600
    const runs = signRuns(output)
    t.ok(runs.length >= 100, `${name}: the edges are all there (${runs.length} half periods)`)
    t.ok(runs.every((run) => Math.abs(run - halfPeriod) <= 1), `${name}: one sign change per edge, none in between (half periods of ${Math.min(...runs)}–${Math.max(...runs)} samples, ${halfPeriod} expected)`)
    t.ok(output.includes(32767) && output.includes(-32768), `${name}: the overshoot is there, saturated at both ends of the int16 range`)
  }
})

t.test('resamplers of sessions that are gone release their memory', async (t) => {
  // Each resampler's state lives in WebAssembly memory, which the garbage collector does
  // not see: it is freed when the resampler is collected. Unfreed, 4000 resamplers at
  // 44.1 kHz hold about 12 MB.
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const delta = Buffer.alloc(960).toString('base64')
  const round = async (): Promise<number> => {
    for (let i = 0; i < 4000; i++) new OutputAudioConverter({ encoding: 'linear16', sampleRate: 44100 }).push(delta)
    gc()
    // Finalizers run in a later task than the collection that found their objects.
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    return process.memoryUsage().rss
  }
  await round()
  const before = await round()
  let after = before
  for (let i = 0; i < 5; i++) after = await round()
  t.ok(after - before < 20 * 2 ** 20, `RSS after 20 000 more resamplers came and went: +${((after - before) / 2 ** 20).toFixed(1)} MB`)
})
