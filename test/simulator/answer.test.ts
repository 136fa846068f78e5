import t from 'tap'
import { GREETING, planAnswer, verbatimText } from '../../lib/simulator/answer.js'
import { BoundedLog } from '../../lib/simulator/log.js'
import { splitText } from '../../lib/simulator/response.js'

const user = (text: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] })
const tools = [
  { type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } } },
  { type: 'function', name: 'book_table', parameters: { type: 'object', properties: {} } }
]
const ask = (items: object[], extra: object = {}) => planAnswer({ instructions: undefined, items, tools, toolChoice: 'auto', parallelCalls: 1, ...extra })

t.test('verbatim instructions', async (t) => {
  t.equal(verbatimText('Say exactly "Hi there." Then stop.'), 'Hi there.')
  t.equal(verbatimText('Please say exactly: “Welcome back”'), 'Welcome back')
  t.equal(verbatimText('Say the following verbatim: Good morning'), 'Good morning')
  t.equal(verbatimText('Repeat word for word "ok"'), 'ok')
  t.equal(verbatimText('Be helpful.'), null)
  t.equal(verbatimText(undefined), null)
})

t.test('answers from the conversation', async (t) => {
  t.same(ask([]), { kind: 'speech', text: GREETING })
  t.same(ask([user('Tell me a joke!')]), { kind: 'speech', text: 'You said: Tell me a joke.' })
  t.same(ask([user('What is the get weather for days: 3, city is Oslo?')]), {
    kind: 'tool_calls',
    calls: [{ name: 'get_weather', arguments: '{"city":"Oslo","days":3}' }]
  })
  t.same(ask([user('GET_WEATHER')]).kind, 'tool_calls', 'case-insensitive')
  const called = [user('get weather'), { type: 'function_call', name: 'get_weather', call_id: 'c1', arguments: '{}' }]
  t.equal(ask(called).kind, 'tool_calls', 'not answered yet: calls again')
  t.same(ask([...called, { type: 'function_call_output', call_id: 'c1', output: '{"sky":"clear"}' }]), { kind: 'speech', text: 'The result is {"sky":"clear"}.' })
  t.same(ask([...called, { type: 'function_call_output', call_id: 'c1', output: 'x' }, { type: 'message', role: 'assistant', content: [] }]),
    { kind: 'speech', text: 'You said: get weather.' }, 'answered: no new call')
  t.same(ask([user('get weather')], { instructions: 'Say exactly "Hold on."' }), { kind: 'speech', text: 'Hold on.' })
})

t.test('answers that show what the conversation holds', async (t) => {
  const assistant = (transcript: string) => ({ type: 'message', role: 'assistant', content: [{ type: 'output_audio', transcript }] })
  const spoken = (transcript: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_audio', transcript }] })
  const talk = [spoken('Book a table for two!'), assistant('Sure, for when?'), user('Tomorrow'), assistant('Done, see you tomorrow at eight.')]
  t.same(ask([...talk, user('What did I say first?')]), { kind: 'speech', text: 'You first said: Book a table for two.' })
  t.same(ask([...talk, user('what was my first message')]), { kind: 'speech', text: 'You first said: Book a table for two.' })
  t.same(ask([...talk, user('Sorry, what did you just say?')]), { kind: 'speech', text: 'I last said: Done, see you tomorrow at eight.' })
  t.same(ask([...talk, user('What did you say last?')]), { kind: 'speech', text: 'I last said: Done, see you tomorrow at eight.' })
  t.same(ask([user('What did I say first?')]), { kind: 'speech', text: 'This is the first thing you said.' })
  t.same(ask([user('What did you just say?')]), { kind: 'speech', text: 'I have not said anything yet.' })
  t.same(ask([user('Hi'), assistant(''), user('What did you just say?')]), { kind: 'speech', text: 'I last said nothing you heard.' })
  t.same(ask([user('get weather'), assistant('Hm'), user('what did you just say? get weather')]), { kind: 'speech', text: 'I last said: Hm.' }, 'before a tool call')
})

t.test('tool choice and parallel calls', async (t) => {
  t.equal(ask([user('get weather')], { toolChoice: 'none' }).kind, 'speech')
  t.match(ask([user('hello')], { toolChoice: 'required' }), { calls: [{ name: 'get_weather' }] })
  t.match(ask([user('hello')], { toolChoice: { type: 'function', name: 'book_table' } }), { calls: [{ name: 'book_table' }] })
  t.match(ask([user('get weather and book table')], { parallelCalls: 2 }), { calls: [{ name: 'get_weather' }, { name: 'book_table' }] })
  t.match(ask([user('book table')], { parallelCalls: 3 }), { calls: [{ name: 'book_table' }, { name: 'book_table' }, { name: 'book_table' }] })
})

t.test('splitText and BoundedLog', async (t) => {
  t.same(splitText('abcdefg', 3), ['abc', 'def', 'g'])
  t.same(splitText('ab', 3), ['a', 'b', ''])
  t.same(splitText('abc', 0), [])
  const log = new BoundedLog<number>(3)
  for (let i = 1; i <= 5; i++) log.push(i)
  t.same(log.toArray(), [3, 4, 5])
})
