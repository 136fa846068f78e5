// The admin API against real sessions: what operators read during an incident
// must match what the upstream (the simulator) actually saw.

import t from 'tap'
import { emptyViolations } from '../lib/simulator/script.js'
import type { SimConnection } from '../lib/simulator/index.js'
import { parseExposition } from './helpers/admin-prom.js'
import { configuredClient, startProxy, type TestClient } from './helpers/proxy.js'

const DIRECTIONS = ['client->proxy', 'proxy->upstream', 'upstream->proxy', 'proxy->client']
const FRAME = Buffer.alloc(4800, 1) // 100 ms of PCM16 at 24 kHz

async function getJson (url: string): Promise<{ status: number, body: any }> {
  const res = await fetch(url)
  return { status: res.status, body: res.status === 204 ? null : await res.json() }
}

function sentCount (conn: SimConnection, type: string): number {
  return conn.sent.filter((e) => e.type === type).length
}

function sessionIdOf (client: TestClient): string {
  return client.all('Welcome')[0]?.request_id as string
}

t.test('admin numbers during and after a slow response match the simulator', async (t) => {
  const { url, base, sim } = await startProxy(t, { script: { chunkIntervalMs: 80, responseDoneDelayMs: 250 } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  const id = sessionIdOf(client)

  for (let i = 0; i < 3; i++) client.sendAudio(FRAME)
  await client.until(() => conn.count('input_audio_buffer.append') === 3, 'three appends upstream')

  client.send({ type: 'InjectUserMessage', content: 'Take your time' })
  await client.next('AgentStartedSpeaking')
  const active = conn.activeResponseId
  t.type(active, 'string', 'the simulator is in a response')

  const during = await getJson(`${base}/connections`)
  t.equal(during.status, 200)
  t.type(during.body.instance, 'string')
  t.equal(during.body.connections.length, 1)
  const live = during.body.connections[0]
  t.equal(live.id, id, 'the id is the Welcome request_id')
  t.equal(live.phase, 'ready')
  t.equal(live.responseInProgress, true)
  t.equal(live.activeResponseId, active, 'activeResponseId is the simulator\'s active response')
  t.equal(live.remoteAddress, '127.0.0.1')
  t.ok(!Number.isNaN(Date.parse(live.startedAt)), 'startedAt is an ISO date')
  t.equal(live.upstream.state, 'open')

  await client.next('AgentAudioDone')
  await client.until(() => conn.activeResponseId === null, 'the simulator\'s response.done')
  // The proxy reads response.done an instant later: poll its view until it agrees.
  let after = (await getJson(`${base}/connections/${id}`)).body
  for (let tries = 0; after.responseInProgress && tries < 50; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    after = (await getJson(`${base}/connections/${id}`)).body
  }
  t.equal(after.responseInProgress, false, 'no response in progress afterwards')
  t.equal(after.activeResponseId, null)
  t.same(after.pending, { responseCreate: 0, sessionUpdate: 0, functionCalls: 0 })

  t.equal(after.upstream.sent['response.create'], conn.count('response.create'), 'upstream.sent response.create = what the simulator received')
  t.equal(after.upstream.sent['session.update'], conn.count('session.update'), 'upstream.sent session.update = what the simulator received')
  t.equal(after.upstream.sent['input_audio_buffer.append'], conn.count('input_audio_buffer.append'))
  t.equal(after.upstream.sent['conversation.item.create'], conn.count('conversation.item.create'))
  t.equal(after.upstream.received['response.done'], sentCount(conn, 'response.done'), 'upstream.received response.done = what the simulator sent')
  t.equal(after.upstream.received['response.output_audio.delta'], sentCount(conn, 'response.output_audio.delta'))
  t.equal(after.upstream.received['session.updated'], sentCount(conn, 'session.updated'))
  t.equal(after.client.received.Settings, 1)
  t.equal(after.client.received.InjectUserMessage, 1)
  t.equal(after.client.received.binary, 3, 'three binary frames from the client')
  t.equal(after.client.sent.SettingsApplied, 1)
  t.equal(after.client.sent.Welcome, 1)
  t.equal(after.client.sent.binary, client.audio.length, 'binary frames sent = what the client received')
  t.equal(after.client.sent.ConversationText, client.all('ConversationText').length)

  // The timeline: right directions and types, in order; audio only as byte lengths.
  const events: any[] = after.events
  t.ok(events.every((e) => DIRECTIONS.includes(e.direction) && typeof e.type === 'string' && !Number.isNaN(Date.parse(e.at))), 'every event has at, a known direction and a type')
  const path = [
    ['client->proxy', 'Settings'],
    ['proxy->upstream', 'session.update'],
    ['upstream->proxy', 'session.updated'],
    ['proxy->client', 'SettingsApplied'],
    ['client->proxy', 'binary'],
    ['client->proxy', 'InjectUserMessage'],
    ['proxy->upstream', 'conversation.item.create'],
    ['upstream->proxy', 'conversation.item.added'],
    ['proxy->upstream', 'response.create'],
    ['upstream->proxy', 'response.created'],
    ['proxy->client', 'binary'],
    ['upstream->proxy', 'response.done']
  ]
  let from = 0
  for (const [direction, type] of path) {
    const at = events.findIndex((e, index) => index >= from && e.direction === direction && e.type === type)
    t.ok(at >= 0, `timeline has ${direction} ${type} in order`)
    if (at >= 0) from = at + 1
  }
  const created = events.find((e) => e.direction === 'upstream->proxy' && e.type === 'response.created')
  t.equal(created?.responseId, active, 'response events name their response')
  const audioIn = events.filter((e) => e.direction === 'client->proxy' && e.type === 'binary')
  t.equal(audioIn.reduce((sum, e) => sum + e.bytes, 0), 3 * FRAME.length, 'client audio appears as byte lengths only')
  const audioOut = events.filter((e) => e.direction === 'proxy->client' && e.type === 'binary')
  t.equal(audioOut.reduce((sum, e) => sum + e.bytes, 0), client.audio.reduce((sum, b) => sum + b.length, 0), 'agent audio appears as byte lengths only')
  const words = events.filter((e) => e.direction === 'upstream->proxy' && e.type === 'response.output_audio_transcript.delta')
  const wordsSent = sentCount(conn, 'response.output_audio_transcript.delta')
  t.ok(wordsSent > 1, 'the answer came in several deltas')
  t.equal(words.reduce((sum, e) => sum + (e.frames ?? 1), 0), wordsSent, 'the words\' deltas fold into runs that stand for all of them')
  t.ok(words.length < wordsSent, 'fewer entries than deltas')
  t.ok(words.every((e) => e.responseId === active && typeof e.itemId === 'string'), 'a run of deltas names its response and item')
  t.equal(after.upstream.received['response.output_audio_transcript.delta'], wordsSent, 'and counts them all')
  const allowed = new Set(['at', 'direction', 'type', 'responseId', 'itemId', 'eventId', 'code', 'bytes', 'frames'])
  t.same(events.flatMap((e) => Object.keys(e).filter((key) => !allowed.has(key))), [], 'no payload fields in the timeline')
  const text = JSON.stringify(after)
  t.notMatch(text, FRAME.toString('base64').slice(0, 64), 'no client audio in the detail')
  t.notMatch(text, client.audio[0]?.toString('base64').slice(0, 64) ?? '', 'no agent audio in the detail')

  // /metrics agrees with the simulator.
  const metrics = parseExposition(await (await fetch(`${base}/metrics`)).text())
  t.equal(metrics.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'response.create' }), conn.count('response.create'))
  t.equal(metrics.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'session.update' }), conn.count('session.update'))
  t.equal(metrics.value('dgproxy_upstream_events_total', { direction: 'received', type: 'response.done' }), sentCount(conn, 'response.done'))
  t.equal(metrics.value('dgproxy_sessions_active'), 1)
  t.equal(metrics.value('dgproxy_active_response_conflicts_total'), 0)
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})

