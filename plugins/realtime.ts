// The Deepgram Voice Agent endpoint, `GET /v1/agent/converse`, as a Fastify plugin.
// Register it in any Fastify 5 app:
//
//   await app.register(realtime, { upstreamUrl, apiKey })
//
// Client auth, Origin checks, the session limit and draining are decided before the
// upgrade (HTTP 401/403/503), so a refused client never gets a WebSocket.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import websocket from '@fastify/websocket'
import type { Logger } from 'pino'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { EngineOptions } from '../lib/engine.js'
import { LIMIT_DEFAULTS } from '../lib/config.js'
import { createMetrics } from '../lib/metrics.js'
import type { ProxyMetrics } from '../lib/metrics.js'
import { SessionRegistry } from '../lib/registry.js'
import { CLOSE_HANDSHAKE_TIMEOUT_MS, Session } from '../lib/session.js'
import type { SessionLimits } from '../lib/session.js'
import { traceContextFrom } from '../lib/telemetry.js'

export const CONVERSE_PATH = '/v1/agent/converse'

export interface RealtimeOptions extends Partial<SessionLimits> {
  /** Upstream WebSocket URL including `?model=`. */
  upstreamUrl: string
  /** Sent upstream as `Authorization: Bearer …`; never logged. */
  apiKey?: string
  /** Tokens a client must present; empty = no client auth. */
  authTokens?: string[]
  /** Allowed `Origin` values for browser clients; empty = any. */
  allowedOrigins?: string[]
  /** Sessions this instance accepts at once (503 beyond). */
  maxSessions?: number
  maxClientFrameBytes?: number
  engine?: Partial<Omit<EngineOptions, 'idPrefix'>>
  /** Shared with the admin plugin; one is created when omitted. */
  sessions?: SessionRegistry
  metrics?: ProxyMetrics
  /** False while draining: new upgrades get 503. */
  isAccepting?: () => boolean
}

const AUTH_SCHEMES = ['token', 'bearer']

/** What a client sees when the server shuts down under it. */
export const SHUTDOWN_CLOSE_CODE = 1001
export const SHUTDOWN_CLOSE_REASON = 'server shutting down'

