// The OpenAPI document must describe what the code does: every admin route is
// called for real (the fleet routes with a real redis-server), and each status code
// and JSON body is checked against the document's response for that route, so the
// two cannot drift apart. The admin page's event stream is checked event by event
// against the schemas its description names.

import { readFile } from 'node:fs/promises'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import admin, { MAX_ADMIN_STREAMS } from '../plugins/admin.js'
import demo from '../plugins/demo.js'
import { createMetrics } from '../lib/metrics.js'
import { SessionRegistry } from '../lib/registry.js'
import { FakeSession, startAdmin, type AdminServer } from './helpers/admin-fakes.js'
import { readAdminEvents } from './helpers/admin-events.js'
import { startRedis } from './helpers/admin-redis.js'

const WEBSOCKET_PATH = '/v1/agent/converse'
const DEMO = { simulator: true, authRequired: false, model: 'gpt-realtime', conversePath: WEBSOCKET_PATH }
const TOKEN = 'openapi-test-token'

interface MediaType { schema?: unknown }
interface ResponseObject { $ref?: string, description?: string, headers?: Record<string, unknown>, content?: Record<string, MediaType> }
interface Operation { responses: Record<string, ResponseObject> }
interface OpenApiDocument {
  openapi: string
  paths: Record<string, Record<string, Operation | unknown>>
  components: { schemas: Record<string, unknown>, responses: Record<string, ResponseObject> }
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']
const text = await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8')
const doc = parse(text) as OpenApiDocument

const ajv = new Ajv2020({ strict: true, allErrors: true })
ajv.addFormat('date-time', (value: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(value) && !Number.isNaN(Date.parse(value)))
// The document's OpenAPI-only members are not JSON Schema keywords.
ajv.addVocabulary(['openapi', 'info', 'tags', 'paths', 'components', 'servers', 'security'])
ajv.addSchema(doc, 'openapi')

/** JSON pointer → URI fragment, for refs into the document. */
function fragment (...parts: string[]): string {
  return '#/' + parts.map((part) => encodeURIComponent(part.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')
}

function resolvePointer (ref: string): unknown {
  if (!ref.startsWith('#/')) throw new Error(`only local refs are used, got ${ref}`)
  return ref.slice(2).split('/').reduce<unknown>((node, part) => {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~')
    if (node === null || typeof node !== 'object' || !(key in node)) throw new Error(`unresolved $ref ${ref}`)
    return (node as Record<string, unknown>)[key]
  }, doc)
}

/** The response object and the JSON pointer parts of its location. */
function documentedResponse (path: string, method: string, status: number): { response: ResponseObject, at: string[] } | undefined {
  const operation = doc.paths[path]?.[method] as Operation | undefined
  const response = operation?.responses[String(status)]
  if (response === undefined) return undefined
  if (response.$ref !== undefined) {
    return { response: resolvePointer(response.$ref) as ResponseObject, at: response.$ref.slice(2).split('/').map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~')) }
  }
  return { response, at: ['paths', path, method, 'responses', String(status)] }
}

const validators = new Map<string, ValidateFunction>()
function validatorFor (at: string[]): ValidateFunction {
  const ref = 'openapi' + fragment(...at, 'content', 'application/json', 'schema')
  let validate = validators.get(ref)
  if (validate === undefined) {
    validate = ajv.compile({ $ref: ref })
    validators.set(ref, validate)
  }
  return validate
}

const exercised = new Set<string>()
let fleetSkipped = false

interface Call {
  /** The documented path template, e.g. /connections/{id} */
  path: string
  method: 'get' | 'delete'
  url: string
  status: number
  headers?: Record<string, string>
  /** Injected from this non-loopback address instead of a real loopback request. */
  remoteAddress?: string
}

/** What each event of `/admin/events` carries, as its description says. */
const EVENT_SCHEMAS: Record<string, string> = { connections: 'ConnectionList', instances: 'InstanceList', session: 'ConnectionDetail' }

/** Calls the route, then holds its status, headers and body to the document. */
async function check (t: Test, server: AdminServer, call: Call): Promise<void> {
  const name = `${call.method.toUpperCase()} ${call.url} → ${call.status}`
  let status: number
  let contentType: string
  let body: string
  let headers: (name: string) => string | undefined
  if (call.path === '/admin/events' && call.status === 200) {
    const stream = await readAdminEvents(`${server.url}${call.url}`, call.headers)
    t.equal(stream.status, 200, `${name}: status`)
    t.match(stream.contentType, /^text\/event-stream/, `${name}: content-type`)
    const first = await stream.next()
    const events = first.event === 'connections' ? [first, await stream.next('instances')] : [first]
    stream.close()
    for (const { event, data } of events) {
      const schema = EVENT_SCHEMAS[event]
      if (schema === undefined) {
        t.fail(`${name}: event ${event} is not described`)
        continue
      }
      const validate = ajv.compile({ $ref: 'openapi' + fragment('components', 'schemas', schema) })
      t.ok(validate(data), `${name}: event ${event} matches ${schema}`, { errors: validate.errors, data })
    }
    exercised.add('get /admin/events 200')
    return
  }
  if (call.remoteAddress === undefined) {
    const res = await fetch(`${server.url}${call.url}`, { method: call.method.toUpperCase(), headers: call.headers ?? {} })
    status = res.status
    contentType = res.headers.get('content-type') ?? ''
    body = await res.text()
    headers = (header) => res.headers.get(header) ?? undefined
  } else {
    const res = await server.app.inject({ method: call.method === 'get' ? 'GET' : 'DELETE', url: call.url, remoteAddress: call.remoteAddress, headers: call.headers ?? {} })
    status = res.statusCode
    contentType = String(res.headers['content-type'] ?? '')
    body = res.body
    headers = (header) => res.headers[header] as string | undefined
  }
  t.equal(status, call.status, `${name}: status`)

  const documented = documentedResponse(call.path, call.method, status)
  if (documented === undefined) {
    t.fail(`${name}: status ${status} is not documented for ${call.method} ${call.path}`)
    return
  }
  exercised.add(`${call.method} ${call.path} ${status}`)
  const { response, at } = documented

  for (const header of Object.keys(response.headers ?? {})) {
    t.ok(headers(header.toLowerCase()), `${name}: documented header ${header} is sent`)
  }

  const mediaTypes = Object.keys(response.content ?? {})
  if (mediaTypes.length === 0) {
    t.equal(body, '', `${name}: no body, as documented`)
    return
  }
  t.ok(mediaTypes.some((mediaType) => contentType.startsWith(mediaType)), `${name}: content-type ${contentType} is one of ${mediaTypes.join(', ')}`)
  if (!mediaTypes.includes('application/json')) return
  const validate = validatorFor(at)
  const valid = validate(JSON.parse(body))
  t.ok(valid, `${name}: body matches the document`, { errors: validate.errors, body })
}

t.test('the document is OpenAPI 3.1 and every $ref resolves', async (t) => {
  t.equal(doc.openapi, '3.1.0')
  const refs: string[] = []
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk)
    else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string') refs.push(value)
        else walk(value)
      }
    }
  }
  walk(doc)
  t.ok(refs.length > 10)
  for (const ref of refs) t.doesNotThrow(() => resolvePointer(ref), ref)
  for (const name of Object.keys(doc.components.schemas)) {
    t.doesNotThrow(() => ajv.compile({ $ref: 'openapi' + fragment('components', 'schemas', name) }), `schema ${name} compiles in strict mode`)
  }
})

t.test('every route the admin and demo plugins register is documented, and nothing else', async (t) => {
  const sessions = new SessionRegistry()
  const app = Fastify()
  const routes: string[] = []
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of methods) {
      if (method !== 'HEAD') routes.push(`${method.toLowerCase()} ${route.url.replace(/:(\w+)/g, '{$1}')}`)
    }
  })
  await app.register(admin, { sessions, metrics: createMetrics(sessions), instanceId: 'i', isReady: () => true })
  await app.register(demo, DEMO)
  await app.ready()
  t.teardown(() => app.close())

  const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item).filter((key) => METHODS.includes(key)).map((method) => `${method} ${path}`))
  t.same(routes.toSorted(), documented.filter((route) => route !== `get ${WEBSOCKET_PATH}`).toSorted())
  t.ok(documented.includes(`get ${WEBSOCKET_PATH}`), 'the WebSocket endpoint is documented too')
  const converse = doc.paths[WEBSOCKET_PATH]?.get as Operation
  t.same(Object.keys(converse.responses).toSorted(), ['101', '400', '401', '403', '503'])
})

