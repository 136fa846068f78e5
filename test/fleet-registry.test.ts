// The fleet registry (lib/fleet.ts) against a real redis-server: what one instance
// publishes another reads, requests reach the instance that holds a session, every
// write stays within its bounds, hostile or broken input changes nothing, and a Redis
// that goes away and comes back is survived and recovered from without help.

import t from 'tap'
import type { Test } from 'tap'
import { Fleet } from '../lib/fleet.js'
import type { FleetOptions } from '../lib/fleet.js'
import { SessionRegistry, publicDetail } from '../lib/registry.js'
import { FakeSession } from './helpers/admin-fakes.js'
import { startRedis, type RedisServer } from './helpers/admin-redis.js'

/** Short timings so the tests wait little; the defaults are the documented bounds. */
const TIMING = { publishIntervalMs: 100, entryTtlMs: 1000 }

interface TestFleet {
  fleet: Fleet
  sessions: SessionRegistry
  logs: Array<{ level: string, msg: string }>
}

function logger (logs: TestFleet['logs']): FleetOptions['logger'] {
  const at = (level: string) => (_fields: object, msg?: string) => { logs.push({ level, msg: msg ?? '' }) }
  return { info: at('info'), warn: at('warn'), error: at('error') } as unknown as FleetOptions['logger']
}

function startFleet (t: Test, redis: RedisServer, instance: string, options: Partial<FleetOptions> = {}): TestFleet {
  const sessions = new SessionRegistry()
  const logs: TestFleet['logs'] = []
  const fleet = new Fleet({ redisUrl: redis.url, instance, startedAt: new Date('2025-01-01T00:00:00Z'), sessions, isReady: () => true, logger: logger(logs), ...TIMING, ...options })
  fleet.serve({
    detail: (id) => {
      const session = sessions.get(id)
      return session === undefined ? undefined : publicDetail(session, instance)
    },
    close: (id) => {
      const session = sessions.get(id)
      session?.close(1000, 'closed by admin')
      return session !== undefined
    }
  })
  fleet.start()
  t.teardown(() => fleet.stop())
  return { fleet, sessions, logs }
}

async function until (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** A redis-server and two instances, A holding the session `sess-a`, once B lists it. */
async function pairSharingASession (t: Test): Promise<{ redis: RedisServer, a: TestFleet, b: TestFleet } | undefined> {
  const redis = await startRedis(t)
  if (redis === undefined) return undefined
  const a = startFleet(t, redis, 'instance-a')
  const b = startFleet(t, redis, 'instance-b')
  a.sessions.add(new FakeSession('sess-a'))
  await until('B sees A', async () => (await b.fleet.connections()).connections.length === 1)
  return { redis, a, b }
}

t.test('what one instance publishes, another reads; requests reach the holder', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) return
  const a = startFleet(t, redis, 'instance-a')
  const b = startFleet(t, redis, 'instance-b')
  const tagged = new FakeSession('sess-a1', { tags: ['acme', 'eu'] })
  a.sessions.add(tagged)
  a.sessions.add(new FakeSession('sess-a2'))
  b.sessions.add(new FakeSession('sess-b1'))

  await until('both instances ok', () => a.fleet.status().status === 'ok' && b.fleet.status().status === 'ok')
  await until('B lists A\'s two sessions', async () => (await b.fleet.connections()).connections.length === 2)
  const fromB = await b.fleet.connections()
  t.same(fromB.fleet, { status: 'ok' })
  t.same(fromB.connections.map((s) => [s.id, s.instance]).sort(), [['sess-a1', 'instance-a'], ['sess-a2', 'instance-a']], 'only the other instance\'s sessions, each with its instance')
  t.same(fromB.connections.find((s) => s.id === 'sess-a1'), { ...tagged.summary(), instance: 'instance-a' }, 'the summary as A reports it')

  const instances = (await b.fleet.instances()).instances
  t.equal(instances.length, 1, 'the other instance only')
  t.match(instances[0], { instance: 'instance-a', startedAt: '2025-01-01T00:00:00.000Z', sessions: 2, ready: true })
  t.ok(Date.parse(instances[0]?.lastSeen ?? '') > Date.now() - 5000, 'lastSeen is recent')

  const detail = await b.fleet.detail('sess-a1')
  t.same(detail, { ...tagged.detail(), instance: 'instance-a' }, 'the detail with its timeline, from the holder')
  t.equal(await b.fleet.detail('sess-b1'), undefined, 'its own sessions are not asked for over Redis')
  t.equal(await b.fleet.detail('nobody'), undefined, 'unknown: undefined')
  t.equal(await b.fleet.close('nobody'), false)

  t.equal(await b.fleet.close('sess-a2'), true)
  t.same((a.sessions.get('sess-a2') as FakeSession).closes, [{ code: 1000, reason: 'closed by admin' }], 'closed by the instance that holds it')

  a.sessions.delete('sess-a2')
  await until('the ended session leaves the fleet view', async () => (await b.fleet.connections()).connections.length === 1)

  await a.fleet.stop()
  const raw = redis.client()
  t.equal(await raw.exists('dgproxy:fleet:instance:instance-a', 'dgproxy:fleet:sessions:instance-a'), 0, 'a stopped instance deletes its entries (no wait for expiry)')
  t.equal(await raw.zscore('dgproxy:fleet:instances', 'instance-a'), null, 'and leaves the index')
  await until('B no longer lists it', async () => (await b.fleet.instances()).instances.length === 0 && (await b.fleet.connections()).connections.length === 0)
})

