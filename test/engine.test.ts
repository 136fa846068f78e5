// Example-based tests of the turn engine, one group per rule of docs/turn-engine.md,
// plus earlier proxies' incidents. Pure: no sockets, no clock. Upstream events are
// shaped like OpenAI Realtime GA server events.

import t from 'tap'
import { TurnEngine, sayExactly } from '../lib/engine/engine.js'
import { timerKey, type Command, type EngineInput } from '../lib/engine/io.js'
import { ErrorCode, WarningCode } from '../lib/protocol/deepgram.js'
import { assistantText, userText } from '../lib/protocol/openai.js'
import { CONFLICT, Driver, client, injectedItemId, ready, responding, responseOf, timersSet, upstream, warnings, type Input } from './helpers/engine-driver.js'

// ── Settings and session setup ──────────────────────────────────────────────────

t.test('Settings: exactly one session.update, nothing else until session.updated', async (t) => {
  const d = new Driver()
  const cmds = d.feed({ type: 'settings', fields: { instructions: 'Be brief.', voice: 'alloy' }, context: [userText('hi')], greeting: 'Hello!' })
  t.equal(upstream(cmds).length, 1)
  const update = upstream(cmds, 'session.update')[0]
  t.ok(update, 'a session.update')
  t.match(update?.session, { type: 'realtime', instructions: 'Be brief.', audio: { output: { voice: 'alloy' } } })
  t.same(client(cmds), [], 'SettingsApplied waits for session.updated')
  t.equal(d.state.phase, 'configuring')

  const createdCmds = d.up({ type: 'session.created', session: {} })
  t.same(createdCmds.filter((c) => c.kind !== 'log'), [], 'session.created is not session.updated')
  t.equal(d.state.phase, 'configuring')
})

t.test('Settings: SettingsApplied only after session.updated, then context items and greeting', async (t) => {
  const d = new Driver()
  d.feed({ type: 'settings', fields: { instructions: 'Be brief.' }, context: [userText('My name is Ada.'), assistantText('Hi Ada.')], greeting: 'Welcome back!' })
  const cmds = d.up({ type: 'session.updated', session: { type: 'realtime' } })
  t.same(client(cmds, 'SettingsApplied'), [{ type: 'SettingsApplied' }])
  t.ok(cmds.some((c) => c.kind === 'ready'), 'ready: held audio may flow')
  const events = upstream(cmds)
  t.same(events.map((e) => e.type), ['conversation.item.create', 'conversation.item.create', 'response.create'], 'context in order, then the greeting')
  // Every item the engine creates carries an id of its own, so its ack can be matched.
  t.same(events[0]?.item, { id: (events[0]?.item as { id: string }).id, ...userText('My name is Ada.') })
  t.same(events[1]?.item, { id: (events[1]?.item as { id: string }).id, ...assistantText('Hi Ada.') })
  t.not((events[0]?.item as { id: string }).id, (events[1]?.item as { id: string }).id)
  t.equal(responseOf(events[2]!).instructions, sayExactly('Welcome back!'), 'the greeting is a create with instructions')
  const order = cmds.flatMap((c) => c.kind === 'client' ? ['client'] : c.kind === 'upstream' ? ['upstream'] : [])
  t.equal(order[0], 'client', 'SettingsApplied before anything goes upstream for the conversation')
  t.ok(d.busy)
})

t.test('Settings: intents before the session is configured are held and replayed in order after ready', async (t) => {
  const d = new Driver()
  t.same(d.feed({ type: 'injectUser', content: 'before settings' }), [], 'held before Settings')
  d.feed({ type: 'settings', fields: { instructions: 'x' }, context: [userText('ctx')] })
  t.same(upstream(d.feed({ type: 'injectUser', content: 'while configuring' })), [], 'held while configuring')
  t.same(d.feed({ type: 'injectAgent', message: 'held agent line', behavior: 'queue' }), [])
  const cmds = d.up({ type: 'session.updated', session: {} })
  const items = upstream(cmds, 'conversation.item.create').map((e) => e.item as { content: Array<{ text: string }> })
  t.same(items.map((i) => i.content[0]?.text), ['ctx', 'before settings', 'while configuring'], 'context first, then held messages in order')
  t.same(client(cmds, 'ConversationText').map((m) => m.type === 'ConversationText' && m.content), ['before settings', 'while configuring'])
  const creates = upstream(cmds, 'response.create')
  t.equal(creates.length, 1, 'the held InjectAgentMessage is asked for')
  t.equal(responseOf(creates[0]!).instructions, sayExactly('held agent line'))
  // The held InjectUserMessages still wait for their item acks (rule 5).
  t.equal(d.state.awaitingItems.size, 2)
})

t.test('Settings: a change sent before Settings does not override a later Settings (latest wins)', async (t) => {
  // UpdatePrompt before Settings is held; a second Settings sent while the first one is
  // being applied is newer and must win, and the acknowledgements follow the client's order.
  const d = new Driver()
  d.feed({ type: 'configure', fields: { instructions: 'old' }, ack: 'PromptUpdated' })
  d.feed({ type: 'settings', fields: { instructions: 'base' }, context: [] })
  d.feed({ type: 'settings', fields: { instructions: 'new' }, context: [] })
  d.up({ type: 'session.updated', session: {} })
  d.up({ type: 'session.updated', session: {} })
  t.equal(d.state.applied.instructions, 'new')
  t.same(client(d.all).map((m) => m.type), ['SettingsApplied', 'PromptUpdated', 'SettingsApplied'])
})

t.test('Settings: a refused first session.update is an Error and closes the session', async (t) => {
  const d = new Driver()
  const [update] = upstream(d.feed({ type: 'settings', fields: { instructions: 'x' }, context: [] }))
  const cmds = d.error('invalid_value', update!.event_id)
  t.match(client(cmds, 'Error'), [{ code: 'invalid_value' }])
  t.notMatch(client(cmds, 'Error')[0], { description: /message text/ }, 'the code, never the upstream message text')
  t.match(cmds.filter((c) => c.kind === 'close'), [{ code: 1008 }])
  t.equal(d.state.phase, 'closing')
  t.same(d.feed({ type: 'injectUser', content: 'x' }), [], 'nothing after close')
})

t.test('Settings: no session.updated in time closes the session (watchdog)', async (t) => {
  const d = new Driver()
  const cmds = d.feed({ type: 'settings', fields: { instructions: 'x' }, context: [] })
  const [timer] = timersSet(cmds)
  t.ok(timer)
  const fired = d.timer(timer!)
  t.match(client(fired, 'Error'), [{ code: ErrorCode.upstreamTimeout }], 'the session cannot start: an Error, and it ends')
  t.match(fired.filter((c) => c.kind === 'close'), [{ code: 1011 }])
})

t.test('every upstream event carries a unique event_id', async (t) => {
  const d = ready({ greeting: 'Hi', context: [userText('a')] })
  d.created('resp_g')
  d.feed({ type: 'injectUser', content: 'q' })
  d.args('call_1', 'resp_g')
  d.feed({ type: 'functionResult', callId: 'call_1', output: '{}' })
  d.feed({ type: 'configure', fields: { instructions: 'new' }, ack: 'PromptUpdated' })
  d.feed({ type: 'cancel' })
  d.done('resp_g', 'cancelled')
  d.timer(timersSet(d.all).find((n) => n.startsWith('createAck:')) ?? 'none')
  const events = upstream(d.all)
  t.ok(events.length >= 7, `${events.length} events sent`)
  for (const e of events) t.type(e.event_id, 'string', `${e.type} has an event_id`)
  t.equal(new Set(events.map((e) => e.event_id)).size, events.length, 'all distinct')
})

// ── Rule 1: the slot is held until ITS response.done ─────────────────────────────

const CONTENT_DONE = ['response.output_audio.done', 'response.output_text.done', 'response.output_item.done', 'response.content_part.done']

function permutations<T> (items: T[]): T[][] {
  if (items.length <= 1) return [items]
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]))
}

