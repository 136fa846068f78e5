// Test signals and yardsticks for resamplers, shared by `npm run bench:audio` and the
// audio quality tests. Everything is deterministic (seeded) and synthesized: each
// signal is a sum of sinusoids known in closed form, so the ideal result of
// resampling it is the same sum evaluated at the new rate's sample times, with
// whatever the new rate cannot carry left out.
//
// Bands are fractions of the lower Nyquist frequency (half the lower of the two rates):
// the passband is [0, 0.9]; content the source carries above it starts at 1.1, so an
// ideal resampler keeps the first and drops the second, and the gap in between is
// the filter's transition band.

const TWO_PI = 2 * Math.PI
/** The passband's top and the out-of-band content's bottom, as fractions of the lower Nyquist. */
export const PASSBAND = 0.9
export const STOPBAND = 1.1
/** Where resamplers that roll off in the top of the passband are still flat. */
export const FLAT = 0.85
/** Sine level for tone sweeps: −6 dBFS. */
const TONE_AMPLITUDE = 16384
/** Start-up and end transients left out of every measurement. */
const EDGE_SECONDS = 0.05

/** Deterministic randomness in [0, 1) (mulberry32). */
export function prng (seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Float samples → PCM16 LE, rounded and saturated. */
export function toPcm16 (samples) {
  const pcm = Buffer.alloc(samples.length * 2)
  for (let i = 0; i < samples.length; i++) {
    pcm.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(samples[i]))), i * 2)
  }
  return pcm
}

/** PCM16 LE → Float64Array. */
export function fromPcm16 (pcm) {
  const samples = new Float64Array(pcm.length >> 1)
  for (let i = 0; i < samples.length; i++) samples[i] = pcm.readInt16LE(i * 2)
  return samples
}

/** A weight in [0, 1] that is 1 below `from` Hz and falls to 0 at `to` Hz along a raised cosine. */
function fallingEdge (hz, from, to) {
  if (hz <= from) return 1
  if (hz >= to) return 0
  return 0.5 + 0.5 * Math.cos(Math.PI * (hz - from) / (to - from))
}

/**
 * A speech-like signal of `seconds`, as a function of time that can be sampled at any
 * rate. Syllables of voiced sound: a glottal-pulse-like harmonic series (−6 dB per
 * octave) on a pitch contour that glides between 90 and 240 Hz, shaped by four
 * formants moving between vowel targets; between them, noise bursts (fricatives) made
 * of many random-phase sinusoids from 2 kHz up. Amplitudes change smoothly (1 ms
 * control points, linearly interpolated).
 *
 * `render(rate, bands)` samples it: `bands` is a list of [low, high] Hz; a component
 * counts with the weight of the band its instantaneous frequency is in, each band's
 * edges tapering over 5 % of its top (and from `low` up by as much).
 */
