import t from 'tap'
import {
  AudioFormatError,
  InputAudioConverter,
  OutputAudioConverter,
  audioDurationMs,
  toOpenAIFormat,
  type ClientAudioFormat
} from '../lib/audio.js'

// Deterministic randomness so failures reproduce.
function prng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function sine (rate: number, seconds: number, hz: number, amplitude: number): Buffer {
  const n = Math.round(rate * seconds)
  const buf = Buffer.alloc(n * 2)
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(amplitude * Math.sin(2 * Math.PI * hz * i / rate)), i * 2)
  return buf
}

function noise (bytes: number, random: () => number): Buffer {
  const buf = Buffer.alloc(bytes)
  for (let i = 0; i < bytes; i++) buf[i] = Math.floor(random() * 256)
  return buf
}

function samplesOf (buf: Buffer): Int16Array {
  const out = new Int16Array(buf.length >> 1)
  for (let i = 0; i < out.length; i++) out[i] = buf.readInt16LE(i * 2)
  return out
}

/** Frequency (rising zero crossings) and amplitude (RMS × √2) of the middle 80 % of a sine. */
function measure (buf: Buffer, rate: number): { hz: number, amplitude: number } {
  const samples = samplesOf(buf)
  const from = Math.floor(samples.length * 0.1)
  const to = Math.floor(samples.length * 0.9)
  let crossings = 0
  let first = -1
  let lastCrossing = -1
  let squares = 0
  for (let i = from; i < to; i++) {
    squares += samples[i]! * samples[i]!
    if (i > from && samples[i - 1]! < 0 && samples[i]! >= 0) {
      if (first < 0) first = i
      else crossings++
      lastCrossing = i
    }
  }
  return { hz: crossings * rate / (lastCrossing - first), amplitude: Math.sqrt(2 * squares / (to - from)) }
}

/** Splits `buf` at random boundaries; `odd` forces every chunk to an odd length (the last may be anything). */
function split (buf: Buffer, random: () => number, maxChunk: number, odd = false): Buffer[] {
  const chunks: Buffer[] = []
  let at = 0
  while (at < buf.length) {
    let size = 1 + Math.floor(random() * maxChunk)
    if (odd && size % 2 === 0) size -= 1
    chunks.push(buf.subarray(at, at + size))
    at += size
  }
  return chunks
}

function runInput (format: ClientAudioFormat, chunks: Buffer[]): Buffer {
  const converter = new InputAudioConverter(format)
  return Buffer.concat(chunks.map((chunk) => Buffer.from(converter.push(chunk), 'base64')))
}

function runOutput (format: ClientAudioFormat, chunks: Buffer[], onFrame?: (frame: Buffer) => void): Buffer {
  const converter = new OutputAudioConverter(format)
  return Buffer.concat(chunks.map((chunk) => {
    const frame = converter.push(chunk.toString('base64'))
    onFrame?.(frame)
    return frame
  }))
}

const linear16 = (sampleRate: number): ClientAudioFormat => ({ encoding: 'linear16', sampleRate })

t.test('format mapping', async (t) => {
  const pcm = { type: 'audio/pcm', rate: 24000 }
  for (const direction of ['input', 'output'] as const) {
    for (const rate of [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000]) {
      t.same(toOpenAIFormat({ encoding: 'linear16', sample_rate: rate }, direction),
        { upstream: pcm, client: linear16(rate) }, `${direction} linear16 @ ${rate}`)
    }
    t.same(toOpenAIFormat({ encoding: 'mulaw', sample_rate: 8000 }, direction),
      { upstream: { type: 'audio/pcmu' }, client: { encoding: 'mulaw', sampleRate: 8000 } })
    t.same(toOpenAIFormat({ encoding: 'alaw', sample_rate: 8000 }, direction),
      { upstream: { type: 'audio/pcma' }, client: { encoding: 'alaw', sampleRate: 8000 } })
    t.same(toOpenAIFormat({ encoding: 'MULAW' }, direction).client, { encoding: 'mulaw', sampleRate: 8000 },
      'G.711 without a rate is 8000 Hz; encodings are case-insensitive')
    t.same(toOpenAIFormat({ sample_rate: 48000 }, direction).client, linear16(48000), 'encoding defaults to linear16')
  }

  // Deepgram's specification (the AsyncAPI document the SDKs' types come from): 24000 Hz.
  t.same(toOpenAIFormat(undefined, 'input'), { upstream: pcm, client: linear16(24000) }, 'input default: linear16 @ 24000')
  t.same(toOpenAIFormat({}, 'input').client, linear16(24000))
  t.same(toOpenAIFormat({ encoding: 'linear16' }, 'input').client, linear16(24000))
  t.same(toOpenAIFormat(null, 'output'), { upstream: pcm, client: linear16(24000) }, 'output default: linear16 @ 24000')
  t.same(toOpenAIFormat({ encoding: '', sample_rate: null }, 'output').client, linear16(24000), 'empty values are defaults')

  for (const container of [undefined, null, '', 'none', 'NONE']) {
    t.doesNotThrow(() => toOpenAIFormat({ container }, 'output'), `container ${String(container)} accepted`)
  }
  t.doesNotThrow(() => toOpenAIFormat({ container: 'wav' }, 'input'), 'input has no container: ignored')
})

