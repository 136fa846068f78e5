// A client that vanished without closing (no pong to our pings) is dropped, and its
// upstream with it; a live client is never dropped for being quiet.

import t from 'tap'
import { TestClient, configuredClient, startProxy } from '../helpers/proxy.js'

const INTERVAL_MS = 100

t.test('a client that stops answering pings is dropped, upstream and all', async (t) => {
  const { url, proxy } = await startProxy(t, { env: { CLIENT_PING_INTERVAL_MS: String(INTERVAL_MS) } })
  // autoPong off: the socket stays open at TCP level but never answers, like a dead path.
  const gone = await TestClient.connect(url, { autoPong: false })
  gone.send({ type: 'Settings' })
  await gone.next('SettingsApplied')
  const upstreamClosed = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (proxy.sessions.size === 0) { clearInterval(check); resolve() }
    }, 10)
  })
  const started = Date.now()
  const timeout = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the silent client was never dropped')), 20 * INTERVAL_MS).unref())
  const { code } = await Promise.race([gone.closed, timeout])
  t.equal(code, 1006, 'the proxy dropped the socket (no close handshake with a dead peer)')
  t.ok(Date.now() - started < 10 * INTERVAL_MS, `dropped within a few intervals (${Date.now() - started} ms)`)
  await upstreamClosed
  t.equal(proxy.sessions.size, 0, 'the session ended')
})

t.test('a quiet client that answers pings stays connected', async (t) => {
  const { url, proxy } = await startProxy(t, { env: { CLIENT_PING_INTERVAL_MS: String(INTERVAL_MS) } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  await new Promise((resolve) => setTimeout(resolve, 6 * INTERVAL_MS))
  t.equal(client.ws.readyState, client.ws.OPEN, 'still open after six ping intervals of silence')
  t.equal(proxy.sessions.size, 1)
})