t.test('DELETE /connections/:id closes the session with a reason; unknown ids are 404', async (t) => {
  const { url, base, sim } = await startProxy(t)
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()
  const id = sessionIdOf(client)

  client.send({ type: 'InjectUserMessage', content: 'One turn' })
  await client.next('AgentAudioDone')
  await client.until(() => conn.activeResponseId === null, 'the response.done')
  const creates = conn.count('response.create')

  t.equal((await getJson(`${base}/connections/no-such-session`)).status, 404)
  t.equal((await fetch(`${base}/connections/no-such-session`, { method: 'DELETE' })).status, 404)

  const res = await fetch(`${base}/connections/${id}`, { method: 'DELETE' })
  t.equal(res.status, 204)
  const closed = await client.closed
  t.equal(closed.code, 1000)
  t.ok(closed.reason.length > 0, `the close frame carries a reason ("${closed.reason}")`)

  // The session leaves the registry once both legs are closed.
  let list = (await getJson(`${base}/connections`)).body
  for (let tries = 0; list.connections.length > 0 && tries < 50; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    list = (await getJson(`${base}/connections`)).body
  }
  t.same(list.connections, [], 'the session is gone from /connections')
  t.equal((await getJson(`${base}/connections/${id}`)).status, 404, 'and its detail is 404')
  t.equal((await fetch(`${base}/connections/${id}`, { method: 'DELETE' })).status, 404, 'a second DELETE is 404')

  // An ended session's counts stay in /metrics.
  const metrics = parseExposition(await (await fetch(`${base}/metrics`)).text())
  t.equal(metrics.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'response.create' }), creates, 'retired counts still match the simulator')
  t.equal(metrics.value('dgproxy_sessions_active'), 0)
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})
