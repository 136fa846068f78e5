// Barge-in and what the client hears, on real sockets (docs/turn-engine.md, "Speech").
// Events are injected raw with `conn.send` where the simulator's own model would not
// produce the order under test.

import t from 'tap'
import { NO_VIOLATIONS, arrivals, barrier, configuredClient, simSent, startProxy } from '../helpers/proxy.js'

t.test('barge-in before the first audio delta: none of that response\'s audio reaches the client', async (t) => {
  const { url, sim } = await startProxy(t, { script: { chunkIntervalMs: 150, audioChunks: 4 } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  const order = arrivals(client)
  client.send({ type: 'InjectUserMessage', content: 'Tell me a story' })
  await simSent(conn, 'response.created')
  // The upstream hears the user before its first delta, but does not cancel (its deltas are in flight).
  conn.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: 0, item_id: 'item_user' })
  await client.next('UserStartedSpeaking')
  const done = await simSent(conn, 'response.done')
  await barrier(client)
  t.ok(conn.sent.some((e) => e.type === 'response.output_audio.delta' && e.response_id === done.response.id), 'the upstream did send audio for it')
  t.notOk(order.includes('binary'), 'none of it was played')
  t.same(client.all('AgentStartedSpeaking'), [], 'the agent never started speaking')
  t.same(client.all('AgentAudioDone'), [])
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('barge-in resets the output converter: a byte carried from the interrupted audio never leaks into the next response', async (t) => {
  const { url, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  const delta = (responseId: string, bytes: number[]): object => ({ type: 'response.output_audio.delta', response_id: responseId, item_id: `item_${responseId}`, output_index: 0, content_index: 0, delta: Buffer.from(bytes).toString('base64') })
  conn.send(delta('resp_a', [1, 2, 3])) // odd: the converter carries the 3
  await client.until(() => client.audio.length === 1, 'the even part of the first delta')
  t.same([...client.audio[0]!], [1, 2])
  conn.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: 0, item_id: 'item_user' })
  await client.next('UserStartedSpeaking')
  conn.send(delta('resp_b', [9, 8, 7, 6]))
  await client.until(() => client.audio.length === 2, 'the next response\'s audio')
  t.same([...client.audio[1]!], [9, 8, 7, 6], 'it starts on its own first sample')
})