t.test('rule 1: held from sending response.create until its response.done; content .done events never free it', async (t) => {
  for (const order of permutations(CONTENT_DONE)) {
    const d = ready()
    d.feed({ type: 'injectAgent', message: 'Hello', behavior: 'queue' })
    t.ok(d.busy, 'busy from the moment the create is sent')
    d.created('resp_1')
    d.feed({ type: 'configure', fields: { instructions: 'changed' }, ack: 'PromptUpdated' })
    d.feed({ type: 'injectAgent', message: 'Next', behavior: 'queue' })
    for (const type of order) {
      const cmds = d.content('resp_1', type)
      t.same(upstream(cmds), [], `${type} sends nothing (${order.join(' → ')})`)
      t.ok(d.busy)
    }
    t.equal(d.engine.activeResponseId, 'resp_1')
    const cmds = d.done('resp_1')
    t.same(upstream(cmds).map((e) => e.type), ['session.update', 'response.create'], 'the deferred change and the next response go at its response.done')
  }
})

t.test('rule 1: a server-VAD response.created we did not ask for occupies the slot until its done', async (t) => {
  const d = ready()
  d.created('resp_vad', null)
  t.ok(d.busy)
  t.equal(d.engine.activeResponseId, 'resp_vad')
  const item = injectedItemId(d.feed({ type: 'injectUser', content: 'typed' }))
  t.same(upstream(d.itemAdded(item), 'response.create'), [], 'acknowledged item waits for the slot')
  t.same(upstream(d.feed({ type: 'configure', fields: { voice: 'echo' }, ack: 'SpeakUpdated' })), [])
  const cmds = d.done('resp_vad')
  t.same(upstream(cmds).map((e) => e.type), ['session.update', 'response.create'])
})

t.test('rule 1: a response.done with every final status frees the slot', async (t) => {
  for (const status of ['completed', 'cancelled', 'failed', 'incomplete']) {
    const d = responding()
    d.done('resp_1', status)
    t.notOk(d.busy, status)
  }
})

t.test('incident #462 (seed 000): output_audio.done before output_text.done does not let Settings through', async (t) => {
  const d = ready({ fields: { instructions: 'x' } })
  const item = injectedItemId(d.feed({ type: 'injectUser', content: 'hello' }))
  d.itemAdded(item)
  d.created('resp_1')
  d.content('resp_1', 'response.output_audio.done')
  t.same(upstream(d.feed({ type: 'settings', fields: { instructions: 'y' }, context: [] })), [], 'no session.update while active')
  d.content('resp_1', 'response.output_text.done')
  t.same(upstream(d.feed({ type: 'settings', fields: { instructions: 'z' }, context: [] })), [])
  t.same(client(d.all, 'SettingsApplied').length, 1, 'the later Settings are not acknowledged before being applied (seed 001)')
  const cmds = d.done('resp_1')
  const updates = upstream(cmds, 'session.update')
  t.equal(updates.length, 1, 'one merged update')
  t.equal((updates[0]?.session as { instructions: string }).instructions, 'z', 'latest wins')
  t.same(client(d.up({ type: 'session.updated', session: {} })), [{ type: 'SettingsApplied' }, { type: 'SettingsApplied' }])
})

// ── Rule 2: event_id correlation, rejected creates, conflicts ───────────────────

t.test('rule 2: a rejected response.create frees the slot via error.event_id', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'first', behavior: 'queue' })
  const first = d.lastCreate()
  d.feed({ type: 'injectAgent', message: 'second', behavior: 'queue' })
  t.same(upstream(d.error('invalid_value', 'some_other_event')), [], 'an error about another event frees nothing')
  t.ok(d.busy)
  const cmds = d.error('invalid_value', first)
  t.same(client(cmds, 'Error'), [], 'the session goes on: no Error')
  t.match(client(cmds, 'Warning'), [{ code: 'invalid_value' }])
  const [next] = upstream(cmds, 'response.create')
  t.equal(responseOf(next!).instructions, sayExactly('second'), 'the slot was free again: the next request went')
  t.ok(cmds.some((c) => c.kind === 'clearTimer' && timerKey(c.timer) === `createAck:${first}`), 'its watchdog is cleared')
})

t.test('rule 2: conflict → retried after the running response\'s response.done', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'mine', behavior: 'queue' })
  const create = d.lastCreate()
  // Server VAD started a response just before our create reached the upstream.
  d.created('resp_vad', null)
  t.equal(d.state.slot.creating?.eventId, create, 'not mistaken for our create')
  const cmds = d.error(CONFLICT, create)
  t.same(upstream(cmds), [])
  t.same(client(cmds, 'Error'), [], 'recoverable: no Error to the client')
  t.ok(cmds.some((c) => c.kind === 'metric' && c.name === 'conflict'))
  t.ok(d.busy, 'still busy: the other response runs')
  const retried = upstream(d.done('resp_vad'), 'response.create')
  t.equal(retried.length, 1, 'retried once the running response is done')
  t.equal(responseOf(retried[0]!).instructions, sayExactly('mine'), 'with the same parameters')
  t.not(retried[0]!.event_id, create, 'under a new event_id')
  d.created('resp_mine')
  t.equal(d.engine.activeResponseId, 'resp_mine')
})

t.test('rule 2: a conflict whose running response we have not seen holds the slot until a response.done', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'mine', behavior: 'queue' })
  d.error(CONFLICT, d.lastCreate())
  t.ok(d.busy, 'some response is running')
  t.equal(d.engine.activeResponseId, null, 'whose id we do not know')
  const cmds = d.done('resp_unseen')
  t.equal(upstream(cmds, 'response.create').length, 1, 'its done frees the slot: retry')
})

t.test('rule 2: after maxCreateRetries conflicts the client gets a Warning', async (t) => {
  const d = ready({ options: { maxCreateRetries: 2 } })
  d.feed({ type: 'injectAgent', message: 'mine', behavior: 'queue' })
  for (let i = 0; i < 2; i++) {
    d.created(`resp_vad${i}`, null)
    t.same(client(d.error(CONFLICT, d.lastCreate()), 'Error'), [])
    t.equal(upstream(d.done(`resp_vad${i}`), 'response.create').length, 1, `retry ${i + 1}`)
  }
  d.created('resp_vad_last', null)
  const cmds = d.error(CONFLICT, d.lastCreate())
  t.match(client(cmds, 'Warning'), [{ code: CONFLICT }])
  t.same(client(cmds, 'Error'), [], 'the session goes on: no Error')
  t.same(upstream(d.done('resp_vad_last')), [], 'given up: no further retry')
  t.notOk(d.busy)
})

// ── Rule 3: FIFO, bare follow-ups coalesce, parameterised creates stay distinct ──

t.test('rule 3: wanted responses wait in a FIFO, one create at a time', async (t) => {
  const d = responding()
  for (const m of ['A', 'B', 'C']) t.same(upstream(d.feed({ type: 'injectAgent', message: m, behavior: 'queue' })), [])
  t.equal(d.engine.pending.responseCreate, 3)
  const said: unknown[] = []
  let id = 1
  for (let i = 0; i < 3; i++) {
    const creates = upstream(d.done(`resp_${id}`), 'response.create')
    t.equal(creates.length, 1, 'one at a time')
    said.push(responseOf(creates[0]!).instructions)
    id += 1
    d.created(`resp_${id}`)
  }
  t.same(said, ['A', 'B', 'C'].map(sayExactly))
})

