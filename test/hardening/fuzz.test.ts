// Issue #5, part 1: a fuzz test. Thousands of random and mutated client messages go to
// a live proxy (real sockets, the strict simulator upstream). After each sequence the
// session must still answer, then end cleanly when the client closes; at the end the
// process still serves, no session is left, nothing internal failed, and nothing the
// fuzz sent made the proxy break the upstream protocol.

import fc from 'fast-check'
import t from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, TestClient, barrier, configuredClient, startProxy } from '../helpers/proxy.js'
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
      await barrier(client)
      const internal = client.all('Error').filter((m) => m.code === 'INTERNAL_SERVER_ERROR')
      if (internal.length > 0) throw new Error(`internal error: ${JSON.stringify(internal)}`)
    } finally {
      await client.close()
    }
    const close = await client.closed
    if (close.code !== 1000) throw new Error(`the session did not end cleanly: ${JSON.stringify(close)}`)
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
