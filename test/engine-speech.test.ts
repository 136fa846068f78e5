// What the client hears, decided by the turn engine (docs/turn-engine.md, "Speech"):
// which response's audio plays, what barge-in mutes (also before a response's first
// audio), when AgentAudioDone is due, and the latencies of AgentStartedSpeaking.

import t from 'tap'
import { Driver, client, ready, responding, upstream, type Input } from './helpers/engine-driver.js'
import type { Command } from '../lib/engine/io.js'

function metrics (cmds: Command[]): Array<Extract<Command, { kind: 'metric' }>> {
  return cmds.flatMap((c) => c.kind === 'metric' ? [c] : [])
}

/** Feeds `input` at exactly `at` ms. */
function at (d: Driver, time: number, input: Input): Command[] {
  d.at = time - 10
  return d.feed(input)
}

t.test('the first audio of a response: AgentStartedSpeaking once, then that response is the audible one', async (t) => {
  const d = responding('resp_1')
  t.equal(d.engine.audibleResponse, null, 'nothing audible before any audio')
  const first = d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  t.equal(client(first, 'AgentStartedSpeaking').length, 1)
  t.equal(d.engine.audibleResponse, 'resp_1', 'its next deltas go straight to the client')
  t.same(d.feed({ type: 'agentAudio', responseId: 'resp_1' }), [], 'a second first-audio of the same response changes nothing')
})

t.test('latency anchors: a text turn is measured from the client message', async (t) => {
  const d = ready()
  at(d, 1000, { type: 'injectAgent', message: 'Hello.', behavior: 'queue' })
  at(d, 1300, { type: 'upstream', event: { type: 'response.created', response: { id: 'resp_1', conversation_id: 'c', metadata: { proxy_event_id: d.lastCreate() } } } })
  const cmds = at(d, 1500, { type: 'agentAudio', responseId: 'resp_1' })
  t.match(client(cmds, 'AgentStartedSpeaking'), [{ total_latency: 0.5, ttt_latency: 0.3, tts_latency: 0.2 }])
  t.match(metrics(cmds), [{ name: 'timeToFirstAudio', seconds: 0.5 }])
})

t.test('latency anchors: a voice turn is measured from speech_stopped, not from an earlier client message', async (t) => {
  const d = ready()
  at(d, 100, { type: 'injectUser', content: 'earlier' })
  at(d, 2000, { type: 'upstream', event: { type: 'input_audio_buffer.speech_started' } })
  at(d, 2800, { type: 'upstream', event: { type: 'input_audio_buffer.speech_stopped' } })
  at(d, 3000, { type: 'upstream', event: { type: 'response.created', response: { id: 'resp_vad', conversation_id: 'c', metadata: null } } })
  const cmds = at(d, 3700, { type: 'agentAudio', responseId: 'resp_vad' })
  t.match(client(cmds, 'AgentStartedSpeaking'), [{ total_latency: 0.9, ttt_latency: 0.2, tts_latency: 0.7 }])
})

t.test('latency anchors: an anchor later than the response (a message while it ran) is not used', async (t) => {
  const d = responding('resp_1')
  const created = d.at
  at(d, created + 100, { type: 'injectUser', content: 'while it runs' })
  const cmds = at(d, created + 400, { type: 'agentAudio', responseId: 'resp_1' })
  t.match(client(cmds, 'AgentStartedSpeaking'), [{ total_latency: 0.4, ttt_latency: 0, tts_latency: 0.4 }])
})

t.test('barge-in mid-audio: UserStartedSpeaking, the output converter is reset, the response goes silent', async (t) => {
  const d = responding('resp_1')
  d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  const cmds = d.up({ type: 'input_audio_buffer.speech_started' })
  t.same(cmds.filter((c) => c.kind === 'resetOutputAudio' || c.kind === 'client').map((c) => c.kind === 'client' ? c.message.type : c.kind), ['resetOutputAudio', 'UserStartedSpeaking', 'AgentAudioDone'], 'the converter drops what it carries before the client is told; the interrupted audio ends')
  t.equal(d.engine.audibleResponse, null)
  t.same(d.feed({ type: 'agentAudio', responseId: 'resp_1' }), [], 'more audio of the interrupted response: nothing')
  t.equal(d.engine.audibleResponse, null, 'still silent')
})

t.test('barge-in before the first audio delta: the running response never starts speaking', async (t) => {
  const d = responding('resp_1')
  d.up({ type: 'input_audio_buffer.speech_started' })
  const cmds = d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  t.same(client(cmds), [], 'no AgentStartedSpeaking for a response the user talked over')
  t.equal(d.engine.audibleResponse, null, 'its audio does not play')
  t.same(client(d.content('resp_1', 'response.output_audio.done')), [], 'no AgentAudioDone for audio that never played')
})

