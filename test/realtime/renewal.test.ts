// Issue 12, "sessions that outlive their upstream", on real sockets: the app renews its
// upstream at UPSTREAM_RENEW_AFTER_MS (at a quiet moment, invisibly), reconnects after a
// loss (with one UPSTREAM_RECONNECTED Warning), and replays the conversation record into
// each new upstream. The simulator proves the replay: its answers to "what did I say
// first?" / "what did you just say?" are read from its own conversation.

import t, { type Test } from 'tap'
import type { SimConnection } from '../../lib/simulator/index.js'
import { NO_VIOLATIONS, barrier, errorsOf, simSent, warningsOf } from '../helpers/proxy.js'
import type { TestClient } from '../helpers/proxy.js'
import { WEATHER, agentSaid, agentTexts, ask, itemsGiven, openSession, replayed, sessionDetail, upstreamConnects, withAgent } from '../helpers/conversation.js'

/** Answers the client's next FunctionCallRequest with `output`; returns the request's call. */
async function answerCall (client: TestClient, output: string): Promise<Record<string, any>> {
  const request = await client.next('FunctionCallRequest')
  const call = request.functions[0]
  client.send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: output })
  return call
}

t.test('a conversation with a tool call across three planned renewals: each new upstream gets the record replayed and answers from it; the client sees none of it', async (t) => {
  const { client, conn: first, sim, base } = await openSession(t, {
    env: { UPSTREAM_RENEW_AFTER_MS: '1000' },
    settings: withAgent({ think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'You are a helpful test agent.', functions: [WEATHER] } })
  })
  t.equal(await ask(client, 'My name is Ada'), 'You said: My name is Ada.')
  const turn1: Array<[string, string]> = [['user', 'My name is Ada'], ['assistant', 'You said: My name is Ada.']]

  const second = await sim.nextConnection()
  t.same(itemsGiven(first), [['user', 'My name is Ada']], 'the first upstream was given the typed message only')
  await replayed(second, 2)
  t.same(itemsGiven(second), turn1, 'renewal 1: the first turn replayed')
  t.equal(second.session.instructions, first.session.instructions, 'with the instructions in force')
  t.same(second.session.tools.map((tool: { name: string }) => tool.name), ['get_weather'], 'and the tools')

  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Paris' })
  const call = await answerCall(client, 'sunny')
  t.same([call.name, call.arguments, call.client_side], ['get_weather', '{"city":"Paris"}', true])
  t.equal(await agentSaid(client, 2), 'The result is sunny.')
  const turn2: Array<[string, string]> = [['user', 'get weather, city: Paris'], ['call get_weather', '{"city":"Paris"}'], ['function_call_output', 'sunny'], ['assistant', 'The result is sunny.']]

  const third = await sim.nextConnection()
  await replayed(third, 6)
  t.same(itemsGiven(third), [...turn1, ...turn2], 'renewal 2: the function call and its output replayed in place')
  t.equal(await ask(client, 'What did I say first?'), 'You first said: My name is Ada.', 'the third upstream answers from the replayed conversation')
  t.equal(third.count('response.create'), 1, 'and it was the one that answered')

  const fourth = await sim.nextConnection()
  await replayed(fourth, 8)
  t.same(itemsGiven(fourth), [...turn1, ...turn2, ['user', 'What did I say first?'], ['assistant', 'You first said: My name is Ada.']], 'renewal 3')
  const detail = await sessionDetail(base)
  t.equal(detail.upstream.connects, 4, '/connections counts four upstream connections')
  t.same(upstreamConnects(detail.events), ['renew', 'renew', 'renew'], 'the timeline shows three renewals')
  t.equal(await ask(client, 'What did you just say?'), 'I last said: You first said: My name is Ada.', 'the fourth upstream knows the last answer')
  t.equal(fourth.count('response.create'), 1)

  for (const conn of [first, second, third]) t.equal(conn.count('response.cancel'), 0, `${conn.id}: nothing cut`)
  await barrier(client)
  t.same(warningsOf(client), [], 'no Warning: planned renewals are invisible')
  t.same(errorsOf(client), [])
  t.same(agentTexts(client).length, 4, 'each turn told once')
  t.same(client.all('FunctionCallRequest').length, 1, 'the call asked once')
  t.same(sim.violations(), NO_VIOLATIONS)
})

