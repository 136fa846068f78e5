// Operator routes: health, readiness, live connections (this instance's or the
// whole fleet's), instances, the live admin page, metrics and the OpenAPI document.
// Encapsulated on purpose: its error handler and auth hook apply to these routes
// only. `/connections*`, `/instances` and `/admin/events` need the admin token when
// one is set, or a loopback client when not; the probes, `/metrics` and
// `/openapi.yaml` are open (probes and scrapers).

import { readFile } from 'node:fs/promises'
import { STATUS_CODES } from 'node:http'
import type { ServerResponse } from 'node:http'
import createError from '@fastify/error'
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { FleetError, STANDALONE, describeInstance } from '../lib/fleet.js'
import type { Fleet, FleetStatus, InstanceInfo } from '../lib/fleet.js'
import type { ProxyMetrics } from '../lib/metrics.js'
import { CloseCode, CloseReason } from '../lib/protocol/codes.js'
import { publicDetail, publicSummary } from '../lib/registry.js'
import type { ConnectionDetail, ConnectionSummary, SessionRegistry } from '../lib/registry.js'
import { digest, matchesAny } from '../lib/secrets.js'

export interface AdminOptions {
  sessions: SessionRegistry
  metrics: ProxyMetrics
  instanceId: string
  /** When set, the admin routes need `Authorization: Bearer <adminToken>`; when unset, a loopback client. */
  adminToken?: string
  /** False before start-up completes and while draining. */
  isReady: () => boolean
  /** Lets `/readyz` say "draining" rather than "starting" when not ready. */
  isDraining?: () => boolean
  /** The fleet registry (REDIS_URL). Without it the fleet-wide routes answer for this instance alone. */
  fleet?: Fleet
  /** When this instance started, for `/instances`; default: when the plugin is registered. */
  startedAt?: Date
}

/** What a session closed through `DELETE /connections/:id` sends its client. */
export const ADMIN_CLOSE_CODE = CloseCode.normal
export const ADMIN_CLOSE_REASON = CloseReason.admin

/** Live admin pages (event streams) open at once; one more gets 503. */
export const MAX_ADMIN_STREAMS = 16
/** How often an event stream looks for changes; it sends only what changed. */
const STREAM_INTERVAL_MS = 250
/** Another instance's session is asked for at most this often per stream (each ask is a request to that instance). */
const REMOTE_DETAIL_INTERVAL_MS = 1000
/** A comment line this often keeps idle streams open through proxies. */
const STREAM_KEEPALIVE_MS = 15_000

export const AdminUnauthorizedError = createError('ADMIN_UNAUTHORIZED', 'Admin routes need "Authorization: Bearer <ADMIN_TOKEN>"', 401)
export const AdminForbiddenError = createError('ADMIN_FORBIDDEN', 'Admin routes answer loopback clients only while ADMIN_TOKEN is unset', 403)
export const SessionNotFoundError = createError<[string]>('SESSION_NOT_FOUND', 'No live session with id "%s"', 404)
export const TooManyStreamsError = createError('ADMIN_TOO_MANY_STREAMS', `${MAX_ADMIN_STREAMS} admin event streams are already open on this instance; close an admin page and retry`, 503)

/** Files shipped at the package root, found from `plugins/` in source and `dist/plugins/` after a build. */
const PACKAGE_ROOTS = [new URL('../', import.meta.url), new URL('../../', import.meta.url)]

/** The admin page: web/admin/ at the package root, served as is (no build step). */
const PAGE_FILES = {
  'index.html': 'text/html; charset=utf-8',
  'admin.js': 'text/javascript; charset=utf-8',
  'admin.css': 'text/css; charset=utf-8'
} as const
type PageFile = keyof typeof PAGE_FILES

/**
 * The page holds no data (it fetches it with the token the operator types), so it may
 * load without a token; everything it may do is pinned down here: its own scripts and
 * styles only, requests to this origin only, no framing (the close button).
 */
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache'
}

interface ListQuery { scope?: 'local' | 'fleet', tag?: string }
interface EventsQuery extends ListQuery { session?: string }

const LIST_QUERY_PROPERTIES = {
  scope: { type: 'string', enum: ['local', 'fleet'] },
  tag: { type: 'string', minLength: 1, maxLength: 200 }
}
const listQuerySchema = { type: 'object', properties: LIST_QUERY_PROPERTIES }
const eventsQuerySchema = { type: 'object', properties: { ...LIST_QUERY_PROPERTIES, session: { type: 'string', minLength: 1, maxLength: 200 } } }