t.test('writes are bounded: 100 summaries per command, only what changed, names and counts clipped', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) return
  const monitor = await redis.client().monitor()
  const hsets: number[] = []
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args[0]?.toLowerCase() === 'hset' && args[1] === 'dgproxy:fleet:sessions:big') hsets.push((args.length - 2) / 2)
  })
  t.teardown(() => monitor.disconnect())

  const big = startFleet(t, redis, 'big', { publishIntervalMs: 60_000 })
  const noisy = new FakeSession('noisy', { clientReceived: Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`Type${i}`, 1])), tags: ['x'.repeat(5000)] })
  // As JSON.parse builds it from a client's message: "__proto__" as an own key.
  noisy.counts.upstreamSent = JSON.parse(`{"session.update":1,"${'y'.repeat(5000)}":3,"__proto__":2}`) as Record<string, number>
  big.sessions.add(noisy)
  for (let i = 0; i < 249; i++) big.sessions.add(new FakeSession(`s${String(i).padStart(3, '0')}`))
  await until('the first write', () => big.fleet.status().status === 'ok')

  const reader = startFleet(t, redis, 'reader')
  await until('the reader connected', () => reader.fleet.status().status === 'ok')
  const all = (await reader.fleet.connections()).connections
  t.equal(all.length, 250, 'all 250 summaries are listed')
  t.ok(hsets.length >= 3 && hsets.every((fields) => fields <= 100), `HSETs of at most 100 summaries (${hsets.join(', ')})`)
  t.equal(hsets.reduce((sum, n) => sum + n, 0), 250)

  const stored = all.find((s) => s.id === 'noisy')
  t.equal(Object.keys(stored?.client.received ?? {}).length, 65, '64 types kept, the rest summed as "other"')
  t.equal(stored?.client.received.other, 500 - 64)
  t.equal(stored?.upstream.sent.other, 3, 'an over-long type name is counted as "other"')
  t.equal(Object.getOwnPropertyDescriptor(stored?.upstream.sent, '__proto__')?.value, 2, '"__proto__" stays a plain key')
  t.ok((stored?.tags[0]?.length ?? 0) <= 100, 'tags are clipped')

  hsets.length = 0
  noisy.counts.upstreamSent = { 'session.update': 2 }
  await big.fleet.publish()
  t.same(hsets, [1], 'the next write carries only the summary that changed')
  hsets.length = 0
  await big.fleet.publish()
  t.same(hsets, [], 'nothing changed: no summary written, only the expiry renewed')
})

t.test('requests to an instance that is listed but does not answer fail with a code', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) return
  const b = startFleet(t, redis, 'instance-b')
  const raw = redis.client()
  await until('B ok', () => b.fleet.status().status === 'ok')

  // A ghost: its entries exist (it died a moment ago), nothing listens on its inbox.
  await raw.zadd('dgproxy:fleet:instances', Date.now() + 5000, 'ghost')
  await raw.set('dgproxy:fleet:instance:ghost', JSON.stringify({ instance: 'ghost', startedAt: new Date().toISOString(), sessions: 1, ready: true, lastSeen: new Date().toISOString() }), 'PX', 5000)
  await raw.hset('dgproxy:fleet:sessions:ghost', 'ghost-session', JSON.stringify({ ...new FakeSession('ghost-session').summary(), instance: 'ghost' }))
  await raw.pexpire('dgproxy:fleet:sessions:ghost', 5000)
  await t.rejects(b.fleet.detail('ghost-session'), { code: 'FLEET_INSTANCE_UNREACHABLE', statusCode: 504 })
  await t.rejects(b.fleet.close('ghost-session'), { code: 'FLEET_INSTANCE_UNREACHABLE', statusCode: 504 })

  // A mute one: subscribed to its inbox, never answering.
  const mute = redis.client()
  await mute.subscribe('dgproxy:fleet:inbox:ghost')
  const asked = Date.now()
  await t.rejects(b.fleet.detail('ghost-session'), { code: 'FLEET_INSTANCE_UNREACHABLE' })
  t.ok(Date.now() - asked < 10_000, 'the request gives up by itself')
  t.match(await b.fleet.connections(), { connections: [{ id: 'ghost-session', instance: 'ghost' }] }, 'a ghost stays listed until its entries expire')
})

