// The realtime plugin checks every option at registration: a bad one fails
// `app.register` with a message naming the option and what to pass, instead of
// failing later, on the first session, or silently taking a default.

import Fastify from 'fastify'
import t from 'tap'
import type { Test } from 'tap'
import { PLUGIN_LIMITS } from '../../lib/limits.js'
import type { LimitSpec } from '../../lib/limits.js'
import { createMetrics } from '../../lib/metrics.js'
import { SessionRegistry } from '../../lib/registry.js'
import realtime from '../../plugins/realtime.js'
import type { RealtimeOptions } from '../../plugins/realtime.js'

const UPSTREAM = 'ws://127.0.0.1:9/v1/realtime?model=gpt-realtime'

/** Registers the plugin with these options; resolves to the registration error, or undefined. */
async function registrationError (t: Test, options: Record<string, unknown>): Promise<Error | undefined> {
  const app = Fastify()
  t.teardown(() => app.close())
  try {
    await app.register(realtime, options as unknown as RealtimeOptions)
    await app.ready()
    return undefined
  } catch (error) {
    return error as Error
  }
}

async function refused (t: Test, options: Record<string, unknown>, says: RegExp | string): Promise<void> {
  const error = await registrationError(t, { upstreamUrl: UPSTREAM, ...options })
  t.ok(error instanceof TypeError, `${JSON.stringify(options)} is refused`)
  t.match(error?.message, /^realtime plugin: pass /)
  if (typeof says === 'string') t.ok(error?.message.includes(says), `"${error?.message}" says ${says}`)
  else t.match(error?.message, says)
}

t.test('good options register, including every limit at its bounds', async (t) => {
  t.equal(await registrationError(t, { upstreamUrl: UPSTREAM }), undefined, 'upstreamUrl alone')
  const sessions = new SessionRegistry()
  t.equal(await registrationError(t, {
    upstreamUrl: 'wss://api.openai.com/v1/realtime?model=gpt-realtime',
    apiKey: 'sk-test',
    authTokens: ['a', 'b'],
    allowedOrigins: [],
    engine: { createAckMs: 0, responseMaxMs: 1000, maxCreateRetries: 0 },
    sessions,
    metrics: createMetrics(sessions),
    isAccepting: () => true
  }), undefined, 'every option')
  for (const row of PLUGIN_LIMITS) {
    t.equal(await registrationError(t, { upstreamUrl: UPSTREAM, [row.option]: row.min }), undefined, `${row.option}: ${row.min}`)
    t.equal(await registrationError(t, { upstreamUrl: UPSTREAM, [row.option]: row.max }), undefined, `${row.option}: ${row.max}`)
  }
})

t.test('upstreamUrl: required, ws:// or wss://', async (t) => {
  for (const upstreamUrl of [undefined, '', 'https://api.openai.com/v1/realtime', 'api.openai.com', 5, null]) {
    await refused(t, { upstreamUrl }, '`upstreamUrl`, the OpenAI Realtime WebSocket URL (ws:// or wss://)')
  }
})

t.test('every limit: out of bounds, not an integer or not a number names the option, its bounds and unit', async (t) => {
  for (const row of PLUGIN_LIMITS as readonly LimitSpec[]) {
    const off = row.zeroIsOff === true ? ', 0 = off' : ''
    const expected = `\`${row.option}\` as an integer from ${row.min} to ${row.max} (${row.unit}${off}; `
    for (const value of [row.min - 1, row.max + 1, row.min + 0.5, String(row.default), Number.NaN, null]) {
      await refused(t, { [row.option]: value }, expected)
    }
  }
})

t.test('apiKey, authTokens, allowedOrigins: the types they take', async (t) => {
  for (const apiKey of ['', 5, null]) await refused(t, { apiKey }, '`apiKey` as a non-empty string, or leave it out')
  for (const authTokens of ['token', ['a', ''], [5], { 0: 'a' }, null]) await refused(t, { authTokens }, '`authTokens` as an array of non-empty strings')
  for (const allowedOrigins of ['https://app.example', [''], [null]]) await refused(t, { allowedOrigins }, '`allowedOrigins` as an array of non-empty strings')
})

t.test('engine: an object of non-negative integer timings', async (t) => {
  for (const engine of ['fast', 5, null]) await refused(t, { engine }, '`engine` as an object of watchdog timings ({ createAckMs, responseMaxMs, … })')
  await refused(t, { engine: { createAckMs: -1 } }, '`engine.createAckMs` as a non-negative integer')
  await refused(t, { engine: { responseMaxMs: 1.5 } }, '`engine.responseMaxMs` as a non-negative integer')
  await refused(t, { engine: { cancelGraceMs: '5000' } }, '`engine.cancelGraceMs` as a non-negative integer')
  await refused(t, { engine: { maxCreateRetries: Infinity } }, '`engine.maxCreateRetries` as a non-negative integer')
})

t.test('an unknown engine timing (a typo) is refused rather than silently ignored', async (t) => {
  await refused(t, { engine: { createAckMS: 5 } }, '`engine.createAckMS` is not one')
})

t.test('sessions, metrics, isAccepting: the objects they take', async (t) => {
  await refused(t, { sessions: new Map() }, '`sessions` as a SessionRegistry (shared with the admin plugin), or leave it out')
  await refused(t, { metrics: {} }, '`metrics` from createMetrics, or leave it out')
  await refused(t, { isAccepting: true }, '`isAccepting` as a function returning a boolean')
})

t.test('several bad options: one message naming each of them', async (t) => {
  const error = await registrationError(t, { upstreamUrl: 'http://x', maxSessions: 0, authTokens: 'a', engine: { itemAckMs: -5 } })
  for (const name of ['upstreamUrl', 'maxSessions', 'authTokens', 'engine.itemAckMs']) t.ok(error?.message.includes(`\`${name}\``), name)
})