t.test('after barge-in, the next response speaks again', async (t) => {
  const d = responding('resp_1')
  d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  d.up({ type: 'input_audio_buffer.speech_started' })
  d.done('resp_1', 'cancelled')
  d.up({ type: 'input_audio_buffer.speech_stopped' })
  d.created('resp_2', null)
  const cmds = d.feed({ type: 'agentAudio', responseId: 'resp_2' })
  t.equal(client(cmds, 'AgentStartedSpeaking').length, 1)
  t.equal(d.engine.audibleResponse, 'resp_2')
})

t.test('AgentAudioDone: for the response being heard, not for one that never spoke', async (t) => {
  const d = responding('resp_1')
  t.same(client(d.content('resp_1', 'response.output_audio.done')), [], 'a response with no audio heard')
  d.done('resp_1')
  d.feed({ type: 'injectAgent', message: 'Again.', behavior: 'queue' })
  d.created('resp_2')
  d.feed({ type: 'agentAudio', responseId: 'resp_2' })
  t.same(client(d.content('resp_2', 'response.output_audio.done')), [{ type: 'AgentAudioDone' }])
  t.same(client(d.content('resp_other', 'response.output_audio.done')), [], 'another response\'s audio.done')
})

t.test('every speech_started resets the output converter, also with nothing playing', async (t) => {
  const d = ready()
  const cmds = d.up({ type: 'input_audio_buffer.speech_started' })
  t.equal(cmds.filter((c) => c.kind === 'resetOutputAudio').length, 1)
  t.same(client(cmds), [{ type: 'UserStartedSpeaking' }])
})

t.test('barge-in while our response is requested but not yet created silences that response too', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'Here is the news.', behavior: 'queue' })
  d.up({ type: 'input_audio_buffer.speech_started' })
  const created = d.created('resp_1')
  t.match(upstream(created, 'response.cancel'), [{ response_id: 'resp_1' }], 'cancelled when it exists')
  t.same(client(d.feed({ type: 'agentAudio', responseId: 'resp_1' })), [], 'no AgentStartedSpeaking')
  t.equal(d.engine.audibleResponse, null, 'its audio does not play')
})

/** resp_1 finished: all its 4 s of audio sent from `d.at`, its transcript known; the client is still playing it. */
function playingOut (d: Driver): number {
  d.up({ type: 'response.output_item.added', response_id: 'resp_1', output_index: 0, item: { id: 'item_a', type: 'message', role: 'assistant', content: [] } })
  d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  const firstAudio = d.at
  d.engine.noteAudio('resp_1', 4000, true)
  d.up({ type: 'response.output_audio_transcript.done', response_id: 'resp_1', item_id: 'item_a', output_index: 0, content_index: 0, transcript: 'one two three four five six seven eight nine ten' })
  d.up({ type: 'response.output_audio.done', response_id: 'resp_1', item_id: 'item_a', output_index: 0, content_index: 0 })
  d.done('resp_1')
  return firstAudio
}

t.test('barge-in during the play-out of a finished reply, after the next response was created: both are cut', async (t) => {
  const d = responding('resp_1')
  const firstAudio = playingOut(d)
  d.feed({ type: 'injectAgent', message: 'And another thing.', behavior: 'queue' })
  d.created('resp_2')
  const cmds = at(d, firstAudio + 2000, { type: 'upstream', event: { type: 'input_audio_buffer.speech_started' } })
  t.match(upstream(cmds, 'conversation.item.truncate'), [{ item_id: 'item_a', content_index: 0, audio_end_ms: 2000 }], 'the reply being heard is cut where the user spoke')
  t.match(client(cmds, 'ConversationText'), [{ role: 'assistant', content: 'one two three four five' }], 'and told as heard')
  t.match(upstream(cmds, 'response.cancel'), [{ response_id: 'resp_2' }], 'the new response is cancelled')
  t.same(client(d.feed({ type: 'agentAudio', responseId: 'resp_2' })), [], 'and never heard')
})

t.test('an out-of-band response created during the play-out does not shield the reply from barge-in', async (t) => {
  const d = responding('resp_1')
  const firstAudio = playingOut(d)
  d.up({ type: 'response.created', response: { object: 'realtime.response', id: 'resp_oob', status: 'in_progress', conversation_id: null, metadata: null, output: [] } })
  const cmds = at(d, firstAudio + 1000, { type: 'upstream', event: { type: 'input_audio_buffer.speech_started' } })
  t.match(upstream(cmds, 'conversation.item.truncate'), [{ item_id: 'item_a', audio_end_ms: 1000 }])
  t.same(upstream(cmds, 'response.cancel'), [], 'an out-of-band response is not ours to cancel')
})
