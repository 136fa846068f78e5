// Issue 12, "the proxy owns the conversation", on real sockets: barge-in at each point of
// a response tells the truth (the client stops hearing at once, the upstream item is cut
// to what was heard, the agent's words are those heard), the user's words come before the
// answer to them, a failed transcription is a Warning, and History follows
// Settings.flags.history. The simulator proves what the model holds: asked "what did you
// just say?" it reads its own conversation, truncations included.

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, arrivals, barrier, errorsOf, simSent, warningsOf } from '../helpers/proxy.js'
import type { TestClient } from '../helpers/proxy.js'
import { WEATHER, agentSaid, agentTexts, openSession, withAgent } from '../helpers/conversation.js'
import type { SimConnection, SimScript } from '../../lib/simulator/index.js'
import { eventually } from '../fixtures/leaks.js'

const QUESTION = 'Tell me a long story about the sea'
// 45 characters: 15 audio chunks carry 3 characters each, so words and audio run at one pace.
const ANSWER = `You said: ${QUESTION}.`
const CHUNKS = 15

interface BargeIn {
  client: TestClient
  conn: SimConnection
  /** Frames the client got, in order ('binary' or the message type). */
  order: string[]
  /** The interrupted response's response.done. */
  done: any
  /** The assistant item of the interrupted response upstream (undefined if it never had one). */
  itemId: string | undefined
  /** What the agent was told to have said in the interrupted turn (undefined: nothing). */
  told: string | undefined
  /** The upstream's answer to "what did you just say?", read from its conversation. */
  recalled: string
}

/**
 * The user asks QUESTION by text; `moment` waits for the point of the answer where the
 * user starts talking over it (server VAD's speech_started), then the user asks "what did
 * you just say?" with their voice.
 */
async function bargeIn (t: Test, script: Partial<SimScript>, moment: (conn: SimConnection, client: TestClient) => Promise<void>): Promise<BargeIn> {
  const { client, conn } = await openSession(t, { script: { audioChunks: CHUNKS, ...script } })
  const order = arrivals(client)
  client.send({ type: 'InjectUserMessage', content: QUESTION })
  await moment(conn, client)
  conn.speechStarted()
  await client.next('UserStartedSpeaking')
  const done = await simSent(conn, 'response.done')
  const itemId = conn.sent.find((e) => e.type === 'response.output_item.added' && e.response_id === done.response.id)?.item.id
  // The user's next words take longer than the proxy's edit of the item takes to arrive.
  if (itemId !== undefined) await eventually(() => edits(conn).some((e) => e.item_id === itemId), `the truncate or delete of ${itemId as string}`)
  conn.vadTurn('What did you just say?')
  await client.until(() => agentTexts(client).some((text) => text.startsWith('I ')), 'the answer to "what did you just say?"')
  await barrier(client)
  const texts = agentTexts(client)
  const recalled = texts.at(-1) as string
  return { client, conn, order, done, itemId, told: texts.length > 1 ? texts[0] : undefined, recalled }
}

/** The frames the client got between the barge-in and the next answer's AgentStartedSpeaking. */
function afterBargeIn (order: string[]): string[] {
  const from = order.indexOf('UserStartedSpeaking')
  const to = order.indexOf('AgentStartedSpeaking', from)
  return order.slice(from, to === -1 ? undefined : to)
}

/** What "I last said: …" says when the model holds `heard` (its final punctuation dropped). */
function recalling (heard: string): string {
  return `I last said: ${heard.replace(/[.!?\s]+$/, '')}.`
}

function edits (conn: SimConnection): any[] {
  return conn.received.filter((e) => e.type === 'conversation.item.truncate' || e.type === 'conversation.item.delete')
}

/**
 * A barge-in that cut the answer part-way: its item was truncated upstream (once), the
 * agent's ConversationText and History carry a beginning of the answer, and the model holds
 * the same words. Returns the truncate's audio_end_ms.
 */
function truncatedHeard (t: Test, { client, conn, itemId, told = '', recalled }: BargeIn): number {
  const [truncate, ...others] = edits(conn)
  t.same(others, [], 'one edit')
  t.match(truncate, { type: 'conversation.item.truncate', item_id: itemId, content_index: 0 })
  t.ok(told !== '' && told !== ANSWER && ANSWER.startsWith(told), `a beginning of the answer, not all of it: "${told}"`)
  t.equal(recalled, recalling(told), 'the model holds the same words the client was told')
  t.same(client.all('History').filter((h) => h.role === 'assistant')[0]?.content, told, 'History the same')
  t.same(conn.violations, NO_VIOLATIONS)
  return truncate.audio_end_ms as number
}

