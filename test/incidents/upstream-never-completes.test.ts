// Incident: after a function output the upstream never started (or never ended)
// the follow-up response, and the proxy waited forever with the slot taken: every
// later request of the session queued behind it, silently. docs/turn-engine.md rule 10:
// watchdogs: no `response.created` in time, or a response that never ends, is
// logged and recovered, never a silent hang.

import t, { type Test } from 'tap'
import { emptyViolations } from '../../lib/simulator/script.js'
import type { SimConnection } from '../../lib/simulator/index.js'
import { BASIC_SETTINGS, configuredClient, startProxy, type TestClient, type TestProxy } from '../helpers/proxy.js'

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}
const SETTINGS = { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, functions: [WEATHER] } } }
const ENGINE = { createAckMs: 300, responseMaxMs: 500, cancelGraceMs: 300 }

interface Live { proxy: TestProxy, client: TestClient, conn: SimConnection, sessionId: string }

async function sessionDetail (live: Live): Promise<any> {
  const res = await fetch(`${live.proxy.base}/connections/${live.sessionId}`)
  if (res.status !== 200) throw new Error(`GET /connections/:id answered ${res.status}`)
  return await res.json()
}

/** A session whose first response asked for get_weather, answered by the client after `arm()` scripted the misbehaviour. */
async function functionCallThen (t: Test, arm: (conn: SimConnection) => void): Promise<Live> {
  const proxy = await startProxy(t, { engine: ENGINE })
  const client = await configuredClient(proxy.url, SETTINGS)
  t.teardown(() => client.close())
  const conn = await proxy.sim.nextConnection()
  const sessionId = client.all('Welcome')[0]?.request_id as string
  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Berlin' })
  const call = (await client.next('FunctionCallRequest')).functions[0]
  await client.until(() => conn.activeResponseId === null, 'the originating response.done')
  arm(conn)
  const followUp = conn.waitFor('response.create')
  client.send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: 'cloudy' })
  await followUp
  return { proxy, client, conn, sessionId }
}

/** The session still answers: a new inject gets a spoken answer. */
async function stillAnswers (t: Test, live: Live): Promise<void> {
  const before = live.client.all('AgentAudioDone').length
  live.client.send({ type: 'InjectUserMessage', content: 'Are you still there?' })
  await live.client.until(() => live.client.all('ConversationText').some((m) => m.role === 'assistant' && m.content === 'You said: Are you still there.'), 'the later answer')
  await live.client.until(() => live.client.all('AgentAudioDone').length === before + 1, 'its AgentAudioDone')
  t.pass('a later InjectUserMessage still gets an answer')
}