export function speechLike (seconds, seed = 1) {
  const random = prng(seed)
  const control = 0.001
  const points = Math.ceil(seconds / control) + 2

  // Pitch: piecewise linear between knots every 60–200 ms; phase is its exact integral.
  const knots = [{ at: 0, hz: 90 + 150 * random(), phase: 0 }]
  while (knots[knots.length - 1].at < seconds + 0.1) {
    const previous = knots[knots.length - 1]
    const at = previous.at + 0.06 + 0.14 * random()
    const hz = Math.max(90, Math.min(240, previous.hz + (random() - 0.5) * 120))
    knots.push({ at, hz, phase: previous.phase + TWO_PI * (at - previous.at) * (previous.hz + hz) / 2 })
  }
  const pitchAt = (t) => {
    let i = 0
    while (knots[i + 1].at <= t) i++
    const a = knots[i]
    const b = knots[i + 1]
    const slope = (b.hz - a.hz) / (b.at - a.at)
    const dt = t - a.at
    return { hz: a.hz + slope * dt, phase: a.phase + TWO_PI * (a.hz * dt + slope * dt * dt / 2) }
  }

  // Syllables: voiced 120–250 ms with 20 ms ramps, each with a vowel; a fricative burst
  // of 40–120 ms in most gaps.
  const vowels = [[730, 1090, 2440, 3400], [270, 2290, 3010, 3700], [300, 870, 2240, 3300], [530, 1840, 2480, 3500], [570, 840, 2410, 3300]]
  const voiced = new Float64Array(points)
  const noisy = new Float64Array(points)
  const formants = Array.from({ length: 4 }, () => new Float64Array(points))
  let vowel = vowels[0]
  for (let at = 0.02; at < seconds;) {
    const length = 0.12 + 0.13 * random()
    const next = vowels[Math.floor(random() * vowels.length)]
    for (let p = Math.floor(at / control); p < Math.min(points, (at + length) / control); p++) {
      const t = p * control - at
      voiced[p] = Math.min(1, t / 0.02, (length - t) / 0.02)
      const blend = t / length
      for (let f = 0; f < 4; f++) formants[f][p] = vowel[f] + (next[f] - vowel[f]) * blend
    }
    vowel = next
    at += length
    const gap = 0.03 + 0.15 * random()
    if (random() < 0.7) {
      const burst = Math.min(gap - 0.01, 0.04 + 0.08 * random())
      for (let p = Math.floor(at / control); p < Math.min(points, (at + burst) / control); p++) {
        const t = p * control - at
        noisy[p] = 0.6 * Math.min(1, t / 0.01, (burst - t) / 0.01)
      }
    }
    at += gap
  }
  // Between syllables the formants stay where the last vowel left them.
  for (let f = 0; f < 4; f++) {
    if (formants[f][0] === 0) formants[f][0] = vowels[0][f]
    for (let p = 1; p < points; p++) if (formants[f][p] === 0) formants[f][p] = formants[f][p - 1]
  }

  const noise = Array.from({ length: 400 }, () => ({ hz: 2000 + 46000 * random(), phase: TWO_PI * random() }))
  const bandwidths = [80, 100, 150, 200]
  /** Gain of the formant filter at `hz` for control point `p`: four resonances, 0 dB at DC. */
  const formantGain = (hz, p) => {
    let gain = 1
    for (let f = 0; f < 4; f++) {
      const centre = formants[f][p]
      const ratio = hz / centre
      gain /= Math.sqrt((1 - ratio * ratio) ** 2 + (hz * bandwidths[f] / (centre * centre)) ** 2)
    }
    return gain
  }

  return {
    seconds,
    render (rate, bands, { delay = 0, slopes = false } = {}) {
      const weight = (hz) => {
        let w = 0
        for (const [low, high] of bands) {
          const taper = 0.05 * high
          const rising = low === 0 ? 1 : 1 - fallingEdge(hz, low, low + taper)
          w += rising * fallingEdge(hz, high - taper, high)
        }
        return w
      }
      const top = Math.max(...bands.map(([, high]) => high))
      const n = Math.round(seconds * rate)
      const values = new Float64Array(n)
      const slope = slopes ? new Float64Array(n) : null
      // Harmonic amplitudes at each control point, then interpolated between them.
      const maxHarmonics = Math.floor(top / 90)
      const amplitudes = new Float64Array(points * maxHarmonics)
      for (let p = 0; p < points; p++) {
        if (voiced[p] === 0 && voiced[Math.min(points - 1, p + 1)] === 0) continue
        const f0 = pitchAt(p * control).hz
        for (let k = 1; k <= maxHarmonics; k++) {
          const hz = k * f0
          amplitudes[p * maxHarmonics + k - 1] = voiced[p] * 300 / k * formantGain(hz, p) * weight(hz)
        }
      }
      const noiseWeights = noise.map(({ hz }) => weight(hz) * 40 / Math.sqrt(noise.length))
      // Silence before the first syllable: nothing to evaluate before t = 0.
      for (let i = Math.max(0, Math.ceil(delay)); i < n; i++) {
        const t = (i - delay) / rate
        const p = Math.min(points - 2, Math.floor(t / control))
        const frac = t / control - p
        const pitch = pitchAt(t)
        let sum = 0
        let derivative = 0
        const row = p * maxHarmonics
        for (let k = 0; k < maxHarmonics; k++) {
          const a0 = amplitudes[row + k]
          const da = amplitudes[row + maxHarmonics + k] - a0
          const a = a0 + da * frac
          if (a === 0) continue
          const phase = (k + 1) * pitch.phase
          sum += a * Math.sin(phase)
          if (slopes) derivative += da / control * Math.sin(phase) + a * TWO_PI * (k + 1) * pitch.hz * Math.cos(phase)
        }
        const burst = noisy[p] + (noisy[p + 1] - noisy[p]) * frac
        if (burst !== 0) {
          const burstSlope = (noisy[p + 1] - noisy[p]) / control
          for (let j = 0; j < noise.length; j++) {
            const w = noiseWeights[j]
            if (w === 0) continue
            const phase = TWO_PI * noise[j].hz * t + noise[j].phase
            sum += burst * w * Math.sin(phase)
            if (slopes) derivative += w * (burstSlope * Math.sin(phase) + burst * TWO_PI * noise[j].hz * Math.cos(phase))
          }
        }
        values[i] = sum
        // Per sample at `rate`, the unit delays are counted in.
        if (slopes) slope[i] = derivative / rate
      }
      return { values, slopes: slope }
    }
  }
}

