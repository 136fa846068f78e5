// Incident (an earlier proxy, its issue #388): it sent `response.create` right after the
// injected user item's `conversation.item.create`, before the upstream acknowledged the
// item. docs/turn-engine.md rule 5: the create waits for `conversation.item.added`/`.done`
// of the item id the proxy gave it.

import t from 'tap'
import { emptyViolations } from '../../lib/simulator/script.js'
import { configuredClient, startProxy } from '../helpers/proxy.js'

const ITEM_ACK_DELAY_MS = 150

t.test('#388 response.create before the inject\'s item ack', async (t) => {
  const { url, sim } = await startProxy(t, { script: { itemAckDelayMs: ITEM_ACK_DELAY_MS } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()

  let itemCreatedAt = 0
  let itemId: string | undefined
  const itemCreate = conn.waitFor('conversation.item.create', (event) => {
    itemCreatedAt = performance.now()
    itemId = event.item?.id
    return true
  })
  // Evaluated synchronously when the simulator processes the create: what it had sent by then.
  let sentBeforeCreate: any[] = []
  let createdAt = 0
  const responseCreate = conn.waitFor('response.create', () => {
    createdAt = performance.now()
    sentBeforeCreate = conn.sent
    return true
  })

  client.send({ type: 'InjectUserMessage', content: 'Tell me a joke' })
  await itemCreate
  await responseCreate

  t.type(itemId, 'string', 'the proxy names the item it injects')
  const ack = sentBeforeCreate.findIndex((event) => event.type === 'conversation.item.added' && event.item?.id === itemId)
  t.ok(ack >= 0, 'conversation.item.added for the injected item was sent before response.create arrived')
  t.ok(createdAt - itemCreatedAt >= ITEM_ACK_DELAY_MS - 5, `response.create came ${Math.round(createdAt - itemCreatedAt)} ms after the item (ack delay ${ITEM_ACK_DELAY_MS} ms)`)

  const user = await client.next('ConversationText')
  t.match(user, { role: 'user', content: 'Tell me a joke' })
  const assistant = await client.next('ConversationText')
  t.match(assistant, { role: 'assistant', content: 'You said: Tell me a joke.' })
  await client.next('AgentAudioDone')
  t.ok(client.audio.length > 0, 'agent audio reached the client')

  t.equal(conn.count('response.create'), 1, 'exactly one response.create')
  t.same(client.all('Error'), [], 'no Error reached the client')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('#388 two injects while acks are slow: no create overtakes an unacknowledged item', async (t) => {
  const { url, sim } = await startProxy(t, { script: { itemAckDelayMs: ITEM_ACK_DELAY_MS } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()

  const early: string[] = []
  // Runs on every response.create as the simulator processes it.
  conn.waitFor('response.create', () => {
    const acked = new Set(conn.sent.filter((e) => e.type === 'conversation.item.added').map((e) => e.item?.id))
    for (const item of conn.received.filter((e) => e.type === 'conversation.item.create')) {
      if (!acked.has(item.item?.id)) early.push(String(item.item?.id))
    }
    return false
  }).catch(() => {})
  client.send({ type: 'InjectUserMessage', content: 'first' })
  client.send({ type: 'InjectUserMessage', content: 'second' })
  await conn.waitFor('response.create')
  // One response answers both when it started after both were in the conversation (the
  // usual case: the acks come together); else the second gets a create of its own.
  await client.until(() => client.all('AgentAudioDone').length === conn.count('response.create') &&
    client.all('ConversationText').filter((m) => m.role === 'assistant').length === conn.count('response.create'), 'every response heard and told')
  t.same(early, [], 'no response.create overtook an unacknowledged injected item')
  const creates = conn.received.filter((e) => e.type === 'response.create')
  t.ok(creates.length === 1 || creates.length === 2, `one or two creates (${creates.length})`)
  const responses = conn.sent.filter((e) => e.type === 'response.created')
  const secondAck = conn.sent.findIndex((e) => e.type === 'conversation.item.added' && e.item?.id === conn.received.filter((r) => r.type === 'conversation.item.create')[1]?.item?.id)
  const firstCreated = conn.sent.indexOf(responses[0])
  t.equal(creates.length, secondAck < firstCreated ? 1 : 2, 'a second create exactly when the first response started before the second message was in the conversation')
  t.same(client.all('Error'), [], 'no Error reached the client')
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})