t.test('format errors name what was asked and what is supported', async (t) => {
  function rejects (spec: Record<string, unknown>, direction: 'input' | 'output', ...patterns: RegExp[]): void {
    let error: unknown
    try {
      toOpenAIFormat(spec, direction)
    } catch (err) {
      error = err
    }
    t.type(error, AudioFormatError, JSON.stringify(spec))
    const { code, message } = error as AudioFormatError
    t.equal(code, 'UNSUPPORTED_AUDIO_FORMAT')
    for (const pattern of patterns) t.match(message, pattern, `${JSON.stringify(spec)}: ${message}`)
  }

  for (const encoding of ['opus', 'mp3', 'flac', 'aac', 'ogg-opus', 'speex', 'amr-nb', 'g729', 'linear32']) {
    for (const direction of ['input', 'output'] as const) {
      rejects({ encoding, sample_rate: 16000 }, direction,
        new RegExp(`audio\\.${direction}\\.encoding "${encoding}"`), /linear16/, /mulaw/, /alaw/)
    }
  }
  rejects({ encoding: 42 }, 'input', /encoding must be a string; got 42/, /linear16/)
  rejects({ encoding: { name: 'opus' } }, 'input', /encoding must be a string; got object/)
  rejects({ encoding: 'x'.repeat(1000) }, 'input', /encoding "x{40}…" is not supported/)
  rejects({ encoding: 'mulaw', sample_rate: 16000 }, 'input', /16000 Hz/, /mulaw/, /8000/, /linear16/)
  rejects({ encoding: 'alaw', sample_rate: 24000 }, 'output', /24000 Hz/, /alaw/, /8000/)
  rejects({ encoding: 'linear16', sample_rate: 0 }, 'input', /sample_rate 0 Hz/, /8000–96000/)
  rejects({ encoding: 'linear16', sample_rate: -16000 }, 'input', /-16000 Hz/, /8000–96000/)
  rejects({ encoding: 'linear16', sample_rate: 4000 }, 'output', /4000 Hz/)
  rejects({ encoding: 'linear16', sample_rate: 192000 }, 'output', /192000 Hz/)
  rejects({ encoding: 'linear16', sample_rate: '16000' }, 'input', /integer number of Hz; got "16000"/)
  rejects({ encoding: 'linear16', sample_rate: 16000.5 }, 'input', /got 16000.5/)
  rejects({ encoding: 'linear16', sample_rate: Number.NaN }, 'input', /got NaN/)
  rejects({ encoding: 'linear16', sample_rate: true }, 'input', /got true/)
  rejects({ container: 'wav' }, 'output', /container "wav"/, /only raw 'none' container is supported for streaming/)
  rejects({ container: 'ogg' }, 'output', /container "ogg"/)
  t.throws(() => toOpenAIFormat('linear16' as never, 'input'), AudioFormatError, 'a non-object spec')

  t.throws(() => new InputAudioConverter({ encoding: 'opus', sampleRate: 48000 }), AudioFormatError)
  t.throws(() => new OutputAudioConverter({ encoding: 'mulaw', sampleRate: 16000 }), AudioFormatError)
  t.throws(() => new OutputAudioConverter(linear16(0)), AudioFormatError)
})

t.test('audioDurationMs', async (t) => {
  t.equal(audioDurationMs(linear16(24000), 4800), 100)
  t.equal(audioDurationMs(linear16(16000), 320), 10)
  t.equal(audioDurationMs({ encoding: 'mulaw', sampleRate: 8000 }, 160), 20)
  t.equal(audioDurationMs({ encoding: 'alaw', sampleRate: 8000 }, 0), 0)
})

