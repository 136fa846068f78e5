import t from 'tap'
import fc from 'fast-check'
import { InputAudioConverter, OutputAudioConverter, type ClientAudioFormat } from '../lib/audio.js'

const formatArb: fc.Arbitrary<ClientAudioFormat> = fc.oneof(
  fc.constantFrom(8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000)
    .map((sampleRate) => ({ encoding: 'linear16', sampleRate })),
  fc.integer({ min: 8000, max: 96000 }).map((sampleRate) => ({ encoding: 'linear16', sampleRate })),
  fc.constantFrom({ encoding: 'mulaw', sampleRate: 8000 }, { encoding: 'alaw', sampleRate: 8000 })
)

/** Audio bytes and the sizes to cut them into (cycled until the audio runs out; 0 = an empty frame). */
const streamArb = fc.record({
  audio: fc.uint8Array({ maxLength: 3000 }).map((bytes) => Buffer.from(bytes)),
  cuts: fc.array(fc.integer({ min: 0, max: 701 }), { minLength: 1, maxLength: 20 })
})

function chunk (audio: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [audio.subarray(0, 0)]
  const progresses = cuts.some((size) => size > 0)
  for (let at = 0, i = 0; at < audio.length; i++) {
    const size = progresses ? cuts[i % cuts.length]! : audio.length
    chunks.push(audio.subarray(at, at + size))
    at += size
  }
  return chunks
}

/**
 * Samples a whole stream of `bytes` should produce: an output sample for every instant of
 * the output rate up to the last whole input sample (the filter's delay comes out as
 * silence in front, not as output held back).
 */
function expectedSamples (format: ClientAudioFormat, from: number, to: number, bytes: number): number {
  if (format.encoding !== 'linear16') return bytes
  return Math.ceil(Math.floor(bytes / 2) * to / from)
}

t.test('InputAudioConverter: any chunking gives the same audio, in whole samples', async (t) => {
  fc.assert(fc.property(formatArb, streamArb, (format, { audio, cuts }) => {
    const whole = Buffer.from(new InputAudioConverter(format).push(audio), 'base64')
    const converter = new InputAudioConverter(format)
    const parts = chunk(audio, cuts).map((part) => Buffer.from(converter.push(part), 'base64'))
    const linear16 = format.encoding === 'linear16'
    if (linear16 && parts.some((part) => part.length % 2 !== 0)) return false
    const bytesPerSample = linear16 ? 2 : 1
    const wholeOk = whole.length / bytesPerSample === expectedSamples(format, format.sampleRate, 24000, audio.length)
    return wholeOk && Buffer.concat(parts).equals(whole)
  }), { numRuns: 300 })
})

t.test('OutputAudioConverter: any chunking gives the same audio, frames always whole samples', async (t) => {
  fc.assert(fc.property(formatArb, streamArb, (format, { audio, cuts }) => {
    const whole = new OutputAudioConverter(format).push(audio.toString('base64'))
    const converter = new OutputAudioConverter(format)
    const parts = chunk(audio, cuts).map((part) => converter.push(part.toString('base64')))
    const linear16 = format.encoding === 'linear16'
    if (linear16 && parts.some((part) => part.length % 2 !== 0)) return false
    const bytesPerSample = linear16 ? 2 : 1
    const wholeOk = whole.length / bytesPerSample === expectedSamples(format, 24000, format.sampleRate, audio.length)
    return wholeOk && Buffer.concat(parts).equals(whole)
  }), { numRuns: 300 })
})

t.test('OutputAudioConverter: after reset, a stream converts as if the converter were new', async (t) => {
  fc.assert(fc.property(formatArb, streamArb, streamArb, (format, before, after) => {
    const converter = new OutputAudioConverter(format)
    for (const part of chunk(before.audio, before.cuts)) converter.push(part.toString('base64'))
    converter.reset()
    const fresh = new OutputAudioConverter(format).push(after.audio.toString('base64'))
    return converter.push(after.audio.toString('base64')).equals(fresh)
  }), { numRuns: 300 })
})
