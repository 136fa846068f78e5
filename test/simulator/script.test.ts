import { once } from 'node:events'
import t from 'tap'
import { connect, pcm, settle, simulator } from './helper.js'

t.test('rejectNext answers the next event of a type with the scripted error, unprocessed', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  connection.script.rejectNext.push({ type: 'session.update', code: 'invalid_value', message: 'Nope.' })
  const update = client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'A' } })
  t.same((await client.next('error')).error, { type: 'invalid_request_error', code: 'invalid_value', message: 'Nope.', param: null, event_id: update.event_id })
  t.equal(connection.session.instructions, '')
  t.same(connection.script.rejectNext, [], 'consumed')
  const updated = await client.configure({ instructions: 'B' })
  t.equal(updated.session.instructions, 'B', 'only the next one')

  connection.script.rejectNext.push({ type: 'response.create', code: 'conversation_already_has_active_response' })
  const create = client.send({ type: 'response.create' })
  t.match(await client.next('error'), { error: { code: 'conversation_already_has_active_response', event_id: create.event_id } })
  t.equal(connection.activeResponseId, null, 'a fake conflict takes no slot')
  t.equal(connection.violations.activeResponseConflicts, 0, 'and is not the client\'s fault')
})

t.test('closeAfter closes the socket with the code after processing the event', async (t) => {
  const sim = await simulator(t, { script: { closeAfter: { type: 'session.update', code: 4001, reason: 'scripted' } } })
  const { client } = await connect(t, sim)
  const closed = once(client.ws, 'close')
  client.send({ type: 'session.update', session: { type: 'realtime' } })
  const [code, reason] = await closed
  t.equal(code, 4001)
  t.equal(String(reason), 'scripted')
  t.ok(client.types().includes('session.updated'), 'processed before the close')

  const second = await connect(t, sim)
  second.connection.script.closeAfter = { type: 'response.create', code: 1006 }
  const dropped = once(second.client.ws, 'close')
  second.client.send({ type: 'response.create' })
  t.equal((await dropped)[0], 1006, 'a code no close frame can carry drops the socket')
})

t.test('neverCreate swallows response.create; neverComplete holds response.done until finishResponse', async (t) => {
  const sim = await simulator(t, { script: { neverCreate: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  await connection.waitFor('response.create')
  await settle()
  t.notOk(client.types().includes('response.created'))
  t.notOk(client.types().includes('error'))
  t.equal(connection.activeResponseId, null)

  connection.script.neverCreate = false
  connection.script.neverComplete = true
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  await client.next('conversation.item.done')
  await settle()
  t.notOk(client.types().includes('response.done'), 'held')
  t.equal(connection.activeResponseId, created.response.id)
  connection.finishResponse()
  const done = await client.next('response.done')
  t.match(done.response, { id: created.response.id, status: 'completed' })
  t.equal(connection.activeResponseId, null)
})

t.test('finishResponse completes a response still streaming, with all its content first', async (t) => {
  const sim = await simulator(t, { script: { chunkIntervalMs: 50 } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  await client.next('response.created')
  connection.finishResponse()
  await client.next('response.done')
  const types = client.types()
  t.ok(types.indexOf('conversation.item.done') < types.indexOf('response.done'))
  t.equal(types.filter((type) => type === 'response.output_audio.delta').length, 3)
})

t.test('timings: a delayed session.updated, delayed acks and response.created', async (t) => {
  const sim = await simulator(t, { script: { sessionUpdatedDelayMs: 30, itemAckDelayMs: 20, responseCreatedDelayMs: 20 } })
  const { client, connection } = await connect(t, sim)
  client.send({ type: 'session.update', session: { type: 'realtime' } })
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'too soon' }] } })
  await client.next('session.updated')
  t.equal(connection.violations.beforeSessionUpdated, 1, 'sent before session.updated arrived')
  const started = Date.now()
  client.send({ type: 'response.create' })
  await connection.waitFor('response.create')
  t.ok(connection.activeResponseId, 'slot taken before response.created')
  const early = client.send({ type: 'response.cancel' })
  t.match(await client.next('error'), { error: { code: 'response_cancel_not_active', event_id: early.event_id } })
  await client.next('response.created')
  t.ok(Date.now() - started >= 15)
  await client.next('response.done')
})

t.test('echoAudio: each append comes back at once as a delta of one endless response', async (t) => {
  const sim = await simulator(t, { script: { echoAudio: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { input: { turn_detection: null } } })
  const frames = [pcm(20), Buffer.alloc(960, 7).toString('base64'), pcm(40)]
  for (const audio of frames) client.send({ type: 'input_audio_buffer.append', audio })
  const created = await client.next('response.created')
  const deltas: any[] = []
  for (let i = 0; i < frames.length; i++) deltas.push(await client.next('response.output_audio.delta'))
  t.same(deltas.map((event) => event.delta), frames)
  t.ok(deltas.every((event) => event.response_id === created.response.id && event.item_id === deltas[0].item_id))
  t.equal(connection.activeResponseId, created.response.id)
  const conflict = client.send({ type: 'response.create' })
  t.match(await client.next('error'), { error: { code: 'conversation_already_has_active_response', event_id: conflict.event_id } })
  await settle()
  t.notOk(client.types().includes('response.done'))
  t.notOk(client.types().includes('input_audio_buffer.speech_started'), 'no VAD in echo mode')
  t.same(connection.sent.filter((event) => event.type === 'response.output_audio.delta').map((event) => event.audioBytes), [960, 960, 1920])
})

t.test('waitFor resolves on a future matching client event and rejects on timeout', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  const waiting = connection.waitFor('conversation.item.create', (event) => event.item.id === 'b')
  client.send({ type: 'conversation.item.create', item: { id: 'a', type: 'message', role: 'user', content: [] } })
  client.send({ type: 'conversation.item.create', item: { id: 'b', type: 'message', role: 'user', content: [] } })
  t.equal((await waiting).item.id, 'b')
  await t.rejects(connection.waitFor('response.create', undefined, 20), /Timed out after 20 ms/)
  const pending = connection.waitFor('response.create')
  connection.close(1000)
  await t.rejects(pending, /closed/)
})

t.test('send() passes raw server events through with an event_id', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  connection.send({ type: 'response.done', response: { id: 'resp_unknown', status: 'completed' } })
  const event = await client.next('response.done')
  t.match(event, { event_id: /^event_/, response: { id: 'resp_unknown' } })
})
