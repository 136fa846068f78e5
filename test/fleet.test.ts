// Issue 14: one view of the fleet, with real parts: a redis-server started here, and
// the proxy built and run as the image runs it (`node dist/server.js`, REDIS_URL set),
// several instances as child processes so one can be killed with SIGKILL. A session
// opened on one instance is listed, read and closed through another; a killed instance
// leaves the fleet view within the documented bound; Redis going away and coming back
// never disturbs a session, and the fleet view degrades and recovers by itself.

import t from 'tap'
import { FLEET_LEAVE_BOUND_MS } from '../lib/fleet.js'
import { startSimulator } from '../lib/simulator/index.js'
import { buildServer, startInstance, type Instance } from './fixtures/deploy-stack.js'
import { startRedis } from './helpers/admin-redis.js'
import { configuredClient, type TestClient } from './helpers/proxy.js'

/** How often the tests poll the admin API. */
const POLL_MS = 100

const converse = (instance: Instance): string => `ws://127.0.0.1:${instance.port}/v1/agent/converse`

async function getJson (url: string, init: RequestInit = {}): Promise<{ status: number, body: any }> {
  const res = await fetch(url, init)
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

async function poll<T> (what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value).slice(0, 500)}`)
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

const fleetList = async (instance: Instance): Promise<any> => (await getJson(`${instance.base}/connections?scope=fleet`)).body
const instanceList = async (instance: Instance): Promise<any> => (await getJson(`${instance.base}/instances`)).body
const idOf = (client: TestClient): string => client.all('Welcome')[0]?.request_id as string

t.test('issue 14: the fleet view across real instances and a real redis-server', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) return
  const root = await buildServer(t)
  const sim = await startSimulator({ port: 0, host: '127.0.0.1' })
  t.teardown(() => sim.close())
  const env = { OPENAI_REALTIME_URL: sim.url, REDIS_URL: redis.url }
  const [a, b] = await Promise.all([startInstance(t, root, 'a', env), startInstance(t, root, 'b', env)])
  const instanceIdOf = async (instance: Instance): Promise<string> => (await getJson(`${instance.base}/connections`)).body.instance as string
  const [idA, idB] = await Promise.all([instanceIdOf(a), instanceIdOf(b)])

  await t.test('both instances list each other', async (t) => {
    for (const [instance, self, other] of [[a, idA, idB], [b, idB, idA]] as const) {
      const listed = await poll('both instances', async () => await instanceList(instance), (body) => body.instances.length === 2 && body.fleet.status === 'ok')
      t.same(listed.instances.map((i: { instance: string }) => i.instance), [self, other], 'this instance first, then the other')
      t.ok(listed.instances.every((i: { ready: boolean, sessions: number }) => i.ready && i.sessions === 0))
    }
  })

  await t.test('a session opened on one instance is listed, read and closed through the other', async (t) => {
    const client = await configuredClient(converse(a))
    t.teardown(() => client.close())
    const id = idOf(client)
    client.send({ type: 'InjectUserMessage', content: 'Hello fleet' })
    await client.next('AgentAudioDone')

    const listed = await poll('B to list the session on A', async () => await fleetList(b), (body) => body.connections.some((c: { id: string }) => c.id === id))
    t.equal(listed.instance, idB, 'answered by B')
    t.same(listed.fleet, { status: 'ok' })
    const summary = listed.connections.find((c: { id: string }) => c.id === id)
    t.equal(summary.instance, idA, 'the summary says A serves it')
    t.equal(summary.phase, 'ready')
    t.equal(summary.upstream.sent['session.update'], 1)
    t.equal((await getJson(`${b.base}/connections`)).body.connections.length, 0, 'B\'s own list (scope=local) does not have it')

    const detail = await poll('the timeline to hold the whole turn', async () => (await getJson(`${b.base}/connections/${id}`)).body, (body) => body.upstream?.received['response.done'] === 1)
    t.equal(detail.id, id)
    t.equal(detail.instance, idA)
    t.ok(detail.events.some((e: { type: string }) => e.type === 'InjectUserMessage'), 'B returns A\'s timeline')
    t.ok(detail.events.some((e: { type: string, direction: string }) => e.type === 'response.done' && e.direction === 'upstream->proxy'))
    t.equal((await getJson(`${b.base}/connections/no-such-session`)).status, 404, 'an id no instance has is 404')

    const closed = await fetch(`${b.base}/connections/${id}`, { method: 'DELETE' })
    t.equal(closed.status, 204, 'DELETE through B')
    t.same(await client.closed, { code: 1000, reason: 'closed by admin' }, 'A closed it, with the admin close frame')
    await poll('the session to leave the fleet view', async () => await fleetList(b), (body) => !body.connections.some((c: { id: string }) => c.id === id))
    t.equal((await getJson(`${b.base}/connections/${id}`, { method: 'DELETE' })).status, 404, 'a second DELETE is 404')
  })

  await t.test('an instance killed with SIGKILL leaves /instances and the fleet list within the bound', async (t) => {
    const c = await startInstance(t, root, 'c', env)
    const idC = await instanceIdOf(c)
    const client = await configuredClient(converse(c))
    const id = idOf(client)
    await poll('A to list C and its session', async () => await fleetList(a), (body) => body.connections.some((s: { id: string, instance: string }) => s.id === id && s.instance === idC))

    c.child.kill('SIGKILL')
    const killedAt = Date.now()
    await poll('C to leave A\'s view', async () => [await instanceList(a), await fleetList(a)] as const,
      ([instances, list]) => !instances.instances.some((i: { instance: string }) => i.instance === idC) && !list.connections.some((s: { id: string }) => s.id === id),
      3 * FLEET_LEAVE_BOUND_MS)
    const gone = Date.now() - killedAt
    // The bound itself, plus one poll and the answering request on a busy machine.
    t.ok(gone <= FLEET_LEAVE_BOUND_MS + POLL_MS + 400, `gone from /instances and the fleet list ${gone} ms after SIGKILL (bound ${FLEET_LEAVE_BOUND_MS} ms)`)
    t.equal((await instanceList(b)).instances.length, 2, 'B agrees: A and B')
    await client.closed
  })

  await t.test('Redis stopped and restarted: sessions keep working, the fleet view degrades, then recovers by itself', async (t) => {
    const onA = await configuredClient(converse(a))
    const onB = await configuredClient(converse(b))
    t.teardown(() => Promise.all([onA.close(), onB.close()]))
    await poll('A to list B\'s session', async () => await fleetList(a), (body) => body.connections.some((s: { id: string }) => s.id === idOf(onB)))

    await redis.stop()
    const degraded = await poll('A to report degraded', async () => await fleetList(a), (body) => body.fleet.status === 'degraded')
    t.match(degraded.fleet, { status: 'degraded', code: 'REDIS_UNAVAILABLE', since: String, message: /unreachable/ })
    t.same(degraded.connections.map((s: { id: string }) => s.id), [idOf(onA)], 'this instance\'s sessions only')
    t.match(await instanceList(a), { instances: [{ instance: idA }], fleet: { status: 'degraded' } })
    t.equal((await instanceList(a)).instances.length, 1)
    t.match(await getJson(`${a.base}/connections/${idOf(onB)}`), { status: 503, body: { code: 'FLEET_UNAVAILABLE' } }, 'another instance\'s session cannot be reached: 503 with a code')
    t.match(await getJson(`${a.base}/connections/${idOf(onA)}`), { status: 200, body: { id: idOf(onA), instance: idA } }, 'its own sessions still answer')

    onA.send({ type: 'InjectUserMessage', content: 'Still there?' })
    await onA.next('AgentAudioDone')
    const fresh = await configuredClient(converse(b))
    fresh.send({ type: 'InjectUserMessage', content: 'New here' })
    await fresh.next('AgentAudioDone')
    t.pass('running sessions go on and new ones open on both instances while Redis is down')
    t.equal((await getJson(`${a.base}/readyz`)).status, 200, 'and the instance stays ready')

    await redis.start()
    const restartedAt = Date.now()
    const recovered = await poll('A to recover', async () => await fleetList(a), (body) => body.fleet.status === 'ok' &&
      [idOf(onA), idOf(onB), idOf(fresh)].every((id) => body.connections.some((s: { id: string }) => s.id === id)))
    t.pass(`recovered by itself ${Date.now() - restartedAt} ms after Redis came back, B's sessions rewritten into the empty Redis`)
    t.equal(recovered.connections.length, 3)
    t.match(await getJson(`${a.base}/connections/${idOf(onB)}`), { status: 200, body: { instance: idB } }, 'requests between instances work again')
    await fresh.close()
  })

  for (const instance of [a, b]) {
    t.notOk(instance.logs.some((line) => line.level >= 50), `${instance.name} logged no error`)
  }
})
