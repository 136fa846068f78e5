// Issue #5, part 3: limits and backpressure. MAX_SESSIONS answers 503 at the upgrade
// (also under a concurrent burst); a client that does not read agent audio has it
// dropped (counted) once MAX_CLIENT_BUFFERED_BYTES wait, and is closed with a reason
// once it has stayed that slow for SLOW_CLIENT_TIMEOUT_MS.

import t from 'tap'
import { BASIC_SETTINGS, TestClient, configuredClient, startProxy } from '../helpers/proxy.js'
import type { TestProxy } from '../helpers/proxy.js'
import { eventually, noSessionsLeft, within } from '../fixtures/leaks.js'
import { upgrade } from '../fixtures/upgrade.js'
import { scriptedUpstream } from '../fixtures/upstreams.js'

async function metric (proxied: TestProxy, line: string): Promise<number> {
  const text = await (await fetch(`${proxied.base}/metrics`)).text()
  const found = text.split('\n').find((l) => l.startsWith(line + ' '))
  return found === undefined ? 0 : Number(found.slice(line.length + 1))
}

t.test('MAX_SESSIONS: 503 TOO_MANY_SESSIONS at the upgrade beyond it, accepted again once one ends', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_SESSIONS: '2' } })
  const first = await TestClient.connect(proxied.url)
  const second = await TestClient.connect(proxied.url)
  const refused = await upgrade(proxied.url)
  t.equal(refused.status, 503)
  t.equal(refused.body?.code, 'TOO_MANY_SESSIONS')
  t.match(refused.body?.message, 'already serves 2 sessions')
  t.equal(await metric(proxied, 'dgproxy_sessions_rejected_total{reason="max_sessions"}'), 1, 'counted')
  await first.close()
  await eventually(() => proxied.proxy.sessions.size === 1, 'the first session to end')
  const third = await TestClient.connect(proxied.url)
  await third.next('Welcome')
  t.pass('a slot freed is a slot taken')
  await Promise.all([second.close(), third.close()])
  await noSessionsLeft(proxied)
})

t.test('MAX_SESSIONS holds under a concurrent burst of upgrades', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_SESSIONS: '3' } })
  const results = await Promise.all(Array.from({ length: 10 }, async () => await upgrade(proxied.url)))
  t.equal(results.filter((r) => r.status === 101).length, 3, 'exactly MAX_SESSIONS accepted')
  t.equal(results.filter((r) => r.status === 503).length, 7, 'the rest refused')
  t.equal(proxied.proxy.sessions.size, 3)
  for (const r of results) r.ws?.close()
  await noSessionsLeft(proxied)
})

t.test('a slow reader: agent audio dropped (counted) beyond MAX_CLIENT_BUFFERED_BYTES, then closed after SLOW_CLIENT_TIMEOUT_MS', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_CLIENT_BUFFERED_BYTES: String(64 * 1024), SLOW_CLIENT_TIMEOUT_MS: '300' } })
  const bystander = await configuredClient(proxied.url)
  const client = await configuredClient(proxied.url)
  await upstream.nextConnection() // the bystander's
  const ws = await upstream.nextConnection()
  client.ws.pause() // stops reading: the proxy's send buffer to it fills up
  const delta = Buffer.alloc(96 * 1024, 1).toString('base64')
  const sendDeltas = (count: number): void => {
    for (let i = 0; i < count; i++) ws.send(`{"type":"response.output_audio.delta","event_id":"e${i}","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${delta}"}`)
  }
  // Enough to fill the kernel's loopback buffers and then the proxy's limit.
  sendDeltas(150)
  await eventually(async () => await metric(proxied, 'dgproxy_dropped_frames_total{reason="slow_client"}') > 0, 'audio to be dropped for the slow client', 5000)
  const started = Date.now()
  t.equal(client.ws.readyState, client.ws.OPEN, 'dropping comes first; closing only after the timeout')
  // Still too slow past the timeout: the next audio closes it.
  await new Promise((resolve) => setTimeout(resolve, 350))
  sendDeltas(1)
  await eventually(() => [...proxied.proxy.sessions].some((s) => s.summary().phase === 'closing'), 'the slow session to be closing')
  t.ok(Date.now() - started >= 300, 'not before SLOW_CLIENT_TIMEOUT_MS')
  client.ws.resume()
  const close = await within(client.closed, 'the slow client to be closed')
  t.same(close, { code: 1008, reason: 'client too slow: agent audio backed up' })
  t.equal(client.all('Error').at(-1)?.code, 'CLIENT_TOO_SLOW', 'the Error is the last thing before the close')
  const delivered = client.audio.reduce((sum, chunk) => sum + chunk.length, 0)
  t.ok(delivered < 150 * 96 * 1024, `only part of the audio was delivered (${delivered} bytes); the rest was dropped, not buffered`)
  t.ok(await metric(proxied, 'dgproxy_client_errors_total{code="CLIENT_TOO_SLOW"}') === 1, 'the close is counted')
  t.equal(bystander.ws.readyState, bystander.ws.OPEN, 'the bystander is untouched')
  await bystander.close()
  await noSessionsLeft(proxied)
})

