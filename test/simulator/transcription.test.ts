import t from 'tap'
import { connect, pcm, settle, simulator } from './helper.js'

const TRANSCRIBED = { audio: { input: { transcription: { model: 'whisper-1' } } } }
const COMPLETED = 'conversation.item.input_audio_transcription.completed'
const FAILED = 'conversation.item.input_audio_transcription.failed'

t.test('transcriptionAfter response.created: the user\'s words arrive after the answer has started', async (t) => {
  const sim = await simulator(t, { script: { transcriptionAfter: 'response.created' } })
  const { client, connection } = await connect(t, sim)
  await client.configure(TRANSCRIBED)
  const from = client.events.length
  connection.vadTurn('What time is it?')
  const done = await client.next('response.done')
  const types = client.types(from)
  t.same(types.slice(types.indexOf('conversation.item.done'), types.indexOf('response.output_item.added') + 1), [
    'conversation.item.done',
    'response.created',
    COMPLETED,
    'response.output_item.added'
  ])
  const completed = client.events.find((event) => event.type === COMPLETED)
  t.match(completed, { item_id: client.events.find((event) => event.type === 'input_audio_buffer.committed').item_id, content_index: 0, transcript: 'What time is it?' })
  t.equal(done.response.output[0].content[0].transcript, 'You said: What time is it.', 'the model heard the audio before its transcript existed')
  client.send({ type: 'conversation.item.retrieve', item_id: completed.item_id })
  t.match((await client.next('conversation.item.retrieved')).item.content, [{ type: 'input_audio', transcript: 'What time is it?' }])
})

t.test('transcriptionAfter response.done, and a delay: after the whole answer', async (t) => {
  const sim = await simulator(t, { script: { transcriptionAfter: 'response.done', transcriptionDelayMs: 20 } })
  const { client, connection } = await connect(t, sim)
  await client.configure(TRANSCRIBED)
  const from = client.events.length
  connection.vadTurn('Hi')
  await client.next(COMPLETED)
  const types = client.types(from)
  t.ok(types.indexOf('response.done') < types.indexOf(COMPLETED))
  t.ok(types.indexOf('rate_limits.updated') < types.indexOf(COMPLETED), 'the delay comes after the moment')
})

t.test('held transcriptions wait for an in-band response; out-of-band ones do not release them', async (t) => {
  const sim = await simulator(t, { script: { transcriptionAfter: 'response.created' } })
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { input: { transcription: { model: 'whisper-1' }, turn_detection: { type: 'server_vad', create_response: false } } } })
  connection.vadTurn('Hold on')
  client.send({ type: 'response.create', response: { conversation: 'none', output_modalities: ['text'] } })
  await client.next('response.done')
  await settle()
  t.notOk(client.types().includes(COMPLETED))
  client.send({ type: 'response.create' })
  await client.next('response.created')
  t.match(await client.next(COMPLETED), { transcript: 'Hold on' })
})

t.test('failTranscriptions: the real failed event, then transcription works again; the model heard anyway', async (t) => {
  const sim = await simulator(t, { script: { failTranscriptions: 1 } })
  const { client, connection } = await connect(t, sim)
  await client.configure(TRANSCRIBED)
  connection.vadTurn('First')
  const failed = await client.next(FAILED)
  const committed = client.events.find((event) => event.type === 'input_audio_buffer.committed')
  t.same({ ...failed, event_id: 'x' }, {
    type: FAILED,
    event_id: 'x',
    item_id: committed.item_id,
    content_index: 0,
    error: { type: 'transcription_error', code: 'audio_unintelligible', message: 'The audio could not be transcribed.', param: null }
  })
  t.match(failed.event_id, /^event_/)
  t.equal((await client.next('response.done')).response.output[0].content[0].transcript, 'You said: First.')
  client.send({ type: 'conversation.item.retrieve', item_id: committed.item_id })
  t.same((await client.next('conversation.item.retrieved')).item.content, [{ type: 'input_audio', transcript: null }])
  t.equal(connection.script.failTranscriptions, 0, 'consumed')
  connection.vadTurn('Second')
  t.match(await client.next(COMPLETED), { transcript: 'Second' })
  t.equal(client.types().filter((type) => type === FAILED).length, 1)
})

t.test('no input transcription configured: no transcription events, the model still hears the turn', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure()
  connection.vadTurn('Are you there')
  t.equal((await client.next('response.done')).response.output[0].content[0].transcript, 'You said: Are you there.')
  t.notOk(client.types().some((type) => type.startsWith('conversation.item.input_audio_transcription')))
})

t.test('a client commit is transcribed as spokenTranscript, billed by its duration', async (t) => {
  const sim = await simulator(t, { script: { spokenTranscript: 'Book a table' } })
  const { client } = await connect(t, sim)
  await client.configure({ audio: { input: { transcription: { model: 'whisper-1' }, turn_detection: null } } })
  client.send({ type: 'input_audio_buffer.append', audio: pcm(1200) })
  client.send({ type: 'input_audio_buffer.commit' })
  t.match(await client.next(COMPLETED), { transcript: 'Book a table', usage: { type: 'duration', seconds: 2 } })
})