t.test('rule 3: bare follow-ups coalesce into one response.create; a create with instructions stays distinct', async (t) => {
  const d = responding()
  const a = injectedItemId(d.feed({ type: 'injectUser', content: 'a' }))
  d.itemAdded(a)
  d.feed({ type: 'injectAgent', message: 'Distinct', behavior: 'queue' })
  const b = injectedItemId(d.feed({ type: 'injectUser', content: 'b' }))
  d.itemAdded(b)
  d.args('call_x', 'resp_1')
  d.feed({ type: 'functionResult', callId: 'call_x', output: 'ok' })
  t.equal(d.engine.pending.responseCreate, 2, 'one bare request (two messages and a tool output) and the instructions one')
  const first = upstream(d.done('resp_1'), 'response.create')
  t.equal(first.length, 1)
  t.equal(responseOf(first[0]!).instructions, undefined, 'one bare create for two user messages and a tool output')
  d.created('resp_2')
  const second = upstream(d.done('resp_2'), 'response.create')
  t.equal(responseOf(second[0]!).instructions, sayExactly('Distinct'), 'the parameterised create stays distinct')
  d.created('resp_3')
  t.same(upstream(d.done('resp_3'), 'response.create'), [], 'nothing else was wanted')
})

t.test('rule 3: a retried bare create coalesces with bare follow-ups queued meanwhile', async (t) => {
  // Two typed messages are acknowledged back to back. The first ack sends a bare create;
  // the second is queued behind it. The create is refused: a response we never saw runs
  // (so nothing says it saw either message), and the retry must carry both.
  const d = ready()
  const a = injectedItemId(d.feed({ type: 'injectUser', content: 'a' }))
  const b = injectedItemId(d.feed({ type: 'injectUser', content: 'b' }))
  d.itemAdded(a)
  const create = d.lastCreate()
  d.itemAdded(b)
  d.error(CONFLICT, create)
  t.ok(d.state.queue.filter((r) => r.instructions === undefined).length <= 1, 'at most one bare request waits in the queue')
  t.equal(upstream(d.done('resp_unseen'), 'response.create').length, 1)
  d.created('resp_answer')
  t.same(upstream(d.done('resp_answer'), 'response.create'), [], 'one response answers both messages, not two')
})

t.test('rule 3: a conflict with a server-VAD response that saw what the create was for: not retried (the model would answer twice)', async (t) => {
  const d = ready()
  const a = injectedItemId(d.feed({ type: 'injectUser', content: 'a' }))
  d.itemAdded(a)
  const create = d.lastCreate()
  // Server VAD's response starts after the message is in the conversation: it answers it.
  d.created('resp_vad', null)
  d.error(CONFLICT, create)
  t.same(upstream(d.done('resp_vad'), 'response.create'), [], 'no second answer to the same message')
  t.notOk(d.busy)
})

t.test('rule 3: a conflict with a server-VAD response that started before the message was in the conversation: retried', async (t) => {
  const d = ready()
  const a = injectedItemId(d.feed({ type: 'injectUser', content: 'a' }))
  // The VAD response starts before the message's acknowledgement: it never saw it.
  d.created('resp_vad', null)
  d.itemAdded(a)
  t.equal(upstream(d.done('resp_vad'), 'response.create').length, 1, 'the message still gets its answer')
})

t.test('rule 3: an agent message starting after a typed message was in the conversation does not answer it', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'hold on', behavior: 'queue' })
  const a = injectedItemId(d.feed({ type: 'injectUser', content: 'a' }))
  d.itemAdded(a)
  d.created('resp_say')
  t.equal(upstream(d.done('resp_say'), 'response.create').length, 1, 'saying the agent message is not an answer to the user')
})

t.test('rule 3: a conflict with a response the watchdog gave up on, which saw the message: not retried', async (t) => {
  const d = ready({ options: { responseMaxMs: 1000, cancelGraceMs: 100 } })
  const a = injectedItemId(d.feed({ type: 'injectUser', content: 'a' }))
  d.itemAdded(a)
  const create = d.lastCreate()
  d.created('resp_vad', null)
  d.timer('responseDeadline:resp_vad')
  d.timer('cancelGrace:resp_vad')
  const cmds = d.error(CONFLICT, create)
  t.same(upstream(cmds, 'response.create'), [], 'the abandoned response is the one running, and it saw the message')
})

// ── Rule 4: tool calls ──────────────────────────────────────────────────────────

function withParallelCalls (): Driver {
  const d = responding('resp_tools')
  d.args('call_a', 'resp_tools', 'get_weather')
  d.args('call_b', 'resp_tools', 'get_time')
  return d
}

t.test('rule 4: parallel calls → outputs forwarded at once, ONE follow-up after response.done and all answers (answers first)', async (t) => {
  const d = withParallelCalls()
  t.same(client(d.all, 'FunctionCallRequest').map((m) => m.type === 'FunctionCallRequest' && m.functions[0]), [
    { id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}', client_side: true },
    { id: 'call_b', name: 'get_time', arguments: '{"city":"Paris"}', client_side: true }
  ])
  t.equal(d.engine.pending.functionCalls, 2)
  for (const id of ['call_a', 'call_b']) {
    const cmds = d.feed({ type: 'functionResult', callId: id, output: `out ${id}` })
    t.match(upstream(cmds).map((e) => [e.type, e.item]), [['conversation.item.create', { id: String, type: 'function_call_output', call_id: id, output: `out ${id}` }]], 'forwarded mid-response')
    t.equal(upstream(cmds).length, 1)
  }
  t.equal(d.engine.pending.functionCalls, 0)
  const creates = upstream(d.done('resp_tools'), 'response.create')
  t.equal(creates.length, 1, 'one follow-up')
  t.equal(responseOf(creates[0]!).instructions, undefined)
})

t.test('rule 4: parallel calls, response.done first: the follow-up waits for the last answer', async (t) => {
  const d = withParallelCalls()
  t.same(upstream(d.done('resp_tools'), 'response.create'), [], 'not yet: calls unanswered')
  t.notOk(d.busy)
  t.same(upstream(d.feed({ type: 'functionResult', callId: 'call_b', output: 'b' }), 'response.create'), [], 'one call still unanswered')
  const cmds = d.feed({ type: 'functionResult', callId: 'call_a', output: 'a' })
  t.same(upstream(cmds).map((e) => e.type), ['conversation.item.create', 'response.create'], 'the output, then the one follow-up')
})

t.test('rule 4: one answer before and one after response.done', async (t) => {
  const d = withParallelCalls()
  d.feed({ type: 'functionResult', callId: 'call_a', output: 'a' })
  t.same(upstream(d.done('resp_tools'), 'response.create'), [])
  t.equal(upstream(d.feed({ type: 'functionResult', callId: 'call_b', output: 'b' }), 'response.create').length, 1)
})

t.test('incident #470 (seed 002): the follow-up is not sent while the originating response is still active', async (t) => {
  const d = responding('resp_tools')
  d.args('call_1', 'resp_tools')
  const cmds = d.feed({ type: 'functionResult', callId: 'call_1', output: '{"temp":20}' })
  t.same(upstream(cmds, 'response.create'), [])
  d.content('resp_tools', 'response.output_text.done')
  d.content('resp_tools', 'response.output_item.done')
  t.same(upstream(d.all, 'response.create').length, 1, 'only the original create so far')
  t.equal(upstream(d.done('resp_tools'), 'response.create').length, 1)
})

t.test('incident seed 004: tool results answered back to back never produce two creates', async (t) => {
  const d = ready()
  d.created('resp_vad', null)
  for (const id of ['c1', 'c2', 'c3']) d.args(id, 'resp_vad')
  d.done('resp_vad')
  const creates = ['c1', 'c2', 'c3'].flatMap((id) => upstream(d.feed({ type: 'functionResult', callId: id, output: id }), 'response.create'))
  t.equal(creates.length, 1)
  t.ok(d.busy)
})

t.test('rule 4: a call answered twice is answered once (Warning, nothing forwarded)', async (t) => {
  const d = withParallelCalls()
  d.feed({ type: 'functionResult', callId: 'call_a', output: 'a' })
  const cmds = d.feed({ type: 'functionResult', callId: 'call_a', output: 'again' })
  t.same(upstream(cmds), [])
  t.equal(warnings(cmds, WarningCode.duplicateFunctionCallResponse).length, 1)
  d.feed({ type: 'functionResult', callId: 'call_b', output: 'b' })
  d.done('resp_tools')
  d.created('resp_follow')
  t.same(upstream(d.feed({ type: 'functionResult', callId: 'call_b', output: 'late dup' })), [], 'late duplicate after the follow-up')
  t.same(upstream(d.done('resp_follow'), 'response.create'), [], 'no second follow-up')
})

