// Hostile input (issue 10): each attack that once crashed or exhausted an instance, and
// its class. A message nested or sized past the bounds is refused unread with a
// Warning and the session goes on; client-chosen strings never become keys or grow
// anything; the engine's queue and instructions stay bounded; a bystander keeps its
// turns throughout.

import { Worker } from 'node:worker_threads'
import t from 'tap'
import type { Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, configuredClient, startProxy } from '../helpers/proxy.js'
import type { TestProxy } from '../helpers/proxy.js'
import { noSessionsLeft, within } from '../fixtures/leaks.js'
import { rawWebSocket } from '../fixtures/raw-ws.js'

/**
 * JSON text of `{"a":{"a":…}}` or `[[[…]]]` nested `depth` levels around `leaf`, built as
 * text: JSON.stringify itself overflows the stack on values this deep.
 */
function nested (depth: number, leaf = '1', array = false): string {
  return array ? `${'['.repeat(depth)}${leaf}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}${leaf}${'}'.repeat(depth)}`
}

/** A bystander gets a whole turn through. */
async function turn (client: TestClient): Promise<void> {
  const before = client.all('AgentAudioDone').length
  client.send({ type: 'InjectUserMessage', content: 'Are you still there?' })
  await client.until(() => client.all('AgentAudioDone').length > before, 'the bystander\'s turn')
}

async function summaryOf (proxied: TestProxy, client: TestClient): Promise<Record<string, any>> {
  const id = client.all('Welcome')[0]?.request_id as string
  const response = await fetch(`${proxied.base}/connections/${id}`)
  return await response.json() as Record<string, any>
}

t.test('the crash of issue 10: UpdateThink nested 6000 deep before Settings, then a close, ends that session only', async (t) => {
  const proxied = await startProxy(t)
  const bystander = await configuredClient(proxied.url)
  const attacker = await TestClient.connect(proxied.url)
  attacker.ws.send(`{"type":"UpdateThink","think":{"prompt":"x","functions":[{"name":"f","parameters":${nested(6000)}}]}}`)
  const warning = await attacker.next('Warning')
  t.equal(warning.code, 'CLIENT_MESSAGE_TOO_DEEP')
  t.match(warning.description, /nested deeper than 64 levels/)
  await attacker.close()
  await turn(bystander)
  t.equal((await fetch(`${proxied.base}/healthz`)).status, 200, 'the process serves')
  await bystander.close()
  await noSessionsLeft(proxied)
  t.same(proxied.logs.filter((line) => (line.level as number) >= 50), [], 'no internal error')
})

t.test('Settings nested 5000 deep, and a deeply nested FunctionCallResponse content: refused with a Warning, the session goes on', async (t) => {
  const proxied = await startProxy(t)
  const client = await TestClient.connect(proxied.url)
  client.ws.send(JSON.stringify({ ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, deep: 'DEEP' } }).replace('"DEEP"', nested(5000, '1', true)))
  t.equal((await client.next('Warning')).code, 'CLIENT_MESSAGE_TOO_DEEP')
  client.send(BASIC_SETTINGS)
  await client.next('SettingsApplied')
  client.ws.send(`{"type":"FunctionCallResponse","id":"call_1","name":"f","content":${nested(3000)}}`)
  t.equal((await client.next('Warning')).code, 'CLIENT_MESSAGE_TOO_DEEP')
  await turn(client)
  t.same(client.all('Error'), [], 'no Error: nothing here ends the session')
  await client.close()
  t.same(await client.closed, { code: 1000, reason: '' })
  await noSessionsLeft(proxied)
})

