import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import Fastify from 'fastify'
import t from 'tap'
import admin, { ADMIN_CLOSE_CODE, ADMIN_CLOSE_REASON, isLoopback, type AdminOptions } from '../plugins/admin.js'
import { createMetrics } from '../lib/metrics.js'
import { SessionRegistry } from '../lib/registry.js'
import { FakeSession, startAdmin } from './helpers/admin-fakes.js'
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
  t.same(await res.json(), { instance: 'instance-7', connections: [first.summary(), second.summary()] })

  res = await fetch(`${server.url}/connections/sess-2`)
  t.equal(res.status, 200)
  t.same(await res.json(), second.detail())

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

t.test('admin token: bearer required on /connections* only', async (t) => {
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
    ['DELETE', undefined, '/connections/unknown']
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

  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.yaml']) {
    t.equal((await fetch(`${server.url}${path}`)).status, 200, `${path} needs no token`)
  }

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
    for (const [method, url] of [['GET', '/connections'], ['GET', '/connections/sess-1'], ['DELETE', '/connections/sess-1']] as const) {
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
