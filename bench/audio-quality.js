// `npm run bench:audio`: the proxy's resampler (lib/audio.ts) against resampling
// libraries, for the conversions sessions make (client rate ↔ OpenAI's 24 kHz):
// quality (bench/audio-signals.js: SNR on a speech-like signal, passband ripple,
// images / aliases of in-band tones, aliasing of tones above the target's Nyquist) and
// CPU per second of audio, streaming in 20 ms frames as a session receives them.
//
// Candidates:
//   proxy                 this build's InputAudioConverter / OutputAudioConverter, as
//                         sessions call them (base64 included)
//   before                the same from another build (--baseline DIR: a dist/ folder)
//   libsamplerate best|medium|fastest
//                         @alexanderolsen/libsamplerate-js (libsamplerate in WebAssembly);
//                         `best` is the reference
//   speex Q               @echogarden/speex-resampler-wasm (the SpeexDSP resampler in
//                         WebAssembly, SIMD build) at quality Q (3, 4, 5, 6, 8 of 0–10)
// Libraries get the same base64 work as the proxy around them, so CPU figures compare
// the whole per-frame work.
//
// Options:
//   --conversions 16000:24000,48000:24000,…   (default: 16, 48, 8 and 44.1 kHz ↔ 24 kHz)
//   --candidates proxy,libsamplerate best,…   (default: all)
//   --baseline DIR       also measure the converters of the build in DIR as `before`
//   --seconds 10         audio per CPU measurement, --cpu-repeat 7 (the fastest is kept)
//   --json FILE          the results as JSON
// Markdown goes to stdout, progress to stderr.

import os from 'node:os'
import { writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { measureQuality, speechPair } from './audio-signals.js'
import { importProduct } from './product.js'

const FRAME_MS = 20
const OPENAI_RATE = 24000

const { values } = parseArgs({
  options: {
    conversions: { type: 'string', default: '16000:24000,48000:24000,24000:16000,24000:48000,8000:24000,24000:8000,44100:24000,24000:44100' },
    candidates: { type: 'string' },
    baseline: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    'cpu-repeat': { type: 'string', default: '7' },
    json: { type: 'string' }
  }
})
const conversions = values.conversions.split(',').map((pair) => pair.split(':').map(Number))
for (const [from, to] of conversions) {
  if (from !== OPENAI_RATE && to !== OPENAI_RATE) throw new Error(`--conversions: ${from}:${to} does not involve ${OPENAI_RATE} Hz, as every session's conversion does`)
}

const candidates = await loadCandidates()
const chosen = values.candidates === undefined ? candidates : values.candidates.split(',').map(findCandidate)

const results = { startedAt: new Date().toISOString(), machine: machine(), frameMs: FRAME_MS, rows: [] }
for (const [from, to] of conversions) {
  const rows = []
  for (const candidate of chosen) {
    process.stderr.write(`${from} → ${to} Hz, ${candidate.name} … `)
    const handle = await candidate.open(from, to)
    const quality = measureQuality(() => handle.fresh(), from, to)
    rows.push({ from, to, candidate: candidate.name, ...quality, handle })
    process.stderr.write(`SNR ${quality.snr.toFixed(1)} dB\n`)
  }
  process.stderr.write(`${from} → ${to} Hz: CPU … `)
  const cpu = cpuPerSecondOfAudio(rows.map((row) => row.handle), from, to)
  process.stderr.write('done\n')
  for (const [i, { handle, ...row }] of rows.entries()) {
    handle.close()
    results.rows.push({ ...row, cpuMsPerSecond: cpu[i] })
  }
}
results.finishedAt = new Date().toISOString()
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(results, null, 2) + '\n')
process.stdout.write(report(results))

/**
 * Each candidate opens a conversion as a handle: `fresh()` a new stream's
 * PCM16 → PCM16 function; `hotPath()` a new stream as a session runs it (client PCM16
 * → base64 upstream, or upstream base64 → client PCM16); `close()` frees it.
 */
