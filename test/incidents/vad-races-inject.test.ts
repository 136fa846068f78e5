// Incident: server VAD created a response on its own (it needs no response.create)
// while an InjectUserMessage was pending, and the proxy's own response.create
// collided with it. docs/turn-engine.md rules 1 and 2: a `response.created` we did not
// ask for occupies the slot too; a create rejected with
// `conversation_already_has_active_response` frees nothing, and is retried after that
// response's `response.done` unless that response already answers it (rule 3).

import t from 'tap'
import { emptyViolations } from '../../lib/simulator/script.js'
import type { SimScript } from '../../lib/simulator/index.js'
import { barrier, configuredClient, simSent, startProxy } from '../helpers/proxy.js'

/** A configured session whose user speaks (server VAD answers on its own) the moment the inject's item is created. */
async function vadDuringInject (t: Parameters<typeof startProxy>[0], script: Partial<SimScript>) {
  const { url, sim } = await startProxy(t, { script })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  const vad: { response: string | null, itemCreate: Promise<unknown> } = { response: null, itemCreate: Promise.resolve() }
  vad.itemCreate = conn.waitFor('conversation.item.create', () => {
    conn.vadTurn('What time is it?')
    vad.response = conn.activeResponseId
    return true
  })
  return { sim, client, conn, vad }
}

t.test('server-VAD auto-response while the inject waits for its item ack: no conflict', async (t) => {
  const { sim, client, conn, vad } = await vadDuringInject(t, { itemAckDelayMs: 150, chunkIntervalMs: 50 })
  const { itemCreate } = vad
  let slotAtCreate: string | null | undefined = 'unset'
  let vadDoneBeforeCreate = false
  const create = conn.waitFor('response.create', () => {
    slotAtCreate = conn.activeResponseId // after processing: the response this create started
    vadDoneBeforeCreate = conn.sent.some((e) => e.type === 'response.done' && e.response?.id === vad.response)
    return true
  })
  client.send({ type: 'InjectUserMessage', content: 'Tell me the weather' })
  await itemCreate
  t.type(vad.response, 'string', 'server VAD started its own response')
  await create
  t.not(slotAtCreate, vad.response, 'the proxy\'s response.create was accepted: it started a response of its own')
  t.ok(vadDoneBeforeCreate, 'it waited for the VAD response\'s response.done')

  await client.until(() => client.all('AgentAudioDone').length === 2, 'two spoken answers (VAD\'s and the inject\'s)')
  await client.until(() => client.all('ConversationText').filter((m) => m.role === 'assistant').length === 2, 'both answers told once heard')
  const texts = client.all('ConversationText')
  t.same(texts.filter((m) => m.role === 'user').map((m) => m.content).sort(), ['Tell me the weather', 'What time is it?'], 'both user turns echoed')
  t.equal(texts.filter((m) => m.role === 'assistant').length, 2, 'both turns answered')
  t.equal(conn.count('response.create'), 1, 'VAD needed no create; the inject needed one')
  t.same(client.all('Error'), [], 'no Error reached the client')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('server-VAD auto-response racing the inject\'s response.create, after the message was in the conversation: the refused create is not retried (one answer, not two)', async (t) => {
  // The item is acknowledged at once; VAD starts its response in the same instant, so the
  // proxy's create (sent on the ack) is already on the wire: an unavoidable conflict. The
  // VAD response started after the message was in the conversation, so it answers it:
  // retrying would make the model answer twice (rule 3).
  const { sim, client, conn, vad } = await vadDuringInject(t, { chunkIntervalMs: 50 })
  client.send({ type: 'InjectUserMessage', content: 'Tell me the weather' })
  await vad.itemCreate
  await conn.waitFor('response.create')
  const vadDone = simSent(conn, 'response.done', (e) => e.response?.id === vad.response)
  await vadDone
  await client.until(() => client.all('ConversationText').filter((m) => m.role === 'assistant').length === 1, 'the VAD response heard and told')
  await barrier(client)
  const rejected = conn.sent.filter((e) => e.type === 'error' && e.error?.code === 'conversation_already_has_active_response')
  t.equal(rejected.length, 1, 'the create collided with the VAD response')
  t.equal(conn.count('response.create'), 1, 'and was not sent again')
  t.equal(client.all('AgentStartedSpeaking').length, 1, 'the agent answered once')
  t.same(client.all('Error'), [], 'the conflict was handled, not forwarded as an Error')
  t.same(sim.violations(), { ...emptyViolations(), activeResponseConflicts: 1 }, 'only the unavoidable race conflict, nothing else')
})
