// The conversation record (lib/engine/record.ts): what History reports and a new upstream
// is given. Its bound holds however entries are added, changed, answered or dropped.

import t from 'tap'
import { ConversationRecord, MAX_RECORD_CHARS, MAX_RECORD_ITEMS } from '../lib/engine/record.js'

/** The characters the record's entries hold, counted afresh. */
function counted (record: ConversationRecord): number {
  let chars = 0
  for (const entry of record.entries) chars += entry.kind === 'call' ? entry.arguments.length + (entry.output?.length ?? 0) : (entry.text?.length ?? 0)
  return chars
}

t.test('the character count follows every change, a call answered twice included', async (t) => {
  const record = new ConversationRecord()
  record.message('u1', 'user', 'What is the weather?')
  record.call('c1', 'call_1', 'get_weather', '{"city":"Paris"}')
  record.answer('call_1', '{"sky":"clear"}')
  record.answer('call_1', '{"sky":"overcast, 12 degrees"}')
  t.equal(record.chars, counted(record), 'a second answer replaces the first in the count')
  t.match(record.entries[1], { output: '{"sky":"overcast, 12 degrees"}' })
  record.message('a1', 'assistant', undefined)
  record.setText('a1', 'Overcast.')
  record.setText('a1', 'Overcast, twelve degrees.')
  t.equal(record.chars, counted(record), 'a text set twice')
  record.setText('u1', undefined)
  record.dropCall('call_1')
  t.equal(record.chars, counted(record), 'entries removed')
  t.same(record.replayItems().length, 1)
})

t.test('the oldest entries go beyond the bound on entries or characters; one entry never holds more than the bound', async (t) => {
  const record = new ConversationRecord()
  for (let i = 0; i < MAX_RECORD_ITEMS + 50; i++) record.message(`m${i}`, 'user', `turn ${i}`)
  t.equal(record.entries.length, MAX_RECORD_ITEMS)
  t.match(record.entries[0], { key: 'm50' }, 'the oldest went first')
  record.call('c', 'call_big', 'f', '{}')
  for (let i = 0; i < 5; i++) record.answer('call_big', 'x'.repeat(MAX_RECORD_CHARS / 2))
  t.ok(record.chars <= MAX_RECORD_CHARS, 'answers rewritten many times do not inflate the count past the bound')
  t.equal(record.chars, counted(record))
  record.message('huge', 'assistant', 'y'.repeat(MAX_RECORD_CHARS * 2))
  t.equal(record.entries.length, 1, 'a text as large as the bound leaves room for nothing else')
  t.equal(record.chars, MAX_RECORD_CHARS)
  t.equal(counted(record), MAX_RECORD_CHARS)
})