t.test('a real tool schema nested ten objects deep (arrays of objects, descriptions) is accepted and reaches the upstream', async (t) => {
  const proxied = await startProxy(t)
  let schema: Record<string, unknown> = { type: 'string', description: 'leaf' }
  for (let level = 0; level < 10; level++) {
    schema = { type: 'object', properties: { items: { type: 'array', items: schema }, note: { type: 'string' } }, required: ['items'] }
  }
  const settings = { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { prompt: 'p', functions: [{ name: 'deep_tool', description: 'd', parameters: schema }] } } }
  const client = await configuredClient(proxied.url, settings)
  const conn = await proxied.sim.nextConnection()
  const update = conn.received.find((e) => e.type === 'session.update')
  t.same(update?.session.tools[0].parameters, schema, 'forwarded whole')
  t.same(client.all('Warning'), [])
  await client.close()
})

t.test('a text message over MAX_CLIENT_MESSAGE_BYTES is dropped unread with a Warning; the session goes on', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_CLIENT_MESSAGE_BYTES: '4096' } })
  const client = await configuredClient(proxied.url)
  client.send({ type: 'InjectUserMessage', content: 'x'.repeat(5000) })
  const warning = await client.next('Warning')
  t.equal(warning.code, 'CLIENT_MESSAGE_TOO_LARGE')
  t.match(warning.description, /limit is 4096 bytes/)
  t.same(client.all('ConversationText'), [], 'nothing of it was used')
  await turn(client)
  await client.close()
})

t.test('client-chosen types never become keys: prototype names and huge types count as "unknown", echoed cut and quoted', async (t) => {
  const proxied = await startProxy(t)
  const client = await configuredClient(proxied.url)
  const huge = `Evil${'Z'.repeat(400_000)}`
  const types = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', huge, 'line\nbreak\u0000', '🦜'.repeat(50)]
  for (const type of types) client.send({ type })
  // Each answered with a Warning: an unknown type does not end the session.
  await client.until(() => client.all('Warning').length === types.length, 'an answer to each')
  const hugeAnswer = client.all('Warning').find((m) => (m.description as string).includes('EvilZZ'))
  t.ok(hugeAnswer !== undefined && (hugeAnswer.description as string).length < 600, 'the huge type is echoed cut short')
  t.notOk(client.all('Warning').some((m) => (m.description as string).includes('\n')), 'control characters are escaped')
  const detail = await summaryOf(proxied, client)
  t.equal(detail.client.received.unknown, types.length, 'all counted under "unknown"')
  for (const [type, count] of Object.entries(detail.client.received)) t.type(count, 'number', `${type} counts a number`)
  for (const type of types) t.notOk(Object.hasOwn(detail.client.received, type), `no key ${JSON.stringify(type.slice(0, 12))}`)
  t.ok(detail.events.every((e: { type: string }) => e.type.length < 100), 'the timeline keeps no client-chosen type')
  const metrics = await (await fetch(`${proxied.base}/metrics`)).text()
  t.notOk(metrics.includes('EvilZZ'), 'nor does /metrics')
  t.ok(JSON.stringify(proxied.logs).length < 200_000, 'nor the log')
  await client.close()
})

t.test('UpdatePrompt growing past MAX_PROMPT_CHARS: PROMPT_TOO_LONG, the instructions in force stay, and they go upstream bounded', async (t) => {
  const proxied = await startProxy(t, { env: { MAX_PROMPT_CHARS: '5000' } })
  const client = await configuredClient(proxied.url)
  const conn = await proxied.sim.nextConnection()
  for (let i = 0; i < 4; i++) client.send({ type: 'UpdatePrompt', prompt: `${i}`.repeat(2000) })
  await client.until(() => client.all('PromptUpdated').length + client.all('Warning').length === 4, 'an answer to each')
  t.equal(client.all('PromptUpdated').length, 2, 'the first two fit (the base prompt plus 2 × 2000)')
  t.match(client.all('Warning'), [{ code: 'PROMPT_TOO_LONG' }, { code: 'PROMPT_TOO_LONG' }])
  t.ok(conn.session.instructions.length <= 5000, `upstream instructions are ${conn.session.instructions.length} characters`)
  t.ok(conn.session.instructions.endsWith('1'.repeat(2000)), 'the last accepted change is in force')
  await turn(client)
  await client.close()
  t.same(conn.violations, NO_VIOLATIONS)
})

