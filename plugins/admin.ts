// Operator routes: health, readiness, live connections, metrics and the OpenAPI
// document. Encapsulated on purpose: its error handler and auth hook apply to
// these routes only. `/connections*` need the admin token when one is set, or
// a loopback client when not; the other routes are open (probes and scrapers).

import { readFile } from 'node:fs/promises'
import { STATUS_CODES } from 'node:http'
import createError from '@fastify/error'
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ProxyMetrics } from '../lib/metrics.js'
import { CloseCode, CloseReason } from '../lib/protocol/codes.js'
import type { SessionRegistry } from '../lib/registry.js'
import { digest, matchesAny } from '../lib/secrets.js'

export interface AdminOptions {
  sessions: SessionRegistry
  metrics: ProxyMetrics
  instanceId: string
  /** When set, `/connections*` need `Authorization: Bearer <adminToken>`; when unset, a loopback client. */
  adminToken?: string
  /** False before start-up completes and while draining. */
  isReady: () => boolean
  /** Lets `/readyz` say "draining" rather than "starting" when not ready. */
  isDraining?: () => boolean
}

/** What a session closed through `DELETE /connections/:id` sends its client. */
export const ADMIN_CLOSE_CODE = CloseCode.normal
export const ADMIN_CLOSE_REASON = CloseReason.admin

export const AdminUnauthorizedError = createError('ADMIN_UNAUTHORIZED', 'Admin routes need "Authorization: Bearer <ADMIN_TOKEN>"', 401)
export const AdminForbiddenError = createError('ADMIN_FORBIDDEN', 'Admin routes answer loopback clients only while ADMIN_TOKEN is unset', 403)
export const SessionNotFoundError = createError<[string]>('SESSION_NOT_FOUND', 'No live session with id "%s"', 404)

/** The repo-root document, from `plugins/` in source and `dist/plugins/` after a build. */
const OPENAPI_CANDIDATES = [new URL('../openapi.yaml', import.meta.url), new URL('../../openapi.yaml', import.meta.url)]

const admin: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { sessions, metrics, instanceId, isReady, isDraining } = validated(options)
  const authorize = options.adminToken === undefined ? loopbackOnly : bearer(options.adminToken)
  const openapi = await readOpenApi()

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

  app.get('/connections', { onRequest: authorize }, async () => ({
    instance: instanceId,
    connections: Array.from(sessions, (session) => session.summary())
  }))

  app.get<{ Params: { id: string } }>('/connections/:id', { onRequest: authorize }, async (request) => {
    const session = sessions.get(request.params.id)
    if (session === undefined) throw new SessionNotFoundError(request.params.id)
    return session.detail()
  })

  app.delete<{ Params: { id: string } }>('/connections/:id', { onRequest: authorize }, async (request, reply) => {
    const session = sessions.get(request.params.id)
    if (session === undefined) throw new SessionNotFoundError(request.params.id)
    request.log.info({ sessionId: session.id }, 'session closed by admin request')
    session.close(ADMIN_CLOSE_CODE, ADMIN_CLOSE_REASON)
    return reply.code(204).send()
  })
}

export default admin

function validated (options: AdminOptions): AdminOptions {
  const problems = []
  if (typeof options.sessions?.get !== 'function') problems.push('`sessions` (the SessionRegistry)')
  if (typeof options.metrics?.registry?.metrics !== 'function') problems.push('`metrics` (from createMetrics)')
  if (typeof options.instanceId !== 'string') problems.push('`instanceId` (a string)')
  if (typeof options.isReady !== 'function') problems.push('`isReady` (a function returning a boolean)')
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
  if (statusCode >= 500) request.log.error({ err: error }, 'admin route failed')
  const known = statusCode < 500
  return reply.code(statusCode).send({
    statusCode,
    code: known ? (error.code ?? 'ADMIN_BAD_REQUEST') : 'ADMIN_INTERNAL_ERROR',
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: known ? error.message : 'The admin route failed; see the server log'
  })
}

async function readOpenApi (): Promise<string> {
  for (const candidate of OPENAPI_CANDIDATES) {
    try {
      return await readFile(candidate, 'utf8')
    } catch {}
  }
  throw new Error(`admin plugin: openapi.yaml not found at ${OPENAPI_CANDIDATES.map((url) => url.pathname).join(' or ')}; ship it beside the package root`)
}
