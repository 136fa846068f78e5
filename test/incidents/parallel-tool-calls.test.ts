// Incident (native client): two tool calls of one response completed almost
// together; each completion checked "response in progress?", both saw false and
// both sent `response.create`. docs/turn-engine.md rules 3 and 4: one follow-up per
// response, after its `response.done` and after every call it carried is
// answered; a call answered twice is answered once (a Warning, nothing forwarded).

import t from 'tap'
import { emptyViolations } from '../../lib/simulator/script.js'
import { BASIC_SETTINGS, configuredClient, startProxy, type ClientMessage, type TestClient } from '../helpers/proxy.js'

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}
const SETTINGS = { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, functions: [WEATHER] } } }

async function twoCalls (client: TestClient): Promise<Array<{ id: string, name: string }>> {
  await client.until(() => client.all('FunctionCallRequest').length === 2, 'two FunctionCallRequests')
  return client.all('FunctionCallRequest').flatMap((m: ClientMessage) => m.functions)
}

function outputsReceived (conn: { received: any[] }): any[] {
  return conn.received.filter((e) => e.type === 'conversation.item.create' && e.item?.type === 'function_call_output')
}

for (const when of ['before', 'after'] as const) {
  t.test(`native client: two tool calls completing almost together (answered ${when} response.done)`, async (t) => {
    const { url, sim } = await startProxy(t, { script: { parallelCalls: 2, responseDoneDelayMs: when === 'before' ? 450 : 0 } })
    const client = await configuredClient(url, SETTINGS)
    t.teardown(() => client.close())
    const conn = await sim.nextConnection()

    client.send({ type: 'InjectUserMessage', content: 'get weather for city: Rome' })
    const calls = await twoCalls(client)
    t.equal(new Set(calls.map((c) => c.id)).size, 2, 'two distinct call ids')
    const originating = conn.sent.find((e) => e.type === 'response.created')?.response?.id
    if (when === 'before') t.equal(conn.activeResponseId, originating, 'the originating response is still active')
    else await client.until(() => conn.activeResponseId === null, 'the originating response.done')

    let doneBeforeFollowUp = false
    const followUp = conn.waitFor('response.create', () => {
      doneBeforeFollowUp = conn.sent.some((e) => e.type === 'response.done' && e.response?.id === originating)
      return true
    })
    // Both answers in the same tick.
    for (const [index, call] of calls.entries()) client.send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: `result ${index + 1}` })
    await followUp
    t.ok(doneBeforeFollowUp, 'the follow-up came after the originating response.done')

    await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the assistant answer')
    t.equal(client.all('ConversationText').find((m) => m.role === 'assistant')?.content, 'The result is result 1 and result 2.', 'one answer using both results')
    await client.next('AgentAudioDone')

    // A duplicate answer: a Warning, nothing forwarded, no create.
    const first = calls[0] as { id: string, name: string }
    client.send({ type: 'FunctionCallResponse', id: first.id, name: first.name, content: 'result 1 again' })
    const warning = await client.next('Warning')
    t.equal(warning.code, 'DUPLICATE_FUNCTION_CALL_RESPONSE')
    t.match(warning.description, first.id)
    // An unknown id: likewise.
    client.send({ type: 'FunctionCallResponse', id: 'call_never_requested', name: 'get_weather', content: 'x' })
    t.equal((await client.next('Warning')).code, 'UNKNOWN_FUNCTION_CALL')

    // Barrier: one more full turn, then count.
    client.send({ type: 'InjectUserMessage', content: 'Thanks' })
    await client.until(() => client.all('AgentAudioDone').length === 2, 'the second answer')
    t.equal(conn.count('response.create'), 3, 'exactly one follow-up response.create (inject, follow-up, inject)')
    t.same(outputsReceived(conn).map((e) => e.item.output), ['result 1', 'result 2'], 'each output forwarded once, the duplicate not at all')
    t.same(client.all('Error'), [], 'no Error reached the client')
    t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
  })
}

t.test('native client: one of two calls answered: no follow-up until the other is', async (t) => {
  const { url, sim } = await startProxy(t, { script: { parallelCalls: 2 } })
  const client = await configuredClient(url, SETTINGS)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()

  client.send({ type: 'InjectUserMessage', content: 'get weather for city: Lima' })
  const [first, second] = await twoCalls(client) as [{ id: string, name: string }, { id: string, name: string }]
  await client.until(() => conn.activeResponseId === null, 'the originating response.done')
  const firstOutput = conn.waitFor('conversation.item.create')
  client.send({ type: 'FunctionCallResponse', id: first.id, name: first.name, content: 'warm' })
  await firstOutput
  t.equal(conn.count('response.create'), 1, 'no follow-up while a call is unanswered')

  const followUp = conn.waitFor('response.create')
  client.send({ type: 'FunctionCallResponse', id: second.id, name: second.name, content: 'humid' })
  await followUp
  await client.next('AgentAudioDone')
  await client.until(() => client.all('ConversationText').some((m) => m.role === 'assistant'), 'the answer told once heard')
  t.equal(client.all('ConversationText').find((m) => m.role === 'assistant')?.content, 'The result is warm and humid.')
  t.equal(conn.count('response.create'), 2)
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})
