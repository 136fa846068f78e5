import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import Fastify from 'fastify'
import t from 'tap'
import admin, { ADMIN_CLOSE_CODE, ADMIN_CLOSE_REASON, MAX_ADMIN_STREAMS, isLoopback, type AdminOptions } from '../plugins/admin.js'
import { createMetrics } from '../lib/metrics.js'
import { SessionRegistry } from '../lib/registry.js'
import { FakeSession, startAdmin } from './helpers/admin-fakes.js'
import { readAdminEvents } from './helpers/admin-events.js'
import { parseExposition } from './helpers/admin-prom.js'

const TOKEN = 'admin-s3cret-token'

t.test('probes', async (t) => {
  const server = await startAdmin()
  t.teardown(() => server.app.close())

  let res = await fetch(`${server.url}/healthz`)
  t.equal(res.status, 200)
  t.same(await res.json(), { status: 'ok' })

  res = await fetch(`${server.url}/readyz`)
  t.equal(res.status, 200)
  t.same(await res.json(), { status: 'ready' })

  server.ready.value = false
  res = await fetch(`${server.url}/readyz`)
  t.equal(res.status, 503)
  t.same(await res.json(), { status: 'starting' })

  server.ready.draining = true
  res = await fetch(`${server.url}/readyz`)
  t.equal(res.status, 503)
  t.same(await res.json(), { status: 'draining' })
})

t.test('connections: list, detail, 404, close', async (t) => {
  const server = await startAdmin({ instanceId: 'instance-7' })
  t.teardown(() => server.app.close())

  let res = await fetch(`${server.url}/connections`)
  t.equal(res.status, 200)
  t.same(await res.json(), { instance: 'instance-7', connections: [] })

  const first = new FakeSession('sess-1')
  const second = new FakeSession('sess-2', { upstreamSent: { 'session.update': 4 } })
  server.sessions.add(first)
  server.sessions.add(second)

  res = await fetch(`${server.url}/connections`)
  t.same(await res.json(), { instance: 'instance-7', connections: [{ ...first.summary(), instance: 'instance-7' }, { ...second.summary(), instance: 'instance-7' }] }, 'every summary carries its instance')

  res = await fetch(`${server.url}/connections/sess-2`)
  t.equal(res.status, 200)
  t.same(await res.json(), { ...second.detail(), instance: 'instance-7' })

  res = await fetch(`${server.url}/connections/nope`)
  t.equal(res.status, 404)
  t.same(await res.json(), { statusCode: 404, code: 'SESSION_NOT_FOUND', error: 'Not Found', message: 'No live session with id "nope"' })

  res = await fetch(`${server.url}/connections/sess-1`, { method: 'DELETE' })
  t.equal(res.status, 204)
  t.equal(await res.text(), '')
  t.same(first.closes, [{ code: ADMIN_CLOSE_CODE, reason: ADMIN_CLOSE_REASON }])
  t.same(first.closes, [{ code: 1000, reason: 'closed by admin' }])
  t.same(second.closes, [])

  res = await fetch(`${server.url}/connections/nope`, { method: 'DELETE' })
  t.equal(res.status, 404)
  t.match(await res.json(), { code: 'SESSION_NOT_FOUND' })
})