t.test('real responses match the document', async (t) => {
  const open = await startAdmin()
  const guarded = await startAdmin({ adminToken: TOKEN })
  t.teardown(async () => {
    await open.app.close()
    await guarded.app.close()
  })
  const auth = { authorization: `Bearer ${TOKEN}` }
  const remote = '10.1.2.3'

  await check(t, open, { path: '/healthz', method: 'get', url: '/healthz', status: 200 })
  await check(t, open, { path: '/readyz', method: 'get', url: '/readyz', status: 200 })
  open.ready.value = false
  await check(t, open, { path: '/readyz', method: 'get', url: '/readyz', status: 503 })
  open.ready.draining = true
  await check(t, open, { path: '/readyz', method: 'get', url: '/readyz', status: 503 })

  await check(t, open, { path: '/connections', method: 'get', url: '/connections', status: 200 })
  const session = new FakeSession('sess-1')
  const quiet = new FakeSession('sess-2', { upstreamSent: {}, upstreamReceived: {}, clientSent: {}, clientReceived: {} })
  quiet.events = []
  for (const server of [open, guarded]) {
    server.sessions.add(session)
    server.sessions.add(quiet)
  }
  await check(t, open, { path: '/connections', method: 'get', url: '/connections', status: 200 })
  await check(t, open, { path: '/connections/{id}', method: 'get', url: '/connections/sess-1', status: 200 })
  await check(t, open, { path: '/connections/{id}', method: 'get', url: '/connections/sess-2', status: 200 })
  await check(t, open, { path: '/connections/{id}', method: 'get', url: '/connections/missing', status: 404 })
  await check(t, open, { path: '/connections/{id}', method: 'delete', url: '/connections/sess-1', status: 204 })
  await check(t, open, { path: '/connections/{id}', method: 'delete', url: '/connections/missing', status: 404 })

  await check(t, open, { path: '/connections', method: 'get', url: '/connections', status: 403, remoteAddress: remote })
  await check(t, open, { path: '/connections/{id}', method: 'get', url: '/connections/sess-1', status: 403, remoteAddress: remote })
  await check(t, open, { path: '/connections/{id}', method: 'delete', url: '/connections/sess-1', status: 403, remoteAddress: remote })

  await check(t, guarded, { path: '/connections', method: 'get', url: '/connections', status: 401 })
  await check(t, guarded, { path: '/connections', method: 'get', url: '/connections', status: 200, headers: auth })
  await check(t, guarded, { path: '/connections/{id}', method: 'get', url: '/connections/sess-1', status: 401, headers: { authorization: 'Bearer nope' } })
  await check(t, guarded, { path: '/connections/{id}', method: 'get', url: '/connections/sess-1', status: 200, headers: auth })
  await check(t, guarded, { path: '/connections/{id}', method: 'delete', url: '/connections/sess-1', status: 401 })

  await check(t, open, { path: '/metrics', method: 'get', url: '/metrics', status: 200 })
  await check(t, open, { path: '/openapi.yaml', method: 'get', url: '/openapi.yaml', status: 200 })

  session.tags = ['acme']
  await check(t, open, { path: '/connections', method: 'get', url: '/connections?scope=fleet', status: 200 })
  await check(t, open, { path: '/connections', method: 'get', url: '/connections?scope=local&tag=acme', status: 200 })
  await check(t, open, { path: '/connections', method: 'get', url: '/connections?scope=everywhere', status: 400 })
  await check(t, open, { path: '/connections', method: 'get', url: `/connections?tag=${'x'.repeat(201)}`, status: 400 })
  await check(t, open, { path: '/instances', method: 'get', url: '/instances', status: 200 })
  await check(t, open, { path: '/instances', method: 'get', url: '/instances', status: 403, remoteAddress: remote })
  await check(t, guarded, { path: '/instances', method: 'get', url: '/instances', status: 401 })
  await check(t, guarded, { path: '/instances', method: 'get', url: '/instances', status: 200, headers: auth })

  for (const path of ['/admin', '/admin/admin.js', '/admin/admin.css']) {
    await check(t, open, { path, method: 'get', url: path, status: 200 })
    await check(t, open, { path, method: 'get', url: path, status: 403, remoteAddress: remote })
    await check(t, guarded, { path, method: 'get', url: path, status: 200, remoteAddress: remote })
  }
  await check(t, open, { path: '/admin/events', method: 'get', url: '/admin/events?scope=fleet', status: 200 })
  await check(t, open, { path: '/admin/events', method: 'get', url: '/admin/events?session=sess-2', status: 200 })
  await check(t, guarded, { path: '/admin/events', method: 'get', url: '/admin/events', status: 200, headers: auth })
  await check(t, open, { path: '/admin/events', method: 'get', url: '/admin/events?scope=all', status: 400 })
  await check(t, guarded, { path: '/admin/events', method: 'get', url: '/admin/events', status: 401 })
  await check(t, open, { path: '/admin/events', method: 'get', url: '/admin/events', status: 403, remoteAddress: remote })
  const held = await Promise.all(Array.from({ length: MAX_ADMIN_STREAMS }, async () => await readAdminEvents(`${open.url}/admin/events`)))
  await check(t, open, { path: '/admin/events', method: 'get', url: '/admin/events', status: 503 })
  for (const stream of held) stream.close()
})

