import t from 'tap'
import { connect, settle, simulator } from './helper.js'

const spokenOrder = (audioFirst: boolean): string[] => [
  'response.created',
  'response.output_item.added',
  'conversation.item.added',
  'response.content_part.added',
  'response.output_audio.delta', 'response.output_audio_transcript.delta',
  'response.output_audio.delta', 'response.output_audio_transcript.delta',
  'response.output_audio.delta', 'response.output_audio_transcript.delta',
  ...(audioFirst
    ? ['response.output_audio.done', 'response.output_audio_transcript.done']
    : ['response.output_audio_transcript.done', 'response.output_audio.done']),
  'response.content_part.done',
  'response.output_item.done',
  'conversation.item.done',
  'response.done'
]

for (const audioDoneBeforeTextDone of [false, true]) {
  t.test(`a spoken response streams the GA events in order (audioDoneBeforeTextDone: ${audioDoneBeforeTextDone})`, async (t) => {
    const sim = await simulator(t, { script: { audioDoneBeforeTextDone } })
    const { client, connection } = await connect(t, sim)
    await client.configure()
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'How are you?' }] } })
    await client.next('conversation.item.done')
    const from = client.events.length
    client.send({ type: 'response.create', response: { metadata: { purpose: 'test' } } })
    const done = await client.next('response.done')
    t.same(client.types(from).slice(0, -1), spokenOrder(audioDoneBeforeTextDone))
    t.equal(client.types(from).at(-1), 'rate_limits.updated')

    const events = client.events.slice(from)
    const created = events[0]
    t.match(created.response, {
      object: 'realtime.response',
      id: /^resp_/,
      status: 'in_progress',
      conversation_id: /^conv_/,
      output: [],
      output_modalities: ['audio'],
      audio: { output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy' } },
      metadata: { purpose: 'test' },
      usage: null
    })
    const delta = events.find((event) => event.type === 'response.output_audio.delta')
    t.match(delta, { response_id: created.response.id, item_id: /^item_/, output_index: 0, content_index: 0, obfuscation: String })
    const pcm = Buffer.from(delta.delta, 'base64')
    t.ok(pcm.length > 0 && pcm.length % 2 === 0, 'PCM16 chunks have an even length')
    const transcript = events.find((event) => event.type === 'response.output_audio_transcript.done').transcript
    t.equal(transcript, 'You said: How are you.')
    t.equal(events.filter((event) => event.type === 'response.output_audio_transcript.delta').map((event) => event.delta).join(''), transcript)
    t.match(done.response, {
      id: created.response.id,
      status: 'completed',
      conversation_id: created.response.conversation_id,
      metadata: { purpose: 'test' },
      output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_audio', transcript }] }],
      usage: { total_tokens: Number, input_tokens: Number, output_tokens: Number }
    })
    const ids = client.events.map((event) => event.event_id)
    t.equal(new Set(ids).size, ids.length, 'every server event has its own event_id')
    t.equal(connection.activeResponseId, null)
    t.match(connection.sent.find((event) => event.type === 'response.output_audio.delta'), { audioBytes: pcm.length })
    t.notOk('delta' in connection.sent.find((event) => event.type === 'response.output_audio.delta'))
  })
}

t.test('text sessions get output_text events; G.711 sessions get 8-bit audio', async (t) => {
  const sim = await simulator(t)
  const { client } = await connect(t, sim)
  await client.configure({ output_modalities: ['text'] })
  const from = client.events.length
  client.send({ type: 'response.create' })
  await client.next('response.done')
  t.same(client.types(from).filter((type) => type.startsWith('response.output_')), [
    'response.output_item.added',
    'response.output_text.delta', 'response.output_text.delta', 'response.output_text.delta',
    'response.output_text.done',
    'response.output_item.done'
  ])
  await client.configure({ output_modalities: ['audio'], audio: { output: { format: { type: 'audio/pcmu' } } } })
  client.send({ type: 'response.create' })
  const delta = await client.next('response.output_audio.delta')
  t.equal(Buffer.from(delta.delta, 'base64').length, 320, '40 ms of 8 kHz μ-law, one byte a sample')
  await client.next('response.done')
})

