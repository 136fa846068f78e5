// The upstream connection as the turn engine runs it (docs/turn-engine.md rule 14): when a
// planned renewal may go, how many attempts a renewal or a loss gets and how long each
// waits, when a streak of losses ends the session, and what a loss tells of a reply the
// client is still playing. Pure: the engine alone, time driven by the test.

import t from 'tap'
import { Driver, client, ready, responding, upstream, type Input, type ReadyOptions } from './helpers/engine-driver.js'
import type { Command } from '../lib/engine/io.js'
import { ErrorCode, WarningCode } from '../lib/protocol/deepgram.js'

const VAD = { type: 'server_vad' as const, create_response: true, interrupt_response: true }
const FAILURE = { code: ErrorCode.upstreamUnavailable, description: 'The agent could not be reached.', closeCode: 1011, reason: 'upstream unavailable' }

function connects (cmds: Command[]): Array<Extract<Command, { kind: 'connectUpstream' }>> {
  return cmds.flatMap((c) => c.kind === 'connectUpstream' ? [c] : [])
}

function renewing (opts: ReadyOptions = {}): Driver {
  return ready({ ...opts, options: { renewAfterMs: 1000, ...opts.options } })
}

const renewDue: Input = { type: 'timer', timer: { kind: 'renewDue' } }
const lost = (closeCode = 1006): Input => ({ type: 'upstreamLost', closeCode, failure: FAILURE })
const connectFailed: Input = { type: 'upstreamConnectFailed', failure: FAILURE }

/** The new upstream acknowledges every item replayed into it. */
function ackReplay (d: Driver, relinked: Command[]): void {
  for (const item of upstream(relinked, 'conversation.item.create')) d.itemAdded((item.item as { id: string }).id, 'conversation.item.done')
}

/** The new upstream opens and takes the session: the link is live again. */
function relink (d: Driver): Command[] {
  return [...d.feed({ type: 'upstreamOpened' }), ...d.up({ type: 'session.updated', session: { type: 'realtime' } })]
}

t.test('a renewal that is due waits while the user speaks and until server VAD has answered the turn', async (t) => {
  const d = renewing({ fields: { instructions: 'Be brief.', turnDetection: VAD } })
  d.up({ type: 'input_audio_buffer.speech_started' })
  t.same(connects(d.feed(renewDue)), [], 'not while the user speaks')
  t.same(connects(d.up({ type: 'input_audio_buffer.speech_stopped' })), [], 'not between the end of speech and the response server VAD creates for it')
  t.same(connects(d.up({ type: 'input_audio_buffer.committed', item_id: 'item_user' })), [], 'not when the turn is committed')
  t.same(connects(d.created('resp_vad', null)), [], 'not while the response runs')
  const after = d.done('resp_vad')
  t.match(connects(after), [{ reason: 'renew', delayMs: 0 }], 'at the first quiet moment after it')
})

t.test('without create_response, the end of speech is a quiet moment', async (t) => {
  const d = renewing({ fields: { instructions: 'Be brief.', turnDetection: { ...VAD, create_response: false } } })
  d.up({ type: 'input_audio_buffer.speech_started' })
  d.feed(renewDue)
  t.match(connects(d.up({ type: 'input_audio_buffer.speech_stopped' })), [{ reason: 'renew' }])
})

for (const [outcome, event] of [
  ['completed', { type: 'conversation.item.input_audio_transcription.completed', item_id: 'item_user', content_index: 0, transcript: 'Hello there.' }],
  ['failed', { type: 'conversation.item.input_audio_transcription.failed', item_id: 'item_user', content_index: 0, error: { type: 'transcription_error', message: 'x' } }]
] as const) {
  t.test(`a renewal held by a pending transcription goes once it has ${outcome}`, async (t) => {
    const d = renewing({ fields: { instructions: 'Be brief.', turnDetection: { ...VAD, create_response: false }, transcription: { model: 'whisper-1' } } })
    d.up({ type: 'input_audio_buffer.speech_started' })
    d.up({ type: 'input_audio_buffer.speech_stopped' })
    d.up({ type: 'input_audio_buffer.committed', item_id: 'item_user' })
    t.same(connects(d.feed(renewDue)), [], 'the user\'s words are not known yet')
    t.match(connects(d.up(event)), [{ reason: 'renew' }])
  })
}

