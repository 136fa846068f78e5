// lib/engine/transcripts.ts: the upstream's transcripts → ConversationText, once per
// item. The agent's words of one item arrive up to three times (its audio transcript's
// done, a text done, the item's own conversation.item.done) in any order; the client
// reads them once. Pure, then once through the engine with GA-shaped events.

import t from 'tap'
import { TurnEngine } from '../lib/engine/engine.js'
import type { Command, EngineInput } from '../lib/engine/io.js'
import { Transcripts } from '../lib/engine/transcripts.js'
import type { ServerMessage } from '../lib/protocol/deepgram.js'

const said = (content: string): ServerMessage => ({ type: 'ConversationText', role: 'assistant', content })

type Done = 'audioTranscript' | 'text' | 'item'

/** Feeds one done event of `itemId` the way the engine does; returns what the client is told. */
function done (transcripts: Transcripts, kind: Done, itemId: string | undefined, text: string): ServerMessage | undefined {
  return kind === 'item' ? transcripts.assistantItemDone(itemId, text) : transcripts.assistantDone(itemId, text)
}

function orders (kinds: Done[]): Done[][] {
  if (kinds.length <= 1) return [kinds]
  return kinds.flatMap((first, index) => orders(kinds.filter((_, i) => i !== index)).map((rest) => [first, ...rest]))
}

t.test('a response item is told once, whichever of its three done events comes first', async (t) => {
  for (const order of orders(['audioTranscript', 'text', 'item'])) {
    const transcripts = new Transcripts()
    transcripts.responseItem('item_1')
    const told = order.map((kind) => done(transcripts, kind, 'item_1', 'Hello there.'))
    t.same(told.filter((m) => m !== undefined), [said('Hello there.')], order.join(' → '))
    t.same(told[0], said('Hello there.'), 'at the first of them')
  }
})

t.test('each item is told once, independently of the others', async (t) => {
  const transcripts = new Transcripts()
  transcripts.responseItem('a')
  transcripts.responseItem('b')
  t.same(transcripts.assistantDone('a', 'One.'), said('One.'))
  t.same(transcripts.assistantDone('b', 'Two.'), said('Two.'))
  t.equal(transcripts.assistantDone('a', 'One.'), undefined)
  t.equal(transcripts.assistantItemDone('b', 'Two.'), undefined)
  t.same(transcripts.assistantDone('c', 'Three.'), said('Three.'), 'a done event of a response item is told even before output_item.added')
})

t.test('an item.done of an item no response produced is not told: context messages are not the agent speaking now', async (t) => {
  const transcripts = new Transcripts()
  t.equal(transcripts.assistantItemDone('ctx_1', 'I said this earlier.'), undefined)
  t.equal(transcripts.assistantItemDone(undefined, 'No id.'), undefined)
  transcripts.responseItem('resp_1')
  t.equal(transcripts.assistantItemDone('ctx_2', 'Still context.'), undefined, 'another item being a response\'s does not make this one one')
  t.same(transcripts.assistantItemDone('resp_1', 'Now.'), said('Now.'))
})

t.test('empty or missing text is never told, and does not use up the item', async (t) => {
  const transcripts = new Transcripts()
  transcripts.responseItem('item_1')
  t.equal(transcripts.assistantDone('item_1', ''), undefined)
  t.equal(transcripts.assistantDone('item_1', undefined), undefined)
  t.equal(transcripts.assistantItemDone('item_1', ''), undefined)
  t.equal(transcripts.assistantItemDone('item_1', undefined), undefined)
  t.same(transcripts.assistantDone('item_1', 'Late words.'), said('Late words.'), 'the first non-empty text is told')
})

t.test('a done event without an item id is told each time (nothing to tell it apart by)', async (t) => {
  const transcripts = new Transcripts()
  t.same(transcripts.assistantDone(undefined, 'a'), said('a'))
  t.same(transcripts.assistantDone(undefined, 'a'), said('a'))
})

t.test('the user\'s transcripts: each one told, empty ones not', async (t) => {
  const transcripts = new Transcripts()
  t.same(transcripts.userTranscript('Hi.'), { type: 'ConversationText', role: 'user', content: 'Hi.' })
  t.same(transcripts.userTranscript('Hi.'), { type: 'ConversationText', role: 'user', content: 'Hi.' }, 'the user may say the same twice')
  t.equal(transcripts.userTranscript(''), undefined)
  t.equal(transcripts.userTranscript(undefined), undefined)
})

t.test('memory is bounded: the last 64 items are remembered, older ones forgotten', async (t) => {
  const transcripts = new Transcripts()
  for (let i = 0; i < 65; i++) {
    transcripts.responseItem(`item_${i}`)
    transcripts.assistantDone(`item_${i}`, `text ${i}`)
  }
  t.equal(transcripts.assistantDone('item_1', 'text 1'), undefined, 'item 1 of 65 is still remembered')
  t.equal(transcripts.assistantItemDone('item_64', 'text 64'), undefined)
  t.same(transcripts.assistantDone('item_0', 'text 0'), said('text 0'), 'item 0 fell out of the memory')
  t.equal(transcripts.assistantItemDone('item_0', 'text 0'), undefined, 'and was remembered again')
  // Response items fall out the same way: a very old item's item.done is not told.
  const fresh = new Transcripts()
  for (let i = 0; i < 65; i++) fresh.responseItem(`r_${i}`)
  t.equal(fresh.assistantItemDone('r_0', 'old'), undefined)
  t.same(fresh.assistantItemDone('r_1', 'kept'), said('kept'))
})

t.test('through the engine: GA events of one response item give one ConversationText; a context item none', async (t) => {
  const engine = new TurnEngine({ idPrefix: 't_' })
  let at = 0
  const step = (input: Record<string, unknown>): Command[] => engine.step({ ...input, at: ++at } as EngineInput)
  const texts = (commands: Command[]): ServerMessage[] =>
    commands.flatMap((c) => c.kind === 'client' && c.message.type === 'ConversationText' ? [c.message] : [])
  step({ type: 'settings', fields: {}, context: [] })
  step({ type: 'upstream', event: { type: 'session.updated' } })
  const events = [
    { type: 'response.output_item.added', response_id: 'resp_1', item: { id: 'item_1', type: 'message', role: 'assistant' } },
    { type: 'response.output_audio_transcript.done', response_id: 'resp_1', item_id: 'item_1', transcript: 'Hello!' },
    { type: 'response.output_text.done', response_id: 'resp_1', item_id: 'item_1', text: 'Hello!' },
    { type: 'conversation.item.done', item: { id: 'item_1', type: 'message', role: 'assistant', content: [{ type: 'output_audio', transcript: 'Hello!' }] } },
    { type: 'conversation.item.done', item: { id: 'ctx_1', type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'From the context.' }] } },
    { type: 'conversation.item.input_audio_transcription.completed', item_id: 'user_1', transcript: 'Hi.' }
  ]
  const told = events.flatMap((event) => texts(step({ type: 'upstream', event })))
  t.same(told, [said('Hello!'), { type: 'ConversationText', role: 'user', content: 'Hi.' }])
})