t.test('issue 14: tag filter, fleet scope and instances without REDIS_URL', async (t) => {
  const server = await startAdmin({ instanceId: 'solo' })
  t.teardown(() => server.app.close())
  server.sessions.add(new FakeSession('acme-1', { tags: ['acme', 'eu'] }))
  server.sessions.add(new FakeSession('globex-1', { tags: ['globex'] }))
  server.sessions.add(new FakeSession('untagged'))
  const ids = async (query: string): Promise<string[]> => {
    const body = await (await fetch(`${server.url}/connections${query}`)).json() as { connections: Array<{ id: string }> }
    return body.connections.map((c) => c.id)
  }

  t.same(await ids('?tag=acme'), ['acme-1'])
  t.same(await ids('?tag=eu'), ['acme-1'], 'any of the session\'s tags')
  t.same(await ids('?tag=ACME'), [], 'tags are compared exactly')
  t.same(await ids('?tag=globex&scope=fleet'), ['globex-1'], 'combines with scope')
  t.same(await ids('?scope=local'), ['acme-1', 'globex-1', 'untagged'])

  const fleet = await (await fetch(`${server.url}/connections?scope=fleet`)).json() as Record<string, unknown>
  t.same(fleet.fleet, { status: 'standalone' }, 'scope=fleet without REDIS_URL: this instance, and says so')
  t.equal(fleet.instance, 'solo')
  t.notOk('fleet' in (await (await fetch(`${server.url}/connections`)).json() as object), 'the plain list keeps its shape')

  const instances = await (await fetch(`${server.url}/instances`)).json() as { instances: Array<Record<string, unknown>>, fleet: unknown }
  t.same(instances.fleet, { status: 'standalone' })
  t.equal(instances.instances.length, 1, 'this instance alone')
  t.match(instances.instances[0], { instance: 'solo', sessions: 3, ready: true, startedAt: String, lastSeen: String })
  server.ready.value = false
  t.match((await (await fetch(`${server.url}/instances`)).json() as typeof instances).instances[0], { ready: false }, 'ready follows /readyz')

  for (const query of ['?scope=world', '?tag=', `?tag=${'t'.repeat(201)}`, '?tag=a&tag=b']) {
    const res = await fetch(`${server.url}/connections${query}`)
    t.equal(res.status, 400, query.slice(0, 20))
    t.match(await res.json(), { statusCode: 400, code: 'ADMIN_INVALID_QUERY', message: /querystring/ })
  }
})