t.test('a planned renewal, then a dropped upstream: one UPSTREAM_RECONNECTED Warning, for the drop only; the conversation goes on', async (t) => {
  const { client, sim, base } = await openSession(t, { env: { UPSTREAM_RENEW_AFTER_MS: '700' } })
  t.equal(await ask(client, 'Remember the word lighthouse'), 'You said: Remember the word lighthouse.')
  const renewed = await sim.nextConnection()
  await replayed(renewed, 2)
  await barrier(client)
  t.same(warningsOf(client), [], 'the planned renewal said nothing')

  renewed.close(1006) // dropped without a close frame
  const reconnected = await sim.nextConnection()
  await client.until(() => warningsOf(client).length > 0, 'the reconnect told')
  t.same(warningsOf(client).map((w) => w.code), ['UPSTREAM_RECONNECTED'], 'the drop is told')
  await replayed(reconnected, 2)
  t.same(itemsGiven(reconnected), [['user', 'Remember the word lighthouse'], ['assistant', 'You said: Remember the word lighthouse.']])
  t.equal(await ask(client, 'What did I say first?'), 'You first said: Remember the word lighthouse.')

  const renewedAgain = await sim.nextConnection()
  await replayed(renewedAgain, 4)
  t.equal(await ask(client, 'What did you just say?'), 'I last said: You first said: Remember the word lighthouse.')
  await barrier(client)
  t.same(warningsOf(client).map((w) => w.code), ['UPSTREAM_RECONNECTED'], 'exactly one Warning: the drop\'s')
  t.same(errorsOf(client), [])
  const detail = await sessionDetail(base)
  t.same(upstreamConnects(detail.events).slice(0, 3), ['renew', 'reconnect', 'renew'], 'the timeline tells a renewal from a reconnect')
  t.same(sim.violations(), NO_VIOLATIONS)
})

t.test('a renewal due in the middle of a reply waits until the reply was heard in full', async (t) => {
  // 20 chunks of 40 ms at real-time pace: about 800 ms of answer; the renewal is due at 250 ms.
  const { client, conn, sim, base } = await openSession(t, { script: { audioChunks: 20, chunkIntervalMs: 40 }, env: { UPSTREAM_RENEW_AFTER_MS: '250' } })
  client.send({ type: 'InjectUserMessage', content: 'Tell me a long story about the sea' })
  const answer = await agentSaid(client, 1)
  const next = await sim.nextConnection()
  const done = await simSent(conn, 'response.done')
  t.equal(done.response.status, 'completed', 'the reply was not cut')
  t.equal(conn.count('response.cancel'), 0)
  t.equal(answer, 'You said: Tell me a long story about the sea.', 'told in full')
  const produced = conn.sent.filter((e) => e.type === 'response.output_audio.delta').reduce((sum, e) => sum + (e.audioBytes as number), 0)
  t.equal(client.audio.reduce((sum, frame) => sum + frame.length, 0), produced, 'every byte of its audio reached the client')
  t.equal(client.all('AgentAudioDone').length, 1)

  const events = (await sessionDetail(base)).events
  const renewal = events.findIndex((e) => e.type === 'upstream.connect')
  const lastOfReply = events.findLastIndex((e) => e.direction === 'proxy->client' && (e.type === 'AgentAudioDone' || e.type === 'ConversationText'))
  t.ok(renewal > lastOfReply && lastOfReply >= 0, `the renewal (event ${renewal}) came after the reply's AgentAudioDone and ConversationText (event ${lastOfReply})`)
  const doneAt = events.findIndex((e) => e.type === 'response.done')
  t.ok(doneAt >= 0 && doneAt < renewal, 'and after its response.done')
  await replayed(next, 2)
  t.equal(await ask(client, 'What did I say first?'), 'You first said: Tell me a long story about the sea.')
  t.same(warningsOf(client), [])
  t.same(errorsOf(client), [])
  t.same(sim.violations(), NO_VIOLATIONS)
})