async function loadCandidates () {
  const list = [productCandidate('proxy', await importProduct('lib/audio'))]
  if (values.baseline !== undefined) {
    const dir = pathToFileURL(values.baseline.replace(/\/?$/, '/'))
    list.unshift(productCandidate('before', await import(new URL('lib/audio.js', dir).href)))
  }
  // A UMD bundle: Node sees its exports as the default export.
  const { create, ConverterType } = (await import('@alexanderolsen/libsamplerate-js')).default
  for (const [name, type] of [['best', ConverterType.SRC_SINC_BEST_QUALITY], ['medium', ConverterType.SRC_SINC_MEDIUM_QUALITY],
    ['fastest', ConverterType.SRC_SINC_FASTEST]]) {
    list.push(libraryCandidate(`libsamplerate ${name}`, async (from, to) => libsamplerate(create, type, from, to)))
  }
  const { default: SpeexModule } = await import('@echogarden/speex-resampler-wasm/simd')
  const speexModule = await SpeexModule()
  for (const quality of [3, 4, 5, 6, 8]) {
    list.push(libraryCandidate(`speex ${quality}`, async (from, to) => speex(speexModule, quality, from, to)))
  }
  return list
}

function findCandidate (name) {
  const found = candidates.find((candidate) => candidate.name === name.trim())
  if (found === undefined) throw new Error(`--candidates: unknown "${name}"; known: ${candidates.map((c) => c.name).join(', ')}`)
  return found
}

function productCandidate (name, audio) {
  return {
    name,
    async open (from, to) {
      const format = { encoding: 'linear16', sampleRate: to === OPENAI_RATE ? from : to }
      const hotPath = () => {
        if (to === OPENAI_RATE) {
          const converter = new audio.InputAudioConverter(format)
          return (frame) => converter.push(frame)
        }
        const converter = new audio.OutputAudioConverter(format)
        return (delta) => converter.push(delta)
      }
      return {
        hotPath,
        fresh () {
          const push = hotPath()
          return to === OPENAI_RATE ? (frame) => Buffer.from(push(frame), 'base64') : (frame) => push(frame.toString('base64'))
        },
        close () {}
      }
    }
  }
}

/** `open(from, to)` → { reset(), convert(pcm16) → pcm16, close() }, wrapped in the proxy's base64 work. */
function libraryCandidate (name, open) {
  return {
    name,
    async open (from, to) {
      const stream = await open(from, to)
      const fresh = () => {
        stream.reset()
        return stream.convert
      }
      return {
        fresh,
        hotPath () {
          const convert = fresh()
          return to === OPENAI_RATE ? (frame) => convert(frame).toString('base64') : (delta) => convert(Buffer.from(delta, 'base64'))
        },
        close: stream.close
      }
    }
  }
}

async function libsamplerate (create, converterType, from, to) {
  const src = await create(1, from, to, { converterType })
  let input = new Float32Array(0)
  let output = new Float32Array(0)
  const written = { frames: 0 }
  return {
    // Setting the converter type re-initialises the converter: a new stream.
    reset () { src.converterType = converterType },
    convert (pcm) {
      const count = pcm.length >> 1
      if (input.length !== count) {
        input = new Float32Array(count)
        output = new Float32Array(Math.ceil(count * to / from) + 16)
      }
      for (let i = 0; i < count; i++) input[i] = pcm.readInt16LE(2 * i) / 32768
      src.full(input, output, written)
      const out = Buffer.allocUnsafe(2 * written.frames)
      for (let i = 0; i < written.frames; i++) out.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(output[i] * 32768))), 2 * i)
      return out
    },
    close () { src.destroy() }
  }
}