t.test('rule 4: an unknown call id is a Warning, nothing forwarded', async (t) => {
  const d = ready()
  const cmds = d.feed({ type: 'functionResult', callId: 'call_nope', output: 'x' })
  t.same(upstream(cmds), [])
  t.equal(warnings(cmds, WarningCode.unknownFunctionCall).length, 1)
  const early = new Driver().feed({ type: 'functionResult', callId: 'call_nope', output: 'x' })
  t.equal(warnings(early, WarningCode.unknownFunctionCall).length, 1, 'also before Settings')
})

t.test('rule 4: calls listed only in response.done are requested too, and followed up', async (t) => {
  const d = responding('resp_tools')
  const cmds = d.done('resp_tools', 'completed', { output: [{ type: 'function_call', id: 'item_1', status: 'completed', call_id: 'call_z', name: 'lookup', arguments: '{"q":1}' }] })
  t.match(client(cmds, 'FunctionCallRequest'), [{ functions: [{ id: 'call_z', name: 'lookup', arguments: '{"q":1}', client_side: true }] }])
  t.equal(upstream(d.feed({ type: 'functionResult', callId: 'call_z', output: 'r' }), 'response.create').length, 1)
})

t.test('rule 4: a call already requested via arguments.done and listed again in response.done is requested once', async (t) => {
  const d = responding('resp_tools')
  d.args('call_a', 'resp_tools', 'lookup', '{}')
  d.done('resp_tools', 'completed', { output: [{ type: 'function_call', status: 'completed', call_id: 'call_a', name: 'lookup', arguments: '{}' }] })
  t.equal(client(d.all, 'FunctionCallRequest').length, 1)
})

t.test('rule 4: an unfinished call in a cancelled response is not requested from the client', async (t) => {
  // A response cancelled while it was still streaming a call's arguments lists that call
  // in response.done with status "incomplete" and truncated arguments, and never sent
  // response.function_call_arguments.done for it. Running it would act on broken input.
  const d = responding('resp_tools')
  const cmds = d.done('resp_tools', 'cancelled', { output: [{ type: 'function_call', status: 'incomplete', call_id: 'call_cut', name: 'transfer_money', arguments: '{"amount": 10' }] })
  t.same(client(cmds, 'FunctionCallRequest'), [])
})

// ── Rule 5: InjectUserMessage waits for its item's acknowledgement ───────────────