t.test('a renewal whose connections fail gets as many attempts, with the same waits, as a loss', async (t) => {
  const attempts = (d: Driver, first: Command[]): { delays: number[], ended: Command[] } => {
    const delays = connects(first).map((c) => c.delayMs)
    let cmds: Command[] = []
    for (let i = 0; i < 10 && client(cmds, 'Error').length === 0; i++) {
      cmds = d.feed(connectFailed)
      delays.push(...connects(cmds).map((c) => c.delayMs))
    }
    return { delays, ended: cmds }
  }
  const options = { reconnectAttempts: 3, reconnectBackoffMs: 100 }
  const renewal = renewing({ options })
  const planned = attempts(renewal, renewal.feed(renewDue))
  const loss = ready({ options })
  const unplanned = attempts(loss, loss.feed(lost()))
  t.same(unplanned.delays, [0, 100, 200], 'a loss: at once, then the backoff doubling, three attempts in all')
  t.same(planned.delays, unplanned.delays, 'a renewal: the same')
  for (const ended of [planned.ended, unplanned.ended]) {
    t.match(client(ended, 'Error'), [{ code: ErrorCode.upstreamUnavailable }], 'then the session ends with the failure')
    t.ok(ended.some((c) => c.kind === 'close'))
  }
})

t.test('an upstream that keeps dropping soon after each reconnect ends the session; one that stayed up starts a new streak', async (t) => {
  const d = ready({ options: { reconnectAttempts: 3 } })
  for (let i = 1; i <= 3; i++) {
    t.equal(connects(d.feed(lost())).length, 1, `loss ${i}: a reconnect`)
    t.match(client(relink(d), 'Warning'), [{ code: WarningCode.upstreamReconnected }], `reconnect ${i}: one Warning`)
  }
  const fourth = d.feed(lost())
  t.same(connects(fourth), [], 'a fourth loss in a row: no more attempts')
  t.equal(client(fourth, 'Error').length, 1)

  const steady = ready({ options: { reconnectAttempts: 3 } })
  for (let i = 1; i <= 5; i++) {
    steady.at += 31_000
    t.equal(connects(steady.feed(lost())).length, 1, `loss ${i} after a stable half minute: a reconnect`)
    relink(steady)
  }
})

/** Our response `resp_1` with one message item whose whole transcript is known, `sent` ms of audio at the client out of `produced`. */
function speaking (sent: number, produced: number, done: boolean): Driver {
  const d = responding('resp_1')
  d.up({ type: 'response.output_item.added', response_id: 'resp_1', output_index: 0, item: { id: 'item_a', type: 'message', role: 'assistant', content: [] } })
  d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  d.engine.noteAudio('resp_1', sent, true)
  if (produced > sent) d.engine.noteAudio('resp_1', produced - sent, false)
  if (done) {
    d.up({ type: 'response.output_audio_transcript.done', response_id: 'resp_1', item_id: 'item_a', output_index: 0, content_index: 0, transcript: 'one two three four five six seven eight nine ten' })
    d.up({ type: 'response.output_audio.done', response_id: 'resp_1', item_id: 'item_a', output_index: 0, content_index: 0 })
    d.done('resp_1')
  } else {
    d.up({ type: 'response.output_audio_transcript.delta', response_id: 'resp_1', item_id: 'item_a', output_index: 0, content_index: 0, delta: 'one two three four five six seven eight nine ten' })
  }
  return d
}

t.test('a loss while the client plays out a finished reply: the reply is told whole (the client still hears all of it)', async (t) => {
  const d = speaking(4000, 4000, true)
  const cmds = d.feed(lost())
  t.match(client(cmds, 'ConversationText'), [{ role: 'assistant', content: 'one two three four five six seven eight nine ten' }])
  t.same(upstream(cmds, 'conversation.item.truncate'), [], 'nothing to cut')
  t.match(d.engine.state.record.entries, [{ kind: 'message', role: 'assistant', text: 'one two three four five six seven eight nine ten' }], 'the record, replayed into the next upstream, has all of it')
})

t.test('a loss mid-reply: the words of the audio the client was sent are told, not the rest', async (t) => {
  const d = speaking(2000, 4000, false)
  const cmds = d.feed(lost())
  t.match(client(cmds, 'ConversationText'), [{ role: 'assistant', content: 'one two three four five' }])
  t.equal(client(cmds, 'AgentAudioDone').length, 1, 'its audio ends')
})

t.test('the upstream ending the session (1001) at a quiet moment is a renewal, unseen; mid-response, or any other loss, is told', async (t) => {
  const quiet = ready()
  const goingAway = quiet.feed(lost(1001))
  t.match(connects(goingAway), [{ reason: 'renew', delayMs: 0 }], '1001 at a quiet moment: renewed at once')
  t.same(client(relink(quiet), 'Warning'), [], 'no Warning: nothing was lost')

  const busy = responding('resp_1')
  t.match(connects(busy.feed(lost(1001))), [{ reason: 'reconnect' }], '1001 during a response: a reconnect')
  t.match(client(relink(busy), 'Warning'), [{ code: WarningCode.upstreamReconnected }], 'told: the response was cut')

  const dropped = ready()
  t.match(connects(dropped.feed(lost(1006))), [{ reason: 'reconnect' }], 'a drop at a quiet moment: a reconnect')
  t.match(client(relink(dropped), 'Warning'), [{ code: WarningCode.upstreamReconnected }], 'told: a drop is not the upstream ending the session')
})