function speex (m, quality, from, to) {
  const error = m._malloc(4)
  const state = m._speex_resampler_init(1, from, to, quality, error)
  if (m.HEAP32[error >> 2] !== 0) throw new Error(`speex_resampler_init: error ${m.HEAP32[error >> 2]}`)
  m._free(error)
  const maxIn = Math.ceil(from * FRAME_MS / 1000) * 2
  const maxOut = Math.ceil(maxIn * to / from) + 64
  const inPtr = m._malloc(2 * maxIn)
  const outPtr = m._malloc(2 * maxOut)
  const lengths = m._malloc(8)
  return {
    reset () { m._speex_resampler_reset_mem(state) },
    convert (pcm) {
      const count = pcm.length >> 1
      m.HEAPU8.set(pcm, inPtr)
      m.HEAPU32[lengths >> 2] = count
      m.HEAPU32[(lengths >> 2) + 1] = maxOut
      const status = m._speex_resampler_process_int(state, 0, inPtr, lengths, outPtr, lengths + 4)
      if (status !== 0) throw new Error(`speex_resampler_process_int: error ${status}`)
      if (m.HEAPU32[lengths >> 2] !== count) throw new Error('speex_resampler_process_int left input unconsumed')
      return Buffer.from(m.HEAPU8.slice(outPtr, outPtr + 2 * m.HEAPU32[(lengths >> 2) + 1]))
    },
    close () {
      m._speex_resampler_destroy(state)
      for (const pointer of [inPtr, outPtr, lengths]) m._free(pointer)
    }
  }
}

/**
 * CPU (user + system) per second of audio of each handle, in ms: `--seconds` of the
 * speech-like signal in 20 ms frames through a new hot-path stream. The handles take
 * turns, `--cpu-repeat` runs each after one to warm up, and each keeps its fastest run:
 * on a shared machine the others' load only ever adds (cache, frequency, a shared core).
 */
function cpuPerSecondOfAudio (handles, from, to) {
  const seconds = Number(values.seconds)
  const { source } = speechPair(from, to, 1)
  const frameBytes = Math.round(from * FRAME_MS / 1000) * 2
  const frames = []
  for (let second = 0; second < seconds; second++) {
    for (let at = 0; at + frameBytes <= source.length; at += frameBytes) frames.push(source.subarray(at, at + frameBytes))
  }
  const wire = to === OPENAI_RATE ? frames : frames.map((frame) => frame.toString('base64'))
  const fastest = handles.map(() => Infinity)
  for (let run = 0; run <= Number(values['cpu-repeat']); run++) {
    for (const [i, handle] of handles.entries()) {
      const push = handle.hotPath()
      let sink = 0
      const before = process.cpuUsage()
      for (const frame of wire) sink += push(frame).length
      const used = process.cpuUsage(before)
      if (sink === 0) throw new Error('no output')
      if (run > 0) fastest[i] = Math.min(fastest[i], (used.user + used.system) / 1000 / seconds)
    }
  }
  return fastest
}

function report ({ machine, rows }) {
  const lines = [
    `Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}. Streaming in ${FRAME_MS} ms frames.`,
    '',
    '| conversion | resampler | SNR dB | ripple dB to 0.85 / 0.9 × Nyquist | images / aliases of in-band tones dB | aliasing of tones above Nyquist dB | CPU ms per s of audio | delay ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const row of rows) {
    lines.push(`| ${row.from / 1000} → ${row.to / 1000} kHz | ${row.candidate} | ${row.snr.toFixed(1)} | ${row.flatDb.toFixed(2)} / ${row.rippleDb.toFixed(2)} | ` +
      `${row.spurDb.toFixed(1)} | ${row.aliasDb === null ? '–' : row.aliasDb.toFixed(1)} | ${row.cpuMsPerSecond.toFixed(2)} | ${Math.max(0, row.delay / row.to * 1000).toFixed(2)} |`)
  }
  return lines.join('\n') + '\n'
}

function machine () {
  const cpus = os.cpus()
  return { cpu: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, node: process.version }
}
