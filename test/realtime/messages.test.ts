// docs/protocol.md §2, conversation rows: injected messages, the greeting, context,
// function calls, KeepAlive and messages the proxy cannot parse.

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, arrivals, barrier, configuredClient, errorsOf, simSent, startProxy } from '../helpers/proxy.js'
import type { SimScript } from '../../lib/simulator/index.js'

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } } }
}

function withAgent (agent: Record<string, unknown>): Record<string, unknown> {
  return { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, ...agent } }
}

/** A proxy, a configured client and its simulator connection. */
async function session (t: Test, script: Partial<SimScript> = {}, settings: Record<string, unknown> = BASIC_SETTINGS) {
  const { url, sim } = await startProxy(t, { script })
  const client = await configuredClient(url, settings)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  return { client, conn, sim }
}

t.test('InjectUserMessage → user item, then response.create only after the item is acknowledged', async (t) => {
  const { client, conn } = await session(t, { itemAckDelayMs: 300 })
  let ackedWhenCreated: boolean | undefined
  client.send({ type: 'InjectUserMessage', content: 'What is two plus two?' })
  const item = await conn.waitFor('conversation.item.create')
  t.same(item.item.type, 'message')
  t.same(item.item.role, 'user')
  t.same(item.item.content, [{ type: 'input_text', text: 'What is two plus two?' }])
  const itemId: string = item.item.id
  t.type(itemId, 'string', 'the proxy names the item to recognize its acknowledgement')
  const created = conn.waitFor('response.create').then((e) => {
    ackedWhenCreated = conn.sent.some((s) => s.type === 'conversation.item.added' && s.item.id === itemId)
    return e
  })
  const echo = await client.next('ConversationText')
  t.same(echo, { type: 'ConversationText', role: 'user', content: 'What is two plus two?' })
  await created
  // The acknowledgement is held 300 ms: a create sent without waiting would arrive first.
  t.equal(ackedWhenCreated, true, 'the item was acknowledged before response.create arrived')
  const answer = await client.next('ConversationText')
  t.same(answer, { type: 'ConversationText', role: 'assistant', content: 'You said: What is two plus two.' })
  await client.next('AgentAudioDone')
  t.equal(conn.count('response.create'), 1)
  t.same(conn.violations, NO_VIOLATIONS)
})

for (const field of ['message', 'content']) {
  t.test(`InjectAgentMessage with \`${field}\` → the agent says exactly that`, async (t) => {
    const { client, conn } = await session(t)
    client.send({ type: 'InjectAgentMessage', [field]: 'Your order has shipped.' })
    const create = await conn.waitFor('response.create')
    t.match(create.response.instructions, 'Your order has shipped.')
    const text = await client.next('ConversationText')
    t.same(text, { type: 'ConversationText', role: 'assistant', content: 'Your order has shipped.' })
    await client.next('AgentStartedSpeaking')
    await client.next('AgentAudioDone')
    t.ok(client.audio.length > 0, 'it was spoken')
    t.equal(conn.count('conversation.item.create'), 0, 'no user item for an agent message')
    t.same(errorsOf(client), [])
    t.same(conn.violations, NO_VIOLATIONS)
  })
}

