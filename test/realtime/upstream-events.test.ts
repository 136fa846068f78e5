// docs/protocol.md §3: what each upstream event becomes for the client, on real sockets.
// Some events are injected raw with `conn.send` to reach orders the simulator's own
// model never produces (audio racing a barge-in, an item.done before its transcript).

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, arrivals, barrier, configuredClient, errorsOf, simSent, startProxy } from '../helpers/proxy.js'
import type { SimConnection, SimScript } from '../../lib/simulator/index.js'

async function session (t: Test, script: Partial<SimScript> = {}, settings: Record<string, unknown> = BASIC_SETTINGS): Promise<{ client: TestClient, conn: SimConnection }> {
  const { url, sim } = await startProxy(t, { script })
  const client = await configuredClient(url, settings)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  return { client, conn }
}

t.test('session.created → nothing for the client', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  t.equal(conn.sent[0]?.type, 'session.created')
  await barrier(client)
  t.same(client.types(), ['Welcome', 'Warning'], 'only Welcome (and the barrier\'s answer)')
  t.same(conn.received, [], 'and nothing upstream: the session is not configured yet')
})

t.test('speech_started → UserStartedSpeaking; the interrupted response\'s audio stops; the next turn speaks', async (t) => {
  const { client, conn } = await session(t, { chunkIntervalMs: 30, audioChunks: 40 })
  const order = arrivals(client)
  client.send({ type: 'InjectUserMessage', content: 'Tell me a long story' })
  await client.until(() => client.audio.length >= 2, 'agent audio mid-stream')
  conn.speechStarted()
  await client.next('UserStartedSpeaking')
  const done = await simSent(conn, 'response.done')
  t.equal(done.response.status, 'cancelled', 'server VAD cancelled the response')
  conn.vadTurn('Actually, stop.')
  await client.until(() => client.all('AgentAudioDone').length === 2, 'the next response\'s AgentAudioDone')
  const afterBargeIn = order.slice(order.indexOf('UserStartedSpeaking'))
  const resumed = afterBargeIn.indexOf('AgentStartedSpeaking')
  t.ok(resumed > 0, 'the next response started speaking')
  t.notOk(afterBargeIn.slice(0, resumed).includes('binary'), 'no audio between the barge-in and the next response')
  t.same(afterBargeIn.slice(0, 2), ['UserStartedSpeaking', 'AgentAudioDone'], 'the interrupted audio ends for the client at the barge-in')
  t.equal(order.filter((type) => type === 'AgentAudioDone').length, 2, 'one AgentAudioDone per response heard')
  t.ok(afterBargeIn.slice(resumed).includes('binary'), 'the next response is heard')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('audio of the interrupted response that races the barge-in is dropped by the proxy', async (t) => {
  const { client, conn } = await session(t, { chunkIntervalMs: 15, audioChunks: 30 })
  const order = arrivals(client)
  client.send({ type: 'InjectUserMessage', content: 'Tell me a long story' })
  await client.until(() => client.audio.length >= 1, 'agent audio mid-stream')
  // The upstream reports speech but keeps streaming this response (deltas already in flight).
  conn.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: 0, item_id: 'item_user_speech', brand_new_field: true })
  await client.next('UserStartedSpeaking')
  const marker = conn.sent.length - 1
  await simSent(conn, 'response.done')
  await barrier(client)
  const lateDeltas = conn.sent.slice(marker).filter((e) => e.type === 'response.output_audio.delta').length
  t.ok(lateDeltas > 0, `the upstream kept sending audio after speech_started (${lateDeltas} deltas)`)
  t.notOk(order.slice(order.indexOf('UserStartedSpeaking')).includes('binary'), 'none of it reached the client')
  t.equal(client.all('AgentAudioDone').length, 1, 'the audio heard ended at the barge-in, once')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('input transcription completed → ConversationText user, then the VAD response answers', async (t) => {
  const { client, conn } = await session(t)
  conn.vadTurn('What is the weather like')
  const said = await client.next('ConversationText')
  t.same(said, { type: 'ConversationText', role: 'user', content: 'What is the weather like' })
  t.equal(client.all('UserStartedSpeaking').length, 1)
  const answer = await client.next('ConversationText')
  t.same(answer, { type: 'ConversationText', role: 'assistant', content: 'You said: What is the weather like.' })
  await client.next('AgentAudioDone')
  t.equal(conn.count('response.create'), 0, 'server VAD created the response itself')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('first audio delta → one AgentStartedSpeaking with measured latencies in seconds', async (t) => {
  const { client, conn } = await session(t, { responseCreatedDelayMs: 80, chunkIntervalMs: 20, audioChunks: 4 })
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  const started = await client.next('AgentStartedSpeaking')
  await client.next('AgentAudioDone')
  for (const field of ['total_latency', 'tts_latency', 'ttt_latency']) {
    t.type(started[field], 'number', field)
    t.ok(Number.isFinite(started[field]) && started[field] >= 0, `${field} = ${String(started[field])} ≥ 0`)
  }
  t.ok(started.ttt_latency >= 0.07, 'time to the response includes the upstream\'s delay before response.created')
  t.ok(Math.abs(started.total_latency - started.ttt_latency - started.tts_latency) <= 0.002, 'total = ttt + tts')
  t.ok(started.total_latency < 5)
  t.equal(client.all('AgentStartedSpeaking').length, 1, 'once per response, not per delta')
  t.same(conn.violations, NO_VIOLATIONS)
})

for (const audioDoneBeforeTextDone of [false, true]) {
  t.test(`assistant transcript → ConversationText exactly once per item (audio.done ${audioDoneBeforeTextDone ? 'before' : 'after'} transcript.done)`, async (t) => {
    const { client, conn } = await session(t, { audioDoneBeforeTextDone })
    client.send({ type: 'InjectUserMessage', content: 'First' })
    await client.next('AgentAudioDone')
    await simSent(conn, 'response.done')
    client.send({ type: 'InjectUserMessage', content: 'Second' })
    await client.next('AgentAudioDone')
    await simSent(conn, 'conversation.item.done', (e) => e.item.role === 'assistant' && e.item.content[0]?.transcript === 'You said: Second.')
    // Each answer is told once its audio has played out.
    await client.until(() => client.all('ConversationText').filter((m) => m.role === 'assistant').length >= 2, 'both answers told')
    await barrier(client)
    // Both the transcript.done and the item.done of each item carried the text.
    t.equal(conn.sent.filter((e) => e.type === 'response.output_audio_transcript.done').length, 2)
    t.same(client.all('ConversationText').filter((m) => m.role === 'assistant').map((m) => m.content), ['You said: First.', 'You said: Second.'])
    t.equal(client.all('AgentAudioDone').length, 2, 'one AgentAudioDone per response')
    t.same(conn.violations, NO_VIOLATIONS)
  })
}

t.test('an assistant item.done before its transcript.done still yields one ConversationText', async (t) => {
  const { client, conn } = await session(t)
  const item = { id: 'item_manual_1', object: 'realtime.item', type: 'message', role: 'assistant', status: 'in_progress', content: [] }
  conn.send({ type: 'response.output_item.added', response_id: 'resp_manual_1', output_index: 0, item })
  conn.send({ type: 'conversation.item.done', previous_item_id: null, item: { ...item, status: 'completed', content: [{ type: 'output_audio', transcript: 'Manual words.' }] } })
  conn.send({ type: 'response.output_audio_transcript.done', response_id: 'resp_manual_1', item_id: 'item_manual_1', output_index: 0, content_index: 0, transcript: 'Manual words.' })
  // Told once the response is done (it had no audio to play out).
  conn.send({ type: 'response.done', response: { object: 'realtime.response', id: 'resp_manual_1', status: 'completed', conversation_id: 'conv_1', output: [] } })
  await client.next('ConversationText')
  await barrier(client)
  t.same(client.all('ConversationText'), [{ type: 'ConversationText', role: 'assistant', content: 'Manual words.' }])
  t.same(errorsOf(client), [])
})

t.test('response.function_call_arguments.done → FunctionCallRequest per call; parallel calls get one follow-up', async (t) => {
  const tool = { name: 'lookup_order', description: 'Find an order', parameters: { type: 'object', properties: { order: { type: 'string' } } } }
  const settings = { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, functions: [tool] } } }
  const { client, conn } = await session(t, { parallelCalls: 2 }, settings)
  client.send({ type: 'InjectUserMessage', content: 'lookup order, order: A17' })
  const first = await client.next('FunctionCallRequest')
  const second = await client.next('FunctionCallRequest')
  const upstream = conn.sent.filter((e) => e.type === 'response.function_call_arguments.done')
  t.same([first, second].map((m) => m.functions), upstream.map((e) => [{ id: e.call_id, name: 'lookup_order', arguments: '{"order":"A17"}', client_side: true }]))
  client.send({ type: 'FunctionCallResponse', id: first.functions[0].id, name: 'lookup_order', content: 'shipped' })
  await conn.waitFor('conversation.item.create', (e) => e.item.type === 'function_call_output')
  await barrier(client)
  t.equal(conn.count('response.create'), 1, 'no follow-up while a call is unanswered')
  client.send({ type: 'FunctionCallResponse', id: second.functions[0].id, name: 'lookup_order', content: 'delivered' })
  await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the follow-up answer')
  t.equal(client.all('ConversationText').find((m) => m.role === 'assistant')?.content, 'The result is shipped and delivered.')
  t.equal(conn.count('response.create'), 2, 'one follow-up for both outputs')
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('unknown upstream events and extra fields are tolerated', async (t) => {
  const { client, conn } = await session(t)
  conn.send({ type: 'response.some_future_event', payload: { nested: [1, 2, 3] } })
  conn.send({ type: 'rate_limits.updated', rate_limits: [], surprise: 'x' })
  conn.send({
    type: 'conversation.item.input_audio_transcription.completed',
    item_id: 'item_u1',
    content_index: 0,
    transcript: 'Extra fields are fine',
    logprobs: null,
    usage: { type: 'tokens', total_tokens: 3, input_tokens: 1, output_tokens: 2 },
    something_new: { deep: true }
  })
  const said = await client.next('ConversationText')
  t.same(said, { type: 'ConversationText', role: 'user', content: 'Extra fields are fine' })
  client.send({ type: 'InjectUserMessage', content: 'And now?' })
  await client.next('AgentAudioDone')
  t.same(await client.next('ConversationText'), { type: 'ConversationText', role: 'user', content: 'And now?' })
  t.equal((await client.next('ConversationText')).role, 'assistant', 'the answer, told once it has played out')
  t.same(errorsOf(client), [])
  t.same(client.all('Warning'), [])
  t.same(conn.violations, NO_VIOLATIONS)
})