t.test('rule 5: response.create only after conversation.item.added with our item id', async (t) => {
  const d = ready()
  const cmds = d.feed({ type: 'injectUser', content: 'What time is it?' })
  const [item] = upstream(cmds, 'conversation.item.create')
  t.match(item?.item, { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What time is it?' }] })
  t.same(client(cmds), [{ type: 'ConversationText', role: 'user', content: 'What time is it?' }, { type: 'History', role: 'user', content: 'What time is it?' }], 'echoed to the client, and in its history')
  t.same(upstream(cmds, 'response.create'), [], 'not yet (incident #388, seed 003)')
  const id = injectedItemId(cmds)
  t.same(upstream(d.itemAdded('item_someone_else')), [], 'another item acknowledges nothing')
  const acked = d.itemAdded(id)
  t.equal(upstream(acked, 'response.create').length, 1)
  t.same(upstream(d.itemAdded(id, 'conversation.item.done')), [], 'the later item.done does not ask again')
})

t.test('rule 5: conversation.item.done alone is an acknowledgement too', async (t) => {
  const d = ready()
  const id = injectedItemId(d.feed({ type: 'injectUser', content: 'x' }))
  t.equal(upstream(d.itemAdded(id, 'conversation.item.done'), 'response.create').length, 1)
})

t.test('rule 5: an acknowledged item still waits for the slot', async (t) => {
  const d = responding()
  const id = injectedItemId(d.feed({ type: 'injectUser', content: 'x' }))
  t.same(upstream(d.itemAdded(id), 'response.create'), [])
  t.equal(upstream(d.done('resp_1'), 'response.create').length, 1)
})

t.test('rule 5: an item never acknowledged is a Warning, and a late ack asks for nothing', async (t) => {
  const d = ready()
  const cmds = d.feed({ type: 'injectUser', content: 'x' })
  const id = injectedItemId(cmds)
  const timer = timersSet(cmds).find((n) => n.includes(id))
  t.ok(timer, 'a watchdog for the ack')
  t.match(client(d.timer(timer!), 'Warning'), [{ code: WarningCode.injectNotAcknowledged }])
  t.same(upstream(d.itemAdded(id), 'response.create'), [])
})

t.test('rule 5: a refused item is a Warning and no response is asked for', async (t) => {
  const d = ready()
  const cmds = d.feed({ type: 'injectUser', content: 'x' })
  const [create] = upstream(cmds)
  const err = d.error('invalid_value', create!.event_id)
  t.match(client(err, 'Warning'), [{ code: 'invalid_value' }])
  t.same(upstream(d.itemAdded(injectedItemId(cmds)), 'response.create'), [])
})

// ── Rule 6: session.update deferred, merged, acknowledged ────────────────────────

t.test('rule 6: changes during a response are deferred, merged latest-wins, each acknowledged in order', async (t) => {
  const d = responding()
  const tools = [{ type: 'function' as const, name: 'get_weather' }]
  t.same(upstream(d.feed({ type: 'configure', fields: { instructions: 'one' }, ack: 'PromptUpdated' })), [])
  t.same(upstream(d.feed({ type: 'configure', fields: { instructions: 'two', tools }, ack: 'ThinkUpdated' })), [])
  t.same(upstream(d.feed({ type: 'configure', fields: { voice: 'echo' }, ack: 'SpeakUpdated' })), [])
  t.same(upstream(d.feed({ type: 'configure', fields: { instructions: 'three' }, ack: 'PromptUpdated' })), [])
  t.same(upstream(d.feed({ type: 'settings', fields: { instructions: 'three', voice: 'echo' }, context: [] })), [])
  t.equal(d.engine.pending.sessionUpdate, 5)
  t.same(client(d.all).filter((m) => m.type.endsWith('Updated') || m.type === 'SettingsApplied').length, 1, 'only the first SettingsApplied so far')
  const cmds = d.done('resp_1')
  const updates = upstream(cmds, 'session.update')
  t.equal(updates.length, 1, 'one merged update')
  t.match(updates[0]?.session, { instructions: 'three', tools, audio: { output: { voice: 'echo' } } })
  t.same(client(cmds), [], 'acknowledged only once applied')
  const acks = client(d.up({ type: 'session.updated', session: {} }))
  t.same(acks.map((m) => m.type), ['PromptUpdated', 'ThinkUpdated', 'SpeakUpdated', 'PromptUpdated', 'SettingsApplied'])
  t.equal(d.engine.pending.sessionUpdate, 0)
})

t.test('rule 6: a change while idle goes at once; a change that changes nothing is acknowledged without an update', async (t) => {
  const d = ready({ fields: { instructions: 'same' } })
  const cmds = d.feed({ type: 'configure', fields: { instructions: 'same' }, ack: 'PromptUpdated' })
  t.same(upstream(cmds), [])
  t.same(client(cmds), [{ type: 'PromptUpdated' }])
  const change = d.feed({ type: 'configure', fields: { instructions: 'other' }, ack: 'PromptUpdated' })
  t.equal(upstream(change, 'session.update').length, 1)
  t.same(client(d.up({ type: 'session.updated', session: {} })), [{ type: 'PromptUpdated' }])
})

t.test('rule 6: changes arriving while an update is in flight go in a second update after its session.updated', async (t) => {
  const d = ready()
  d.feed({ type: 'configure', fields: { instructions: 'one' }, ack: 'PromptUpdated' })
  t.same(upstream(d.feed({ type: 'configure', fields: { instructions: 'two' }, ack: 'PromptUpdated' })), [], 'one update in flight at a time')
  const cmds = d.up({ type: 'session.updated', session: {} })
  t.same(client(cmds), [{ type: 'PromptUpdated' }])
  t.match(upstream(cmds, 'session.update'), [{ session: { instructions: 'two' } }])
})

t.test('rule 6: UpdatePrompt appends to the instructions in force, including deferred ones', async (t) => {
  const d = responding('resp_1', { fields: { instructions: 'Base.' } })
  d.feed({ type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: 'One.' })
  d.feed({ type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: 'Two.' })
  const [update] = upstream(d.done('resp_1'), 'session.update')
  t.match(update?.session, { instructions: 'Base.\n\nOne.\n\nTwo.' })
  t.same(client(d.up({ type: 'session.updated', session: {} })), [{ type: 'PromptUpdated' }, { type: 'PromptUpdated' }])
  const early = new Driver()
  early.feed({ type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: 'Held.' })
  early.feed({ type: 'settings', fields: { instructions: 'Base.' }, context: [] })
  const cmds = early.up({ type: 'session.updated', session: {} })
  t.match(upstream(cmds, 'session.update'), [{ session: { instructions: 'Base.\n\nHeld.' } }], 'an UpdatePrompt sent before Settings appends to them')
})

t.test('rule 6: a voice change after the agent spoke is a Warning; the other fields are kept', async (t) => {
  const d = responding('resp_1', { fields: { instructions: 'x', voice: 'alloy' } })
  d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  const voiceOnly = d.feed({ type: 'configure', fields: { voice: 'echo' }, ack: 'SpeakUpdated' })
  t.equal(warnings(voiceOnly, WarningCode.voiceChangeRefused).length, 1, 'answered with a Warning')
  const both = d.feed({ type: 'settings', fields: { instructions: 'y', voice: 'echo' }, context: [] })
  t.equal(warnings(both, WarningCode.voiceChangeRefused).length, 1)
  const cmds = d.done('resp_1')
  const [update] = upstream(cmds, 'session.update')
  t.match(update?.session, { instructions: 'y' })
  t.notMatch(update?.session, { audio: { output: { voice: String } } }, 'never a voice change once the agent spoke')
  t.same(client(d.up({ type: 'session.updated', session: {} })), [{ type: 'SettingsApplied' }])
  t.equal(d.engine.pending.sessionUpdate, 0)
})

t.test('rule 6: cannot_update_voice → Warning, the update is resent without the voice and acknowledged', async (t) => {
  const d = ready({ fields: { instructions: 'x', voice: 'alloy' } })
  const cmds = d.feed({ type: 'settings', fields: { instructions: 'y', voice: 'echo' }, context: [] })
  const [update] = upstream(cmds, 'session.update')
  t.ok(update, 'sent: the engine did not know the agent had spoken')
  const err = d.error('cannot_update_voice', update!.event_id)
  t.equal(warnings(err, WarningCode.voiceChangeRefused).length, 1)
  t.same(client(err, 'Error'), [])
  const [again] = upstream(err, 'session.update')
  t.match(again?.session, { instructions: 'y' })
  t.notMatch(again?.session, { audio: { output: { voice: String } } })
  t.same(client(d.up({ type: 'session.updated', session: {} })), [{ type: 'SettingsApplied' }])
  const later = d.feed({ type: 'configure', fields: { voice: 'shimmer' }, ack: 'SpeakUpdated' })
  t.same(upstream(later, 'session.update'), [], 'the upstream told us the agent has spoken: no further voice change is sent')
  t.equal(warnings(later, WarningCode.voiceChangeRefused).length, 1)
})

t.test('rule 6: a refused update (other code) is a Warning and the same change can be asked again', async (t) => {
  const d = ready({ fields: { instructions: 'x' } })
  const [update] = upstream(d.feed({ type: 'configure', fields: { instructions: 'bad' }, ack: 'PromptUpdated' }))
  const err = d.error('invalid_value', update!.event_id)
  t.match(client(err), [{ type: 'Warning', code: 'invalid_value' }])
  t.equal(d.engine.pending.sessionUpdate, 0)
  t.equal(upstream(d.feed({ type: 'configure', fields: { instructions: 'bad' }, ack: 'PromptUpdated' }), 'session.update').length, 1, 'not mistaken for "no change"')
})

t.test('rule 6: an update never answered (ready) is a Warning; the session goes on', async (t) => {
  const d = ready()
  const cmds = d.feed({ type: 'configure', fields: { instructions: 'slow' }, ack: 'PromptUpdated' })
  const timer = timersSet(cmds).find((n) => n.startsWith('updateAck:'))
  const fired = d.timer(timer!)
  t.match(client(fired, 'Warning'), [{ code: ErrorCode.upstreamTimeout }])
  t.same(fired.filter((c) => c.kind === 'close'), [])
  t.equal(d.state.phase, 'ready')
})

// ── Rule 7: cancel ──────────────────────────────────────────────────────────────

t.test('rule 7: cancel → response.cancel with response_id; the slot frees only at response.done cancelled', async (t) => {
  const d = responding()
  d.feed({ type: 'injectAgent', message: 'next', behavior: 'queue' })
  const cmds = d.feed({ type: 'cancel' })
  t.same(upstream(cmds).map((e) => [e.type, e.response_id]), [['response.cancel', 'resp_1']])
  t.ok(d.busy, 'response.cancel frees nothing by itself')
  t.same(upstream(d.feed({ type: 'cancel' })), [], 'cancelled once')
  const done = d.done('resp_1', 'cancelled')
  t.notOk(upstream(done, 'response.create').length === 0, 'the next request goes at its done')
})

t.test('rule 7: cancel before response.created → cancelled by id when it arrives', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'hello', behavior: 'queue' })
  t.same(upstream(d.feed({ type: 'cancel' })), [], 'nothing to cancel upstream yet')
  const cmds = d.created('resp_1')
  t.same(upstream(cmds).map((e) => [e.type, e.response_id]), [['response.cancel', 'resp_1']])
  t.ok(d.busy)
  d.done('resp_1', 'cancelled')
  t.notOk(d.busy)
})

t.test('rule 7: response_cancel_not_active is benign', async (t) => {
  const d = responding()
  const [cancel] = upstream(d.feed({ type: 'cancel' }))
  const cmds = d.error('response_cancel_not_active', cancel!.event_id)
  t.same(client(cmds), [])
  t.ok(d.busy, 'the slot still waits for response.done')
  t.same(client(d.error('response_cancel_not_active', null)), [], 'also without event_id')
})

t.test('rule 7: a cancel before response.created still holds when our create is retried after a conflict', async (t) => {
  // The cancel is remembered on the in-flight create; if that create is then refused
  // for a conflict (server VAD answered the user first), the retry must not resurrect
  // the cancelled response.
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'stale news', behavior: 'queue' })
  const create = d.lastCreate()
  d.feed({ type: 'cancel' })
  d.created('resp_vad', null)
  d.error(CONFLICT, create)
  const retried = upstream(d.done('resp_vad'), 'response.create')
  if (retried.length === 0) {
    t.pass('the cancelled request was dropped')
  } else {
    const cmds = d.created('resp_stale')
    t.same(upstream(cmds).map((e) => [e.type, e.response_id]), [['response.cancel', 'resp_stale']], 'or its retry is cancelled as soon as it exists')
  }
})

t.test('rule 7: InjectAgentMessage interrupt before response.created, then a conflict: the interrupted request is not played first', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'long story', behavior: 'queue' })
  const create = d.lastCreate()
  d.feed({ type: 'injectAgent', message: 'urgent', behavior: 'interrupt' })
  d.created('resp_vad', null)
  d.error(CONFLICT, create)
  const [next] = upstream(d.done('resp_vad'), 'response.create')
  t.equal(responseOf(next!).instructions, sayExactly('urgent'), 'the interrupting message goes first')
})

// ── Rule 8: out-of-band responses ───────────────────────────────────────────────