const admin: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { sessions, metrics, instanceId, isReady, isDraining, fleet } = validated(options)
  const startedAt = options.startedAt ?? new Date()
  const authorize = options.adminToken === undefined ? loopbackOnly : bearer(options.adminToken)
  // With a token the page is an empty shell until the operator types it; without one, loopback only like the API.
  const pageAccess = options.adminToken === undefined ? loopbackOnly : async () => {}
  const openapi = (await readShipped('openapi.yaml')).toString('utf8')
  const page = Object.fromEntries(await Promise.all(Object.keys(PAGE_FILES).map(async (file) => [file, await readShipped(`web/admin/${file}`)]))) as Record<PageFile, Buffer>
  const streams = new Set<ServerResponse>()

  app.setErrorHandler(sendError)

  // Probes and scrapers poll these; keep their request logs out of info.
  app.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }))

  app.get('/readyz', { logLevel: 'warn' }, async (_request, reply) => {
    if (isReady()) return { status: 'ready' }
    return reply.code(503).send({ status: isDraining?.() === true ? 'draining' : 'starting' })
  })

  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })

  app.get('/openapi.yaml', async (_request, reply) => {
    return reply.type('application/yaml; charset=utf-8').send(openapi)
  })

  // ── sessions and instances ──────────────────────────────────────────────────

  function localSummaries (tag: string | undefined): ConnectionSummary[] {
    return Array.from(sessions, (session) => publicSummary(session, instanceId)).filter((summary) => tagged(summary, tag))
  }

  async function listConnections ({ scope, tag }: ListQuery): Promise<{ instance: string, connections: ConnectionSummary[], fleet?: FleetStatus }> {
    const local = localSummaries(tag)
    if (scope !== 'fleet') return { instance: instanceId, connections: local }
    if (fleet === undefined) return { instance: instanceId, connections: local, fleet: STANDALONE }
    const remote = await fleet.connections()
    return { instance: instanceId, connections: [...local, ...remote.connections.filter((summary) => tagged(summary, tag))], fleet: remote.fleet }
  }

  async function listInstances (): Promise<{ instances: InstanceInfo[], fleet: FleetStatus }> {
    const self = describeInstance({ instance: instanceId, startedAt, sessions, isReady })
    if (fleet === undefined) return { instances: [self], fleet: STANDALONE }
    const others = await fleet.instances()
    return { instances: [self, ...others.instances], fleet: others.fleet }
  }

  function localDetail (id: string): ConnectionDetail | undefined {
    const session = sessions.get(id)
    return session === undefined ? undefined : publicDetail(session, instanceId)
  }

  /** Any session of the fleet: this instance's first, without touching Redis. */
  async function detailOf (id: string): Promise<ConnectionDetail | undefined> {
    return localDetail(id) ?? await fleet?.detail(id)
  }

  function closeLocal (id: string): boolean {
    const session = sessions.get(id)
    if (session === undefined) return false
    app.log.info({ sessionId: session.id }, 'session closed by admin request')
    session.close(ADMIN_CLOSE_CODE, ADMIN_CLOSE_REASON)
    return true
  }

  fleet?.serve({ detail: localDetail, close: closeLocal })

  app.get<{ Querystring: ListQuery }>('/connections', { onRequest: authorize, schema: { querystring: listQuerySchema } }, async (request) => {
    return await listConnections(request.query)
  })

  app.get<{ Params: { id: string } }>('/connections/:id', { onRequest: authorize }, async (request) => {
    const detail = await detailOf(request.params.id)
    if (detail === undefined) throw new SessionNotFoundError(request.params.id)
    return detail
  })

  app.delete<{ Params: { id: string } }>('/connections/:id', { onRequest: authorize }, async (request, reply) => {
    const { id } = request.params
    const closed = closeLocal(id) || await fleet?.close(id) === true
    if (!closed) throw new SessionNotFoundError(id)
    return reply.code(204).send()
  })

  app.get('/instances', { onRequest: authorize }, listInstances)

  // ── the live admin page ─────────────────────────────────────────────────────

  app.get('/admin', { onRequest: pageAccess }, async (_request, reply) => {
    return reply.headers(PAGE_HEADERS).type(PAGE_FILES['index.html']).send(page['index.html'])
  })
  for (const file of ['admin.js', 'admin.css'] as const) {
    app.get(`/admin/${file}`, { onRequest: pageAccess }, async (_request, reply) => {
      return reply.headers(PAGE_HEADERS).type(PAGE_FILES[file]).send(page[file])
    })
  }

  /**
   * Server-sent events for the page, fetched with the Authorization header (EventSource
   * cannot send one, and the token never goes in a URL). Without `session`: the
   * `connections` and `instances` lists; with it: that session's `session` detail, then
   * `gone` when it ends. Each event is sent when its content changes.
   */
  app.get<{ Querystring: EventsQuery }>('/admin/events', { onRequest: authorize, schema: { querystring: eventsQuerySchema } }, async (request, reply) => {
    if (streams.size >= MAX_ADMIN_STREAMS) throw new TooManyStreamsError()
    const { session: id } = request.query
    let remoteAskedAt = 0
    const source = id === undefined
      ? async (): Promise<StreamEvent[]> => [['connections', await listConnections(request.query)], ['instances', await listInstances()]]
      : async (): Promise<StreamEvent[]> => {
        const local = localDetail(id)
        if (local !== undefined) return [['session', local]]
        if (Date.now() - remoteAskedAt < REMOTE_DETAIL_INTERVAL_MS) return []
        remoteAskedAt = Date.now()
        try {
          const remote = await fleet?.detail(id)
          return [remote === undefined ? ['gone', { id }] : ['session', remote]]
        } catch (error) {
          if (error instanceof FleetError) return [['problem', { code: error.code, message: error.message }]]
          throw error
        }
      }
    reply.hijack()
    openStream(reply.raw, source, streams, request.log)
  })

  app.addHook('preClose', async () => {
    for (const stream of streams) stream.end()
  })
}