const realtime: FastifyPluginAsync<RealtimeOptions> = async (fastify, options) => {
  if (typeof options.upstreamUrl !== 'string' || !/^wss?:\/\//.test(options.upstreamUrl)) {
    throw new Error('realtime plugin: pass `upstreamUrl`, the OpenAI Realtime WebSocket URL (ws:// or wss://)')
  }
  const sessions = options.sessions ?? new SessionRegistry()
  const metrics = options.metrics ?? createMetrics(sessions)
  const tokens = (options.authTokens ?? []).map(digest)
  const allowedOrigins = options.allowedOrigins ?? []
  const maxSessions = options.maxSessions ?? LIMIT_DEFAULTS.maxSessions
  const isAccepting = options.isAccepting ?? (() => true)

  // Unset options take the same defaults as `npm start`.
  const limits: SessionLimits = {
    maxUpstreamFrameBytes: options.maxUpstreamFrameBytes ?? LIMIT_DEFAULTS.maxUpstreamFrameBytes,
    maxPendingAudioBytes: options.maxPendingAudioBytes ?? LIMIT_DEFAULTS.maxPendingAudioBytes,
    upstreamConnectTimeoutMs: options.upstreamConnectTimeoutMs ?? LIMIT_DEFAULTS.upstreamConnectTimeoutMs,
    maxClientBufferedBytes: options.maxClientBufferedBytes ?? LIMIT_DEFAULTS.maxClientBufferedBytes,
    slowClientTimeoutMs: options.slowClientTimeoutMs ?? LIMIT_DEFAULTS.slowClientTimeoutMs,
    maxClientMessagesPerSecond: options.maxClientMessagesPerSecond ?? LIMIT_DEFAULTS.maxClientMessagesPerSecond,
    upstreamPingIntervalMs: options.upstreamPingIntervalMs ?? LIMIT_DEFAULTS.upstreamPingIntervalMs,
    clientPingIntervalMs: options.clientPingIntervalMs ?? LIMIT_DEFAULTS.clientPingIntervalMs
  }

  let lastSessionEnded: (() => void) | undefined

  /**
   * app.close(): refuse upgrades from now on (answered and destroyed, or close() would
   * wait for them), close every session with a code and a reason (@fastify/websocket's
   * default sends none: clients see 1005), and wait until both legs of each are closed;
   * the close handshake timeout bounds that wait.
   */
  async function closeSessions (): Promise<void> {
    refuseUpgrades(fastify.server, 'SHUTTING_DOWN', 'This instance is shutting down; connect to another one.')
    for (const session of sessions) session.close(SHUTDOWN_CLOSE_CODE, SHUTDOWN_CLOSE_REASON)
    if (sessions.size === 0) return
    await new Promise<void>((resolve) => {
      lastSessionEnded = resolve
      setTimeout(resolve, 2 * CLOSE_HANDSHAKE_TIMEOUT_MS).unref()
    })
  }

  if (!fastify.hasDecorator('websocketServer')) {
    await fastify.register(websocket, {
      options: {
        maxPayload: options.maxClientFrameBytes ?? LIMIT_DEFAULTS.maxClientFrameBytes,
        perMessageDeflate: false,
        // Browsers authenticate with `Sec-WebSocket-Protocol: token, <key>`: select the
        // scheme, never the secret, or the browser aborts the handshake.
        handleProtocols: (protocols: Set<string>) => AUTH_SCHEMES.find((scheme) => protocols.has(scheme)) ?? false,
        ...{ closeTimeout: CLOSE_HANDSHAKE_TIMEOUT_MS } // not in @types/ws 8.18
      },
      preClose: closeSessions
    })
  } else {
    // The host registered @fastify/websocket (and its preClose) itself.
    fastify.addHook('preClose', closeSessions)
  }

  fastify.get(CONVERSE_PATH, {
    websocket: true,
    preValidation: async (request: FastifyRequest, reply: FastifyReply) => {
      const refusal = refuse(request)
      if (refusal === undefined) return
      metrics.sessionRejected(refusal.reason)
      await reply.code(refusal.status).header('Connection', 'close').send({ statusCode: refusal.status, code: refusal.code, message: refusal.message })
    }
  }, (socket, request) => {
    const trace = traceContextFrom(request.headers.traceparent)
    const session = new Session({
      client: socket,
      remoteAddress: request.socket.remoteAddress ?? 'unknown',
      // Fastify's logger is pino (the app passes one in); sessions use pino's full API.
      // One child per session (not request.log's child's child): it lives as long as the session.
      logger: fastify.log as unknown as Logger,
      logBindings: { traceId: trace.traceId, spanId: trace.spanId, traceFlags: trace.traceFlags },
      metrics,
      upstreamUrl: options.upstreamUrl,
      apiKey: options.apiKey,
      ...limits,
      engine: options.engine,
      onClosed: (closed) => {
        sessions.delete(closed.id)
        metrics.sessionEnded(closed.summary())
        fastify.log.info({ sessionId: closed.id }, 'session ended')
        if (sessions.size === 0) lastSessionEnded?.()
      }
    })
    sessions.add(session)
    metrics.sessionStarted()
    fastify.log.info({ sessionId: session.id, remoteAddress: request.socket.remoteAddress }, 'session started')
  })

  function refuse (request: FastifyRequest): { status: number, code: string, reason: string, message: string } | undefined {
    if (!isAccepting()) return { status: 503, code: 'DRAINING', reason: 'draining', message: 'This instance is draining; connect to another one.' }
    const origin = request.headers.origin
    if (allowedOrigins.length > 0 && origin !== undefined && !allowedOrigins.includes(origin)) {
      return { status: 403, code: 'ORIGIN_NOT_ALLOWED', reason: 'origin', message: 'This Origin may not connect.' }
    }
    if (tokens.length > 0 && !presentsValidToken(request.raw, tokens)) {
      return { status: 401, code: 'UNAUTHORIZED', reason: 'auth', message: 'Missing or invalid token: send "Authorization: Token <token>", the subprotocols "token, <token>", or ?token=<token>.' }
    }
    if (sessions.size >= maxSessions) {
      return { status: 503, code: 'TOO_MANY_SESSIONS', reason: 'max_sessions', message: `This instance already serves ${maxSessions} sessions; try again later or another instance.` }
    }
    return undefined
  }
}

/**
 * From now on, every upgrade on `server` is answered 503 and its socket destroyed. Fastify
 * would answer 503 while closing but keep the socket, and server.close() would wait for it.
 */
export function refuseUpgrades (server: Server, code: string, message: string): void {
  const body = JSON.stringify({ statusCode: 503, code, message })
  const response = `HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  server.removeAllListeners('upgrade')
  server.on('upgrade', (_request, socket) => {
    socket.on('error', () => socket.destroy())
    socket.end(response, () => socket.destroy())
  })
}

/** The client's token, from the header, the subprotocol list or the query, in that order. */
export function clientToken (request: IncomingMessage): string | undefined {
  const authorization = request.headers.authorization
  if (authorization !== undefined) {
    const match = /^(token|bearer)\s+(\S+)$/i.exec(authorization.trim())
    if (match !== null) return match[2]
  }
  const protocols = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '')
  const scheme = protocols.findIndex((p) => AUTH_SCHEMES.includes(p.toLowerCase()))
  if (scheme >= 0 && protocols[scheme + 1] !== undefined) return protocols[scheme + 1]
  const query = new URL(request.url ?? '/', 'http://localhost').searchParams.get('token')
  return query ?? undefined
}

function presentsValidToken (request: IncomingMessage, tokens: Buffer[]): boolean {
  const presented = clientToken(request)
  if (presented === undefined) return false
  const candidate = digest(presented)
  // Every token compared, in constant time, whatever matches.
  return tokens.reduce((ok, token) => timingSafeEqual(token, candidate) || ok, false)
}

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

export default realtime