/**
 * The signals for one conversion: `source`, PCM16 at `from` (in-band content plus,
 * when downsampling, content from STOPBAND × the lower Nyquist up to 0.9 × its own)
 * at −6 dBFS peak, and `ideal(options)`, the in-band content alone at `to`, scaled
 * alike (see `render` for the options).
 */
export function speechPair (from, to, seconds, seed = 1) {
  const nyquist = Math.min(from, to) / 2
  const speech = speechLike(seconds, seed)
  const inBand = [[0, PASSBAND * nyquist]]
  const sourceBands = from > to ? [...inBand, [STOPBAND * nyquist, 0.9 * from / 2]] : inBand
  const source = speech.render(from, sourceBands).values
  let peak = 0
  for (const x of source) peak = Math.max(peak, Math.abs(x))
  const scale = 16384 / peak
  for (let i = 0; i < source.length; i++) source[i] *= scale
  return {
    seconds,
    source: toPcm16(source),
    ideal (options) {
      const { values, slopes } = speech.render(to, inBand, options)
      for (let i = 0; i < values.length; i++) values[i] *= scale
      if (slopes !== null) for (let i = 0; i < slopes.length; i++) slopes[i] *= scale
      return { values, slopes }
    }
  }
}

/**
 * Signal-to-noise ratio in dB of `output` (PCM16 at `rate`) against the ideal of
 * `pair`, away from the edges, at the delay that gives the best one: resamplers differ
 * in their fixed delay, which is not an error, and it need not be a whole number of
 * samples (24 → 44.1 kHz). The whole-sample delay (up to `maxDelay`) that correlates
 * best, then Gauss–Newton steps on the fraction with the ideal's slope.
 */
export function snrDb (output, pair, rate, maxDelay) {
  const out = fromPcm16(output)
  const edge = Math.round(EDGE_SECONDS * rate) + maxDelay
  const end = Math.min(out.length, Math.round(rate * pair.seconds)) - edge
  const errorOf = (ideal, shift) => {
    let signal = 0
    let noise = 0
    for (let i = edge; i < end; i++) {
      const error = out[i + shift] - ideal[i]
      signal += ideal[i] * ideal[i]
      noise += error * error
    }
    return { signal, noise }
  }
  const undelayed = pair.ideal().values
  let delay = 0
  let best = -Infinity
  for (let shift = -maxDelay; shift <= maxDelay; shift++) {
    const { signal, noise } = errorOf(undelayed, shift)
    if (signal / noise > best) {
      best = signal / noise
      delay = shift
    }
  }
  for (let step = 0; step < 6; step++) {
    const { values, slopes } = pair.ideal({ delay, slopes: true })
    let along = 0
    let squares = 0
    for (let i = edge; i < end; i++) {
      along += (out[i] - values[i]) * slopes[i]
      squares += slopes[i] * slopes[i]
    }
    const correction = -along / squares
    delay += correction
    if (Math.abs(correction) < 1e-6) break
  }
  const { signal, noise } = errorOf(pair.ideal({ delay }).values, 0)
  return { snr: 10 * Math.log10(signal / noise), delay }
}

/** A −6 dBFS sine of `hz` at `rate`, PCM16. */
export function tone (rate, hz, seconds) {
  const samples = new Float64Array(Math.round(rate * seconds))
  for (let i = 0; i < samples.length; i++) samples[i] = TONE_AMPLITUDE * Math.sin(TWO_PI * hz * i / rate)
  return toPcm16(samples)
}

/**
 * The sine of `hz` in `output` (PCM16 at `rate`) fitted by least squares away from the
 * edges: its level and the level of everything else, in dB relative to the −6 dBFS
 * sine that went in.
 */