t.test('issue 14: the admin page is served from web/admin with a strict policy', async (t) => {
  const server = await startAdmin()
  t.teardown(() => server.app.close())
  for (const [path, file, type] of [['/admin', 'index.html', 'text/html'], ['/admin/admin.js', 'admin.js', 'text/javascript'], ['/admin/admin.css', 'admin.css', 'text/css']] as const) {
    const res = await fetch(`${server.url}${path}`)
    t.equal(res.status, 200, path)
    t.match(res.headers.get('content-type'), new RegExp(`^${type}`))
    t.equal(await res.text(), await readFile(new URL(`../web/admin/${file}`, import.meta.url), 'utf8'), `${path} is web/admin/${file} as is`)
    t.match(res.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'.*frame-ancestors 'none'/)
    t.equal(res.headers.get('x-frame-options'), 'DENY')
    t.equal(res.headers.get('referrer-policy'), 'no-referrer')
  }
  const html = await (await fetch(`${server.url}/admin`)).text()
  t.notMatch(html, /<script>|\son[a-z]+=/, 'no inline script or handler (the policy would block them)')
})

t.test('issue 14: /admin/events pushes what changed, follows one session until it ends', async (t) => {
  const server = await startAdmin({ instanceId: 'instance-e' })
  t.teardown(() => server.app.close())
  const session = new FakeSession('live-1', { tags: ['acme'] })
  server.sessions.add(session)

  const list = await readAdminEvents(`${server.url}/admin/events?scope=fleet&tag=acme`)
  t.teardown(() => list.close())
  t.equal(list.status, 200)
  t.match(list.contentType, /^text\/event-stream/)
  const first = await list.next('connections')
  t.same(first.data, { instance: 'instance-e', connections: [{ ...session.summary(), instance: 'instance-e' }], fleet: { status: 'standalone' } }, 'the same body as GET /connections')
  t.match((await list.next('instances')).data, { instances: [{ instance: 'instance-e', sessions: 1 }], fleet: { status: 'standalone' } })

  session.responseInProgress = true
  const changed = await list.next('connections')
  t.equal(changed.data.connections[0].responseInProgress, true, 'a change is pushed')
  server.sessions.add(new FakeSession('other-tenant', { tags: ['globex'] }))
  const withOther = await list.next('instances', (data) => data.instances[0].sessions === 2)
  t.ok(withOther, 'the instance list follows')
  t.same(list.received.filter((e) => e.event === 'connections').map((e) => e.data.connections.map((c: { id: string }) => c.id)), [['live-1'], ['live-1']], 'the tag filter holds; an unchanged list is not sent again')

  const follow = await readAdminEvents(`${server.url}/admin/events?session=live-1`)
  t.teardown(() => follow.close())
  t.same((await follow.next('session')).data, { ...session.detail(), instance: 'instance-e' }, 'the detail with its timeline')
  session.events.push({ at: '2025-01-01T00:00:03.000Z', direction: 'upstream->proxy', type: 'response.created', responseId: 'resp_2' })
  t.equal((await follow.next('session')).data.events.length, 6, 'a new timeline entry is pushed')
  server.sessions.delete('live-1')
  t.same((await follow.next('gone')).data, { id: 'live-1' }, 'then gone once it ends')
})

t.test('issue 14: event streams are bounded per instance and end when the app closes', async (t) => {
  const server = await startAdmin()
  const streams = await Promise.all(Array.from({ length: MAX_ADMIN_STREAMS }, async () => await readAdminEvents(`${server.url}/admin/events`)))
  t.ok(streams.every((stream) => stream.status === 200))
  const refused = await fetch(`${server.url}/admin/events`)
  t.equal(refused.status, 503)
  t.match(await refused.json(), { code: 'ADMIN_TOO_MANY_STREAMS', message: /close an admin page/ })
  streams.pop()?.close()
  const deadline = Date.now() + 5000
  let again = await readAdminEvents(`${server.url}/admin/events`)
  while (again.status === 503 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    again = await readAdminEvents(`${server.url}/admin/events`)
  }
  t.equal(again.status, 200, 'a closed stream frees its place')
  streams.push(again)
  await server.app.close()
  for (const stream of streams) await t.rejects(stream.next('never'), /ended/, 'every open stream ends with the app')
})

t.test('metrics and the OpenAPI document', async (t) => {
  const server = await startAdmin()
  t.teardown(() => server.app.close())
  server.sessions.add(new FakeSession('sess-1'))
  server.metrics.sessionEnded(new FakeSession('gone').summary())

  let res = await fetch(`${server.url}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const exposition = parseExposition(await res.text())
  t.equal(exposition.value('dgproxy_sessions_active'), 1)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'response.create' }), 4)

  res = await fetch(`${server.url}/openapi.yaml`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^application\/yaml/)
  t.equal(await res.text(), await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8'))
})

t.test('admin token: bearer required on the admin routes; the page itself holds no data', async (t) => {
  const server = await startAdmin({ adminToken: TOKEN })
  t.teardown(() => server.app.close())
  server.sessions.add(new FakeSession('sess-1'))

  const cases: Array<[string, string | undefined, string]> = [
    ['GET', undefined, '/connections'],
    ['GET', 'Bearer wrong', '/connections'],
    ['GET', `Bearer ${TOKEN}x`, '/connections'],
    ['GET', `Token ${TOKEN}`, '/connections'],
    ['GET', TOKEN, '/connections'],
    ['GET', 'Bearer ', '/connections'],
    ['GET', undefined, '/connections/sess-1'],
    ['DELETE', 'Bearer wrong', '/connections/sess-1'],
    ['DELETE', undefined, '/connections/unknown'],
    ['GET', undefined, '/connections?scope=fleet'],
    ['GET', undefined, '/instances'],
    ['GET', 'Bearer wrong', '/admin/events'],
    ['GET', undefined, '/admin/events?session=sess-1']
  ]
  for (const [method, authorization, path] of cases) {
    const res = await fetch(`${server.url}${path}`, { method, headers: authorization === undefined ? {} : { authorization } })
    t.equal(res.status, 401, `${method} ${path} with ${String(authorization)}`)
    t.match(res.headers.get('www-authenticate'), /^Bearer realm="admin"/)
    const text = await res.text()
    t.notMatch(text, TOKEN, 'never echoes a token')
    t.notMatch(text, 'wrong')
    t.same(JSON.parse(text), { statusCode: 401, code: 'ADMIN_UNAUTHORIZED', error: 'Unauthorized', message: 'Admin routes need "Authorization: Bearer <ADMIN_TOKEN>"' })
  }

  const wrong = await fetch(`${server.url}/connections`, { headers: { authorization: 'Bearer wrong' } })
  t.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="admin", error="invalid_token"')

  for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `Bearer  ${TOKEN} `]) {
    const res = await fetch(`${server.url}/connections`, { headers: { authorization } })
    t.equal(res.status, 200, authorization.replace(TOKEN, '<token>'))
    t.match(await res.json(), { connections: [{ id: 'sess-1' }] })
  }
  const detail = await fetch(`${server.url}/connections/sess-1`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(detail.status, 200)

  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.yaml', '/admin', '/admin/admin.js', '/admin/admin.css']) {
    t.equal((await fetch(`${server.url}${path}`)).status, 200, `${path} needs no token`)
  }
  const page = await server.app.inject({ url: '/admin', remoteAddress: '10.1.2.3' })
  t.equal(page.statusCode, 200, 'with a token set, the page loads from anywhere (it asks for the token)')
  t.notMatch(page.body, 'sess-1', 'and holds no data')

  // With a token configured, the client's address does not matter.
  const remote = await server.app.inject({ url: '/connections', remoteAddress: '10.1.2.3', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(remote.statusCode, 200)
})

t.test('no admin token: loopback clients only', async (t) => {
  const server = await startAdmin()
  t.teardown(() => server.app.close())
  server.sessions.add(new FakeSession('sess-1'))

  t.equal((await fetch(`${server.url}/connections`)).status, 200, 'loopback over a real socket')

  for (const remoteAddress of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) {
    const res = await server.app.inject({ url: '/connections', remoteAddress })
    t.equal(res.statusCode, 200, remoteAddress)
  }
  for (const remoteAddress of ['10.1.2.3', '::ffff:10.1.2.3', '192.168.1.20', 'fe80::1', '::']) {
    for (const [method, url] of [['GET', '/connections'], ['GET', '/connections/sess-1'], ['DELETE', '/connections/sess-1'], ['GET', '/connections?scope=fleet'],
      ['GET', '/instances'], ['GET', '/admin'], ['GET', '/admin/admin.js'], ['GET', '/admin/admin.css'], ['GET', '/admin/events']] as const) {
      const res = await server.app.inject({ method, url, remoteAddress, headers: { 'x-forwarded-for': '127.0.0.1' } })
      t.equal(res.statusCode, 403, `${method} ${url} from ${remoteAddress}`)
      t.same(res.json(), { statusCode: 403, code: 'ADMIN_FORBIDDEN', error: 'Forbidden', message: 'Admin routes answer loopback clients only while ADMIN_TOKEN is unset' })
    }
    t.equal((await server.app.inject({ url: '/healthz', remoteAddress })).statusCode, 200, 'probes stay open')
  }
  t.same((server.sessions.get('sess-1') as FakeSession).closes, [], 'a refused DELETE closes nothing')
})

const externalAddress = Object.values(networkInterfaces()).flat()
  .find((info) => info !== undefined && info.family === 'IPv4' && !info.internal)?.address

t.test('no admin token: refused over a real non-loopback interface', {
  skip: externalAddress === undefined ? 'this machine has no non-loopback IPv4 address' : false
}, async (t) => {
  const address = externalAddress as string
  const sessions = new SessionRegistry()
  const app = Fastify()
  await app.register(admin, { sessions, metrics: createMetrics(sessions), instanceId: 'i', isReady: () => true })
  await app.listen({ port: 0, host: address })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  const res = await fetch(`http://${address}:${port}/connections`)
  t.equal(res.status, 403)
  t.match(await res.json(), { code: 'ADMIN_FORBIDDEN' })
  t.equal((await fetch(`http://${address}:${port}/healthz`)).status, 200)
})

t.test('isLoopback', async (t) => {
  for (const address of ['127.0.0.1', '127.255.255.254', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(address), address)
  for (const address of [undefined, '', '10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', '::', '::2', 'fe80::1', '1127.0.0.1']) t.notOk(isLoopback(address), String(address))
})

t.test('options are checked at registration', async (t) => {
  const sessions = new SessionRegistry()
  const good: AdminOptions = { sessions, metrics: createMetrics(sessions), instanceId: 'i', isReady: () => true }
  const bad: Array<[string, Partial<AdminOptions>, RegExp]> = [
    ['no sessions', { sessions: undefined }, /pass `sessions`/],
    ['no metrics', { metrics: undefined }, /`metrics` \(from createMetrics\)/],
    ['no instanceId', { instanceId: undefined }, /`instanceId`/],
    ['no isReady', { isReady: undefined }, /`isReady`/],
    ['empty token', { adminToken: '' }, /`adminToken`/]
  ]
  for (const [name, override, message] of bad) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(admin, { ...good, ...override } as AdminOptions) }, message, name)
    await app.close()
  }
})

t.test('unexpected failures answer 500 without details', async (t) => {
  const server = await startAdmin()
  t.teardown(() => server.app.close())
  const broken = new FakeSession('broken')
  broken.detail = () => { throw new Error('internal secret detail') }
  server.sessions.add(broken)
  const res = await fetch(`${server.url}/connections/broken`)
  t.equal(res.status, 500)
  t.same(await res.json(), { statusCode: 500, code: 'ADMIN_INTERNAL_ERROR', error: 'Internal Server Error', message: 'The admin route failed; see the server log' })
})
