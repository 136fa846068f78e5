import t from 'tap'
import { connect, pcm, simulator, type Client } from './helper.js'

// Slow enough that a cancel sent on the first delta always lands before the second.
const SLOW = { chunkIntervalMs: 200, audioChunks: 5 }
const userMessage = (text: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] })

/** The events of response `id` from `from` on, up to and including its response.done. */
function eventsOf (client: Client, id: string, from: number): any[] {
  const events = client.events.slice(from).filter((event) => event.response_id === id || event.response?.id === id || event.type === 'conversation.item.done')
  return events.slice(0, events.findIndex((event) => event.type === 'response.done') + 1)
}

t.test('a cancelled spoken response closes its message with the partial transcript before response.done', async (t) => {
  const sim = await simulator(t, { script: SLOW })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'conversation.item.create', item: userMessage('Tell me a long story about a cat') })
  const from = client.events.length
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  const firstWords = await client.next('response.output_audio_transcript.delta')
  client.send({ type: 'response.cancel' })
  const done = await client.next('response.done')

  const events = eventsOf(client, created.response.id, from)
  const partial = events.filter((event) => event.type === 'response.output_audio_transcript.delta').map((event) => event.delta).join('')
  t.equal(partial, firstWords.delta, 'one piece was said before the cancel')
  const full = 'You said: Tell me a long story about a cat.'
  t.ok(full.startsWith(partial) && partial.length < full.length)
  const closing = events.slice(events.findLastIndex((event) => event.type === 'response.output_audio_transcript.delta') + 1)
  t.same(closing.map((event) => event.type), [
    'response.output_audio_transcript.done',
    'response.output_audio.done',
    'response.content_part.done',
    'response.output_item.done',
    'conversation.item.done',
    'response.done'
  ])
  const [transcriptDone, , partDone, itemDone, conversationDone] = closing
  const itemId = transcriptDone.item_id
  t.match(transcriptDone, { transcript: partial, output_index: 0, content_index: 0 })
  t.same(partDone.part, { type: 'audio', transcript: partial })
  const incomplete = { id: itemId, type: 'message', role: 'assistant', status: 'incomplete', content: [{ type: 'output_audio', transcript: partial }] }
  t.match(itemDone.item, incomplete)
  t.match(conversationDone.item, incomplete)
  t.match(done.response, { status: 'cancelled', status_details: { type: 'cancelled', reason: 'client_cancelled' }, output: [incomplete] })
  t.equal(connection.activeResponseId, null)

  client.send({ type: 'conversation.item.retrieve', item_id: itemId })
  t.match((await client.next('conversation.item.retrieved')).item, incomplete, 'the conversation keeps what was said')
  client.send({ type: 'conversation.item.create', item: userMessage('What did you just say?') })
  client.send({ type: 'response.create', response: { output_modalities: ['text'] } })
  t.equal((await client.next('response.output_text.done')).text, `I last said: ${partial.replace(/[.!?\s]+$/, '')}.`)
})

