// Issue #5, part 5: graceful drain, on the real server process with a real SIGTERM.
// /readyz turns 503 at once; new upgrades get 503 (answered and their sockets closed:
// Fastify would keep them open and close() would wait for them); a session in the
// middle of a response finishes that turn; then every client is closed with 1012 and
// a reason; OTel logs are flushed; the exit code is 0. And in-process: app.close() closes clients with 1001
// and a reason, not the 1005 @fastify/websocket sends by default.

import { connect } from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { startSimulator } from '../../lib/simulator/index.js'
import { startOtlpReceiver } from '../helpers/admin-otlp.js'
import { TestClient, configuredClient, startProxy } from '../helpers/proxy.js'
import { eventually, within } from '../fixtures/leaks.js'
import { buildServer, spawnServer } from '../fixtures/server-process.js'
import { upgrade } from '../fixtures/upgrade.js'

const SECRETS = {
  OPENAI_API_KEY: 'sk-drain-test-openai-key-0123456789',
  PROXY_AUTH_TOKENS: 'drain-client-token-abcdef',
  ADMIN_TOKEN: 'drain-admin-token-fedcba'
}
const auth = { headers: { Authorization: `Token ${SECRETS.PROXY_AUTH_TOKENS}` } }

const serverJs = await buildServer(t)

/** Sends a bare upgrade on a raw socket; resolves with the response's status line once the server closed the socket. */
async function rawUpgrade (base: string): Promise<string> {
  const { port } = new URL(base)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
  socket.write(`GET /v1/agent/converse?token=${SECRETS.PROXY_AUTH_TOKENS} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  await once(socket, 'close')
  return text.split('\r\n')[0] ?? ''
}

t.test('SIGTERM: readyz 503 at once, upgrades 503, the turn in progress finishes, then 1012, OTel flushed, exit 0', async (t) => {
  const sim = await startSimulator({ script: { audioChunks: 25, chunkIntervalMs: 40 } })
  t.teardown(() => sim.close())
  const otlp = await startOtlpReceiver()
  t.teardown(() => otlp.close())
  const server = await spawnServer(t, serverJs, {
    ...SECRETS,
    OPENAI_REALTIME_URL: sim.url,
    DRAIN_TIMEOUT_MS: '10000',
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_SERVICE_NAME: 'drain-test'
  })
  t.equal((await fetch(`${server.base}/readyz`)).status, 200, 'ready before')

  const speaking = await configuredClient(server.url + `?token=${SECRETS.PROXY_AUTH_TOKENS}`)
  const idle = await TestClient.connect(server.url, auth)
  speaking.send({ type: 'InjectUserMessage', content: 'Tell me something long' })
  await speaking.next('AgentStartedSpeaking')

  server.child.kill('SIGTERM')
  await eventually(async () => (await fetch(`${server.base}/readyz`)).status === 503, '/readyz to turn 503', 1000)
  t.equal(speaking.all('AgentAudioDone').length, 0, '/readyz turned 503 while the turn was still going')
  t.same(await (await fetch(`${server.base}/readyz`)).json(), { status: 'draining' })

  const refused = await upgrade(server.url, auth)
  t.equal(refused.status, 503, 'a new upgrade mid-drain is refused')
  t.equal(refused.body?.code, 'DRAINING')
  t.match(await rawUpgrade(server.base), /^HTTP\/1\.1 503/, 'and its socket is closed by the server')

  await speaking.next('AgentAudioDone', 10_000)
  t.pass('the turn in progress finished')
  t.same(await within(speaking.closed, 'the speaking client to be closed', 15_000), { code: 1012, reason: 'server restarting: reconnect' })
  t.same(await within(idle.closed, 'the idle client to be closed'), { code: 1012, reason: 'server restarting: reconnect' })
  const audioDoneAt = speaking.messages.findIndex((m) => m.type === 'AgentAudioDone')
  t.ok(audioDoneAt >= 0 && speaking.messages.slice(audioDoneAt + 1).every((m) => m.type === 'ConversationText' || m.type === 'History'), 'nothing but the words came after the audio')
  t.ok(speaking.all('ConversationText').some((m) => m.role === 'assistant'), 'nothing cut the turn short: the answer was told before the close (once it had played out)')

  const { code, signal } = await server.exited
  t.equal(code, 0, 'exit code 0')
  t.equal(signal, null)
  await otlp.waitForRecords(1)
  await eventually(() => otlp.records.some((r) => r.body === 'drained; exiting'), 'the last log record to reach the collector', 5000)
  t.pass('OTel logs flushed before exit')

  const everything = server.output() + JSON.stringify(otlp.records)
  for (const [name, secret] of Object.entries(SECRETS)) t.notOk(everything.includes(secret), `${name} never appears in stdout or OTel records`)
})

t.test('SIGTERM with a response that never ends: closed with 1012 at DRAIN_TIMEOUT_MS, exit 0', async (t) => {
  const sim = await startSimulator({ script: { neverComplete: true, audioChunks: 2 } })
  t.teardown(() => sim.close())
  const server = await spawnServer(t, serverJs, { OPENAI_REALTIME_URL: sim.url, DRAIN_TIMEOUT_MS: '600' })
  const client = await configuredClient(server.url)
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.next('AgentStartedSpeaking')
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.same(await within(client.closed, 'the client to be closed'), { code: 1012, reason: 'server restarting: reconnect' })
  const waited = Date.now() - started
  t.ok(waited >= 550 && waited < 5000, `closed at the deadline (${waited} ms)`)
  t.equal((await server.exited).code, 0)
})

t.test('SIGTERM with no sessions exits at once with 0', async (t) => {
  const server = await spawnServer(t, serverJs, {})
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
  t.ok(Date.now() - started < 3000, 'no waiting for nothing')
  t.ok(server.lines.some((l) => l.msg === 'drained; exiting'))
})

t.test('app.close() closes clients with 1001 and a reason; an upgrade during close is refused, close() does not hang', async (t) => {
  const proxied = await startProxy(t, { script: { neverComplete: true } })
  const client = await configuredClient(proxied.url)
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.next('AgentStartedSpeaking')
  const closing = proxied.proxy.app.close()
  const during = rawUpgrade(proxied.base)
  t.same(await within(client.closed, 'the client to be closed'), { code: 1001, reason: 'server shutting down' })
  await closing
  t.match(await during, /^HTTP\/1\.1 503/)
  t.equal(proxied.proxy.sessions.size, 0, 'every session ended before close() resolved')
})