function outOfBand (d: Driver, id: string, type: 'response.created' | 'response.done'): Command[] {
  return d.up({ type, response: { object: 'realtime.response', id, status: type === 'response.done' ? 'completed' : 'in_progress', conversation_id: null, metadata: { topic: 'classify' }, output: [] } })
}

t.test('rule 8: out-of-band responses neither occupy nor free the slot', async (t) => {
  const d = ready()
  outOfBand(d, 'resp_oob', 'response.created')
  t.notOk(d.busy, 'does not occupy')
  const id = injectedItemId(d.feed({ type: 'injectUser', content: 'x' }))
  t.equal(upstream(d.itemAdded(id), 'response.create').length, 1, 'our response is asked for while it runs')
  d.created('resp_1')
  const cmds = outOfBand(d, 'resp_oob', 'response.done')
  t.ok(d.busy, 'does not free')
  t.equal(d.engine.activeResponseId, 'resp_1')
  t.same(upstream(cmds), [])
})

t.test('rule 8: an out-of-band response.created is not mistaken for our pending create', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'x', behavior: 'queue' })
  const create = d.lastCreate()
  outOfBand(d, 'resp_oob', 'response.created')
  t.equal(d.state.slot.creating?.eventId, create)
  d.created('resp_1', create)
  t.equal(d.engine.activeResponseId, 'resp_1')
})

// ── Rule 9: unknown done, upstream close ─────────────────────────────────────────

t.test('rule 9: a response.done for an unknown id is tolerated and frees nothing', async (t) => {
  const d = responding()
  const cmds = d.done('resp_ghost')
  t.same(upstream(cmds), [])
  t.same(client(cmds), [])
  t.ok(d.busy)
  t.equal(d.engine.activeResponseId, 'resp_1')
  t.doesNotThrow(() => d.up({ type: 'response.done' }), 'even without a response object')
})

t.test('rule 9: upstreamClosed releases everything', async (t) => {
  const d = responding()
  d.feed({ type: 'injectAgent', message: 'q', behavior: 'queue' })
  d.feed({ type: 'configure', fields: { instructions: 'z' }, ack: 'PromptUpdated' })
  d.feed({ type: 'injectUser', content: 'pending' })
  d.args('call_1', 'resp_1')
  d.feed({ type: 'upstreamClosed' })
  t.equal(d.state.phase, 'closing')
  t.notOk(d.busy)
  t.equal(d.engine.activeResponseId, null)
  t.match(d.engine.pending, { responseCreate: 0, sessionUpdate: 0 })
  t.same(d.done('resp_1'), [], 'nothing after close')
  t.same(d.feed({ type: 'functionResult', callId: 'call_1', output: 'x' }), [])
})

// ── Rule 10: watchdogs ──────────────────────────────────────────────────────────

t.test('rule 10: no response.created in time → Warning, slot released, next request goes', async (t) => {
  const d = ready({ options: { createAckMs: 1234 } })
  const cmds = d.feed({ type: 'injectAgent', message: 'a', behavior: 'queue' })
  const create = d.lastCreate()
  t.ok(cmds.some((c) => c.kind === 'setTimer' && timerKey(c.timer) === `createAck:${create}` && c.ms === 1234))
  d.feed({ type: 'injectAgent', message: 'b', behavior: 'queue' })
  const fired = d.timer(`createAck:${create}`)
  t.equal(warnings(fired, WarningCode.responseTimeout).length, 1)
  t.equal(responseOf(upstream(fired, 'response.create')[0]!).instructions, sayExactly('b'))
  t.ok(fired.some((c) => c.kind === 'log' && c.level === 'warn'), 'logged')
  t.same(d.timer(`createAck:${create}`), [], 'a stale timer is ignored')
})

t.test('rule 10: a response that never ends → cancel → grace → freed, with Warnings', async (t) => {
  const d = ready({ options: { responseMaxMs: 500, cancelGraceMs: 50 } })
  d.feed({ type: 'injectAgent', message: 'a', behavior: 'queue' })
  const created = d.created('resp_hung')
  t.ok(created.some((c) => c.kind === 'setTimer' && timerKey(c.timer) === 'responseDeadline:resp_hung' && c.ms === 500))
  d.feed({ type: 'injectAgent', message: 'b', behavior: 'queue' })
  const deadline = d.timer('responseDeadline:resp_hung')
  t.same(upstream(deadline).map((e) => [e.type, e.response_id]), [['response.cancel', 'resp_hung']])
  t.ok(deadline.some((c) => c.kind === 'setTimer' && timerKey(c.timer) === 'cancelGrace:resp_hung' && c.ms === 50))
  t.ok(d.busy, 'still waiting for its done')
  const grace = d.timer('cancelGrace:resp_hung')
  t.equal(warnings(grace, WarningCode.responseTimeout).length, 1)
  t.ok(grace.some((c) => c.kind === 'log' && c.level === 'error'))
  t.equal(upstream(grace, 'response.create').length, 1, 'freed: the next request goes')
  t.same(upstream(d.done('resp_hung', 'cancelled')), [], 'its late done is tolerated')
})

t.test('rule 10: a response that ends within the cancel grace clears the grace timer, no Warning', async (t) => {
  const d = responding()
  d.timer('responseDeadline:resp_1')
  const cmds = d.done('resp_1', 'cancelled')
  t.ok(cmds.some((c) => c.kind === 'clearTimer' && timerKey(c.timer) === 'cancelGrace:resp_1'))
  t.same(client(d.timer('cancelGrace:resp_1')), [], 'stale grace timer ignored')
})

t.test('rule 10: a conflict with a response abandoned by the watchdog does not hang silently', async (t) => {
  // The upstream really is stuck on resp_hung: after the grace period the engine frees
  // the slot and asks for the next response, which conflicts. The slot is now held for
  // a response nobody watches any more.
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'a', behavior: 'queue' })
  d.created('resp_hung')
  d.feed({ type: 'injectAgent', message: 'b', behavior: 'queue' })
  d.timer('responseDeadline:resp_hung')
  d.timer('cancelGrace:resp_hung')
  const cmds = d.error(CONFLICT, d.lastCreate())
  t.ok(d.busy)
  t.ok(timersSet(cmds).length > 0 || client(cmds).length > 0, 'a watchdog is armed (or the client is told) for the response holding the slot')
})

t.test('rule 4 + rule 10: a response abandoned by the watchdog still gets one follow-up, after all its calls', async (t) => {
  // The cancel grace expired while the response's last events were still on their way;
  // its calls arrive afterwards, one by one, and are answered as they come.
  const d = responding('resp_late')
  d.timer('responseDeadline:resp_late')
  d.timer('cancelGrace:resp_late')
  const before = upstream(d.all, 'response.create').length
  d.args('call_1', 'resp_late')
  d.feed({ type: 'functionResult', callId: 'call_1', output: '1' })
  d.args('call_2', 'resp_late')
  d.feed({ type: 'functionResult', callId: 'call_2', output: '2' })
  d.done('resp_late', 'cancelled')
  // Let every follow-up that was asked for run to its end.
  for (let i = 0; i < 3 && d.state.slot.creating !== null; i++) {
    d.created(`resp_follow_${i}`)
    d.done(`resp_follow_${i}`)
  }
  t.equal(upstream(d.all, 'response.create').length - before, 1, 'one follow-up for the response, not one per call')
})

// ── InjectAgentMessage behaviours ───────────────────────────────────────────────

t.test('InjectAgentMessage: said at once when idle', async (t) => {
  const d = ready()
  const cmds = d.feed({ type: 'injectAgent', message: 'Hi there', behavior: 'refuse' })
  const [create] = upstream(cmds, 'response.create')
  t.equal(responseOf(create!).instructions, sayExactly('Hi there'))
  t.same(responseOf(create!).metadata, { proxy_event_id: create!.event_id }, 'our creates carry their event id in metadata')
})