t.test('a second in-band response.create is refused exactly like the real API', async (t) => {
  const sim = await simulator(t, { script: { neverComplete: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  const second = client.send({ type: 'response.create' })
  const error = await client.next('error')
  t.same(error.error, {
    type: 'invalid_request_error',
    code: 'conversation_already_has_active_response',
    message: `Conversation already has an active response in progress: ${created.response.id}. Wait until the response is finished before creating a new one.`,
    param: null,
    event_id: second.event_id
  })
  t.match(error.event_id, /^event_/)
  t.equal(connection.violations.activeResponseConflicts, 1)
  t.equal(sim.violations().activeResponseConflicts, 1)
  await settle()
  t.equal(client.types().filter((type) => type === 'response.created').length, 1, 'no response.created for the refused create')
  t.equal(client.types().filter((type) => type === 'response.done').length, 0)
})

t.test('back-to-back creates: the slot is taken when the first is accepted', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const second = client.send({ type: 'response.create' })
  t.match(await client.next('error'), { error: { code: 'conversation_already_has_active_response', event_id: second.event_id } })
  await client.next('response.done')
  await settle()
  t.equal(client.types().filter((type) => type === 'response.created').length, 1)
  t.equal(connection.violations.activeResponseConflicts, 1)
  client.send({ type: 'response.create' })
  await client.next('response.done')
  t.equal(connection.violations.activeResponseConflicts, 1, 'a create after response.done is fine')
})

t.test('out-of-band responses neither conflict nor take the slot', async (t) => {
  const sim = await simulator(t, { script: { neverComplete: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const inBand = await client.next('response.created')
  client.send({ type: 'response.create', response: { conversation: 'none', instructions: 'Say exactly "Out of band."', output_modalities: ['text'] } })
  const outOfBand = await client.next('response.created', (event) => event.response.id !== inBand.response.id)
  t.equal(outOfBand.response.conversation_id, null)
  t.equal(connection.activeResponseId, inBand.response.id)
  connection.finishResponse()
  const dones = [await client.next('response.done'), await client.next('response.done')]
  const oob = dones.find((event) => event.response.id === outOfBand.response.id)
  t.equal(oob.response.conversation_id, null)
  t.match(oob.response.output, [{ content: [{ type: 'output_text', text: 'Out of band.' }] }])
  t.notOk(client.events.some((event) => event.type === 'conversation.item.added' && event.item.id === oob.response.output[0].id), 'out-of-band items stay out of the conversation')
  t.equal(connection.violations.activeResponseConflicts, 0)
})

t.test('response.cancel ends the active response with a cancelled response.done', async (t) => {
  const sim = await simulator(t, { script: { chunkIntervalMs: 20 } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  await client.next('response.output_audio.delta')
  client.send({ type: 'response.cancel', response_id: created.response.id })
  const done = await client.next('response.done')
  t.match(done.response, {
    id: created.response.id,
    status: 'cancelled',
    status_details: { type: 'cancelled', reason: 'client_cancelled' },
    output: [{ status: 'incomplete' }]
  })
  t.equal(connection.activeResponseId, null)
  await settle(60)
  const after = client.types().slice(client.types().lastIndexOf('response.done') + 1)
  t.notOk(after.some((type) => type.startsWith('response.output')), 'no content after response.done')

  const nothing = client.send({ type: 'response.cancel' })
  t.match(await client.next('error'), { error: { code: 'response_cancel_not_active', event_id: nothing.event_id } })
  client.send({ type: 'response.cancel', response_id: 'resp_unknown' })
  t.match(await client.next('error'), { error: { code: 'response_cancel_not_active' } })
})

t.test('tool calls: parallel calls in one response, then an answer from their outputs', async (t) => {
  const sim = await simulator(t, { script: { parallelCalls: 2 } })
  const { client } = await connect(t, sim)
  const tool = { type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }
  await client.configure({ tools: [tool] })
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Get weather, city: Paris' }] } })
  client.send({ type: 'response.create' })
  const from = client.events.length
  const done = await client.next('response.done')
  const calls = client.events.slice(from).filter((event) => event.type === 'response.function_call_arguments.done')
  t.equal(calls.length, 2)
  t.match(calls[0], { name: 'get_weather', arguments: '{"city":"Paris"}', call_id: /^call_/, response_id: done.response.id, output_index: 0 })
  t.equal(calls[1].output_index, 1)
  t.not(calls[0].call_id, calls[1].call_id)
  t.match(done.response.output, [
    { type: 'function_call', status: 'completed', name: 'get_weather', call_id: calls[0].call_id, arguments: '{"city":"Paris"}' },
    { type: 'function_call', call_id: calls[1].call_id }
  ])
  t.ok(client.events.some((event) => event.type === 'response.output_item.added' && event.item.type === 'function_call'))

  client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: calls[0].call_id, output: 'sunny' } })
  client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: calls[1].call_id, output: '21 °C' } })
  client.send({ type: 'response.create' })
  const answer = await client.next('response.output_audio_transcript.done')
  t.equal(answer.transcript, 'The result is sunny and 21 °C.')
  await client.next('response.done')
})

t.test('response instructions asking to say something exactly are spoken verbatim', async (t) => {
  const sim = await simulator(t)
  const { client } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create', response: { instructions: 'Say exactly "Welcome to Acme!" and nothing else.' } })
  t.equal((await client.next('response.output_audio_transcript.done')).transcript, 'Welcome to Acme!')
  await client.next('response.done')
  client.send({ type: 'response.create' })
  t.equal((await client.next('response.output_audio_transcript.done')).transcript, 'Hello! How can I help you today?')
})

t.test('vadTurn: a whole server VAD turn and an unrequested response', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { input: { transcription: { model: 'whisper-1' } } } })
  const from = client.events.length
  connection.vadTurn('What time is it?')
  const done = await client.next('response.done')
  t.same(client.types(from).slice(0, 7), [
    'input_audio_buffer.speech_started',
    'input_audio_buffer.speech_stopped',
    'input_audio_buffer.committed',
    'conversation.item.added',
    'conversation.item.done',
    'conversation.item.input_audio_transcription.completed',
    'response.created'
  ])
  const committed = client.events.find((event) => event.type === 'input_audio_buffer.committed')
  const transcription = client.events.find((event) => event.type === 'conversation.item.input_audio_transcription.completed')
  t.equal(transcription.item_id, committed.item_id)
  t.equal(transcription.transcript, 'What time is it?')
  t.match(done.response.output[0].content[0].transcript, 'You said: What time is it.')
  t.equal(connection.count('response.create'), 0, 'the client asked for nothing')

  await client.configure({ audio: { input: { turn_detection: { type: 'server_vad', create_response: false } } } })
  const quiet = client.events.length
  connection.vadTurn()
  await settle()
  t.notOk(client.types(quiet).includes('response.created'), 'create_response: false → no automatic response')
})

