// Issue #5, part 1: a fuzz test. Thousands of random and mutated client messages go to
// a live proxy (real sockets, the strict simulator upstream). After each sequence the
// session must still answer, then end cleanly when the client closes; at the end the
// process still serves, no session is left, nothing internal failed, and nothing the
// fuzz sent made the proxy break the upstream protocol.

import fc from 'fast-check'
import t from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, configuredClient, settled, startProxy } from '../helpers/proxy.js'
import { noSessionsLeft } from '../fixtures/leaks.js'

type Frame = { kind: 'text', data: string } | { kind: 'binary', data: Uint8Array }

const VALID: Array<Record<string, unknown>> = [
  BASIC_SETTINGS,
  { ...BASIC_SETTINGS, audio: { input: { encoding: 'mulaw', sample_rate: 8000 }, output: { encoding: 'mulaw', sample_rate: 8000, container: 'none' } } },
  { ...BASIC_SETTINGS, audio: { input: { encoding: 'linear16', sample_rate: 16000 }, output: { encoding: 'linear16', sample_rate: 16000, container: 'none' } }, agent: { ...BASIC_SETTINGS.agent, greeting: 'Hi!' } },
  { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { prompt: 'p', functions: [{ name: 'lookup', description: 'd', parameters: { type: 'object', properties: {} } }] }, context: { messages: [{ role: 'user', content: 'earlier' }] } } },
  { type: 'UpdatePrompt', prompt: 'Be brief.' },
  { type: 'UpdateSpeak', speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'echo' } } },
  { type: 'UpdateThink', think: { prompt: 'New prompt', functions: [] } },
  { type: 'InjectUserMessage', content: 'Hello' },
  { type: 'InjectAgentMessage', message: 'Say this.' },
  { type: 'InjectAgentMessage', message: 'Queued.', behavior: 'queue' },
  { type: 'InjectAgentMessage', content: 'Interrupting.', behavior: 'interrupt' },
  { type: 'FunctionCallResponse', id: 'call_1', name: 'lookup', content: '{"ok":true}' },
  { type: 'KeepAlive' },
  { type: 'AgentKeepAlive' }
]

const anyValue = fc.oneof(fc.anything(), fc.constantFrom(null, '', 0, -1, 1e308, true, [], {}, 'linear16', 'opus', 24000))

/** A valid message with one field (possibly nested) replaced or removed. */
const mutatedMessage = fc.tuple(fc.constantFrom(...VALID), fc.nat(), fc.nat(), anyValue, fc.boolean()).map(([message, pickTop, pickNested, value, remove]) => {
  const copy = structuredClone(message)
  const keys = Object.keys(copy)
  const key = keys[pickTop % keys.length] as string
  const inner = copy[key]
  if (inner !== null && typeof inner === 'object' && !Array.isArray(inner) && Object.keys(inner).length > 0) {
    const innerKeys = Object.keys(inner)
    const innerKey = innerKeys[pickNested % innerKeys.length] as string
    if (remove) delete (inner as Record<string, unknown>)[innerKey]
    else (inner as Record<string, unknown>)[innerKey] = value
  } else if (remove) {
    delete copy[key]
  } else {
    copy[key] = value
  }
  return copy
})

/** A valid message's JSON with characters deleted, replaced or inserted. */
const mangledText = fc.tuple(fc.constantFrom(...VALID), fc.array(fc.tuple(fc.nat(), fc.constantFrom('delete', 'replace', 'insert'), fc.string({ minLength: 1, maxLength: 3, unit: 'binary' })), { minLength: 1, maxLength: 4 })).map(([message, edits]) => {
  let text = JSON.stringify(message)
  for (const [at, op, chars] of edits) {
    const i = at % (text.length + 1)
    text = op === 'delete' ? text.slice(0, i) + text.slice(i + 1) : op === 'replace' ? text.slice(0, i) + chars + text.slice(i + 1) : text.slice(0, i) + chars + text.slice(i)
  }
  return text
})

