import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import { AZURE_REALTIME_PATH, startSimulator } from '../../lib/simulator/index.js'
import { connect, simulator } from './helper.js'

async function upgradeStatus (url: string, headers: Record<string, string> = {}): Promise<number> {
  const ws = new WebSocket(url, { headers })
  ws.on('error', () => {})
  const [, response] = await once(ws, 'unexpected-response')
  response.resume()
  ws.terminate()
  return response.statusCode
}

t.test('apiKey: upgrades need the bearer key, else HTTP 401', async (t) => {
  const sim = await simulator(t, { apiKey: 'sk-test' })
  t.match(sim.url, /^ws:\/\/127\.0\.0\.1:\d+\/v1\/realtime$/)
  t.equal(await upgradeStatus(`${sim.url}?model=gpt-realtime`), 401)
  t.equal(await upgradeStatus(`${sim.url}?model=gpt-realtime`, { authorization: 'Bearer wrong' }), 401)
  const { connection } = await connect(t, sim, { headers: { authorization: 'Bearer sk-test' } })
  t.equal(connection.headers.authorization, 'Bearer sk-test')
  t.equal(sim.connections.length, 1, 'refused upgrades are no connections')
})

t.test('only /v1/realtime and Azure\'s /openai/v1/realtime upgrade', async (t) => {
  const sim = await simulator(t)
  t.equal(await upgradeStatus(`ws://127.0.0.1:${sim.port}/v1/agent/converse`), 404)
  t.equal(await upgradeStatus(`ws://127.0.0.1:${sim.port}/openai/realtime?deployment=x`), 404, 'the retired preview path')
})

t.test('Azure OpenAI: the key as an api-key header, the deployment as ?model= on /openai/v1/realtime', async (t) => {
  const sim = await simulator(t, { apiKey: 'azure-key' })
  const azure = `ws://127.0.0.1:${sim.port}${AZURE_REALTIME_PATH}?model=my-realtime-deployment`
  t.equal(await upgradeStatus(azure), 401)
  t.equal(await upgradeStatus(azure, { 'api-key': 'wrong' }), 401)
  t.equal(await upgradeStatus(azure, { authorization: 'Bearer wrong', 'api-key': 'wrong' }), 401)
  const ws = new WebSocket(azure, { headers: { 'api-key': 'azure-key' } })
  t.teardown(() => ws.terminate())
  const [connection] = await Promise.all([sim.nextConnection(), once(ws, 'open')])
  t.equal(connection.model, 'my-realtime-deployment')
  t.equal(connection.session.model, 'my-realtime-deployment')
  const bearer = await connect(t, sim, { headers: { authorization: 'Bearer azure-key' } })
  t.equal(bearer.connection.headers.authorization, 'Bearer azure-key', 'the OpenAI form works as well')
})

t.test('maxSessionMs: the server ends the session with 1001 and OpenAI\'s reason, and says when in expires_at', async (t) => {
  const sim = await simulator(t, { script: { maxSessionMs: 300 } })
  const opened = Date.now()
  const { client } = await connect(t, sim)
  const created = client.events[0]
  t.ok(Math.abs(created.session.expires_at * 1000 - (opened + 300)) < 1500, 'expires_at is the end of the session (in seconds)')
  const [code, reason] = await once(client.ws, 'close')
  t.equal(code, 1001)
  t.equal(String(reason), 'Your session hit the maximum duration of 60 minutes.')
  t.ok(Date.now() - opened >= 250)

  sim.script = {}
  const { client: hourLong } = await connect(t, sim)
  const expiresIn = hourLong.events[0].session.expires_at - Date.now() / 1000
  t.ok(expiresIn > 3590 && expiresIn <= 3600, `the default is 60 minutes (${expiresIn} s)`)
})

t.test('nextConnection hands out each connection once, in accept order', async (t) => {
  const sim = await simulator(t)
  const waiting = sim.nextConnection()
  const first = new WebSocket(`${sim.url}?model=a`)
  t.teardown(() => first.terminate())
  t.equal((await waiting).model, 'a', 'called before the client connected')
  const second = new WebSocket(`${sim.url}?model=b`)
  const third = new WebSocket(`${sim.url}`)
  t.teardown(() => { second.terminate(); third.terminate() })
  await Promise.all([once(second, 'open'), once(third, 'open')])
  await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal((await sim.nextConnection()).model, 'b', 'called after: the oldest unclaimed')
  const last = await sim.nextConnection()
  t.equal(last.model, null)
  t.equal(last.session.model, 'gpt-realtime')
  t.same(sim.connections.map((connection) => connection.model), ['a', 'b', null])
})

t.test('script: the simulator default applies to connections accepted afterwards', async (t) => {
  const sim = await simulator(t, { script: { audioChunks: 1 } })
  const { connection: before } = await connect(t, sim)
  sim.script = { ...sim.script, audioChunks: 5 }
  const { connection: after } = await connect(t, sim)
  t.equal(before.script.audioChunks, 1)
  t.equal(after.script.audioChunks, 5)
  before.script.rejectNext.push({ type: 'x', code: 'y' })
  t.same(after.script.rejectNext, [], 'each connection has its own rejectNext')
})

t.test('close() drops every connection, clears every timer and frees the port', async (t) => {
  const timersBefore = process.getActiveResourcesInfo().filter((name) => name === 'Timeout' || name === 'Immediate').length
  const sim = await startSimulator({ script: { chunkIntervalMs: 1000, responseDoneDelayMs: 1000 } })
  const ws = new WebSocket(`${sim.url}?model=gpt-realtime`)
  ws.on('error', () => {})
  const [connection] = await Promise.all([sim.nextConnection(), once(ws, 'open')])
  ws.send(JSON.stringify({ type: 'response.create', event_id: 'e1' }))
  await connection.waitFor('response.create')
  const closed = once(ws, 'close')
  await sim.close()
  await closed
  await sim.close()
  const timersAfter = process.getActiveResourcesInfo().filter((name) => name === 'Timeout' || name === 'Immediate').length
  t.ok(timersAfter <= timersBefore, `no timers left (${timersBefore} before, ${timersAfter} after)`)
  await t.rejects(sim.nextConnection(), /closed/)
  const again = await startSimulator({ port: sim.port })
  t.equal(again.port, sim.port)
  await again.close()
})

t.test('options are validated with a message that says what to pass', async (t) => {
  await t.rejects(startSimulator({ port: -1 }), /port must be an integer from 0 to 65535/)
  await t.rejects(startSimulator({ apiKey: '' }), /apiKey must be a non-empty string/)
})

t.test('a connection closed from the client side stops its response', async (t) => {
  const sim = await simulator(t, { script: { chunkIntervalMs: 20 } })
  const { client, connection } = await connect(t, sim)
  client.send({ type: 'response.create' })
  await client.next('response.created')
  await client.close()
  await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(connection.activeResponseId, null)
  const sent = connection.sent.length
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.equal(connection.sent.length, sent, 'nothing sent after the close')
})