t.test('barge-in before response.created: the response is cancelled when it appears, nothing of it is heard, nothing of it stays upstream', async (t) => {
  const run = await bargeIn(t, { responseCreatedDelayMs: 300, chunkIntervalMs: 40 }, async (conn) => {
    await eventually(() => conn.count('response.create') === 1, 'the proxy\'s response.create')
    t.equal(conn.sent.filter((e) => e.type === 'response.created').length, 0, 'the response does not exist yet')
  })
  const { client, conn, order, done } = run
  t.ok(conn.received.some((e) => e.type === 'response.cancel' && e.response_id === done.response.id), 'cancelled by id once it existed')
  t.equal(done.response.status, 'cancelled')
  t.notOk(afterBargeIn(order).includes('binary'), 'none of its audio reached the client')
  t.notOk(order.slice(0, order.indexOf('AgentStartedSpeaking')).includes('binary'), 'nor before it')
  t.equal(client.all('AgentStartedSpeaking').length, 1, 'only the next answer started speaking')
  t.equal(client.all('AgentAudioDone').length, 1, 'and only its audio ended: nothing of the cut one was heard')
  t.equal(run.told, undefined, 'no words told for it')
  if (run.itemId !== undefined) t.same(edits(conn).map((e) => [e.type, e.item_id]), [['conversation.item.delete', run.itemId]], 'its item, unheard, is deleted upstream')
  else t.same(edits(conn), [], 'no item to cut')
  t.equal(run.recalled, 'I have not said anything yet.', 'the model holds nothing of it')
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('barge-in before the first audio delta: its item is deleted upstream, no words told, no AgentAudioDone', async (t) => {
  const run = await bargeIn(t, { chunkIntervalMs: 200 }, async (conn) => {
    await simSent(conn, 'response.output_item.added')
  })
  const { client, conn, order, done, itemId } = run
  t.equal(done.response.status, 'cancelled', 'server VAD cancelled it')
  t.equal(conn.sent.filter((e) => e.type === 'response.output_audio.delta' && e.response_id === done.response.id).length, 0, 'it had no audio yet')
  t.notOk(afterBargeIn(order).includes('binary'))
  t.equal(client.all('AgentAudioDone').length, 1, 'only the next answer\'s')
  t.equal(run.told, undefined, 'no words told')
  t.same(edits(conn).map((e) => [e.type, e.item_id]), [['conversation.item.delete', itemId]], 'deleted (a truncate at 0 is refused upstream)')
  t.equal(run.recalled, 'I have not said anything yet.')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('barge-in mid-audio: the audio stops at once, AgentAudioDone, the item truncated to what was sent, the words told are those heard', async (t) => {
  const run = await bargeIn(t, { chunkIntervalMs: 40 }, async (_conn, client) => {
    await client.until(() => client.audio.length >= 5, 'some of the answer heard')
  })
  const { order, done } = run
  t.equal(done.response.status, 'cancelled')
  const after = afterBargeIn(order)
  t.notOk(after.includes('binary'), 'no audio after UserStartedSpeaking until the next answer')
  t.same(after.slice(0, 2), ['UserStartedSpeaking', 'AgentAudioDone'], 'the interrupted audio ends for the client at once')
  const sentMs = order.slice(0, order.indexOf('UserStartedSpeaking')).filter((f) => f === 'binary').length * 40
  const audioEndMs = truncatedHeard(t, run)
  t.ok(audioEndMs > 0 && audioEndMs <= sentMs, `audio_end_ms ${audioEndMs} is within the ${sentMs} ms sent`)
})

t.test('barge-in after response.done while its audio still plays out: cut where the client\'s playout was', async (t) => {
  // All 600 ms of audio arrive at once; the user talks over it some 200 ms into the playout.
  let firstHeardAt = 0
  let bargedAt = 0
  const run = await bargeIn(t, { chunkIntervalMs: 0 }, async (conn, client) => {
    await client.until(() => client.audio.length >= 1, 'the first audio')
    firstHeardAt = Date.now()
    await simSent(conn, 'response.done')
    await client.until(() => client.audio.length === CHUNKS, 'all of its audio')
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstHeardAt + 200 - Date.now())))
    bargedAt = Date.now()
  })
  const { order, done } = run
  t.equal(done.response.status, 'completed', 'the upstream had finished')
  t.equal(order.filter((f) => f === 'AgentAudioDone').length, 2, 'one AgentAudioDone per answer')
  t.ok(order.indexOf('AgentAudioDone') < order.indexOf('UserStartedSpeaking'), 'the cut one\'s came with the end of its audio')
  const audioEndMs = truncatedHeard(t, run)
  t.ok(audioEndMs >= bargedAt - firstHeardAt && audioEndMs < CHUNKS * 40, `audio_end_ms ${audioEndMs}: the playout time (at least ${bargedAt - firstHeardAt} ms), not all ${CHUNKS * 40} ms`)
})

t.test('a transcription that lands after the answer started: the user\'s words still reach the client before the answer\'s', async (t) => {
  const { client, conn } = await openSession(t, { script: { transcriptionAfter: 'response.done', transcriptionDelayMs: 300 } })
  conn.vadTurn('What is the capital of France')
  await agentSaid(client, 1)
  await barrier(client)
  const said = client.messages.filter((m) => m.type === 'ConversationText' || m.type === 'History').map((m) => `${m.type as string} ${m.role as string}: ${m.content as string}`)
  t.same(said, [
    'ConversationText user: What is the capital of France',
    'History user: What is the capital of France',
    'ConversationText assistant: You said: What is the capital of France.',
    'History assistant: You said: What is the capital of France.'
  ], 'question, then answer')
  const transcribed = conn.sent.findIndex((e) => e.type === 'conversation.item.input_audio_transcription.completed')
  t.ok(transcribed > conn.sent.findIndex((e) => e.type === 'response.done'), 'the upstream did send the transcription after the answer')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('a failed transcription: a TRANSCRIPTION_FAILED Warning, the answer is not held back, the session goes on', async (t) => {
  const { client, conn } = await openSession(t, { script: { failTranscriptions: 1 } })
  const started = Date.now()
  conn.vadTurn('Hello there')
  const answer = await agentSaid(client, 1)
  t.ok(Date.now() - started < 2500, 'not held for the transcription that will never come')
  t.equal(answer, 'You said: Hello there.', 'the model heard it')
  t.same(warningsOf(client).map((w) => w.code), ['TRANSCRIPTION_FAILED'])
  t.same(client.all('ConversationText').filter((m) => m.role === 'user'), [], 'no words for the user')
  conn.vadTurn('Second try')
  t.equal(await agentSaid(client, 2), 'You said: Second try.')
  await barrier(client)
  t.same(client.all('ConversationText').filter((m) => m.role === 'user').map((m) => m.content), ['Second try'])
  t.same(warningsOf(client).map((w) => w.code), ['TRANSCRIPTION_FAILED'], 'one Warning, for the failed one')
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

for (const history of [undefined, true, false]) {
  t.test(`History with flags.history ${String(history)}: ${history === false ? 'none' : 'each turn and each answered call'}`, async (t) => {
    const settings = { ...withAgent({ think: { ...BASIC_SETTINGS.agent.think, functions: [WEATHER] } }), ...(history !== undefined && { flags: { history } }) }
    const { client } = await openSession(t, { settings })
    client.send({ type: 'InjectUserMessage', content: 'get weather, city: Paris' })
    const request = await client.next('FunctionCallRequest')
    const call = request.functions[0]
    client.send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: 'sunny' })
    t.equal(await agentSaid(client, 1), 'The result is sunny.')
    await barrier(client)
    const expected = [
      { type: 'History', role: 'user', content: 'get weather, city: Paris' },
      { type: 'History', function_calls: [{ id: call.id, name: 'get_weather', client_side: true, arguments: '{"city":"Paris"}', response: 'sunny' }] },
      { type: 'History', role: 'assistant', content: 'The result is sunny.' }
    ]
    t.same(client.all('History'), history === false ? [] : expected)
    t.same(client.all('ConversationText').map((m) => m.content), ['get weather, city: Paris', 'The result is sunny.'], 'ConversationText either way')
  })
}