const frame: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...VALID).map((m): Frame => ({ kind: 'text', data: JSON.stringify(m) })) },
  { weight: 4, arbitrary: mutatedMessage.map((m): Frame => ({ kind: 'text', data: JSON.stringify(m) })) },
  { weight: 2, arbitrary: fc.record({ type: fc.oneof(fc.string(), fc.constantFrom('Settings', 'settings', 'Inject', 'Close')) }, { requiredKeys: [] }).map((m): Frame => ({ kind: 'text', data: JSON.stringify(m) })) },
  { weight: 2, arbitrary: fc.json().map((data): Frame => ({ kind: 'text', data })) },
  { weight: 3, arbitrary: mangledText.map((data): Frame => ({ kind: 'text', data })) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 64 }).map((data): Frame => ({ kind: 'text', data })) },
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 2001 }).map((data): Frame => ({ kind: 'binary', data })) }
)

/** Settings the proxy cannot serve end the session: its last message an Error saying why, then close 1008. */
function endedForSettings (client: TestClient, close: { code: number, reason: string }): boolean {
  const last = client.messages.at(-1)
  return close.code === 1008 && last?.type === 'Error' && ['INVALID_SETTINGS', 'UNSUPPORTED_AUDIO_FORMAT', 'AGENT_ID_NOT_SUPPORTED'].includes(last.code) &&
    close.reason === String(last.code).toLowerCase().replaceAll('_', ' ')
}

t.test('random and mutated client messages never break a session, another session or the process', async (t) => {
  const proxied = await startProxy(t, { script: { audioChunks: 1 }, env: { MAX_CLIENT_MESSAGES_PER_SECOND: '0' } })
  const canary = await configuredClient(proxied.url)
  let frames = 0
  let runs = 0

  await fc.assert(fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 60, size: 'max' }), async (sequence) => {
    runs++
    frames += sequence.length
    const client = await TestClient.connect(proxied.url)
    try {
      for (const f of sequence) {
        if (f.kind === 'binary') client.sendAudio(Buffer.from(f.data))
        else client.ws.send(f.data)
      }
      await settled(client)
      const internal = client.all('Error').filter((m) => m.code === 'INTERNAL_SERVER_ERROR')
      if (internal.length > 0) throw new Error(`internal error: ${JSON.stringify(internal)}`)
    } finally {
      await client.close()
    }
    const close = await client.closed
    if (close.code !== 1000 && !endedForSettings(client, close)) throw new Error(`the session did not end cleanly: ${JSON.stringify(close)}`)
  }), { numRuns: 100, interruptAfterTimeLimit: 60_000 })

  t.ok(frames >= 2000, `${frames} frames over ${runs} sessions`)
  canary.send({ type: 'InjectUserMessage', content: 'Still fine?' })
  await canary.next('AgentAudioDone')
  t.same(canary.all('Error'), [], 'the canary session never saw an Error')
  await canary.close()
  await noSessionsLeft(proxied)
  t.same(proxied.logs.filter((line) => (line.level as number) >= 50), [], 'no error-level log line')
  t.same(proxied.sim.violations(), NO_VIOLATIONS, 'the proxy kept to the upstream protocol whatever it was sent')
})

// ── hostile fields (issue 10) ───────────────────────────────────────────────────

const PROTOTYPE_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty']

/** The fields each client message type has, where a hostile value goes (and a few paths inside Settings). */
const FIELDS: Record<string, string[]> = {
  Settings: ['audio', 'agent', 'tags', 'flags', 'experimental', 'mip_opt_out', 'agent.think', 'agent.think.functions', 'agent.speak', 'agent.listen', 'agent.context', 'agent.greeting', 'audio.input'],
  UpdatePrompt: ['prompt'],
  UpdateSpeak: ['speak'],
  UpdateThink: ['think'],
  UpdateListen: ['listen'],
  InjectUserMessage: ['content'],
  InjectAgentMessage: ['message', 'content', 'behavior'],
  FunctionCallResponse: ['id', 'name', 'content'],
  ForceEndTurn: ['type'],
  KeepAlive: ['type']
}

/** JSON text of a hostile value: deep nesting, huge or odd strings, prototype-named keys, unicode. */
const hostileJson: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 400 }), fc.boolean()).map(([depth, array]) => array ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
  fc.integer({ min: 0, max: 300_000 }).map((n) => JSON.stringify('x'.repeat(n))),
  fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => JSON.stringify(s)),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => JSON.stringify(s)),
  fc.constantFrom('"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"🦜🦜"').map((s) => s),
  fc.constantFrom(...PROTOTYPE_NAMES).map((name) => `{"${name}":{"${name}":1},"type":"${name}"}`),
  fc.anything({ maxDepth: 3 }).map((value) => JSON.stringify(value) ?? 'null')
)