t.test('the demo page\'s responses match the document', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(demo, DEMO)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const server = { app, url } as unknown as AdminServer
  for (const path of Object.keys(doc.paths).filter((p) => p === '/' || p.startsWith('/demo/'))) {
    await check(t, server, { path, method: 'get', url: path, status: 200 })
  }
})

t.test('fleet responses match the document (real redis-server)', async (t) => {
  const redis = await startRedis(t)
  if (redis === undefined) {
    fleetSkipped = true
    return
  }
  const here = await startAdmin({ instanceId: 'here', redisUrl: redis.url })
  const there = await startAdmin({ instanceId: 'there', redisUrl: redis.url })
  t.teardown(async () => {
    await here.app.close()
    await there.app.close()
  })
  there.sessions.add(new FakeSession('far-away', { tags: ['acme'] }))
  const deadline = Date.now() + 10_000
  while ((await (await fetch(`${here.url}/connections?scope=fleet`)).json() as { connections: unknown[] }).connections.length === 0) {
    if (Date.now() > deadline) throw new Error('the other instance never showed up')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await check(t, here, { path: '/connections', method: 'get', url: '/connections?scope=fleet&tag=acme', status: 200 })
  await check(t, here, { path: '/instances', method: 'get', url: '/instances', status: 200 })
  await check(t, here, { path: '/connections/{id}', method: 'get', url: '/connections/far-away', status: 200 })
  await check(t, here, { path: '/admin/events', method: 'get', url: '/admin/events?session=far-away', status: 200 })
  await check(t, here, { path: '/connections/{id}', method: 'delete', url: '/connections/far-away', status: 204 })

  // A ghost instance: listed (it died a moment ago) but nobody answers for it.
  const raw = redis.client()
  await raw.zadd('dgproxy:fleet:instances', Date.now() + 60_000, 'ghost')
  await raw.hset('dgproxy:fleet:sessions:ghost', 'ghost-session', JSON.stringify({ id: 'ghost-session' }))
  await check(t, here, { path: '/connections/{id}', method: 'get', url: '/connections/ghost-session', status: 504 })
  await check(t, here, { path: '/connections/{id}', method: 'delete', url: '/connections/ghost-session', status: 504 })

  await redis.stop()
  await check(t, here, { path: '/connections/{id}', method: 'get', url: '/connections/far-away', status: 503 })
  await check(t, here, { path: '/connections/{id}', method: 'delete', url: '/connections/far-away', status: 503 })
  await check(t, here, { path: '/connections', method: 'get', url: '/connections?scope=fleet', status: 200 })
  await check(t, here, { path: '/instances', method: 'get', url: '/instances', status: 200 })
})

t.test('every documented status of every HTTP route was produced above', async (t) => {
  const fleetOnly = new Set(['get /connections/{id} 503', 'get /connections/{id} 504', 'delete /connections/{id} 503', 'delete /connections/{id} 504'])
  for (const [path, item] of Object.entries(doc.paths)) {
    if (path === WEBSOCKET_PATH) continue
    for (const method of Object.keys(item).filter((key) => METHODS.includes(key))) {
      for (const status of Object.keys((item[method] as Operation).responses)) {
        const key = `${method} ${path} ${status}`
        if (fleetSkipped && fleetOnly.has(key)) t.pass(`${key}: not produced without redis-server (skipped above)`)
        else t.ok(exercised.has(key), `${method.toUpperCase()} ${path} ${status} exercised`)
      }
    }
  }
})

t.test('the schemas reject what the interface forbids', async (t) => {
  const summary = ajv.compile({ $ref: 'openapi' + fragment('components', 'schemas', 'ConnectionSummary') })
  const detail = ajv.compile({ $ref: 'openapi' + fragment('components', 'schemas', 'ConnectionDetail') })
  const fake = new FakeSession('x')
  const good = { ...fake.summary(), instance: 'i' }
  const goodDetail = { ...fake.detail(), instance: 'i' }
  t.ok(summary(good))
  t.ok(detail(goodDetail))
  const { pending: _pending, ...missingPending } = good
  t.notOk(summary(missingPending), 'every field required')
  const { instance: _instance, ...missingInstance } = good
  t.notOk(summary(missingInstance), 'instance required')
  t.notOk(summary({ ...good, phase: 'dancing' }), 'phase enum')
  t.notOk(summary({ ...good, activeResponseId: 3 }), 'activeResponseId string or null')
  t.notOk(summary({ ...good, startedAt: 'yesterday' }), 'startedAt is a date-time')
  t.notOk(summary({ ...good, upstream: { ...good.upstream, sent: { x: -1 } } }), 'counts are non-negative integers')
  const { connects: _connects, ...upstreamWithoutConnects } = good.upstream
  t.notOk(summary({ ...good, upstream: upstreamWithoutConnects }), 'upstream.connects required')
  t.notOk(summary({ ...good, usage: { responses: 1 } }), 'usage has every field')
  t.notOk(summary({ ...good, tags: [3] }), 'tags are strings')
  t.notOk(detail(good), 'detail needs events')
  t.notOk(detail({ ...goodDetail, events: [{ at: '2025-01-01T00:00:00Z', direction: 'sideways', type: 'x' }] }), 'direction enum')
})