t.test('passthrough is byte-exact', async (t) => {
  const random = prng(1)
  const audio = noise(48_001, random)
  for (const format of [linear16(24000), { encoding: 'mulaw', sampleRate: 8000 }, { encoding: 'alaw', sampleRate: 8000 }]) {
    const converter = new InputAudioConverter(format)
    const chunk = audio.subarray(0, 960)
    t.equal(converter.push(chunk), chunk.toString('base64'), `${format.encoding} input is the chunk's base64`)
    const output = new OutputAudioConverter(format).push(chunk.toString('base64'))
    t.same(output, chunk, `${format.encoding} output is the decoded delta`)
  }

  for (const format of [{ encoding: 'mulaw', sampleRate: 8000 }, { encoding: 'alaw', sampleRate: 8000 }]) {
    const chunks = split(audio, random, 700, true)
    t.same(runInput(format, chunks), audio, `${format.encoding} input over odd chunks`)
    t.same(runOutput(format, chunks), audio, `${format.encoding} output over odd chunks`)
  }
})

t.test('linear16 @ 24000 carries odd bytes and never misaligns', async (t) => {
  const random = prng(2)
  const audio = noise(96_000, random)
  for (let round = 0; round < 20; round++) {
    const chunks = split(audio, random, 1001, true)
    t.ok(chunks.length > 50)
    t.same(runInput(linear16(24000), chunks), audio, `input round ${round}`)
    let allEven = true
    t.same(runOutput(linear16(24000), chunks, (frame) => { allEven &&= frame.length % 2 === 0 }), audio, `output round ${round}`)
    t.ok(allEven, 'every output frame has an even length')
  }

  const input = new InputAudioConverter(linear16(24000))
  t.equal(input.push(Buffer.from([1])), '', 'a single odd byte yields nothing yet')
  t.equal(input.push(Buffer.alloc(0)), '', 'an empty frame yields nothing')
  t.equal(input.push(Buffer.from([2, 3, 4])), Buffer.from([1, 2, 3, 4]).toString('base64'))
  t.equal(input.push(Buffer.from([5, 6, 7])), Buffer.from([5, 6]).toString('base64'))
  t.equal(input.push(Buffer.from([8])), Buffer.from([7, 8]).toString('base64'))
  t.equal(input.push(Buffer.from([9])), '')
  t.equal(input.push(Buffer.from([10, 11])), Buffer.from([9, 10]).toString('base64'), 'a carried byte pairs with the next frame')
  t.equal(input.push(Buffer.from([12])), Buffer.from([11, 12]).toString('base64'))

  const output = new OutputAudioConverter(linear16(24000))
  t.same(output.push(Buffer.from([1, 2, 3]).toString('base64')), Buffer.from([1, 2]))
  t.same(output.push(''), Buffer.alloc(0))
  t.same(output.push(Buffer.from([4]).toString('base64')), Buffer.from([3, 4]))
  t.same(output.push(Buffer.from([5]).toString('base64')), Buffer.alloc(0))
  output.reset()
  t.same(output.push(Buffer.from([6, 7]).toString('base64')), Buffer.from([6, 7]), 'reset drops the carried byte')
})

t.test('resampling keeps frequency and amplitude: 16 kHz → 24 kHz → 16 kHz', async (t) => {
  const original = sine(16000, 1, 1000, 10000)
  const upsampled = runInput(linear16(16000), split(original, prng(3), 640))
  t.ok(Math.abs(upsampled.length / 2 - 24000) <= 2, `24 kHz length ${upsampled.length / 2}`)
  const up = measure(upsampled, 24000)
  t.ok(Math.abs(up.hz - 1000) < 2, `24 kHz frequency ${up.hz}`)
  t.ok(Math.abs(up.amplitude - 10000) < 300, `24 kHz amplitude ${up.amplitude}`)

  const roundTrip = runOutput(linear16(16000), split(upsampled, prng(4), 960))
  t.ok(Math.abs(roundTrip.length / 2 - 16000) <= 3, `16 kHz length ${roundTrip.length / 2}`)
  const back = measure(roundTrip, 16000)
  t.ok(Math.abs(back.hz - 1000) < 2, `16 kHz frequency ${back.hz}`)
  t.ok(Math.abs(back.amplitude - 10000) < 500, `16 kHz amplitude ${back.amplitude}`)
})