t.test('speechStarted barges in on the active response (interrupt_response)', async (t) => {
  const sim = await simulator(t, { script: { neverComplete: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  await client.next('response.output_item.done')
  connection.speechStarted()
  await client.next('input_audio_buffer.speech_started')
  const done = await client.next('response.done')
  t.match(done.response, { id: created.response.id, status: 'cancelled', status_details: { reason: 'turn_detected' } })
  t.equal(connection.activeResponseId, null)
})

t.test('session.update during a response is applied but counted', async (t) => {
  const sim = await simulator(t, { script: { neverComplete: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  await client.next('response.created')
  const updated = await client.configure({ instructions: 'Later' })
  t.equal(updated.session.instructions, 'Later')
  t.equal(connection.violations.sessionUpdateDuringResponse, 1)
})

t.test('cannot_update_voice once the agent has spoken; other updates still apply', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { output: { voice: 'marin' } } })
  client.send({ type: 'response.create' })
  await client.next('response.done')
  const update = client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'New', audio: { output: { voice: 'cedar' } } } })
  t.match(await client.next('error'), { error: { type: 'invalid_request_error', code: 'cannot_update_voice', param: null, event_id: update.event_id } }, 'param null, as recorded from the real API')
  t.equal(connection.session.audio.output.voice, 'marin')
  t.equal(connection.session.instructions, '', 'the whole update was refused')
  const same = await client.configure({ instructions: 'New', audio: { output: { voice: 'marin' } } })
  t.equal(same.session.instructions, 'New', 'repeating the current voice is fine')
})

t.test('replayed items are what the answers recall: a new connection knows the earlier conversation', async (t) => {
  const sim = await simulator(t)
  const { client } = await connect(t, sim)
  await client.configure()
  const replay = [
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Book a table for two.' }] },
    { type: 'message', role: 'assistant', content: [{ type: 'output_audio', transcript: 'For when?' }] },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What did I say first?' }] }
  ]
  for (const item of replay) client.send({ type: 'conversation.item.create', item })
  client.send({ type: 'response.create' })
  t.equal((await client.next('response.output_audio_transcript.done')).transcript, 'You first said: Book a table for two.')
  await client.next('response.done')
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'And what did you just say?' }] } })
  client.send({ type: 'response.create' })
  t.equal((await client.next('response.output_audio_transcript.done')).transcript, 'I last said: You first said: Book a table for two.')
})
