import t from 'tap'
import { connect, pcm, settle, simulator } from './helper.js'

t.test('session.created announces a full GA session with the model of the URL', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim, { model: 'gpt-realtime-mini' })
  const created = client.events[0]
  t.equal(created.type, 'session.created')
  t.match(created.event_id, /^event_/)
  t.match(created.session, {
    type: 'realtime',
    object: 'realtime.session',
    id: /^sess_/,
    model: 'gpt-realtime-mini',
    output_modalities: ['audio'],
    instructions: '',
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: 'inf',
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200, create_response: true, interrupt_response: true, idle_timeout_ms: null }
      },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1 }
    }
  })
  t.equal(connection.model, 'gpt-realtime-mini')
  t.equal(connection.headers.host, `127.0.0.1:${sim.port}`)
})

t.test('session.update deep-merges, arrays replace, and session.updated carries the whole session', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: {} } }]
  const updated = await client.configure({
    instructions: 'Be brief.',
    tools,
    audio: { input: { format: { type: 'audio/pcmu' }, turn_detection: { type: 'semantic_vad' } }, output: { voice: 'marin' } }
  })
  t.match(updated.session, {
    type: 'realtime',
    instructions: 'Be brief.',
    tools,
    audio: {
      input: { format: { type: 'audio/pcmu' }, turn_detection: { type: 'semantic_vad', eagerness: 'auto', create_response: true } },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'marin', speed: 1 }
    }
  })
  t.notOk('rate' in updated.session.audio.input.format, 'a format of another type replaces the old one whole')
  t.notOk('threshold' in updated.session.audio.input.turn_detection)
  const second = await client.configure({ tools: [], audio: { input: { turn_detection: null } } })
  t.same(second.session.tools, [])
  t.equal(second.session.audio.input.turn_detection, null)
  t.equal(second.session.instructions, 'Be brief.')
  t.same(connection.session, second.session)
  t.same(connection.violations, sim.violations())
  t.equal(sim.violations().invalidEvent, 0)
})

t.test('session.update without the GA type, or with beta fields, is refused and changes nothing', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  const noType = client.send({ type: 'session.update', session: { instructions: 'x' } })
  const missing = await client.next('error')
  t.match(missing, { error: { type: 'invalid_request_error', code: 'unknown_parameter', param: 'session.type', event_id: noType.event_id } })
  const beta = client.send({ type: 'session.update', session: { type: 'realtime', voice: 'ash', modalities: ['audio', 'text'] } })
  t.match(await client.next('error'), { error: { code: 'unknown_parameter', param: 'session.voice', event_id: beta.event_id } })
  client.send({ type: 'session.update', session: { type: 'realtime', audio: { output: { format: { type: 'audio/pcm', rate: 16000 } } } } })
  t.match(await client.next('error'), { error: { code: 'invalid_value', param: 'session.audio.output.format.rate' } })
  client.send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['audio', 'text'] } })
  t.match(await client.next('error'), { error: { code: 'invalid_value', param: 'session.output_modalities' } })
  await settle()
  t.notOk(client.types().includes('session.updated'))
  t.equal(connection.session.instructions, '')
  t.equal(connection.violations.invalidEvent, 4)
})

t.test('conversation.item.create is acknowledged with added then done, keeping the given id', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure()
  const item = { id: 'item_client_1', type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi there' }] }
  client.send({ type: 'conversation.item.create', item })
  const added = await client.next('conversation.item.added')
  const done = await client.next('conversation.item.done')
  const expected = { ...item, object: 'realtime.item', status: 'completed' }
  t.same(added.item, expected)
  t.same(done.item, expected)
  t.equal(added.previous_item_id, null)
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'system', content: [{ type: 'input_text', text: 'Rules' }] } })
  const second = await client.next('conversation.item.done')
  t.match(second.item.id, /^item_/)
  t.equal(second.previous_item_id, 'item_client_1')
  t.equal(connection.count('conversation.item.create'), 2)
})

t.test('items the GA API refuses: beta content types, missing fields', async (t) => {
  const sim = await simulator(t)
  const { client } = await connect(t, sim)
  await client.configure()
  const beta = client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'text', text: 'Hi' }] } })
  t.match(await client.next('error'), { error: { code: 'invalid_value', param: 'item.content[0].type', event_id: beta.event_id } })
  client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', output: '42' } })
  t.match(await client.next('error'), { error: { code: 'missing_required_parameter', param: 'item.call_id' } })
  t.equal(sim.violations().invalidEvent, 2)
})

t.test('input audio: commit needs 100 ms, clear empties the buffer', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'input_audio_buffer.append', audio: pcm(60) })
  const early = client.send({ type: 'input_audio_buffer.commit' })
  t.match(await client.next('error'), { error: { code: 'input_audio_buffer_commit_empty', event_id: early.event_id } })
  client.send({ type: 'input_audio_buffer.append', audio: pcm(60) })
  client.send({ type: 'input_audio_buffer.commit' })
  const committed = await client.next('input_audio_buffer.committed')
  const added = await client.next('conversation.item.added')
  t.equal(added.item.id, committed.item_id)
  t.match(added.item, { type: 'message', role: 'user', content: [{ type: 'input_audio' }] })
  client.send({ type: 'input_audio_buffer.append', audio: pcm(200) })
  client.send({ type: 'input_audio_buffer.clear' })
  await client.next('input_audio_buffer.cleared')
  client.send({ type: 'input_audio_buffer.commit' })
  t.match(await client.next('error'), { error: { code: 'input_audio_buffer_commit_empty' } })
  t.match(connection.received.find((event) => event.type === 'input_audio_buffer.append'), { audioBytes: 48 * 60 })
  t.notOk('audio' in connection.received[1])
})

t.test('client mistakes are counted: before session.updated, missing event_id, unknown types, bad frames', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  client.send({ type: 'input_audio_buffer.append', audio: pcm(20) })
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'early' }] } })
  await client.next('conversation.item.done')
  client.send({ type: 'session.update', event_id: null, session: { type: 'realtime' } })
  await client.next('session.updated')
  client.send({ type: 'input_audio_buffer.append', audio: pcm(20) })
  const beta = client.send({ type: 'response.audio.delta' })
  t.match(await client.next('error'), { error: { type: 'invalid_request_error', code: 'invalid_value', param: 'type', event_id: beta.event_id } })
  client.sendRaw('{not json')
  t.match(await client.next('error'), { error: { code: 'invalid_json', event_id: null } })
  client.send({ type: 'input_audio_buffer.append', audio: 'not base64!' })
  t.match(await client.next('error'), { error: { code: 'invalid_value', param: 'audio' } })
  client.sendRaw(Buffer.from([1, 2, 3]))
  await client.next('error')
  t.same(connection.violations, {
    activeResponseConflicts: 0,
    sessionUpdateDuringResponse: 0,
    beforeSessionUpdated: 2,
    missingEventId: 1,
    unknownEventType: 1,
    invalidEvent: 3,
    refusedTruncates: 0
  })
  t.same(sim.violations(), connection.violations)
})
