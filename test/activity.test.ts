// lib/activity.ts: what /connections shows of a session's traffic. Counts by type, and a
// bounded timeline in which consecutive audio frames and deltas fold into one entry per stream.
// Pure: no sockets (test/admin-live.test.ts reads the same through the admin API).

import t from 'tap'
import { SessionActivity, TIMELINE_SIZE, stream } from '../lib/activity.js'
import { UNKNOWN_TYPE, clientTypeBucket } from '../lib/protocol/deepgram.js'
import type { TimelineEvent } from '../lib/registry.js'

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

/** The timeline without its times, which depend on the clock. */
function timeline (activity: SessionActivity): Array<Omit<TimelineEvent, 'at'>> {
  return activity.events().map(({ at, ...rest }) => rest)
}

t.test('counts by type, per counter', async (t) => {
  const activity = new SessionActivity()
  activity.count(activity.clientReceived, 'Settings')
  activity.count(activity.clientReceived, 'binary')
  activity.count(activity.clientReceived, 'binary')
  activity.count(activity.upstreamSent, 'session.update')
  t.same({ ...activity.clientReceived }, { Settings: 1, binary: 2 })
  t.same({ ...activity.upstreamSent }, { 'session.update': 1 })
  t.same({ ...activity.clientSent }, {})
  t.same({ ...activity.upstreamReceived }, {})
})

t.test('counts keyed by outside data are prototype-free: every type is a count of its own', async (t) => {
  const activity = new SessionActivity()
  for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '__proto__']) activity.count(activity.clientReceived, type)
  const counts = activity.clientReceived
  t.equal(Object.getOwnPropertyDescriptor(counts, '__proto__')?.value, 2)
  t.equal(counts.constructor, 1)
  t.equal(counts.toString, 1)
  t.equal(counts.hasOwnProperty, 1)
  const shown = JSON.parse(JSON.stringify({ ...counts })) as Record<string, unknown>
  t.same(Object.entries(shown).sort(), [['__proto__', 2], ['constructor', 1], ['hasOwnProperty', 1], ['toString', 1]], 'as /connections serializes them')
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})

t.test('types are bounded before they are counted: only protocol types have counts of their own', async (t) => {
  for (let i = 0; i < 200; i++) t.equal(clientTypeBucket(`Invented${i}`), UNKNOWN_TYPE)
  for (const type of ['Settings', 'InjectUserMessage', 'KeepAlive', 'AgentKeepAlive']) t.equal(clientTypeBucket(type), type)
  for (const type of ['__proto__', 'constructor', 'x'.repeat(100_000)]) t.equal(clientTypeBucket(type), UNKNOWN_TYPE)
})

t.test('protocol events: one timeline entry each, with their fields, undefined fields left out', async (t) => {
  const activity = new SessionActivity()
  activity.record('client->proxy', 'Settings')
  activity.record('proxy->upstream', 'session.update', { eventId: 'ev1', responseId: undefined })
  activity.record('proxy->client', 'Error', { code: 'UNPARSABLE_CLIENT_MESSAGE' })
  const events = activity.events()
  t.same(timeline(activity), [
    { direction: 'client->proxy', type: 'Settings' },
    { direction: 'proxy->upstream', type: 'session.update', eventId: 'ev1' },
    { direction: 'proxy->client', type: 'Error', code: 'UNPARSABLE_CLIENT_MESSAGE' }
  ])
  t.notOk('responseId' in (events[1] as object), 'no key for an undefined field')
  for (const event of events) t.match(event.at, ISO)
})

t.test('audio frames fold into one run per stream until a protocol event comes between them', async (t) => {
  const activity = new SessionActivity()
  const clientIn = stream('client->proxy', 'binary')
  const upstreamOut = stream('proxy->upstream', 'input_audio_buffer.append')
  activity.recordAudio(clientIn, 960)
  activity.recordAudio(upstreamOut, 960)
  activity.recordAudio(clientIn, 960)
  activity.recordAudio(upstreamOut, 961)
  activity.recordAudio(clientIn, 100)
  activity.record('upstream->proxy', 'input_audio_buffer.speech_started')
  activity.recordAudio(clientIn, 10)
  t.same(timeline(activity), [
    { direction: 'client->proxy', type: 'binary', bytes: 2020, frames: 3 },
    { direction: 'proxy->upstream', type: 'input_audio_buffer.append', bytes: 1921, frames: 2 },
    { direction: 'upstream->proxy', type: 'input_audio_buffer.speech_started' },
    { direction: 'client->proxy', type: 'binary', bytes: 10 }
  ], 'two interleaved streams, each one entry, then a new run after the event (a run of one frame has no `frames`)')
})

t.test('an audio run carries the response id of its first frame', async (t) => {
  const activity = new SessionActivity()
  const clientOut = stream('proxy->client', 'binary')
  activity.recordAudio(clientOut, 480, 'resp_1')
  activity.recordAudio(clientOut, 480, 'resp_1')
  activity.record('upstream->proxy', 'response.done', { responseId: 'resp_1' })
  activity.recordAudio(clientOut, 480, 'resp_2')
  t.same(timeline(activity), [
    { direction: 'proxy->client', type: 'binary', bytes: 960, frames: 2, responseId: 'resp_1' },
    { direction: 'upstream->proxy', type: 'response.done', responseId: 'resp_1' },
    { direction: 'proxy->client', type: 'binary', bytes: 480, responseId: 'resp_2' }
  ])
})