t.test('resampled lengths are exact over a stream: no drift over 10 s', async (t) => {
  // The resampler holds nothing back (its filter's delay comes out as silence in front),
  // so 10 s in is exactly 10 s out.
  for (const rate of [8000, 16000, 22050, 44100, 48000]) {
    const audio = sine(rate, 10, 440, 8000)
    const frameBytes = Math.floor(rate / 100) * 2 // ~10 ms
    const converter = new InputAudioConverter(linear16(rate))
    let total = 0
    let worstFrame = 0
    for (let at = 0; at < audio.length; at += frameBytes) {
      const samples = Buffer.from(converter.push(audio.subarray(at, at + frameBytes)), 'base64').length / 2
      total += samples
      if (at > 0 && rate % 100 === 0) worstFrame = Math.max(worstFrame, Math.abs(samples - 240))
    }
    t.equal(total, 240_000, `input ${rate} → 24000: samples for 10 s`)
    if (rate % 100 === 0) t.ok(worstFrame <= 1, `input ${rate}: every 10 ms frame is 240 ± 1 samples (worst ${worstFrame})`)

    const agent = sine(24000, 10, 440, 8000)
    const out = new OutputAudioConverter(linear16(rate))
    let outTotal = 0
    let allEven = true
    for (let at = 0; at < agent.length; at += 960) {
      const frame = out.push(agent.subarray(at, at + 960).toString('base64'))
      allEven &&= frame.length % 2 === 0
      outTotal += frame.length / 2
    }
    t.ok(allEven, `output ${rate}: every frame has an even length`)
    t.equal(outTotal, rate * 10, `output 24000 → ${rate}: samples for 10 s`)
  }
})

t.test('resampling preserves a tone at 8 k, 44.1 k and 48 k in both directions', async (t) => {
  for (const rate of [8000, 44100, 48000]) {
    const input = runInput(linear16(rate), split(sine(rate, 1, 440, 12000), prng(rate), 2000))
    const heard = measure(input, 24000)
    t.ok(Math.abs(heard.hz - 440) < 1, `input ${rate}: ${heard.hz} Hz`)
    t.ok(Math.abs(heard.amplitude - 12000) < 400, `input ${rate}: amplitude ${heard.amplitude}`)

    const output = runOutput(linear16(rate), split(sine(24000, 1, 440, 12000), prng(rate + 1), 2000))
    const played = measure(output, rate)
    t.ok(Math.abs(played.hz - 440) < 1, `output ${rate}: ${played.hz} Hz`)
    t.ok(Math.abs(played.amplitude - 12000) < 400, `output ${rate}: amplitude ${played.amplitude}`)
  }
})

t.test('downsampling attenuates what would alias', async (t) => {
  // 10 kHz cannot exist at 8 kHz output: unfiltered it would fold back to 2 kHz at full level.
  const output = runOutput(linear16(8000), [sine(24000, 1, 10000, 10000)])
  t.ok(measure(output, 8000).amplitude < 1000, `aliased residue ${measure(output, 8000).amplitude}`)
})

t.test('resampling is split-invariant, including odd chunk lengths', async (t) => {
  const random = prng(5)
  for (const rate of [8000, 11025, 16000, 22050, 32000, 44100, 48000]) {
    const clientAudio = noise(rate / 5 * 2 + 1, random) // 200 ms and an odd byte
    const whole = runInput(linear16(rate), [clientAudio])
    const agentAudio = noise(24000 / 5 * 2 + 1, random)
    const wholeOut = runOutput(linear16(rate), [agentAudio])
    for (let round = 0; round < 5; round++) {
      const odd = round % 2 === 0
      t.same(runInput(linear16(rate), split(clientAudio, random, 777, odd)), whole, `input ${rate} round ${round}`)
      let allEven = true
      const out = runOutput(linear16(rate), split(agentAudio, random, 777, odd), (frame) => { allEven &&= frame.length % 2 === 0 })
      t.same(out, wholeOut, `output ${rate} round ${round}`)
      t.ok(allEven, `output ${rate}: frames are even`)
    }
    const byteByByte = runInput(linear16(rate), split(clientAudio, () => 0, 1))
    t.same(byteByByte, whole, `input ${rate} one byte at a time`)
  }
})

t.test('OutputAudioConverter.reset starts the next response clean', async (t) => {
  const agent = sine(24000, 0.2, 300, 9000)
  for (const format of [linear16(16000), linear16(48000), linear16(24000)]) {
    const fresh = runOutput(format, [agent])
    const converter = new OutputAudioConverter(format)
    converter.push(sine(24000, 0.05, 700, 20000).subarray(0, 1001).toString('base64'))
    converter.reset()
    t.same(converter.push(agent.toString('base64')), fresh, `${format.sampleRate}: same as a fresh converter`)
  }
})