export function fitTone (output, rate, hz) {
  const out = fromPcm16(output)
  const edge = Math.round(EDGE_SECONDS * rate)
  let cc = 0
  let ss = 0
  let cs = 0
  let xc = 0
  let xs = 0
  for (let i = edge; i < out.length - edge; i++) {
    const c = Math.cos(TWO_PI * hz * i / rate)
    const s = Math.sin(TWO_PI * hz * i / rate)
    cc += c * c
    ss += s * s
    cs += c * s
    xc += out[i] * c
    xs += out[i] * s
  }
  const det = cc * ss - cs * cs
  const a = (xc * ss - xs * cs) / det
  const b = (xs * cc - xc * cs) / det
  let residual = 0
  for (let i = edge; i < out.length - edge; i++) {
    const r = out[i] - a * Math.cos(TWO_PI * hz * i / rate) - b * Math.sin(TWO_PI * hz * i / rate)
    residual += r * r
  }
  const count = out.length - 2 * edge
  const toneRms = TONE_AMPLITUDE / Math.SQRT2
  return {
    gainDb: 20 * Math.log10(Math.hypot(a, b) / TONE_AMPLITUDE),
    residualDb: 10 * Math.log10(residual / count / (toneRms * toneRms))
  }
}

/** Level in dB of all of `output` (PCM16) away from the edges, relative to the −6 dBFS sine that went in. */
export function levelDb (output, rate) {
  const out = fromPcm16(output)
  const edge = Math.round(EDGE_SECONDS * rate)
  let sum = 0
  for (let i = edge; i < out.length - edge; i++) sum += out[i] * out[i]
  const toneRms = TONE_AMPLITUDE / Math.SQRT2
  return 10 * Math.log10(sum / (out.length - 2 * edge) / (toneRms * toneRms))
}

/**
 * The quality figures of one stateful conversion `convert(frame) → output` (PCM16 in,
 * PCM16 out), made fresh by `make()` for each signal and fed in `frameMs` frames:
 *   snr        the speech-like signal against its ideal, dB (and `delay`, in output samples)
 *   rippleDb   the largest deviation from 0 dB of tones up to PASSBAND × the lower Nyquist
 *              (each one's gain in `gains`: { hz, db }); `flatDb` the same up to FLAT ×
 *   spurDb     the worst level of anything but the tone in the output of those tones
 *              (images when upsampling, aliases when downsampling), dB below the tone
 *   aliasDb    downsampling only: the worst level in the output of tones from STOPBAND ×
 *              the target's Nyquist up to 0.95 × the source's, dB below the tone
 */
export function measureQuality (make, from, to, { seconds = 1, toneSeconds = 0.25, frameMs = 20, tones = 24, maxDelay = 300 } = {}) {
  const run = (pcm) => {
    const convert = make()
    const frame = Math.round(from * frameMs / 1000) * 2
    const parts = []
    for (let at = 0; at < pcm.length; at += frame) parts.push(convert(pcm.subarray(at, at + frame)))
    return Buffer.concat(parts)
  }
  const nyquist = Math.min(from, to) / 2
  const pair = speechPair(from, to, seconds)
  const { snr, delay } = snrDb(run(pair.source), pair, to, maxDelay)

  const gains = []
  let spurDb = -Infinity
  for (let i = 0; i < tones; i++) {
    // Spread over the passband, off any simple ratio to the rates.
    const hz = 100 + (PASSBAND * nyquist - 100) * i / (tones - 1) - 0.37
    const fit = fitTone(run(tone(from, hz, toneSeconds)), to, hz)
    gains.push({ hz, db: fit.gainDb })
    spurDb = Math.max(spurDb, fit.residualDb)
  }
  const deviation = (list) => Math.max(...list.map(({ db }) => Math.abs(db)))
  const rippleDb = deviation(gains)
  const flatDb = deviation(gains.filter(({ hz }) => hz <= FLAT * nyquist))
  let aliasDb = null
  if (from > to) {
    aliasDb = -Infinity
    for (let i = 0; i < tones; i++) {
      const hz = STOPBAND * to / 2 + (0.95 * from / 2 - STOPBAND * to / 2) * i / (tones - 1) + 0.37
      aliasDb = Math.max(aliasDb, levelDb(run(tone(from, hz, toneSeconds)), to))
    }
  }
  return { snr, delay, rippleDb, flatDb, gains, spurDb, aliasDb }
}
