// Incident (an earlier proxy, its issue #470): the client answered a
// FunctionCallRequest before the response that asked for it was done, and the proxy
// sent `function_call_output` + `response.create` together:
// `conversation_already_has_active_response`. docs/turn-engine.md rule 4: the output
// is forwarded at once (legal mid-response); the single follow-up `response.create`
// waits for the originating response's `response.done`.

import t from 'tap'
import { emptyViolations } from '../../lib/simulator/script.js'
import { BASIC_SETTINGS, configuredClient, startProxy } from '../helpers/proxy.js'

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}
const SETTINGS = { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, functions: [WEATHER] } } }
const RESPONSE_DONE_DELAY_MS = 450

t.test('#470 FunctionCallResponse answered before response.done', async (t) => {
  const { url, sim } = await startProxy(t, { script: { responseDoneDelayMs: RESPONSE_DONE_DELAY_MS } })
  const client = await configuredClient(url, SETTINGS)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()

  client.send({ type: 'InjectUserMessage', content: 'Please get weather for city: Paris' })
  const request = await client.next('FunctionCallRequest')
  t.equal(request.functions.length, 1)
  const call = request.functions[0]
  t.match(call, { name: 'get_weather', client_side: true })
  t.same(JSON.parse(call.arguments), { city: 'Paris' })
  const originating = conn.activeResponseId
  t.type(originating, 'string', 'the response that asked for the call is still running')

  // Evaluated synchronously as the simulator processes each event.
  let slotAtOutput: string | null | undefined
  const output = conn.waitFor('conversation.item.create', (event) => {
    if (event.item?.type !== 'function_call_output') return false
    slotAtOutput = conn.activeResponseId
    return true
  })
  let originatingDoneBeforeCreate = false
  const followUp = conn.waitFor('response.create', () => {
    originatingDoneBeforeCreate = conn.sent.some((e) => e.type === 'response.done' && e.response?.id === originating)
    return true
  })

  client.send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: '18 degrees and sunny' })
  const forwarded = await output
  t.equal(slotAtOutput, originating, 'function_call_output forwarded at once, while the originating response was still active')
  t.match(forwarded.item, { type: 'function_call_output', call_id: call.id, output: '18 degrees and sunny' })
  t.equal(conn.count('response.create'), 1, 'no follow-up yet: only the inject\'s create so far')

  await followUp
  t.ok(originatingDoneBeforeCreate, 'the follow-up response.create came only after the originating response.done')

  await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the assistant answer')
  const assistant = client.all('ConversationText').filter((m) => m.role === 'assistant')
  t.same(assistant.map((m) => m.content), ['The result is 18 degrees and sunny.'], 'the answer uses the function result')
  await client.next('AgentAudioDone')

  // Barrier: one more full turn, then count. A stray second follow-up would show here or as a conflict.
  client.send({ type: 'InjectUserMessage', content: 'Thanks' })
  await client.until(() => client.all('AgentAudioDone').length === 2, 'the second answer')
  t.equal(conn.count('response.create'), 3, 'exactly one follow-up response.create (inject, follow-up, inject)')
  t.equal(conn.received.filter((e) => e.type === 'conversation.item.create' && e.item?.type === 'function_call_output').length, 1, 'the output was forwarded once')
  t.same(client.all('Error'), [], 'no Error reached the client')
  t.same(client.all('Warning'), [], 'no Warning reached the client')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('#470 FunctionCallResponse after response.done: one follow-up, answered', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url, SETTINGS)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()

  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Oslo' })
  const request = await client.next('FunctionCallRequest')
  const call = request.functions[0]
  // Wait until the simulator has closed the originating response.
  await client.until(() => conn.activeResponseId === null && conn.sent.some((e) => e.type === 'response.done'), 'the originating response.done')
  const followUp = conn.waitFor('response.create')
  client.send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: '-3 degrees' })
  await followUp
  await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the assistant answer')
  t.equal(client.all('ConversationText').find((m) => m.role === 'assistant')?.content, 'The result is -3 degrees.')
  await client.next('AgentAudioDone')
  t.equal(conn.count('response.create'), 2)
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})
