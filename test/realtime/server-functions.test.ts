// Server-side functions end to end (README "Server-side functions"): a function whose
// `endpoint` is under FUNCTION_ENDPOINT_ALLOWLIST is called by the proxy, on real sockets
// and a real local HTTP endpoint; one outside it is never called by the proxy (the client
// is asked instead); a redirect out of the allowlist is not followed.

import t, { type Test } from 'tap'
import { BASIC_SETTINGS, NO_VIOLATIONS, barrier, errorsOf, warningsOf } from '../helpers/proxy.js'
import { WEATHER, agentSaid, openSession, withAgent, type Session } from '../helpers/conversation.js'
import { endpointServer, json, type Seen } from '../helpers/http-endpoint.js'

interface Endpoints { allowed: string, outside: string, seen: Seen[], outsideSeen: Seen[] }

/** An allowed endpoint server (under `${allowed}/api/`, which redirects `/api/away` outside) and one outside the allowlist. */
async function endpoints (t: Test): Promise<Endpoints> {
  const { base: outside, seen: outsideSeen } = await endpointServer(t, (_request, response) => json(response, 200, { leaked: true }))
  const { base: allowed, seen } = await endpointServer(t, (request, response, body) => {
    if (request.url === '/api/away') response.writeHead(302, { location: `${outside}/api/weather` }).end()
    else json(response, 200, { city: (JSON.parse(body) as { city: string }).city, sky: 'sunny' })
  })
  return { allowed, outside, seen, outsideSeen }
}

/** A session whose get_weather function has `endpoint`, with only `${allowed}/api/` allowed. */
async function sessionWith (t: Test, ends: Endpoints, endpoint: Record<string, unknown>): Promise<Session> {
  return await openSession(t, {
    env: { FUNCTION_ENDPOINT_ALLOWLIST: `${ends.allowed}/api/` },
    settings: withAgent({ think: { ...BASIC_SETTINGS.agent.think, functions: [{ ...WEATHER, endpoint }] } })
  })
}

t.test('an endpoint under the allowlist: the proxy calls it, the client is told, the model answers with its result', async (t) => {
  const ends = await endpoints(t)
  const { client, conn, sim } = await sessionWith(t, ends, { url: `${ends.allowed}/api/weather`, method: 'POST' })
  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Paris' })
  const answer = await agentSaid(client, 1)
  const result = '{"city":"Paris","sky":"sunny"}'
  t.equal(answer, `The result is ${result}.`, 'the model used the endpoint\'s answer')
  t.match(ends.seen, [{ method: 'POST', url: '/api/weather', body: '{"city":"Paris"}' }], 'the endpoint was called once, with the arguments')
  t.equal(ends.seen.length, 1)
  const [request] = client.all('FunctionCallRequest')
  t.match(request?.functions, [{ name: 'get_weather', arguments: '{"city":"Paris"}', client_side: false }], 'the client is told, not asked')
  const output = conn.received.find((e) => e.type === 'conversation.item.create' && e.item.type === 'function_call_output')
  t.same([output?.item.call_id, output?.item.output], [request?.functions[0].id, result], 'the output went upstream')
  await barrier(client)
  t.match(client.all('History').find((h) => h.function_calls !== undefined), { function_calls: [{ name: 'get_weather', client_side: false, response: result }] })
  t.same(warningsOf(client), [])
  t.same(errorsOf(client), [])
  t.same(sim.violations(), NO_VIOLATIONS)
})

t.test('an endpoint outside the allowlist is never called: a Warning at Settings, and the client is asked instead', async (t) => {
  const ends = await endpoints(t)
  const { client, sim } = await sessionWith(t, ends, { url: `${ends.outside}/api/weather` })
  t.match(warningsOf(client), [{ code: 'SERVER_SIDE_FUNCTION', description: /"get_weather" is not called by this server: its endpoint is not under FUNCTION_ENDPOINT_ALLOWLIST/ }])
  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Paris' })
  const request = await client.next('FunctionCallRequest')
  t.match(request.functions, [{ name: 'get_weather', client_side: true }], 'a client-side call')
  client.send({ type: 'FunctionCallResponse', id: request.functions[0].id, name: 'get_weather', content: 'rainy' })
  t.equal(await agentSaid(client, 1), 'The result is rainy.', 'the client\'s answer is used')
  await barrier(client)
  t.same(ends.outsideSeen, [], 'the endpoint outside the allowlist got no request')
  t.same(ends.seen, [])
  t.same(errorsOf(client), [])
  t.same(sim.violations(), NO_VIOLATIONS)
})

t.test('an allowed endpoint redirecting outside the allowlist: not followed; a FUNCTION_CALL_FAILED Warning, and the model is told why', async (t) => {
  const ends = await endpoints(t)
  const { client, sim } = await sessionWith(t, ends, { url: `${ends.allowed}/api/away` })
  client.send({ type: 'InjectUserMessage', content: 'get weather, city: Paris' })
  const answer = await agentSaid(client, 1)
  t.equal(answer, 'The result is {"error":"the endpoint redirected to a URL that may not be called"}.')
  t.match(ends.seen, [{ url: '/api/away' }], 'the allowed endpoint was called')
  t.same(ends.outsideSeen, [], 'its redirect was not followed')
  await barrier(client)
  t.same(warningsOf(client).map((w) => w.code), ['FUNCTION_CALL_FAILED'])
  t.same(errorsOf(client), [])
  t.same(sim.violations(), NO_VIOLATIONS)
})