t.test('garbage on an inbox changes nothing', async (t) => {
  const pair = await pairSharingASession(t)
  if (pair === undefined) return
  const { redis, a, b } = pair
  const raw = redis.client()
  for (const message of ['not json', '[]', 'null', '{"rpc":5}', JSON.stringify({ rpc: 'x', op: 'close' }), JSON.stringify({ rpc: 'x', op: 'drop', id: 'sess-a', from: 'instance-b' }),
    JSON.stringify({ rpc: 'y'.repeat(100), op: 'close', id: 'sess-a', from: 'instance-b' }), JSON.stringify({ rpc: 'z', op: 'reply', found: 'yes' }), 'x'.repeat(2 * 1024 * 1024)]) {
    await raw.publish('dgproxy:fleet:inbox:instance-a', message)
  }
  t.same((a.sessions.get('sess-a') as FakeSession).closes, [], 'nothing was closed')
  t.match(await b.fleet.detail('sess-a'), { id: 'sess-a', instance: 'instance-a' }, 'and it still answers')
  t.same(a.logs.filter((l) => l.level === 'error'), [])
})

t.test('Redis down: degraded at once, nothing waits on it; back: recovered and rewritten by itself', async (t) => {
  const pair = await pairSharingASession(t)
  if (pair === undefined) return
  const { redis, a, b } = pair

  await redis.stop()
  await until('A degraded', () => a.fleet.status().status === 'degraded')
  const status = a.fleet.status()
  t.match(status, { status: 'degraded', code: 'REDIS_UNAVAILABLE', message: /unreachable/ })
  t.ok(Date.parse(status.since ?? '') <= Date.now())
  t.match(await a.fleet.connections(), { connections: [], fleet: { status: 'degraded' } }, 'a fleet read answers at once, empty and degraded')
  t.match(await a.fleet.instances(), { instances: [], fleet: { status: 'degraded' } })
  await t.rejects(b.fleet.detail('sess-a'), { code: 'FLEET_UNAVAILABLE', statusCode: 503 })
  await a.fleet.publish()
  t.equal(a.logs.filter((l) => l.level === 'warn').length, 1, 'one warning per outage, not one per attempt')

  await redis.start()
  await until('both recover', () => a.fleet.status().status === 'ok' && b.fleet.status().status === 'ok')
  await until('A\'s session is back in the (empty) new Redis', async () => (await b.fleet.connections()).connections.length === 1)
  t.match(await b.fleet.detail('sess-a'), { id: 'sess-a' }, 'requests work again')
  t.ok(a.logs.some((l) => l.level === 'info' && /reachable/.test(l.msg)), 'the recovery is logged')
})

t.test('Redis unreachable at start: said once, and the instance joins when it appears', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) return
  await redis.stop()
  const a = startFleet(t, redis, 'instance-a')
  a.sessions.add(new FakeSession('sess-a'))
  await until('the warning', () => a.logs.some((l) => l.level === 'warn'))
  t.match(a.fleet.status(), { status: 'degraded', code: 'REDIS_UNAVAILABLE' })
  await redis.start()
  const b = startFleet(t, redis, 'instance-b')
  await until('B lists A\'s session', async () => (await b.fleet.connections()).connections.length === 1)
  t.equal(a.fleet.status().status, 'ok')
  t.equal(a.logs.filter((l) => l.level === 'warn').length, 1, 'one warning, however many attempts failed')
})

t.test('a session whose summary throws is logged; the instance stops cleanly', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) return
  const a = startFleet(t, redis, 'instance-a')
  const broken = new FakeSession('broken')
  broken.summary = () => { throw new Error('a bug in a session') }
  a.sessions.add(broken)
  await until('the error log', () => a.logs.some((l) => l.level === 'error' && /publishing/.test(l.msg)))
  a.sessions.delete('broken')
  await until('the next write succeeds', () => a.fleet.status().status === 'ok')
  await t.resolves(a.fleet.stop())
})