t.test('deltas fold into runs like audio frames, and neither ends the other\'s run', async (t) => {
  const activity = new SessionActivity()
  const clientOut = stream('proxy->client', 'binary', 'clientSent')
  const words = stream('upstream->proxy', 'response.output_audio_transcript.delta', 'upstreamReceived')
  activity.recordAudio(clientOut, 480, 'resp_1')
  activity.recordDelta(words, 'resp_1', 'item_1')
  activity.recordAudio(clientOut, 480, 'resp_1')
  activity.recordDelta(words, 'resp_1', 'item_1')
  activity.recordAudio(clientOut, 480, 'resp_1')
  activity.record('upstream->proxy', 'response.output_audio_transcript.done', { responseId: 'resp_1', itemId: 'item_1' })
  activity.recordDelta(words, 'resp_2', 'item_2')
  activity.recordDelta(words, 'resp_2', 'item_2')
  t.same(timeline(activity), [
    { direction: 'proxy->client', type: 'binary', bytes: 1440, frames: 3, responseId: 'resp_1' },
    { direction: 'upstream->proxy', type: 'response.output_audio_transcript.delta', frames: 2, responseId: 'resp_1', itemId: 'item_1' },
    { direction: 'upstream->proxy', type: 'response.output_audio_transcript.done', responseId: 'resp_1', itemId: 'item_1' },
    { direction: 'upstream->proxy', type: 'response.output_audio_transcript.delta', frames: 2, responseId: 'resp_2', itemId: 'item_2' }
  ])
  t.notOk('bytes' in (activity.events()[1] as object), 'a delta run has no bytes')
})

t.test('streamed messages are counted with the others, under their type, in their own counts only', async (t) => {
  const activity = new SessionActivity()
  const clientIn = stream('client->proxy', 'binary', 'clientReceived')
  const clientOut = stream('proxy->client', 'binary', 'clientSent')
  const dropped = stream('proxy->client', 'binary_dropped')
  const words = stream('upstream->proxy', 'response.output_text.delta', 'upstreamReceived')
  t.same(activity.counts('clientReceived'), {}, 'nothing before the first message')
  activity.count(activity.clientReceived, 'Settings')
  for (let i = 0; i < 3; i++) activity.recordAudio(clientIn, 960)
  activity.record('upstream->proxy', 'response.created')
  activity.recordAudio(clientIn, 960)
  for (let i = 0; i < 2; i++) activity.recordAudio(clientOut, 480)
  for (let i = 0; i < 5; i++) activity.recordAudio(dropped, 480)
  activity.recordDelta(words, 'resp_1', undefined)
  activity.count(activity.clientSent, 'binary')
  t.same(activity.counts('clientReceived'), { Settings: 1, binary: 4 }, 'across runs')
  t.same(activity.counts('clientSent'), { binary: 3 }, 'added to a count of the same type; dropped audio is not a message sent')
  t.same(activity.counts('upstreamReceived'), { 'response.output_text.delta': 1 })
  t.same(activity.counts('upstreamSent'), {})
  const copy = activity.counts('clientReceived')
  copy.binary = 0
  t.equal(activity.counts('clientReceived').binary, 4, 'a copy')
  t.same({ ...activity.clientReceived }, { Settings: 1 }, 'the keyed counts hold protocol messages only')
})

t.test('a stream built after a session\'s first streamed message has its slot too', async (t) => {
  const activity = new SessionActivity()
  const early = stream('client->proxy', 'binary', 'clientReceived')
  activity.recordAudio(early, 10)
  const late = stream('proxy->upstream', 'input_audio_buffer.append', 'upstreamSent')
  activity.recordAudio(late, 20)
  activity.recordAudio(late, 20)
  activity.recordAudio(early, 10)
  t.same(timeline(activity), [
    { direction: 'client->proxy', type: 'binary', bytes: 20, frames: 2 },
    { direction: 'proxy->upstream', type: 'input_audio_buffer.append', bytes: 40, frames: 2 }
  ])
  t.same(activity.counts('clientReceived'), { binary: 2 })
  t.same(activity.counts('upstreamSent'), { 'input_audio_buffer.append': 2 })
})

t.test('the timeline keeps the last TIMELINE_SIZE entries, oldest first', async (t) => {
  t.equal(TIMELINE_SIZE, 200, 'as the README says')
  const activity = new SessionActivity()
  for (let i = 0; i < TIMELINE_SIZE + 25; i++) activity.record('client->proxy', `T${i}`)
  const events = activity.events()
  t.equal(events.length, TIMELINE_SIZE)
  t.equal(events[0]?.type, 'T25')
  t.equal(events.at(-1)?.type, `T${TIMELINE_SIZE + 24}`)
  // Audio runs count as one entry however many frames they hold.
  const audio = new SessionActivity()
  const frames = stream('client->proxy', 'binary')
  for (let i = 0; i < 1000; i++) audio.recordAudio(frames, 2)
  t.same(timeline(audio), [{ direction: 'client->proxy', type: 'binary', bytes: 2000, frames: 1000 }])
})

t.test('events() is a copy: changing it changes nothing, and later frames do not change an earlier copy', async (t) => {
  const activity = new SessionActivity()
  const frames = stream('client->proxy', 'binary')
  activity.recordAudio(frames, 10)
  const copy = activity.events()
  activity.recordAudio(frames, 10)
  t.equal(copy[0]?.bytes, 10)
  copy[0]!.type = 'changed'
  copy.push({ at: '', direction: 'client->proxy', type: 'extra' })
  t.same(timeline(activity), [{ direction: 'client->proxy', type: 'binary', bytes: 20, frames: 2 }])
})
