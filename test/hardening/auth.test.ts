// Issue #5, part 4: client auth with PROXY_AUTH_TOKENS in the three forms the README
// lists (the subprotocol scheme selected, never the secret), 401 at the upgrade
// otherwise, the optional Origin allow-list, and secrets that never show up in logs,
// OTel records, /connections, metrics, error messages or close reasons. The app here
// logs through the real telemetry setup (redaction included), not a test logger.

import { Writable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../app.js'
import type { ProxyApp } from '../../app.js'
import { loadConfig, withModel } from '../../lib/config.js'
import { startSimulator } from '../../lib/simulator/index.js'
import type { Simulator } from '../../lib/simulator/index.js'
import { createTelemetry } from '../../lib/telemetry.js'
import { startOtlpReceiver } from '../helpers/admin-otlp.js'
import type { OtlpReceiver } from '../helpers/admin-otlp.js'
import { BASIC_SETTINGS, TestClient } from '../helpers/proxy.js'
import { upgrade } from '../fixtures/upgrade.js'
import { scriptedUpstream, statusUpstream } from '../fixtures/upstreams.js'

const TOKENS = ['client-token-alpha-7f3a9c', 'client-token-beta-2b8e41']
const OPENAI_API_KEY = 'sk-proj-hardening-secret-key-5d1e0f'
const ADMIN_TOKEN = 'admin-token-hardening-c0ffee'
const SECRETS = [...TOKENS, OPENAI_API_KEY, ADMIN_TOKEN]

interface Running {
  proxy: ProxyApp
  sim: Simulator
  url: string
  base: string
  /** Raw JSON lines, as written to stdout. */
  lines: string[]
}

async function start (t: Test, env: Record<string, string>, otlp?: OtlpReceiver): Promise<Running> {
  const sim = await startSimulator()
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', OPENAI_REALTIME_URL: sim.url, ...env })
  const lines: string[] = []
  const destination = new Writable({
    write (chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString())
      done()
    }
  })
  const telemetry = createTelemetry({ level: 'trace', serviceVersion: 'test', instanceId: 'auth-test', env: otlp === undefined ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }, destination })
  const proxy = await buildApp({ config, upstreamUrl: config.upstreamUrl ?? withModel(sim.url, config.model), logger: telemetry.logger })
  await proxy.app.listen({ port: 0, host: '127.0.0.1' })
  proxy.markReady()
  t.teardown(async () => {
    await proxy.app.close()
    await telemetry.shutdown()
    await sim.close()
  })
  const address = proxy.app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { proxy, sim, url: `ws://127.0.0.1:${port}/v1/agent/converse`, base: `http://127.0.0.1:${port}`, lines }
}

t.test('PROXY_AUTH_TOKENS: the three accepted forms, and 401 at the upgrade for anything else', async (t) => {
  const { url, base } = await start(t, { PROXY_AUTH_TOKENS: TOKENS.join(', ') })
  const [alpha, beta] = TOKENS as [string, string]
  const accepted: Array<[string, Parameters<typeof upgrade>[1], string]> = [
    ['Authorization: Token', { headers: { Authorization: `Token ${alpha}` } }, ''],
    ['Authorization: Bearer (second token)', { headers: { Authorization: `Bearer ${beta}` } }, ''],
    ['Sec-WebSocket-Protocol: token, <t>', { protocols: ['token', alpha] }, 'token'],
    ['Sec-WebSocket-Protocol: bearer, <t>', { protocols: ['bearer', beta] }, 'bearer']
  ]
  for (const [name, options, protocol] of accepted) {
    const result = await upgrade(url, options)
    t.equal(result.status, 101, `${name}: accepted`)
    t.equal(result.protocol, protocol, `${name}: selected subprotocol ${JSON.stringify(protocol)}, never the secret`)
    result.ws?.close()
  }
  const query = await upgrade(`${url}?token=${encodeURIComponent(alpha)}`)
  t.equal(query.status, 101, '?token=: accepted')
  query.ws?.close()

  const refused: Array<[string, string, Parameters<typeof upgrade>[1]]> = [
    ['no credentials', url, {}],
    ['a wrong token', url, { headers: { Authorization: `Token ${alpha}x` } }],
    ['a prefix of a token', url, { headers: { Authorization: `Token ${alpha.slice(0, -1)}` } }],
    ['an unknown scheme', url, { headers: { Authorization: `Basic ${alpha}` } }],
    ['a subprotocol without the scheme', url, { protocols: [alpha] }],
    ['a wrong subprotocol token', url, { protocols: ['token', 'nope'] }],
    ['an empty ?token=', `${url}?token=`, {}],
    ['a wrong ?token=', `${url}?token=${beta}x`, {}]
  ]
  for (const [name, target, options] of refused) {
    const result = await upgrade(target, options)
    t.equal(result.status, 401, `${name}: 401`)
    t.equal(result.body?.code, 'UNAUTHORIZED', `${name}: code UNAUTHORIZED`)
  }
  const metrics = await (await fetch(`${base}/metrics`)).text()
  t.match(metrics, `dgproxy_sessions_rejected_total{reason="auth"} ${refused.length}`)
})

