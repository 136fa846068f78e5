import t from 'tap'
import { alawDecode, alawEncode, audioChunk, mulawDecode, mulawEncode } from '../../lib/simulator/audio.js'
import { EnergyVad, type VadEvent } from '../../lib/simulator/vad.js'
import { connect, settle, simulator, type Client } from './helper.js'

const THRESHOLD = 0.02
const SILENT_BYTE: Record<string, number> = { 'audio/pcm': 0, 'audio/pcmu': 0xff, 'audio/pcma': 0xd5 }

/** 40 ms frames: the simulator's own tone (0.1 of full scale) for speech, digital silence else. */
function frames (type: string, pattern: Array<[boolean, number]>): Buffer[] {
  const tone = Buffer.from(audioChunk({ type }).base64, 'base64')
  const quiet = Buffer.alloc(tone.length, SILENT_BYTE[type])
  return pattern.flatMap(([loud, ms]) => Array.from({ length: ms / 40 }, () => loud ? tone : quiet))
}

function run (vad: EnergyVad, type: string, chunks: Buffer[], silenceMs: number): VadEvent[] {
  const events: VadEvent[] = []
  let ms = 0
  for (const chunk of chunks) {
    events.push(...vad.feed(chunk, { type }, ms, THRESHOLD, silenceMs))
    ms += 40
  }
  return events
}

for (const type of ['audio/pcm', 'audio/pcmu', 'audio/pcma']) {
  t.test(`EnergyVad on ${type}: speech from the first loud frame, until silence_duration_ms of quiet`, async (t) => {
    const vad = new EnergyVad()
    const speech = frames(type, [[false, 200], [true, 400], [false, 600]])
    t.same(run(vad, type, speech, 500), [
      { type: 'speech_started', audioStartMs: 200 },
      { type: 'speech_stopped', audioEndMs: 600 }
    ])
    t.notOk(vad.speaking)
    t.same(run(new EnergyVad(), type, frames(type, [[true, 80], [false, 40], [true, 80], [false, 400]]), 200), [], 'bursts under 100 ms are not speech')
    t.same(run(new EnergyVad(), type, frames(type, [[true, 200], [false, 120], [true, 120], [false, 240]]), 200), [
      { type: 'speech_started', audioStartMs: 0 },
      { type: 'speech_stopped', audioEndMs: 440 }
    ], 'a pause shorter than the silence duration does not end the turn')
  })
}

t.test('EnergyVad carries a frame across appends of any size, and its threshold is an RMS level', async (t) => {
  const tone = Buffer.concat(frames('audio/pcm', [[true, 200]]))
  const vad = new EnergyVad()
  const events: VadEvent[] = []
  // Odd slices (whole samples) straddle the 20 ms frames.
  for (let at = 0; at < tone.length; at += 334) events.push(...vad.feed(tone.subarray(at, at + 334), { type: 'audio/pcm' }, at / 48, THRESHOLD, 500))
  t.same(events, [{ type: 'speech_started', audioStartMs: 0 }])
  // The tone's RMS is 0.1 / √2 ≈ 0.0707 of full scale.
  const vadAbove = new EnergyVad()
  t.same(frames('audio/pcm', [[true, 200]]).flatMap((chunk, i) => vadAbove.feed(chunk, { type: 'audio/pcm' }, i * 40, 0.08, 500)), [], 'quieter than the threshold')
})

t.test('G.711 coding: encode then decode is within a segment step', async (t) => {
  // A segment's step is 1/16 of its range: the error stays within it (and within 32 near zero).
  const off = (decode: (byte: number) => number, encode: (sample: number) => number): number[] => {
    const wrong: number[] = []
    for (let sample = -32768; sample <= 32767; sample += 7) {
      if (Math.abs(decode(encode(sample)) - sample) > Math.max(32, Math.abs(sample) / 16)) wrong.push(sample)
    }
    return wrong
  }
  t.same(off(mulawDecode, mulawEncode), [], 'μ-law')
  t.same(off(alawDecode, alawEncode), [], 'A-law')
  t.equal(mulawDecode(0xff), 0)
  t.equal(Math.abs(alawDecode(0xd5)), 8)
})

/** Appends `chunks` as input audio, one event each. */
function speak (client: Client, chunks: Buffer[]): void {
  for (const chunk of chunks) client.send({ type: 'input_audio_buffer.append', audio: chunk.toString('base64') })
}

t.test('energyVad: a microphone\'s audio makes a whole turn, committed with its prefix padding, then an answer', async (t) => {
  const sim = await simulator(t, { script: { energyVad: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { input: { transcription: { model: 'whisper-1' }, turn_detection: { type: 'server_vad', silence_duration_ms: 300 } } } })
  const from = client.events.length
  speak(client, frames('audio/pcm', [[false, 520], [true, 400], [false, 400]]))
  const done = await client.next('response.done')
  t.same(client.types(from).slice(0, 7), [
    'input_audio_buffer.speech_started',
    'input_audio_buffer.speech_stopped',
    'input_audio_buffer.committed',
    'conversation.item.added',
    'conversation.item.done',
    'conversation.item.input_audio_transcription.completed',
    'response.created'
  ])
  const [started, stopped, committed] = client.events.slice(from)
  t.match(started, { audio_start_ms: 520, item_id: committed.item_id })
  t.match(stopped, { audio_end_ms: 920, item_id: committed.item_id })
  t.match(client.events.find((event) => event.type === 'conversation.item.input_audio_transcription.completed'), { transcript: '(spoken audio)' })
  t.equal(done.response.output[0].content[0].transcript, 'You said: (spoken audio).')
  // Kept: 300 ms of padding as speech became certain (100 ms in), the rest of the speech (300 ms),
  // then the quiet to the end of the append that stopped it (340 ms): 940 ms, 10 tokens, where
  // the 1240 ms appended by then would be 13.
  t.equal(done.response.usage.input_token_details.audio_tokens, 10)
  t.equal(connection.count('response.create'), 0)
})

t.test('energyVad barges in on a response being spoken (interrupt_response), and is off without turn detection', async (t) => {
  const sim = await simulator(t, { script: { energyVad: true, chunkIntervalMs: 200, audioChunks: 5 } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  await client.next('response.output_audio.delta')
  speak(client, frames('audio/pcm', [[true, 120]]))
  await client.next('input_audio_buffer.speech_started')
  const done = await client.next('response.done')
  t.match(done.response, { id: created.response.id, status: 'cancelled', status_details: { reason: 'turn_detected' } })

  await client.configure({ audio: { input: { turn_detection: null } } })
  const from = client.events.length
  speak(client, frames('audio/pcm', [[true, 400], [false, 800]]))
  await connection.waitFor('input_audio_buffer.append', () => connection.count('input_audio_buffer.append') === 3 + 30)
  await settle()
  t.notOk(client.types(from).some((type) => type.startsWith('input_audio_buffer.speech')), 'turn_detection null: no VAD')
})