t.test('a slow reader that catches up starts its SLOW_CLIENT_TIMEOUT_MS afresh when it is slow again', async (t) => {
  const upstream = await scriptedUpstream(t)
  const timeoutMs = 1500
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_CLIENT_BUFFERED_BYTES: String(64 * 1024), SLOW_CLIENT_TIMEOUT_MS: String(timeoutMs) } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  const delta = Buffer.alloc(96 * 1024, 1).toString('base64')
  let seq = 0
  const sendDeltas = (count: number): void => {
    for (let i = 0; i < count; i++) ws.send(`{"type":"response.output_audio.delta","event_id":"e${seq++}","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${delta}"}`)
  }
  const dropped = async (): Promise<number> => await metric(proxied, 'dgproxy_dropped_frames_total{reason="slow_client"}')
  client.ws.pause()
  sendDeltas(150)
  await eventually(async () => await dropped() > 0, 'audio to be dropped for the slow client', 5000)
  const firstSlow = Date.now()
  client.ws.resume()
  // Caught up: the next delta finds the buffer drained and is delivered.
  await eventually(() => { sendDeltas(1); return proxied.proxy.sessions.size === 1 && client.audio.length > 0 && client.ws.bufferedAmount === 0 }, 'the client to catch up', 5000)
  const received = client.audio.length
  sendDeltas(1)
  await client.until(() => client.audio.length > received, 'a delta delivered after catching up')
  // Slow again, now that the first slow period began more than the timeout ago.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstSlow + timeoutMs + 100 - Date.now())))
  const droppedBefore = await dropped()
  client.ws.pause()
  // Until the kernel's buffers are full: the catching up let TCP grow the client's receive
  // buffer (up to net.ipv4.tcp_rmem's maximum, 32 MB on some machines), which can take a
  // fixed burst whole.
  await eventually(async () => { sendDeltas(20); return await dropped() > droppedBefore }, 'audio dropped again', 10000)
  sendDeltas(1)
  await eventually(async () => await dropped() > droppedBefore + 1, 'that delta handled too', 5000)
  t.notOk([...proxied.proxy.sessions].some((s) => s.summary().phase === 'closing'), 'not closed: its second slow period has just begun')
  client.ws.resume()
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('the message-rate limit: exactly MAX_CLIENT_MESSAGES_PER_SECOND pass, one more closes the session', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_CLIENT_MESSAGES_PER_SECOND: '5' } })
  const client = await TestClient.connect(proxied.url)
  for (let i = 0; i < 4; i++) client.send({ type: 'KeepAlive' })
  client.send({ type: 'Unknown5th' })
  await client.until(() => client.all('Warning').length === 1, 'the answer to the fifth message')
  t.equal(client.all('Warning')[0]?.code, 'UNPARSABLE_CLIENT_MESSAGE', 'five in a second are served')
  client.send({ type: 'KeepAlive' })
  const close = await within(client.closed, 'the sixth to close the session')
  t.same(close, { code: 1008, reason: 'message rate limit exceeded' })
  t.equal(client.all('Error').at(-1)?.code, 'CLIENT_MESSAGE_RATE_EXCEEDED')
  await noSessionsLeft(proxied)
})

t.test('a client that reads keeps all its audio: nothing dropped, not closed', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_CLIENT_BUFFERED_BYTES: String(64 * 1024), SLOW_CLIENT_TIMEOUT_MS: '300' } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  const delta = Buffer.alloc(4800, 1).toString('base64')
  for (let i = 0; i < 200; i++) {
    ws.send(`{"type":"response.output_audio.delta","event_id":"e${i}","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${delta}"}`)
    if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await client.until(() => client.audio.reduce((sum, chunk) => sum + chunk.length, 0) === 200 * 4800, 'all the audio')
  t.equal(await metric(proxied, 'dgproxy_dropped_frames_total{reason="slow_client"}'), 0)
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('messages held before the session is configured are bounded: the excess gets TOO_MANY_PENDING_MESSAGES', async (t) => {
  const proxied = await startProxy(t, { script: { sessionUpdatedDelayMs: 200 }, env: { MAX_HELD_MESSAGES: '8' } })
  const client = await TestClient.connect(proxied.url)
  for (let i = 0; i < 12; i++) client.send({ type: 'InjectUserMessage', content: `early ${i}` })
  client.send(BASIC_SETTINGS)
  await client.next('SettingsApplied')
  const warnings = client.all('Warning')
  t.equal(warnings.length, 4, 'the four beyond the bound of eight')
  t.ok(warnings.every((m) => m.code === 'TOO_MANY_PENDING_MESSAGES'))
  t.same(client.all('Error'), [], 'a Warning each: the session goes on')
  await client.until(() => client.all('ConversationText').filter((m) => m.role === 'user').length === 8, 'the eight held messages, replayed')
  await client.close()
  await noSessionsLeft(proxied)
})