t.test('InjectAgentMessage: refused while the agent responds or a request is queued', async (t) => {
  const d = responding()
  const cmds = d.feed({ type: 'injectAgent', message: 'x', behavior: 'refuse' })
  t.equal(client(cmds, 'InjectionRefused').length, 1)
  t.same(upstream(cmds), [])
  d.done('resp_1')
  const pending = ready()
  pending.feed({ type: 'injectAgent', message: 'first', behavior: 'queue' })
  t.equal(client(pending.feed({ type: 'injectAgent', message: 'second', behavior: 'refuse' }), 'InjectionRefused').length, 1, 'a create in flight is busy too')
})

t.test('InjectAgentMessage: refused while the user speaks, accepted after speech_stopped', async (t) => {
  const d = ready()
  d.up({ type: 'input_audio_buffer.speech_started', audio_start_ms: 100, item_id: 'item_u' })
  const refused = d.feed({ type: 'injectAgent', message: 'x', behavior: 'refuse' })
  t.match(client(refused, 'InjectionRefused'), [{ message: /user is speaking/ }])
  d.up({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: 900, item_id: 'item_u' })
  t.equal(upstream(d.feed({ type: 'injectAgent', message: 'x', behavior: 'refuse' }), 'response.create').length, 1)
})

t.test('InjectAgentMessage: queue waits for the slot', async (t) => {
  const d = responding()
  const cmds = d.feed({ type: 'injectAgent', message: 'later', behavior: 'queue' })
  t.same(client(cmds), [])
  t.same(upstream(cmds), [])
  t.equal(responseOf(upstream(d.done('resp_1'), 'response.create')[0]!).instructions, sayExactly('later'))
})

t.test('InjectAgentMessage: interrupt cancels the running response and goes first', async (t) => {
  const d = responding()
  d.feed({ type: 'injectAgent', message: 'queued before', behavior: 'queue' })
  const cmds = d.feed({ type: 'injectAgent', message: 'urgent', behavior: 'interrupt' })
  t.same(upstream(cmds).map((e) => [e.type, e.response_id]), [['response.cancel', 'resp_1']])
  t.ok(d.busy, 'waits for the cancelled response\'s done')
  const [next] = upstream(d.done('resp_1', 'cancelled'), 'response.create')
  t.equal(responseOf(next!).instructions, sayExactly('urgent'))
})

t.test('InjectAgentMessage: interrupt before response.created cancels that response when it exists', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'first', behavior: 'queue' })
  d.feed({ type: 'injectAgent', message: 'urgent', behavior: 'interrupt' })
  t.same(upstream(d.created('resp_1')).map((e) => e.type), ['response.cancel'])
  t.equal(responseOf(upstream(d.done('resp_1', 'cancelled'), 'response.create')[0]!).instructions, sayExactly('urgent'))
})

// ── Server VAD ──────────────────────────────────────────────────────────────────

t.test('server VAD: response.created with metadata null occupies the slot and is not our pending create', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'mine', behavior: 'queue' })
  const create = d.lastCreate()
  const cmds = d.created('resp_vad', null)
  t.notOk(cmds.some((c) => c.kind === 'clearTimer' && timerKey(c.timer) === `createAck:${create}`), 'our create watchdog stays armed')
  t.equal(d.state.slot.creating?.eventId, create)
  t.equal(d.engine.activeResponseId, 'resp_vad')
  d.done('resp_vad')
  t.ok(d.busy, 'our create is still in flight')
  d.created('resp_mine', create)
  t.equal(d.engine.activeResponseId, 'resp_mine')
  d.done('resp_mine')
  t.notOk(d.busy)
})

t.test('server VAD: a cancel reaches server responses too', async (t) => {
  const d = ready()
  d.created('resp_vad', null)
  t.same(upstream(d.feed({ type: 'cancel' })).map((e) => [e.type, e.response_id]), [['response.cancel', 'resp_vad']])
})

// ── Determinism ──────────────────────────────────────────────────────

function scenario (): Input[] {
  return [
    { type: 'injectUser', content: 'early' },
    { type: 'settings', fields: { instructions: 'x', voice: 'alloy' }, context: [userText('c')], greeting: 'Hi' },
    { type: 'upstream', event: { type: 'session.updated', event_id: 's1' } },
    { type: 'upstream', event: { type: 'response.created', event_id: 's2', response: { id: 'r1', metadata: { proxy_event_id: 't_ev4' } } } },
    { type: 'configure', fields: { instructions: 'y' }, ack: 'PromptUpdated' },
    { type: 'upstream', event: { type: 'response.function_call_arguments.done', event_id: 's3', response_id: 'r1', call_id: 'c1', name: 'f', arguments: '{}' } },
    { type: 'functionResult', callId: 'c1', output: 'ok' },
    { type: 'cancel' },
    { type: 'upstream', event: { type: 'response.done', event_id: 's4', response: { id: 'r1', status: 'cancelled' } } },
    { type: 'upstream', event: { type: 'session.updated', event_id: 's5' } },
    { type: 'timer', timer: { kind: 'createAck', eventId: 't_ev12' } },
    { type: 'injectAgent', message: 'm', behavior: 'interrupt' },
    { type: 'upstreamClosed' }
  ]
}

t.test('determinism: the same inputs in the same order give the same outputs and the same state', async (t) => {
  const run = (): { commands: Command[][], state: unknown } => {
    const engine = new TurnEngine('t_')
    const commands = scenario().map((input, i) => engine.step({ ...input, at: i * 100 } as EngineInput))
    return { commands, state: structuredClone(engine.state) }
  }
  const a = run()
  t.same(run(), a)
  t.ok(a.commands.flat().length > 10)
})

// ── Corners no earlier test pinned ──────────────────────────────────────────────

t.test('cannot_update_voice while another change is queued: the other change survives, no SpeakUpdated for the refused voice', async (t) => {
  const d = ready({ fields: { instructions: 'Base.', voice: 'alloy' } })
  const [voiceUpdate] = upstream(d.feed({ type: 'configure', fields: { voice: 'echo' }, ack: 'SpeakUpdated' }), 'session.update')
  t.ok(voiceUpdate, 'the voice change went (the engine did not know the agent had spoken)')
  t.same(upstream(d.feed({ type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: 'More.' })), [], 'queued behind the update in flight')
  const refused = d.error('cannot_update_voice', voiceUpdate!.event_id)
  t.equal(warnings(refused, WarningCode.voiceChangeRefused).length, 1)
  const [retry] = upstream(refused, 'session.update')
  t.match(retry?.session, { instructions: 'Base.\n\nMore.' }, 'the queued prompt change goes')
  t.notMatch(retry?.session, { audio: { output: { voice: String } } }, 'without the voice')
  const acks = client(d.up({ type: 'session.updated', session: {} }))
  t.same(acks, [{ type: 'PromptUpdated' }])
  t.same(client(d.all, 'SpeakUpdated'), [], 'never SpeakUpdated for the refused voice')
  t.equal(d.engine.pending.sessionUpdate, 0)
})

t.test('a voice change deferred behind a response is dropped with a Warning once the agent has spoken meanwhile', async (t) => {
  const d = responding('resp_1', { fields: { instructions: 'x', voice: 'alloy' } })
  t.same(upstream(d.feed({ type: 'configure', fields: { voice: 'echo', instructions: 'y' }, ack: 'SettingsApplied' })), [], 'deferred: a response is active')
  d.feed({ type: 'agentAudio', responseId: 'resp_1' })
  const cmds = d.done('resp_1')
  t.equal(warnings(cmds, WarningCode.voiceChangeRefused).length, 1)
  const [update] = upstream(cmds, 'session.update')
  t.match(update?.session, { instructions: 'y' })
  t.notMatch(update?.session, { audio: { output: { voice: String } } })
  t.same(client(d.up({ type: 'session.updated', session: {} })), [{ type: 'SettingsApplied' }])
})