t.test('upstream never creates the follow-up after a function output (neverCreate)', async (t) => {
  const live = await functionCallThen(t, (conn) => { conn.script.neverCreate = true })
  const started = performance.now()
  const detail = await sessionDetail(live)
  t.equal(detail.responseInProgress, true, 'the follow-up holds the slot while it waits for response.created')

  const warning = await live.client.next('Warning', 3000)
  t.equal(warning.code, 'RESPONSE_TIMEOUT', 'the client is told, rather than left hanging')
  t.ok(performance.now() - started < 1500, 'within the createAckMs watchdog')
  const after = await sessionDetail(live)
  t.equal(after.responseInProgress, false, 'the slot is free again')
  t.equal(after.activeResponseId, null)
  t.equal(after.pending.responseCreate, 0)

  live.conn.script.neverCreate = false
  await stillAnswers(t, live)
  t.same(live.client.all('Error'), [], 'no Error reached the client')
  t.same(live.proxy.sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('upstream never completes the follow-up and ignores the cancel (neverComplete)', async (t) => {
  const live = await functionCallThen(t, (conn) => {
    conn.script.neverComplete = true
    // A stuck upstream: the watchdog's cancel does not end the response either.
    conn.script.rejectNext.push({ type: 'response.cancel', code: 'response_cancel_not_active' })
  })
  await live.client.next('AgentAudioDone')
  const stuck = live.conn.activeResponseId
  t.type(stuck, 'string', 'the simulator holds the follow-up open')
  const during = await sessionDetail(live)
  t.equal(during.responseInProgress, true)
  t.equal(during.activeResponseId, stuck, 'the admin API names the stuck response')

  const cancel = await live.conn.waitFor('response.cancel', undefined, 2000)
  t.equal(cancel.response_id, stuck, 'the responseMaxMs watchdog cancels it by id')
  const warning = await live.client.next('Warning', 3000)
  t.equal(warning.code, 'RESPONSE_TIMEOUT', 'the client is told once the cancel grace ran out')
  await live.client.until(() => live.client.all('ConversationText').some((m) => m.role === 'assistant'), 'the follow-up\'s words, told once given up on')
  const after = await sessionDetail(live)
  t.equal(after.responseInProgress, false, 'the slot is free again')
  t.equal(after.activeResponseId, null)

  // The upstream finally ends it: a response.done the proxy already gave up on is tolerated.
  live.conn.script.neverComplete = false
  live.conn.finishResponse()
  await stillAnswers(t, live)
  t.same(live.client.all('Error'), [], 'no Error reached the client')
  t.same(live.proxy.sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('upstream never completes but honours the cancel: the slot frees at its response.done', async (t) => {
  const live = await functionCallThen(t, (conn) => { conn.script.neverComplete = true })
  const stuck = await live.conn.waitFor('response.cancel', undefined, 2000)
  t.type(stuck.response_id, 'string', 'the responseMaxMs watchdog cancels the response')
  await live.client.until(() => live.conn.activeResponseId === null, 'the cancelled response.done')
  const done = live.conn.sent.findLast((e) => e.type === 'response.done')
  t.equal(done?.response?.status, 'cancelled')
  live.conn.script.neverComplete = false
  await stillAnswers(t, live)
  const after = await sessionDetail(live)
  t.equal(after.responseInProgress, false)
  t.same(live.proxy.sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('a response abandoned by the watchdog still runs upstream: a later request is not left hanging', async (t) => {
  const proxy = await startProxy(t, { script: { neverComplete: true }, engine: ENGINE })
  const client = await configuredClient(proxy.url)
  t.teardown(() => client.close())
  const conn = await proxy.sim.nextConnection()
  const live: Live = { proxy, client, conn, sessionId: client.all('Welcome')[0]?.request_id as string }
  // A stuck upstream: the response never ends and the cancel does not end it either.
  conn.script.rejectNext.push({ type: 'response.cancel', code: 'response_cancel_not_active' })
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  t.equal((await client.next('Warning', 3000)).code, 'RESPONSE_TIMEOUT', 'the first response is abandoned')

  // The upstream still holds it: this create is rejected with conversation_already_has_active_response.
  // The unseen response gets the same watchdog (a bare response.cancel, then the grace), so the
  // request is either answered or reported within the watchdog bounds, never left hanging.
  const answersBefore = client.all('AgentAudioDone').length
  client.send({ type: 'InjectUserMessage', content: 'Hello again' })
  const bound = ENGINE.createAckMs + ENGINE.responseMaxMs + ENGINE.cancelGraceMs + 1000
  await client.until(() => client.all('AgentAudioDone').length > answersBefore || client.all('Warning').length + client.all('Error').length >= 2,
    'an answer, or a Warning or Error about the second request', bound)
  t.pass('the second request is answered or reported within the watchdog bounds')
  // That answer never ends either (neverComplete): the watchdog must free the slot again.
  const deadline = Date.now() + bound
  let after = await sessionDetail(live)
  while (after.responseInProgress === true && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    after = await sessionDetail(live)
  }
  t.equal(after.responseInProgress, false, 'the slot is not held forever by a response nobody will end')
  t.equal(after.pending.responseCreate, 0, 'nothing waits forever in the queue')
})