t.test('ALLOWED_ORIGINS: 403 for another Origin, before the token is even looked at; no Origin (not a browser) is fine', async (t) => {
  const { url } = await start(t, { PROXY_AUTH_TOKENS: TOKENS.join(','), ALLOWED_ORIGINS: 'https://app.example.com, https://other.example.com' })
  const token = { Authorization: `Token ${TOKENS[0] as string}` }
  const evil = await upgrade(url, { headers: { ...token, Origin: 'https://evil.example.com' } })
  t.equal(evil.status, 403)
  t.equal(evil.body?.code, 'ORIGIN_NOT_ALLOWED')
  for (const origin of ['https://app.example.com', 'https://other.example.com']) {
    const ok = await upgrade(url, { headers: { ...token, Origin: origin } })
    t.equal(ok.status, 101, `${origin} allowed`)
    ok.ws?.close()
  }
  const noOrigin = await upgrade(url, { headers: token })
  t.equal(noOrigin.status, 101, 'no Origin header: allowed')
  noOrigin.ws?.close()
  const allowedButNoToken = await upgrade(url, { headers: { Origin: 'https://app.example.com' } })
  t.equal(allowedButNoToken.status, 401, 'an allowed Origin still needs a token')
})

t.test('secrets never appear in logs, OTel records, /connections, metrics, error messages or close reasons', async (t) => {
  const otlp = await startOtlpReceiver()
  t.teardown(() => otlp.close())
  const env = { PROXY_AUTH_TOKENS: TOKENS.join(','), OPENAI_API_KEY, ADMIN_TOKEN }
  const running = await start(t, env, otlp)
  const seen: string[] = []
  const admin = { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }

  // Sessions through each form, one with a whole turn and a function-free context.
  const viaHeader = await TestClient.connect(running.url, { headers: { Authorization: `Token ${TOKENS[0] as string}` } })
  const viaProtocol = await TestClient.connect(running.url, { protocols: ['bearer', TOKENS[1] as string] })
  const viaQuery = await TestClient.connect(`${running.url}?token=${TOKENS[0] as string}`)
  viaHeader.send(BASIC_SETTINGS)
  await viaHeader.next('SettingsApplied')
  viaHeader.send({ type: 'InjectUserMessage', content: 'Hello' })
  await viaHeader.next('AgentAudioDone')
  viaProtocol.send({ type: 'Nonsense' })
  await viaProtocol.next('Warning')
  const connection = running.sim.connections[0]
  t.equal(connection?.headers.authorization, `Bearer ${OPENAI_API_KEY}`, 'the key does go upstream, as a header')

  // Refusals.
  for (const options of [{}, { headers: { Authorization: `Token ${TOKENS[0] as string}-wrong` } }, { protocols: ['token', `${TOKENS[1] as string}-wrong`] }]) {
    seen.push(JSON.stringify(await upgrade(running.url, options)))
  }
  seen.push(await (await fetch(`${running.base}/connections`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}-wrong` } })).text())

  // Admin views, metrics.
  const list = await (await fetch(`${running.base}/connections`, admin)).json() as { connections: Array<{ id: string }> }
  seen.push(JSON.stringify(list))
  for (const { id } of list.connections) seen.push(await (await fetch(`${running.base}/connections/${id}`, admin)).text())
  seen.push(await (await fetch(`${running.base}/metrics`)).text())
  const doomed = list.connections[0]?.id as string
  t.equal((await fetch(`${running.base}/connections/${doomed}`, { ...admin, method: 'DELETE' })).status, 204)

  // An upstream that refuses the key: the client's Error and close say so without the key.
  const refusing = await statusUpstream(t, 401, `{"error":{"code":"invalid_api_key","message":"Incorrect API key provided: ${OPENAI_API_KEY}"}}`)
  const keyRefused = await start(t, { ...env, OPENAI_REALTIME_URL: refusing.url }, otlp)
  const unlucky = await TestClient.connect(keyRefused.url, { headers: { Authorization: `Token ${TOKENS[0] as string}` } })
  const refusedClose = await unlucky.closed
  t.equal(unlucky.all('Error')[0]?.code, 'UPSTREAM_UNAUTHORIZED')

  for (const client of [viaHeader, viaProtocol, viaQuery]) await client.close()
  for (const client of [viaHeader, viaProtocol, viaQuery, unlucky]) {
    seen.push(JSON.stringify(client.messages), JSON.stringify(await client.closed))
  }
  seen.push(JSON.stringify(refusedClose))
  await running.proxy.app.close()
  await keyRefused.proxy.app.close()
  await otlp.waitForRecords(10)

  const logs = [...running.lines, ...keyRefused.lines].join('')
  const records = JSON.stringify(otlp.records)
  t.ok(running.lines.length > 20, `a trace-level log to search (${running.lines.length} lines)`)
  t.ok(logs.includes('"sessionId"') && records.includes('session.id'), 'logs and records carry session details')
  const everything = { logs, otelRecords: records, responses: seen.join('\n') }
  for (const [where, text] of Object.entries(everything)) {
    for (const secret of SECRETS) t.notOk(text.includes(secret), `${where} never contain ${secret.slice(0, 12)}…`)
  }
})

t.test('an upstream that closes with a reason quoting a key, and errors quoting it: the key reaches no client message, log line, OTel record or admin response', async (t) => {
  const otlp = await startOtlpReceiver()
  t.teardown(() => otlp.close())
  const leaked = 'sk-proj-LEAKED-upstream-key-9f8e7d'
  const upstream = await scriptedUpstream(t)
  const running = await start(t, { OPENAI_REALTIME_URL: upstream.url, OPENAI_API_KEY }, otlp)
  const client = await TestClient.connect(running.url)
  client.send(BASIC_SETTINGS)
  await client.next('SettingsApplied')
  const ws = await upstream.nextConnection()
  const seen: string[] = []
  ws.send(JSON.stringify({ type: 'error', event_id: 'e1', error: { type: 'invalid_request_error', code: leaked, message: `Incorrect API key provided: ${leaked}`, param: null, event_id: null } }))
  ws.send(JSON.stringify({ type: 'error', event_id: 'e2', error: { type: 'invalid_request_error', code: 'invalid_api_key', message: `Incorrect API key provided: ${leaked}`, param: null, event_id: null } }))
  ws.send(JSON.stringify({ type: 'response.done', event_id: 'e3', response: { id: 'resp_failed', status: 'failed', status_details: { type: 'failed', error: { type: 'server_error', code: leaked, message: leaked } }, output: [] } }))
  await client.until(() => client.all('Warning').length >= 3, 'the three Warnings')
  const admin = { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }
  const id = client.all('Welcome')[0]?.request_id as string
  seen.push(await (await fetch(`${running.base}/connections`, admin)).text())
  seen.push(await (await fetch(`${running.base}/connections/${id}`, admin)).text())
  seen.push(await (await fetch(`${running.base}/metrics`)).text())
  // (4000: a close no new connection cures, so the session ends with it.)
  ws.close(4000, `internal error; key ${leaked}`)
  const closed = await client.closed
  t.equal(client.all('Error').at(-1)?.code, 'UPSTREAM_CLOSED')
  seen.push(JSON.stringify(client.messages), JSON.stringify(closed))
  await running.proxy.app.close()
  await otlp.waitForRecords(5)
  const everything = { clientAndAdmin: seen.join('\n'), logs: running.lines.join(''), otelRecords: JSON.stringify(otlp.records) }
  t.ok(everything.logs.includes('upstream closed'), 'the close was logged')
  for (const [where, text] of Object.entries(everything)) t.notOk(text.includes('LEAKED'), `${where} never contain the key`)
})