t.test('a retried create with instructions stays distinct from the bare follow-ups queued meanwhile', async (t) => {
  const d = ready()
  d.created('resp_vad', null)
  d.feed({ type: 'injectAgent', message: 'Say this.', behavior: 'queue' })
  d.done('resp_vad')
  const create = d.lastCreate()
  d.created('resp_vad2', null)
  const itemId = injectedItemId(d.feed({ type: 'injectUser', content: 'hello' }))
  d.itemAdded(itemId)
  d.error(CONFLICT, create)
  t.equal(d.engine.pending.responseCreate, 2, 'the retried agent message and the bare follow-up wait apart')
  const [first] = upstream(d.done('resp_vad2'), 'response.create')
  t.equal(responseOf(first!).instructions, sayExactly('Say this.'), 'the retry goes first, with its instructions')
  d.created('resp_said')
  const [second] = upstream(d.done('resp_said'), 'response.create')
  t.equal(responseOf(second!).instructions, undefined, 'then the bare one')
})

t.test('an out-of-band response.done has no side effect at all', async (t) => {
  const d = responding('resp_1')
  const cmds = d.up({
    type: 'response.done',
    response: {
      id: 'resp_oob',
      status: 'failed',
      conversation_id: null,
      status_details: { type: 'failed', error: { type: 'server_error', code: 'server_error' } },
      output: [{ type: 'function_call', status: 'completed', call_id: 'call_oob', name: 'f', arguments: '{}' }]
    }
  })
  t.same(cmds, [], 'no FunctionCallRequest, no Error, no metric, no log')
  t.equal(d.engine.activeResponseId, 'resp_1', 'our response still holds the slot')
})

t.test('a conflict after a response.created without metadata (taken as ours) is recovered, not thrown on', async (t) => {
  const d = ready()
  d.feed({ type: 'injectAgent', message: 'Hi.', behavior: 'queue' })
  const create = d.lastCreate()
  d.up({ type: 'response.created', response: { id: 'resp_vad', status: 'in_progress', conversation_id: 'conv_1' } })
  t.equal(d.engine.activeResponseId, 'resp_vad')
  const refused = d.error(CONFLICT, create)
  t.same(client(refused, 'Error'), [], 'retried, not reported')
  t.ok(d.busy, 'the response that answered holds the slot')
  const [retry] = upstream(d.done('resp_vad'), 'response.create')
  t.equal(responseOf(retry!).instructions, sayExactly('Hi.'), 'our request goes once the slot is free')
})

t.test('placeholder lifecycle: it holds the slot for an unseen response and goes when that response is named or ends', async (t) => {
  const named = ready()
  named.created('resp_vad', null)
  named.done('resp_vad')
  named.feed({ type: 'injectAgent', message: 'A.', behavior: 'queue' })
  named.error(CONFLICT, named.lastCreate())
  t.ok(named.busy, 'a placeholder holds the slot')
  t.equal(named.engine.activeResponseId, null, 'under no id')
  named.created('resp_unseen', null)
  t.equal(named.state.slot.open.length, 1, 'the placeholder gave way to the response once named')
  const [retry] = upstream(named.done('resp_unseen'), 'response.create')
  t.ok(retry, 'the retry goes at its end')

  const ended = ready()
  ended.feed({ type: 'injectAgent', message: 'B.', behavior: 'queue' })
  ended.error(CONFLICT, ended.lastCreate())
  const cmds = ended.done('resp_never_seen')
  t.ok(cmds.some((c) => c.kind === 'clearTimer' && timerKey(c.timer).startsWith('responseDeadline:unknown:')), 'its watchdog is cleared')
  t.equal(upstream(cmds, 'response.create').length, 1, 'an unknown response.done ends the unseen response: retried at once')
})

t.test('placeholder: an abandoned response finishing late frees the slot the placeholder held for it', async (t) => {
  const d = responding('resp_hung', { options: { responseMaxMs: 500, cancelGraceMs: 50 } })
  d.timer('responseDeadline:resp_hung')
  d.timer('cancelGrace:resp_hung')
  t.notOk(d.busy, 'abandoned: the slot is free')
  d.feed({ type: 'injectAgent', message: 'Next.', behavior: 'queue' })
  d.error(CONFLICT, d.lastCreate())
  t.ok(d.busy, 'the upstream says a response still runs: a placeholder holds the slot')
  const cmds = d.done('resp_hung', 'cancelled')
  t.notOk(cmds.some((c) => c.kind === 'client' && c.message.type === 'Warning'), 'no Warning')
  t.equal(upstream(cmds, 'response.create').length, 1, 'the late end of the abandoned response frees the slot: the request goes now, not after the placeholder\'s deadline')
})

t.test('the conflict metric counts conflicts only', async (t) => {
  const d = ready()
  const countConflicts = (cmds: Command[]): number => cmds.filter((c) => c.kind === 'metric' && c.name === 'conflict').length
  t.equal(countConflicts(d.error('invalid_value', null)), 0)
  t.equal(countConflicts(d.error('response_cancel_not_active', null)), 0)
  d.feed({ type: 'injectAgent', message: 'x', behavior: 'queue' })
  t.equal(countConflicts(d.error('rate_limit_exceeded', d.lastCreate())), 0)
  d.feed({ type: 'injectAgent', message: 'y', behavior: 'queue' })
  t.equal(countConflicts(d.error(CONFLICT, d.lastCreate())), 1)
  t.equal(countConflicts(d.error(CONFLICT, null)), 1, 'also a conflict about nothing we sent')
})

t.test('the held-message bound: exactly maxHeldIntents are held, the next one is refused', async (t) => {
  const d = new Driver({ maxHeldIntents: 3 })
  for (let i = 0; i < 3; i++) t.same(client(d.feed({ type: 'injectUser', content: `m${i}` })), [], `message ${i + 1} held`)
  t.match(client(d.feed({ type: 'injectUser', content: 'm3' })), [{ type: 'Warning', code: WarningCode.tooManyHeldMessages }])
  d.feed({ type: 'settings', fields: { instructions: 'x' }, context: [] })
  const cmds = d.up({ type: 'session.updated', session: {} })
  t.same(client(cmds, 'ConversationText').map((m) => m.type === 'ConversationText' ? m.content : ''), ['m0', 'm1', 'm2'], 'the held ones replayed in order')
})

t.test('rule 4 over a long session: answered calls are forgotten beyond the newest 32, never while their follow-up waits', async (t) => {
  const d = ready()
  for (let turn = 1; turn <= 100; turn++) {
    d.itemAdded(injectedItemId(d.feed({ type: 'injectUser', content: `turn ${turn}` })))
    d.created(`resp_${turn}`)
    d.args(`call_${turn}`, `resp_${turn}`)
    d.done(`resp_${turn}`)
    d.feed({ type: 'functionResult', callId: `call_${turn}`, output: `out ${turn}` })
    d.created(`resp_follow_${turn}`)
    d.done(`resp_follow_${turn}`)
  }
  t.ok(d.state.calls.size <= 33, `calls remembered: ${d.state.calls.size}`)
  t.equal(warnings(d.feed({ type: 'functionResult', callId: 'call_100', output: 'again' }), WarningCode.duplicateFunctionCallResponse).length, 1, 'the newest call: still refused as answered')
  t.equal(warnings(d.feed({ type: 'functionResult', callId: 'call_70', output: 'again' }), WarningCode.duplicateFunctionCallResponse).length, 1, 'the 31st newest: still refused as answered')
  t.equal(warnings(d.feed({ type: 'functionResult', callId: 'call_1', output: 'again' }), WarningCode.unknownFunctionCall).length, 1, 'the oldest: forgotten')

  // 40 calls of one response, each answered before the next is announced: none is forgotten before its follow-up.
  d.itemAdded(injectedItemId(d.feed({ type: 'injectUser', content: 'many' })))
  d.created('resp_many')
  const ids = Array.from({ length: 40 }, (_, i) => `many_${i}`)
  for (const id of ids) {
    d.args(id, 'resp_many')
    d.feed({ type: 'functionResult', callId: id, output: id })
  }
  const creates = upstream(d.done('resp_many'), 'response.create')
  t.equal(creates.length, 1, 'one follow-up for all 40 answers')
  for (const id of ids) t.ok(d.state.calls.has(id), `${id} remembered until the follow-up`)
})