t.test('agent messages queued behind a long answer are bounded by MAX_QUEUED_RESPONSES: the rest get InjectionRefused', async (t) => {
  const proxied = await startProxy(t, { script: { neverComplete: true }, env: { MAX_QUEUED_RESPONSES: '3' } })
  const client = await configuredClient(proxied.url)
  const conn = await proxied.sim.nextConnection()
  client.send({ type: 'InjectAgentMessage', message: 'A long answer.' })
  await conn.waitFor('response.create')
  for (let i = 0; i < 6; i++) client.send({ type: 'InjectAgentMessage', message: `queued ${i} ${'y'.repeat(20_000)}`, behavior: 'queue' })
  await client.until(() => client.all('InjectionRefused').length === 3, 'the three beyond the bound refused')
  const detail = await summaryOf(proxied, client)
  t.equal(detail.pending.responseCreate, 3, 'three wait')
  conn.finishResponse()
  await client.close()
})

t.test('invalid UTF-8 in a text frame: the client is closed (1007), logged at warn without a stack trace', async (t) => {
  const proxied = await startProxy(t)
  const raw = await rawWebSocket(proxied.url)
  raw.frame(0x1, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))
  await within(raw.ended, 'the connection to end')
  await noSessionsLeft(proxied)
  const line = proxied.logs.find((l) => l.msg === 'client socket error')
  t.ok(line !== undefined, 'logged')
  t.equal(line?.level, 40, 'at warn')
  t.notOk(JSON.stringify(line).includes('    at '), 'without a stack trace')
})

/**
 * Four attackers on `proxied` for `ms` milliseconds (test/fixtures/hostile-clients.js), in a
 * worker thread as separate attackers would be: their own cost is not the proxy's.
 */
async function hostileFor (t: Test, proxied: TestProxy, ms: number): Promise<void> {
  const worker = new Worker(new URL('../fixtures/hostile-clients.js', import.meta.url), {
    workerData: { url: proxied.url, ms, settings: BASIC_SETTINGS }
  })
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve())
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`the attackers' worker exited with ${code}`)))
  })
  await worker.terminate()
  t.pass('the attack ran')
}

t.test('memory: hostile clients for a while (huge types, queue floods, growing prompts) keep the heap bounded and a bystander answering', async (t) => {
  const proxied = await startProxy(t, { script: { neverComplete: true } })
  const bystanderProxy = proxied
  const bystander = await configuredClient(bystanderProxy.url)
  global.gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  let heapPeak = heapBefore
  const sampler = setInterval(() => { heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed) }, 50)
  const latencies: number[] = []
  const attack = { running: true }
  const turns = (async () => {
    const conn = await proxied.sim.nextConnection()
    while (attack.running) {
      const started = Date.now()
      const before = bystander.all('ConversationText').length
      const heard = bystander.all('AgentAudioDone').length
      bystander.send({ type: 'InjectUserMessage', content: 'ping' })
      await bystander.until(() => bystander.all('AgentAudioDone').length > heard, 'the bystander\'s answer', 10_000)
      latencies.push(Date.now() - started)
      conn.finishResponse()
      // Its words are told once its response is done.
      await bystander.until(() => bystander.all('ConversationText').length >= before + 2, 'the bystander\'s answer told', 10_000)
      await new Promise((resolve) => setTimeout(resolve, 200)) // a turn every 200 ms: a person, not a flood
    }
  })()
  await hostileFor(t, proxied, 4000)
  attack.running = false
  await turns
  clearInterval(sampler)
  const grownMb = (heapPeak - heapBefore) / 1024 / 1024
  t.ok(grownMb < 256, `the heap grew by at most ${grownMb.toFixed(1)} MB under attack (bound: 256 MB)`)
  const worst = Math.max(...latencies)
  t.ok(latencies.length >= 3, `the bystander got ${latencies.length} turns through`)
  t.ok(worst < 2000, `the bystander's slowest turn took ${worst} ms (bound: 2000 ms)`)
  await bystander.close()
  await noSessionsLeft(proxied)
})