type StreamEvent = [event: string, data: unknown]

function openStream (raw: ServerResponse, source: () => Promise<StreamEvent[]>, streams: Set<ServerResponse>, log: FastifyRequest['log']): void {
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    // nginx and similar proxies must pass events through as they come.
    'x-accel-buffering': 'no',
    // An ended stream takes its connection with it, so a closing server does not wait on a kept-alive socket.
    connection: 'close'
  })
  streams.add(raw)
  const last = new Map<string, string>()
  let busy = false
  const tick = async (): Promise<void> => {
    // A slow reader gets the next state when it has caught up, not a backlog.
    if (busy || raw.writableNeedDrain || raw.destroyed) return
    busy = true
    try {
      for (const [event, data] of await source()) {
        const json = JSON.stringify(data)
        if (last.get(event) === json) continue
        last.set(event, json)
        if (!raw.destroyed) raw.write(`event: ${event}\ndata: ${json}\n\n`)
      }
    } catch (error) {
      log.error({ err: error }, 'admin event stream failed')
      raw.end()
    } finally {
      busy = false
    }
  }
  const timer = setInterval(tick, STREAM_INTERVAL_MS)
  const keepAlive = setInterval(() => { if (!raw.destroyed) raw.write(': keep-alive\n\n') }, STREAM_KEEPALIVE_MS)
  raw.on('close', () => {
    clearInterval(timer)
    clearInterval(keepAlive)
    streams.delete(raw)
  })
  tick().catch(() => {})
}

function tagged (summary: ConnectionSummary, tag: string | undefined): boolean {
  return tag === undefined || (Array.isArray(summary.tags) && summary.tags.includes(tag))
}

export default admin

function validated (options: AdminOptions): AdminOptions {
  const problems = []
  if (typeof options.sessions?.get !== 'function') problems.push('`sessions` (the SessionRegistry)')
  if (typeof options.metrics?.registry?.metrics !== 'function') problems.push('`metrics` (from createMetrics)')
  if (typeof options.instanceId !== 'string') problems.push('`instanceId` (a string)')
  if (typeof options.isReady !== 'function') problems.push('`isReady` (a function returning a boolean)')
  if (options.fleet !== undefined && typeof options.fleet.connections !== 'function') problems.push('`fleet` (a Fleet) or nothing')
  if (options.adminToken !== undefined && (typeof options.adminToken !== 'string' || options.adminToken === '')) {
    problems.push('`adminToken` as a non-empty string or undefined')
  }
  if (problems.length > 0) throw new TypeError(`admin plugin: pass ${problems.join(', ')}`)
  return options
}

/** Requires the admin bearer token, compared in constant time over digests so its length stays private. */
function bearer (token: string) {
  const expected = [digest(token)]
  return async function requireAdminToken (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const presented = /^Bearer[ \t]+(.*?)[ \t]*$/i.exec(request.headers.authorization ?? '')?.[1]
    if (presented === undefined || presented === '') {
      reply.header('WWW-Authenticate', 'Bearer realm="admin"')
      throw new AdminUnauthorizedError()
    }
    if (!matchesAny(presented, expected)) {
      reply.header('WWW-Authenticate', 'Bearer realm="admin", error="invalid_token"')
      throw new AdminUnauthorizedError()
    }
  }
}

/** Without a token, admin answers the machine itself only. The socket's peer, never X-Forwarded-For. */
async function loopbackOnly (request: FastifyRequest): Promise<void> {
  if (!isLoopback(request.socket.remoteAddress)) throw new AdminForbiddenError()
}

export function isLoopback (address: string | undefined): boolean {
  if (address === undefined) return false
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  return v4.startsWith('127.') || address === '::1'
}

/** Stable error bodies for these routes, whatever error handler the app sets elsewhere. */
function sendError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const statusCode = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500
  // Fleet and stream-limit answers are expected conditions with a code and advice; other 5xx are bugs.
  const known = statusCode < 500 || error instanceof FleetError || error instanceof TooManyStreamsError
  if (!known) request.log.error({ err: error }, 'admin route failed')
  const code = error.validation !== undefined ? 'ADMIN_INVALID_QUERY' : error.code
  return reply.code(statusCode).send({
    statusCode,
    code: known ? (code ?? 'ADMIN_BAD_REQUEST') : 'ADMIN_INTERNAL_ERROR',
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: known ? error.message : 'The admin route failed; see the server log'
  })
}

async function readShipped (path: string): Promise<Buffer> {
  const candidates = PACKAGE_ROOTS.map((root) => new URL(path, root))
  for (const candidate of candidates) {
    try {
      return await readFile(candidate)
    } catch {}
  }
  throw new Error(`admin plugin: ${path} not found at ${candidates.map((url) => url.pathname).join(' or ')}; ship it at the package root`)
}
