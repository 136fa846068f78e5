// Backpressure both ways (issue 10), with real slow sockets. An upstream that does not
// read makes the proxy stop reading its client (TCP pushes back on the client) instead
// of buffering, and ends the session if it stays that way; a client that does not read
// its protocol messages is closed with CLIENT_TOO_SLOW instead of buffering them.

import t from 'tap'
import { configuredClient, startProxy } from '../helpers/proxy.js'
import type { TestProxy } from '../helpers/proxy.js'
import { eventually, noSessionsLeft, within } from '../fixtures/leaks.js'
import { scriptedUpstream } from '../fixtures/upstreams.js'

const FRAME = 32 * 1024
const MB = 1024 * 1024

async function metric (proxied: TestProxy, line: string): Promise<number> {
  const text = await (await fetch(`${proxied.base}/metrics`)).text()
  const found = text.split('\n').find((l) => l.startsWith(line + ' '))
  return found === undefined ? 0 : Number(found.slice(line.length + 1))
}

function framesRead (proxied: TestProxy): number {
  return [...proxied.proxy.sessions][0]?.summary().client.received.binary ?? 0
}

t.test('an upstream that does not read: the proxy stops reading the client, buffers a bounded amount, and loses nothing once it reads again', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_UPSTREAM_BUFFERED_BYTES: String(256 * 1024), SLOW_UPSTREAM_TIMEOUT_MS: '60000' } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  ws.pause() // the upstream stops reading
  const total = 1200 // 37.5 MB of audio
  for (let i = 0; i < total; i++) client.sendAudio(Buffer.alloc(FRAME, i % 251))
  await eventually(async () => await metric(proxied, 'dgproxy_backpressure_pauses_total') >= 1, 'the proxy to stop reading the client', 10_000)
  await eventually(() => client.ws.bufferedAmount > 8 * MB, 'the client\'s own send buffer to hold what the proxy did not read', 10_000)
  const read = framesRead(proxied)
  t.ok(read * FRAME < 20 * MB, `the proxy read ${(read * FRAME / MB).toFixed(1)} MB of ${(total * FRAME / MB).toFixed(1)} MB: only what the upstream socket and the bound hold`)
  t.equal(proxied.proxy.sessions.size, 1, 'the session is alive')

  ws.resume()
  await eventually(() => upstream.received.filter((e) => e.type === 'input_audio_buffer.append').length === total, 'every frame upstream once it reads again', 30_000)
  const appends = upstream.received.filter((e) => e.type === 'input_audio_buffer.append')
  const ids = appends.map((e) => Number(String(e.event_id).split('_a')[1]))
  t.same(ids, Array.from({ length: total }, (_, i) => i + 1), 'in order, none lost')
  t.equal(Buffer.from(appends[total - 1]?.audio as string, 'base64')[0], (total - 1) % 251, 'the last frame is the last one sent')
  await client.close()
  await noSessionsLeft(proxied)
})

t.test('an upstream that stays backed up past SLOW_UPSTREAM_TIMEOUT_MS ends the session: UPSTREAM_TOO_SLOW, close 1013', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_UPSTREAM_BUFFERED_BYTES: String(256 * 1024), SLOW_UPSTREAM_TIMEOUT_MS: '500' } })
  const bystander = await configuredClient(proxied.url)
  await upstream.nextConnection()
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  ws.pause()
  for (let i = 0; i < 800; i++) client.sendAudio(Buffer.alloc(FRAME, 1))
  const close = await within(client.closed, 'the session to end', 20_000)
  t.same(close, { code: 1013, reason: 'upstream too slow' })
  t.equal(client.all('Error').at(-1)?.code, 'UPSTREAM_TOO_SLOW')
  t.equal(bystander.ws.readyState, bystander.ws.OPEN, 'the bystander is untouched')
  await bystander.close()
  // The stuck upstream cannot read our close frame: its socket is dropped after the close handshake timeout (5 s).
  await eventually(() => proxied.proxy.sessions.size === 0, 'both sessions to finish', 10_000)
  await noSessionsLeft(proxied)
})

t.test('a client that does not read its protocol messages is closed: CLIENT_TOO_SLOW, 1008, nothing buffered without bound', async (t) => {
  const upstream = await scriptedUpstream(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_CLIENT_BUFFERED_BYTES: String(64 * 1024) } })
  const client = await configuredClient(proxied.url)
  const ws = await upstream.nextConnection()
  client.ws.pause() // stops reading: transcripts pile up towards it
  const transcript = 'words '.repeat(8000) // 48 KB each
  for (let i = 0; i < 800 && proxied.proxy.sessions.size > 0; i++) {
    ws.send(JSON.stringify({ type: 'conversation.item.input_audio_transcription.completed', event_id: `e${i}`, item_id: `item_${i}`, content_index: 0, transcript }))
    if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await eventually(() => [...proxied.proxy.sessions].every((s) => s.summary().phase === 'closing'), 'the session to be closing', 20_000)
  client.ws.resume()
  const close = await within(client.closed, 'the client to be closed', 20_000)
  t.same(close, { code: 1008, reason: 'client too slow: messages backed up' })
  t.equal(client.all('Error').at(-1)?.code, 'CLIENT_TOO_SLOW', 'told why, last')
  const delivered = client.all('ConversationText').length
  t.ok(delivered < 800, `${delivered} of the transcripts were delivered; the rest were never buffered`)
  await noSessionsLeft(proxied)
})
