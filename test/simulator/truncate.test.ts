import t from 'tap'
import { wordsBefore } from '../../lib/simulator/conversation.js'
import { connect, simulator, type Client } from './helper.js'

const userMessage = (text: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] })
// 50 characters spoken in 5 chunks of 40 ms: 200 ms of audio.
const SAID = 'You said: One two three four five six seven eight.'

/** Asks for an answer and returns the assistant item that carried it. */
async function answer (client: Client, text: string, response: object = {}): Promise<any> {
  client.send({ type: 'conversation.item.create', item: userMessage(text) })
  client.send({ type: 'response.create', response })
  return (await client.next('response.done')).response.output[0]
}

async function recallLast (client: Client): Promise<string> {
  const item = await answer(client, 'What did you just say?', { output_modalities: ['text'] })
  return item.content[0].text
}

t.test('truncate cuts the audio, drops the transcript, and the model keeps only the words heard', async (t) => {
  const sim = await simulator(t, { script: { audioChunks: 5 } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  const item = await answer(client, 'One two three four five six seven eight')
  t.equal(item.content[0].transcript, SAID)
  const truncate = client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 100 })
  const truncated = await client.next('conversation.item.truncated')
  t.same({ ...truncated, event_id: undefined }, { type: 'conversation.item.truncated', event_id: undefined, item_id: item.id, content_index: 0, audio_end_ms: 100 })
  t.equal(connection.received.at(-1).event_id, truncate.event_id)

  client.send({ type: 'conversation.item.retrieve', item_id: item.id })
  const retrieved = (await client.next('conversation.item.retrieved')).item
  t.same(retrieved.content, [{ type: 'output_audio' }], 'the server-side transcript is gone')
  t.equal(await recallLast(client), 'I last said: You said: One two three.', 'half the audio: the whole words of the first half')

  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 100 })
  await client.next('conversation.item.truncated')
  t.equal(connection.violations.refusedTruncates, 0, 'truncating again at the same point is fine')
  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 150 })
  t.match(await client.next('error'), { error: { code: 'invalid_value', message: 'Audio content of 100ms is already shorter than 150ms', param: 'audio_end_ms' } })
})

t.test('truncate is refused like the real API: unknown item, no model audio, 0, past the audio produced', async (t) => {
  const sim = await simulator(t, { script: { audioChunks: 5 } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  const spoken = await answer(client, 'Hi')
  const written = await answer(client, 'Hi', { output_modalities: ['text'] })
  client.send({ type: 'conversation.item.create', item: { id: 'item_user', ...userMessage('Hello') } })
  await client.next('conversation.item.done', (event) => event.item.id === 'item_user')

  const refusals: Array<[object, object]> = [
    [{ item_id: 'item_nope', content_index: 0, audio_end_ms: 10 }, { code: 'item_not_found', param: 'item_id' }],
    [{ item_id: 'item_user', content_index: 0, audio_end_ms: 10 }, { code: 'unsupported_content_type', message: 'Only model output audio messages can be truncated' }],
    [{ item_id: written.id, content_index: 0, audio_end_ms: 10 }, { code: 'unsupported_content_type' }],
    [{ item_id: spoken.id, content_index: 1, audio_end_ms: 10 }, { code: 'unsupported_content_type' }],
    [{ item_id: spoken.id, content_index: 0, audio_end_ms: 0 }, { code: 'unsupported_content_type' }],
    [{ item_id: spoken.id, content_index: 0, audio_end_ms: 201 }, { code: 'invalid_value', message: 'Audio content of 200ms is already shorter than 201ms' }]
  ]
  for (const [fields, error] of refusals) {
    const sent = client.send({ type: 'conversation.item.truncate', ...fields })
    t.match(await client.next('error'), { error: { type: 'invalid_request_error', event_id: sent.event_id, ...error } }, JSON.stringify(fields))
  }
  t.equal(connection.violations.refusedTruncates, refusals.length, 'each refusal is the client\'s mistake')

  const malformed: Array<[object, object]> = [
    [{ item_id: spoken.id, content_index: 0 }, { code: 'missing_required_parameter', param: 'audio_end_ms' }],
    [{ item_id: spoken.id, content_index: 0, audio_end_ms: -11 }, { code: 'integer_below_min_value', message: 'Invalid \'audio_end_ms\': integer below minimum value. Expected a value >= 0, but got -11 instead.' }],
    [{ item_id: spoken.id, content_index: 0, audio_end_ms: '100' }, { code: 'invalid_type', message: 'Invalid type for \'audio_end_ms\': expected an integer, but got a string instead.' }],
    [{ item_id: spoken.id, content_index: 0, audio_end_ms: 10.5 }, { code: 'invalid_type', param: 'audio_end_ms' }]
  ]
  for (const [fields, error] of malformed) {
    client.send({ type: 'conversation.item.truncate', ...fields })
    t.match(await client.next('error'), { error }, JSON.stringify(fields))
  }
  t.equal(connection.violations.invalidEvent, malformed.length)

  client.send({ type: 'conversation.item.truncate', item_id: spoken.id, content_index: 0, audio_end_ms: 200 })
  t.match(await client.next('conversation.item.truncated'), { audio_end_ms: 200 }, 'the whole audio is inclusive')
})

t.test('the audio duration follows the output format: G.711 is 8 bytes a millisecond', async (t) => {
  const sim = await simulator(t, { script: { audioChunks: 3 } })
  const { client } = await connect(t, sim)
  await client.configure({ audio: { output: { format: { type: 'audio/pcmu' } } } })
  const item = await answer(client, 'Hi')
  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 121 })
  t.match(await client.next('error'), { error: { message: 'Audio content of 120ms is already shorter than 121ms' } })
  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 120 })
  await client.next('conversation.item.truncated')
})

t.test('a cancelled answer holds only the audio produced before the cancel', async (t) => {
  const sim = await simulator(t, { script: { audioChunks: 5, chunkIntervalMs: 200 } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'conversation.item.create', item: userMessage('One two three four five six seven eight') })
  client.send({ type: 'response.create' })
  await client.next('response.output_audio.delta')
  client.send({ type: 'response.cancel' })
  const item = (await client.next('response.done')).response.output[0]
  connection.script.chunkIntervalMs = 0
  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 41 })
  t.match(await client.next('error'), { error: { message: 'Audio content of 40ms is already shorter than 41ms' } })
  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 20 })
  await client.next('conversation.item.truncated')
  t.equal(await recallLast(client), 'I last said: You.', 'half of the 40 ms said: "You s", back to a whole word')
})

t.test('deleted items cannot be truncated; wordsBefore keeps whole words', async (t) => {
  const sim = await simulator(t)
  const { client } = await connect(t, sim)
  await client.configure()
  const item = await answer(client, 'Hi')
  client.send({ type: 'conversation.item.delete', item_id: item.id })
  await client.next('conversation.item.deleted')
  client.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: 10 })
  t.match(await client.next('error'), { error: { code: 'item_not_found' } })

  t.equal(wordsBefore(SAID, 1), SAID)
  t.equal(wordsBefore(SAID, 0.5), 'You said: One two three')
  t.equal(wordsBefore(SAID, 0.46), 'You said: One two three', 'a cut right after a word keeps it')
  t.equal(wordsBefore(SAID, 0.01), '')
  t.equal(wordsBefore('', 0.5), '')
})