t.test('barge-in (server VAD speech) closes the spoken message the same way, reason turn_detected', async (t) => {
  const sim = await simulator(t, { script: { ...SLOW, audioDoneBeforeTextDone: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  const from = client.events.length
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  await client.next('response.output_audio.delta')
  connection.speechStarted()
  const done = await client.next('response.done')
  const types = client.types(from)
  t.same(types.slice(types.indexOf('input_audio_buffer.speech_started'), types.indexOf('response.done') + 1), [
    'input_audio_buffer.speech_started',
    'response.output_audio.done',
    'response.output_audio_transcript.done',
    'response.content_part.done',
    'response.output_item.done',
    'conversation.item.done',
    'response.done'
  ], 'the scripted order of the two done events holds for a cut response too')
  t.match(done.response, { id: created.response.id, status: 'cancelled', status_details: { reason: 'turn_detected' }, output: [{ status: 'incomplete' }] })
})

t.test('a cancelled text response closes its message with the text so far', async (t) => {
  const sim = await simulator(t, { script: SLOW })
  const { client } = await connect(t, sim)
  await client.configure({ output_modalities: ['text'] })
  const from = client.events.length
  client.send({ type: 'response.create' })
  const delta = await client.next('response.output_text.delta')
  client.send({ type: 'response.cancel' })
  const done = await client.next('response.done')
  const types = client.types(from)
  t.same(types.slice(types.indexOf('response.output_text.done'), types.indexOf('response.done') + 1), [
    'response.output_text.done',
    'response.content_part.done',
    'response.output_item.done',
    'conversation.item.done',
    'response.done'
  ])
  t.match(client.events.find((event) => event.type === 'response.output_text.done'), { text: delta.delta })
  t.same(done.response.output[0].content, [{ type: 'output_text', text: delta.delta }])
  t.equal(done.response.output[0].status, 'incomplete')
})

t.test('a cancelled function call ends incomplete, without function_call_arguments.done; unstarted calls never appear', async (t) => {
  const sim = await simulator(t, { script: { ...SLOW, parallelCalls: 2 } })
  const { client } = await connect(t, sim)
  await client.configure({ tools: [{ type: 'function', name: 'get_time', parameters: { type: 'object', properties: {} } }] })
  client.send({ type: 'conversation.item.create', item: userMessage('get time please') })
  const from = client.events.length
  client.send({ type: 'response.create' })
  const added = await client.next('response.output_item.added')
  t.equal(added.item.type, 'function_call')
  client.send({ type: 'response.cancel' })
  const done = await client.next('response.done')
  const types = client.types(from)
  t.notOk(types.includes('response.function_call_arguments.done'))
  t.same(types.slice(types.indexOf('response.output_item.done'), types.indexOf('response.done') + 1), ['response.output_item.done', 'conversation.item.done', 'response.done'])
  const itemDone = client.events.find((event) => event.type === 'response.output_item.done')
  t.match(itemDone.item, { id: added.item.id, type: 'function_call', name: 'get_time', status: 'incomplete' })
  t.equal(done.response.output.length, 1, 'the second call had not started')
  t.match(done.response.output[0], { id: added.item.id, status: 'incomplete' })
})

t.test('an echo response (streaming mode) closes its message when cancelled', async (t) => {
  const sim = await simulator(t, { script: { echoAudio: true } })
  const { client } = await connect(t, sim)
  await client.configure({ audio: { input: { turn_detection: null } } })
  client.send({ type: 'input_audio_buffer.append', audio: pcm(20) })
  await client.next('response.output_audio.delta')
  client.send({ type: 'response.cancel' })
  const done = await client.next('response.done')
  t.match(done.response, { status: 'cancelled', output: [{ status: 'incomplete', content: [{ type: 'output_audio', transcript: '' }] }] })
  t.ok(client.types().includes('response.output_audio.done'))
  t.match(done.response.usage.output_token_details, { audio_tokens: 1 }, '20 ms of audio, one token a 50 ms begun')
})

t.test('finishResponse completes an echo response, closing its message as completed', async (t) => {
  const sim = await simulator(t, { script: { echoAudio: true } })
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { input: { turn_detection: null } } })
  client.send({ type: 'input_audio_buffer.append', audio: pcm(100) })
  await client.next('response.output_audio.delta')
  connection.finishResponse()
  const done = await client.next('response.done')
  t.match(done.response, { status: 'completed', output: [{ status: 'completed' }], usage: { output_token_details: { audio_tokens: 2 } } })
  const types = client.types()
  t.same(types.slice(types.indexOf('response.output_audio_transcript.done'), types.indexOf('response.done')), [
    'response.output_audio_transcript.done',
    'response.output_audio.done',
    'response.content_part.done',
    'response.output_item.done',
    'conversation.item.done'
  ])
})