t.test('the simulator\'s maximum session duration (1001 with OpenAI\'s reason): a new upstream carries the conversation on, unseen (no Warning, no Error)', async (t) => {
  const { client, sim, logs } = await openSession(t, { script: { maxSessionMs: 1500 } })
  sim.script = {} // later connections last
  t.equal(await ask(client, 'My favourite colour is teal'), 'You said: My favourite colour is teal.')
  const next = await sim.nextConnection()
  await client.until(() => logs.some((line) => line.msg === 'upstream closed'), 'the close logged')
  t.match(logs.find((line) => line.msg === 'upstream closed'), { upstreamCloseCode: 1001 }, 'the upstream ended the session with 1001')
  await replayed(next, 2)
  t.equal(await ask(client, 'What did I say first?'), 'You first said: My favourite colour is teal.', 'the new upstream knows the conversation')
  await barrier(client)
  t.same(errorsOf(client), [], 'no Error')
  t.same(warningsOf(client).map((w) => w.code), [], 'no Warning: the upstream ended the session at a quiet moment, a renewal like a planned one')
  t.equal(client.ws.readyState, client.ws.OPEN, 'the session is still open')
  t.same(sim.violations(), NO_VIOLATIONS)
})

/** A session whose first upstream takes a spoken turn (server VAD) and is lost before its answer starts (and, `untranscribed`, before its transcription came). */
async function lostBeforeTheAnswer (t: Test, untranscribed = false): Promise<Awaited<ReturnType<typeof openSession>> & { next: SimConnection }> {
  const session = await openSession(t)
  const { client, conn, sim } = session
  conn.script = { ...conn.script, responseCreatedDelayMs: 60_000, ...(untranscribed && { transcriptionDelayMs: 60_000 }) }
  conn.vadTurn('Is the lighthouse open today?')
  await simSent(conn, 'input_audio_buffer.committed')
  if (!untranscribed) await client.until(() => client.all('ConversationText').some((m) => m.role === 'user'), 'the user\'s words told')
  conn.close(1011)
  const next = await sim.nextConnection()
  await client.until(() => warningsOf(client).length > 0, 'the reconnect told')
  return { ...session, next }
}

t.test('an upstream lost after server VAD took a spoken turn, before it answered: the next upstream is given the words and answers them, once', async (t) => {
  const { client, next, sim } = await lostBeforeTheAnswer(t)
  t.equal(await agentSaid(client, 1), 'You said: Is the lighthouse open today.', 'the turn is answered')
  t.same(itemsGiven(next), [['user', 'Is the lighthouse open today?']], 'from the words replayed')
  await barrier(client)
  t.equal(next.count('response.create'), 1, 'one answer')
  t.same(warningsOf(client).map((w) => w.description), ['The connection to the agent dropped and was restored; the conversation so far was carried over.'])
  t.same(errorsOf(client), [])
  t.same(sim.violations(), NO_VIOLATIONS)
})

t.test('the same loss before the turn was transcribed: its words are not known, so the Warning says to say it again, and nothing is answered', async (t) => {
  const { client, next, sim } = await lostBeforeTheAnswer(t, true)
  t.match(warningsOf(client), [{ code: 'UPSTREAM_RECONNECTED', description: /except the user's last turn.*said again/ }])
  await barrier(client)
  t.equal(next.count('response.create'), 0, 'no answer to a conversation without the turn')
  t.same(agentTexts(client), [])
  t.equal(await ask(client, 'Is the lighthouse open today?'), 'You said: Is the lighthouse open today.', 'said again, it is answered')
  t.same(sim.violations(), NO_VIOLATIONS)
})