t.test('a function call the new upstream refuses in the replay is cancelled, and nothing is deleted there (its item is in no conversation)', async (t) => {
  const d = responding('resp_tools', { options: { reconnectAttempts: 3 } })
  d.args('call_1', 'resp_tools')
  d.done('resp_tools')
  d.feed(lost())
  const replay = upstream(relink(d), 'conversation.item.create')
  const call = replay.find((event) => (event.item as { type?: string }).type === 'function_call')
  t.ok(call, 'the open call is replayed')
  const cmds = d.error('invalid_value', call?.event_id ?? null)
  t.match(client(cmds, 'FunctionCallCancelled'), [{ functions: [{ id: 'call_1' }] }], 'the client is told the call no longer stands')
  t.same(upstream(cmds, 'conversation.item.delete'), [], 'no delete of an item the new upstream does not have (the old upstream\'s id would name nothing)')
  t.notOk(d.state.calls.has('call_1'))
})

/** Server VAD took a user's turn (committed as `item_user`), and the upstream is lost before it answers; the next one opens. */
function lostBeforeTheAnswer (transcription: boolean, transcribed: boolean): { d: Driver, relinked: Command[] } {
  const d = ready({ fields: { instructions: 'Be brief.', turnDetection: VAD, ...(transcription && { transcription: { model: 'whisper-1' } }) } })
  d.up({ type: 'input_audio_buffer.speech_started' })
  d.up({ type: 'input_audio_buffer.speech_stopped' })
  d.up({ type: 'input_audio_buffer.committed', item_id: 'item_user' })
  if (transcribed) d.up({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'item_user', content_index: 0, transcript: 'What time is it?' })
  d.feed(lost())
  return { d, relinked: relink(d) }
}

t.test('a loss after server VAD took the user\'s turn and before its answer started: the next upstream answers it, the words replayed first', async (t) => {
  const { d, relinked } = lostBeforeTheAnswer(true, true)
  const replay = upstream(relinked, 'conversation.item.create')
  t.match(replay.at(-1)?.item, { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What time is it?' }] }, 'the user\'s words end the replayed conversation')
  t.same(upstream(relinked, 'response.create'), [], 'not before the replay is in')
  const answered = d.itemAdded((replay.at(-1)?.item as { id: string }).id, 'conversation.item.done')
  t.equal(upstream(answered, 'response.create').length, 1, 'then one response answers the turn')
  t.match(client(relinked, 'Warning'), [{ code: WarningCode.upstreamReconnected, description: 'The connection to the agent dropped and was restored; the conversation so far was carried over.' }])
})

for (const [what, transcription] of [['without transcription', false], ['with its transcription still on its way', true]] as const) {
  t.test(`a loss after server VAD took the user's turn and before its answer started, ${what}: the turn is lost and the client told so, nothing is answered`, async (t) => {
    const { d, relinked } = lostBeforeTheAnswer(transcription, false)
    const warnings = client(relinked, 'Warning')
    t.equal(warnings.length, 1)
    t.match(warnings[0], { code: WarningCode.upstreamReconnected, description: /except the user's last turn.*said again/ }, 'the Warning says the last turn must be said again')
    ackReplay(d, relinked)
    t.same(upstream(d.all, 'response.create'), [], 'no response to a conversation that does not hold the turn')
    t.notOk(d.state.link.lostTurn, 'told once')
  })
}

t.test('a loss before a ForceEndTurn\'s commit landed: that turn\'s audio went with the upstream, and the Warning says to say it again', async (t) => {
  const d = ready()
  t.equal(upstream(d.feed({ type: 'forceEndTurn' }), 'input_audio_buffer.commit').length, 1)
  d.feed(lost())
  const relinked = relink(d)
  t.match(client(relinked, 'Warning'), [{ code: WarningCode.upstreamReconnected, description: /except the user's last turn.*said again/ }])
  ackReplay(d, relinked)
  t.same(upstream(d.all, 'response.create'), [], 'nothing answers a turn the new upstream never heard')
})

t.test('a loss while the user speaks: the beginning of what they said went with the upstream, and the Warning says to say it again', async (t) => {
  const d = ready({ fields: { instructions: 'Be brief.', turnDetection: VAD } })
  d.up({ type: 'input_audio_buffer.speech_started' })
  d.feed(lost())
  t.match(client(relink(d), 'Warning'), [{ code: WarningCode.upstreamReconnected, description: /except the user's last turn.*said again/ }])
  const quiet = ready({ fields: { instructions: 'Be brief.', turnDetection: VAD } })
  quiet.feed(lost())
  t.match(client(relink(quiet), 'Warning'), [{ code: WarningCode.upstreamReconnected, description: 'The connection to the agent dropped and was restored; the conversation so far was carried over.' }], 'nobody speaking: nothing lost')
})