t.test('InjectAgentMessage while the agent responds → InjectionRefused, nothing sent', async (t) => {
  const { client, conn } = await session(t, { chunkIntervalMs: 20, audioChunks: 12 })
  client.send({ type: 'InjectUserMessage', content: 'Tell me a story' })
  await client.next('AgentStartedSpeaking')
  client.send({ type: 'InjectAgentMessage', message: 'Interjection!' })
  const refused = await client.next('InjectionRefused')
  t.type(refused.message, 'string')
  await client.next('AgentAudioDone')
  await simSent(conn, 'response.done')
  await barrier(client)
  t.equal(conn.count('response.create'), 1, 'the refused message never became a response')
  t.notOk(client.all('ConversationText').some((m) => m.content === 'Interjection!'))
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('InjectAgentMessage while the user is speaking → InjectionRefused', async (t) => {
  const { client, conn } = await session(t)
  conn.speechStarted()
  await client.next('UserStartedSpeaking')
  client.send({ type: 'InjectAgentMessage', message: 'Hold on.' })
  const refused = await client.next('InjectionRefused')
  t.match(refused.message, /speaking/)
  await barrier(client)
  t.equal(conn.count('response.create'), 0)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('InjectAgentMessage behavior "queue" while the agent responds → said after the current response', async (t) => {
  const { client, conn } = await session(t, { chunkIntervalMs: 30, audioChunks: 6 })
  client.send({ type: 'InjectUserMessage', content: 'Tell me a story' })
  await client.next('AgentStartedSpeaking')
  client.send({ type: 'InjectAgentMessage', message: 'One more thing.', behavior: 'queue' })
  const second = await conn.waitFor('response.create')
  t.match(second.response.instructions, 'One more thing.')
  const firstDone = conn.sent.find((e) => e.type === 'response.done')
  t.ok(firstDone, 'the queued response went after the first response.done')
  t.equal(firstDone?.response.status, 'completed', 'the current response was not interrupted')
  await client.until(() => client.all('ConversationText').some((m) => m.content === 'One more thing.'), 'the queued message')
  t.same(client.all('ConversationText').map((m) => m.role), ['user', 'assistant', 'assistant'])
  t.equal(client.all('InjectionRefused').length, 0)
  t.equal(conn.count('response.create'), 2)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('InjectAgentMessage behavior "interrupt" → the current response is cancelled, then the message is said', async (t) => {
  const { client, conn } = await session(t, { chunkIntervalMs: 30, audioChunks: 30 })
  const order = arrivals(client)
  client.send({ type: 'InjectUserMessage', content: 'Tell me a long story' })
  await client.next('AgentStartedSpeaking')
  const firstId = conn.activeResponseId
  client.send({ type: 'InjectAgentMessage', message: 'Stop right there.', behavior: 'interrupt' })
  const cancel = await conn.waitFor('response.cancel')
  t.equal(cancel.response_id, firstId)
  const second = await conn.waitFor('response.create')
  t.match(second.response.instructions, 'Stop right there.')
  const done = conn.sent.find((e) => e.type === 'response.done')
  t.equal(done?.response.status, 'cancelled', 'the create went only after the cancelled response.done')
  await client.until(() => client.all('ConversationText').some((m) => m.content === 'Stop right there.'), 'the interrupting message')
  await client.until(() => client.all('AgentAudioDone').length === 2, 'both responses\' AgentAudioDone')
  t.equal(client.all('AgentStartedSpeaking').length, 2)
  const spoken = order.filter((type) => type === 'AgentStartedSpeaking' || type === 'AgentAudioDone')
  t.same(spoken, ['AgentStartedSpeaking', 'AgentAudioDone', 'AgentStartedSpeaking', 'AgentAudioDone'], 'the interrupted audio ends with its AgentAudioDone before the interrupting message speaks')
  t.equal(conn.count('response.create'), 2)
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('greeting: spoken once configured, with the greeting in the response instructions', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send(withAgent({ greeting: 'Welcome to Acme, how can I help?' }))
  await client.next('SettingsApplied')
  const create = await conn.waitFor('response.create')
  t.match(create.response.instructions, 'Welcome to Acme, how can I help?')
  const text = await client.next('ConversationText')
  t.same(text, { type: 'ConversationText', role: 'assistant', content: 'Welcome to Acme, how can I help?' })
  await client.next('AgentStartedSpeaking')
  await client.next('AgentAudioDone')
  t.ok(client.audio.length > 0)
  t.equal(conn.count('response.create'), 1)
  t.equal(conn.count('conversation.item.create'), 0)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('context messages become conversation items before any response', async (t) => {
  const { url, sim } = await startProxy(t, { script: { sessionUpdatedDelayMs: 100 } })
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  client.send(withAgent({
    greeting: 'Welcome back!',
    context: {
      messages: [
        { type: 'History', role: 'user', content: 'My name is Ada.' },
        { type: 'History', role: 'assistant', content: 'Nice to meet you, Ada.' },
        { type: 'History', function_calls: [{ id: 'call_ctx_1', name: 'get_weather', client_side: true, arguments: '{"city":"Paris"}', response: 'sunny' }] }
      ]
    }
  }))
  await client.next('SettingsApplied')
  await conn.waitFor('response.create')
  const types = conn.received.map((e) => e.type)
  t.same(types, ['session.update', 'conversation.item.create', 'conversation.item.create', 'conversation.item.create', 'conversation.item.create', 'response.create'])
  const items = conn.received.filter((e) => e.type === 'conversation.item.create').map((e) => e.item)
  t.same(items.map((item) => [item.type, item.role, item.content]), [
    ['message', 'user', [{ type: 'input_text', text: 'My name is Ada.' }]],
    ['message', 'assistant', [{ type: 'output_text', text: 'Nice to meet you, Ada.' }]],
    ['function_call', undefined, undefined],
    ['function_call_output', undefined, undefined]
  ])
  t.same([items[2].call_id, items[2].name, items[2].arguments], ['call_ctx_1', 'get_weather', '{"city":"Paris"}'])
  t.same([items[3].call_id, items[3].output], ['call_ctx_1', 'sunny'])
  await client.next('ConversationText')
  await barrier(client)
  t.same(client.all('ConversationText'), [{ type: 'ConversationText', role: 'assistant', content: 'Welcome back!' }], 'context is not echoed')
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('FunctionCallResponse round trip: request, output item, one follow-up, an answer that uses it', async (t) => {
  const { client, conn } = await session(t, {}, withAgent({ think: { ...BASIC_SETTINGS.agent.think, functions: [WEATHER] } }))
  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Paris' })
  const request = await client.next('FunctionCallRequest')
  t.equal(request.functions.length, 1)
  const [call] = request.functions
  t.same(Object.keys(call).sort(), ['arguments', 'client_side', 'id', 'name'])
  t.equal(call.name, 'get_weather')
  t.equal(call.arguments, '{"city":"Paris"}')
  t.equal(call.client_side, true)
  const upstreamCall = conn.sent.find((e) => e.type === 'response.function_call_arguments.done')
  t.equal(call.id, upstreamCall.call_id, 'the id is the upstream call_id')

  client.send({ type: 'FunctionCallResponse', id: call.id, name: 'get_weather', content: 'sunny, 21 degrees' })
  const output = await conn.waitFor('conversation.item.create', (e) => e.item.type === 'function_call_output')
  t.same([output.item.call_id, output.item.output], [call.id, 'sunny, 21 degrees'])
  await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the follow-up answer')
  t.same(client.all('ConversationText').find((m) => m.role === 'assistant'), { type: 'ConversationText', role: 'assistant', content: 'The result is sunny, 21 degrees.' })
  await client.next('AgentAudioDone')
  await simSent(conn, 'response.done', (e) => e.response.output.some((item: any) => item.type === 'message'))
  await barrier(client)
  t.equal(conn.count('response.create'), 2, 'the user turn and exactly one follow-up')
  t.equal(client.all('FunctionCallRequest').length, 1)
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('FunctionCallResponse with an unknown or an already-answered id → Warning, nothing forwarded', async (t) => {
  const { client, conn } = await session(t, {}, withAgent({ think: { ...BASIC_SETTINGS.agent.think, functions: [WEATHER] } }))
  client.send({ type: 'FunctionCallResponse', id: 'call_nope', name: 'get_weather', content: 'x' })
  const unknown = await client.next('Warning')
  t.equal(unknown.code, 'UNKNOWN_FUNCTION_CALL')
  t.equal(conn.count('conversation.item.create'), 0)

  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Oslo' })
  const [call] = (await client.next('FunctionCallRequest')).functions
  client.send({ type: 'FunctionCallResponse', id: call.id, name: 'get_weather', content: 'snow' })
  client.send({ type: 'FunctionCallResponse', id: call.id, name: 'get_weather', content: 'snow again' })
  const duplicate = await client.next('Warning')
  t.equal(duplicate.code, 'DUPLICATE_FUNCTION_CALL_RESPONSE')
  await client.next('AgentAudioDone')
  await barrier(client)
  const outputs = conn.received.filter((e) => e.type === 'conversation.item.create' && e.item.type === 'function_call_output')
  t.same(outputs.map((e) => e.item.output), ['snow'], 'answered once')
  t.equal(conn.count('response.create'), 2)
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('KeepAlive is never forwarded: before Welcome is read, before Settings, after', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await TestClient.connect(url)
  t.teardown(() => client.close())
  client.send({ type: 'KeepAlive' })
  await client.next('Welcome')
  client.send({ type: 'KeepAlive' })
  client.send(BASIC_SETTINGS)
  client.send({ type: 'KeepAlive' })
  await client.next('SettingsApplied')
  client.send({ type: 'KeepAlive' })
  await barrier(client)
  const conn = await sim.nextConnection()
  t.same(conn.received.map((e) => e.type), ['session.update'])
  t.same(client.types().filter((type) => type !== 'Warning'), ['Welcome', 'SettingsApplied'], 'KeepAlive is not answered (the Warnings are the barriers\')')
  t.same(errorsOf(client), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

// A Warning, not an Error: Deepgram's clients treat every Error as the end of the session.
t.test('bad JSON, non-objects and unknown types → Warning UNPARSABLE_CLIENT_MESSAGE; the session continues', async (t) => {
  const { client, conn } = await session(t)
  const bad = ['{"type": "Settings"', 'not json at all', '[1, 2]', '"Settings"', '42', 'null', '{}', '{"type": 7}', '{"type":"NoSuchMessage"}']
  for (const text of bad) client.ws.send(text)
  await client.until(() => client.all('Warning').length === bad.length, `${bad.length} Warnings`)
  t.same(client.all('Warning').map((e) => e.code), bad.map(() => 'UNPARSABLE_CLIENT_MESSAGE'))
  t.ok(client.all('Warning').every((e) => typeof e.description === 'string' && e.description.length > 0))
  t.same(client.all('Error'), [])
  t.equal(client.ws.readyState, client.ws.OPEN)
  client.send({ type: 'InjectUserMessage', content: 'Still working?' })
  await client.next('AgentAudioDone')
  t.same(conn.received.map((e) => e.type), ['session.update', 'conversation.item.create', 'response.create'])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('a known but unsupported message type → Warning, the session continues', async (t) => {
  const { client, conn } = await session(t)
  client.send({ type: 'AgentKeepAlive' })
  const warning = await client.next('Warning')
  t.equal(warning.code, 'UNSUPPORTED_MESSAGE')
  t.match(warning.description, 'AgentKeepAlive')
  await barrier(client)
  t.same(errorsOf(client), [])
  t.same(conn.received.map((e) => e.type), ['session.update'])
  t.same(conn.violations, NO_VIOLATIONS)
})
