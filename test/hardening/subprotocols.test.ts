// The subprotocol a browser offers to authenticate: the server must select exactly one
// of the strings it offered (the scheme, never the secret), whatever its case, or the
// browser aborts the handshake after the server already opened a session and an
// upstream. An offer with nothing to select is refused before the upgrade instead.
// Real clients: `ws` with the offers of each SDK, and headless Chromium's WebSocket.

import { randomUUID } from 'node:crypto'
import t from 'tap'
import { selectedProtocol } from '../../plugins/realtime.js'
import { launchBrowser } from '../helpers/browser.js'
import { startProxy } from '../helpers/proxy.js'
import { upgrade } from '../fixtures/upgrade.js'

const TOKEN = 'client-token-9c2e'

t.test('selectedProtocol: the offered auth scheme as offered, else the SDK\'s session-id marker, never a secret', async (t) => {
  t.equal(selectedProtocol(['token', TOKEN]), 'token')
  t.equal(selectedProtocol(['Token', TOKEN]), 'Token')
  t.equal(selectedProtocol(['BEARER', TOKEN]), 'BEARER')
  t.equal(selectedProtocol(['token', TOKEN, 'x-deepgram-session-id', randomUUID()]), 'token', 'the v5 browser bundle\'s offer')
  t.equal(selectedProtocol(['x-deepgram-session-id', 'a-uuid']), 'x-deepgram-session-id')
  t.equal(selectedProtocol([TOKEN]), undefined)
  t.equal(selectedProtocol([]), undefined)
})

t.test('with PROXY_AUTH_TOKENS: capitalised schemes authenticate and get exactly the offered string back', async (t) => {
  const { url, sim } = await startProxy(t, { env: { PROXY_AUTH_TOKENS: TOKEN } })
  const offers: Array<[string[], string]> = [
    [['Token', TOKEN], 'Token'],
    [['Bearer', TOKEN], 'Bearer'],
    [['token', TOKEN, 'x-deepgram-session-id', randomUUID()], 'token']
  ]
  for (const [protocols, selected] of offers) {
    const result = await upgrade(url, { protocols })
    t.equal(result.status, 101, `${protocols[0] as string}: accepted`)
    t.equal(result.protocol, selected, `selected ${selected}, as offered`)
    result.ws?.close()
  }
  t.equal((await upgrade(url, { protocols: ['Token', 'wrong'] })).status, 401, 'a capitalised scheme with a wrong token: 401')
  t.equal(sim.connections.length, offers.length, 'one upstream per accepted session, none for the refused one')
})

t.test('without client auth: an offer with nothing the server could select is refused before the upgrade (400), no upstream opened', async (t) => {
  const { url, base, sim } = await startProxy(t)
  const session = await upgrade(url, { protocols: ['x-deepgram-session-id', randomUUID()] })
  t.equal(session.status, 101)
  t.equal(session.protocol, 'x-deepgram-session-id', 'the SDK\'s marker is selectable')
  session.ws?.close()
  const refused = await upgrade(url, { protocols: ['graphql-ws'] })
  t.equal(refused.status, 400)
  t.equal(refused.body?.code, 'UNSUPPORTED_SUBPROTOCOL')
  t.equal(sim.connections.length, 1, 'no upstream for the refused one')
  t.match(await (await fetch(`${base}/metrics`)).text(), 'dgproxy_sessions_rejected_total{reason="subprotocol"} 1')
  const none = await upgrade(url)
  t.equal(none.status, 101, 'no subprotocol offered: nothing to select, accepted')
  none.ws?.close()
})

t.test('a browser offering `Token, <token>` opens and talks (headless Chromium)', async (t) => {
  const browser = await launchBrowser(t)
  if (browser === undefined) return
  const { url, base } = await startProxy(t, { env: { PROXY_AUTH_TOKENS: TOKEN } })
  const page = await browser.newPage()
  await page.goto(`${base}/healthz`)
  const result = await page.evaluate(async ({ url, token }) => await new Promise<{ protocol: string, types: string[] }>((resolve, reject) => {
    const ws = new WebSocket(url, ['Token', token, 'x-deepgram-session-id', crypto.randomUUID()])
    const types: string[] = []
    ws.onerror = () => reject(new Error('the browser aborted the handshake'))
    ws.onopen = () => ws.send(JSON.stringify({ type: 'Settings', audio: { input: { encoding: 'linear16', sample_rate: 24000 }, output: { encoding: 'linear16', sample_rate: 24000 } }, agent: {} }))
    ws.onmessage = (event) => {
      if (typeof event.data !== 'string') return
      types.push((JSON.parse(event.data) as { type: string }).type)
      if (types.includes('SettingsApplied')) {
        resolve({ protocol: ws.protocol, types })
        ws.close()
      }
    }
  }), { url, token: TOKEN })
  t.equal(result.protocol, 'Token', 'the browser got the scheme it offered')
  t.same(result.types, ['Welcome', 'SettingsApplied'])
})