/** A client message with one hostile field (or a hostile `type`). */
const hostileMessage: fc.Arbitrary<string> = fc.tuple(fc.constantFrom(...Object.keys(FIELDS)), fc.nat(), hostileJson, fc.boolean()).map(([type, pick, value, replaceType]) => {
  if (replaceType) return `{"type":${value.startsWith('"') ? value : JSON.stringify(value.slice(0, 50))}}`
  const fields = FIELDS[type] as string[]
  const path = (fields[pick % fields.length] as string).split('.')
  if (path[0] === 'type') return `{"type":"${type}","extra":${value}}`
  const base = type === 'Settings' ? structuredClone(BASIC_SETTINGS) as Record<string, unknown> : { type }
  const marker = '"__HOSTILE__"'
  let node = base
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1] as string] = '__HOSTILE__'
  return JSON.stringify(base).replace(marker, value)
})

t.test('hostile fields for every client message type, interleaved over concurrent sessions: the process lives, each session continues or ends cleanly, a bystander keeps its turns', async (t) => {
  const proxied = await startProxy(t, { script: { audioChunks: 1 }, env: { MAX_CLIENT_MESSAGES_PER_SECOND: '0' } })
  const bystander = await configuredClient(proxied.url)
  const bystanderConn = await proxied.sim.nextConnection()
  const latencies: number[] = []
  let frames = 0

  await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.nat(2), hostileMessage), { minLength: 5, maxLength: 30, size: 'max' }), async (sequence) => {
    const clients = await Promise.all([0, 1, 2].map(async () => await TestClient.connect(proxied.url)))
    try {
      for (const [which, text] of sequence) {
        const client = clients[which] as TestClient
        if (client.ws.readyState === client.ws.OPEN) client.ws.send(text)
        frames++
      }
      for (const client of clients) await settled(client)
      const started = Date.now()
      bystander.send({ type: 'InjectUserMessage', content: 'still there?' })
      await bystander.next('AgentAudioDone', 10_000)
      latencies.push(Date.now() - started)
      for (const client of clients) {
        for (const error of client.all('Error')) {
          if (typeof error.code !== 'string' || typeof error.description !== 'string' || error.code === '' || error.description === '') throw new Error(`an Error without code and description: ${JSON.stringify(error)}`)
          if (error.code === 'INTERNAL_SERVER_ERROR') throw new Error(`internal error: ${JSON.stringify(error)}`)
        }
      }
      const listed = await (await fetch(`${proxied.base}/connections`)).json() as { connections: Array<{ client: { received: Record<string, unknown>, sent: Record<string, unknown> } }> }
      for (const summary of listed.connections) {
        for (const count of [...Object.values(summary.client.received), ...Object.values(summary.client.sent)]) {
          if (typeof count !== 'number') throw new Error(`a counter that is not a number: ${JSON.stringify(summary.client)}`)
        }
      }
    } finally {
      for (const client of clients) await client.close()
    }
    for (const client of clients) {
      const close = await client.closed
      if (close.code !== 1000 && !endedForSettings(client, close)) throw new Error(`the session did not end cleanly: ${JSON.stringify(close)}`)
    }
  }), { numRuns: 60, interruptAfterTimeLimit: 30_000 })

  t.ok(frames > 600, `${frames} hostile frames`)
  const worst = Math.max(...latencies)
  t.ok(worst < 5000, `the bystander's slowest turn took ${worst} ms over ${latencies.length} runs (bound: 5000 ms)`)
  t.same(bystander.all('Error'), [], 'the bystander never saw an Error')
  t.same(bystanderConn.violations, NO_VIOLATIONS)
  await bystander.close()
  await noSessionsLeft(proxied)
  t.same(proxied.logs.filter((line) => (line.level as number) >= 50), [], 'no error-level log line')
  t.same(proxied.sim.violations(), NO_VIOLATIONS, 'the proxy kept to the upstream protocol whatever it was sent')
})
