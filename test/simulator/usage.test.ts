import t from 'tap'
import { connect, pcm, simulator, type Client } from './helper.js'

// The numbers below follow the rules documented in lib/simulator/usage.ts, worked out by hand:
// text ⌈chars/4⌉, user audio ⌈ms/100⌉, model audio ⌈ms/50⌉, 8 tokens of prompt framing,
// 4 per item, cache = the prefix shared with the previous response, in 64-token blocks.
const INSTRUCTIONS = 'x'.repeat(280) // 70 tokens; with "[]" (1) and framing (8): a prompt of 79

async function usageOf (client: Client): Promise<any> {
  return (await client.next('response.done')).response.usage
}

function usage (input: [number, number], cached: [number, number], output: [number, number]): object {
  const inputTokens = input[0] + input[1]
  const outputTokens = output[0] + output[1]
  return {
    total_tokens: inputTokens + outputTokens,
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    input_token_details: {
      text_tokens: input[0],
      audio_tokens: input[1],
      image_tokens: 0,
      cached_tokens: cached[0] + cached[1],
      cached_tokens_details: { text_tokens: cached[0], audio_tokens: cached[1], image_tokens: 0 }
    },
    output_token_details: { text_tokens: output[0], audio_tokens: output[1] }
  }
}

t.test('usage grows with the conversation, caches the shared prefix, and bills what was produced', async (t) => {
  const sim = await simulator(t)
  const { client, connection } = await connect(t, sim)
  await client.configure({ instructions: INSTRUCTIONS })

  // R1 reads the prompt (79) and says the greeting: 32 chars (8) with 120 ms of audio (3).
  client.send({ type: 'response.create' })
  t.same(await usageOf(client), usage([79, 0], [0, 0], [8, 3]), 'first response: nothing cached')
  const [greeting] = connection.sent.filter((event) => event.type === 'response.done')

  // A spoken turn of 3 s: the user item is 4 + 30 audio tokens; the greeting item 4 + 8 text + 3 audio.
  client.send({ type: 'input_audio_buffer.append', audio: pcm(3000) })
  await connection.waitFor('input_audio_buffer.append')
  connection.vadTurn('What is the weather')
  // "You said: What is the weather." is 30 chars (8). Cached: the prompt, 79 → one block of 64.
  t.same(await usageOf(client), usage([79 + 12 + 4, 3 + 30], [64, 0], [8, 3]))

  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Thanks' }] } })
  client.send({ type: 'response.create' })
  // + the last answer (4 + 8, 3) and "Thanks" (4 + 2). Shared with R2: prompt, greeting, user audio
  // = 128 tokens, two whole blocks, counted in order: 79 + 12 + 4 text, 3 + 30 audio.
  t.same(await usageOf(client), usage([79 + 12 + 4 + 12 + 6, 3 + 30 + 3], [95, 33], [5, 3]), '"You said: Thanks." is 17 chars')

  // Truncating R2's answer to 60 ms drops its transcript (8 tokens) and half its audio.
  const answer2 = connection.sent.filter((event) => event.type === 'response.done')[1].response.output[0]
  client.send({ type: 'conversation.item.truncate', item_id: answer2.id, content_index: 0, audio_end_ms: 60 })
  await client.next('conversation.item.truncated')
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What did you just say?' }] } })
  client.send({ type: 'response.create' })
  // prompt 79 | greeting 12, 3 | user audio 4, 30 | cut answer 4, 2 | Thanks 6 | "You said: Thanks." 4 + 5, 3 | question 4 + 6.
  // The cache stops where the conversation changed: before the cut answer (128 again).
  // "I last said: You said: Thanks." is 30 chars (8).
  t.same(await usageOf(client), usage([79 + 12 + 4 + 4 + 6 + 9 + 10, 3 + 30 + 2 + 3], [95, 33], [8, 3]))

  const dones = connection.sent.filter((event) => event.type === 'response.done')
  t.equal(dones.length, 4, 'the connection\'s sent log has every response.done')
  t.same(dones[0], greeting)
  const received = client.events.filter((event) => event.type === 'response.done').map((event) => event.response.usage)
  t.same(dones.map((event) => event.response.usage), received)
})

t.test('user audio is billed by its duration in the input format; a cancelled response by what it produced', async (t) => {
  const sim = await simulator(t, { script: { chunkIntervalMs: 200, audioChunks: 4 } })
  const { client, connection } = await connect(t, sim)
  await client.configure({ audio: { input: { format: { type: 'audio/pcmu' } } } })
  client.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(8000, 0xff).toString('base64') })
  await connection.waitFor('input_audio_buffer.append')
  connection.vadTurn('One two three four five six seven')
  await client.next('response.output_audio.delta')
  client.send({ type: 'response.cancel' })
  // 1 s of G.711 (8000 bytes): 10 tokens. Said before the cancel: the first of four 11-character
  // pieces, "You said: O" (3), with 40 ms of audio (1). The prompt is framing and "[]": 9.
  t.same(await usageOf(client), usage([9 + 4, 10], [0, 0], [3, 1]))
})

t.test('a failed response: response.done {status:"failed"} with the error, billed for its input', async (t) => {
  const sim = await simulator(t, { script: { failResponses: [{ code: 'server_error_x', message: 'Boom.' }, { code: 'rate_limit_exceeded', type: 'rate_limit_error' }] } })
  const { client, connection } = await connect(t, sim)
  await client.configure()
  client.send({ type: 'response.create' })
  const created = await client.next('response.created')
  const failed = await client.next('response.done')
  t.match(failed.response, {
    id: created.response.id,
    status: 'failed',
    status_details: { type: 'failed', error: { type: 'server_error', code: 'server_error_x', message: 'Boom.' } },
    output: [],
    usage: { input_tokens: 9, output_tokens: 0 }
  })
  t.equal(connection.activeResponseId, null, 'a failed response frees the slot')
  client.send({ type: 'response.create' })
  t.match((await client.next('response.done')).response.status_details.error, { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: String })
  client.send({ type: 'response.create' })
  t.equal((await client.next('response.done')).response.status, 'completed', 'one entry per response')
})
