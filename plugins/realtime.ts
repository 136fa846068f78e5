// The Deepgram Voice Agent endpoint, `GET /v1/agent/converse`, as a Fastify plugin.
// Register it in any Fastify 5 app:
//
//   await app.register(realtime, { upstreamUrl, apiKey })
//
// Client auth, Origin checks, the session limit and draining are decided before the
// upgrade (HTTP 401/403/503), so a refused client never gets a WebSocket. Every option
// is checked at registration; the limits and their defaults are lib/limits.ts.

import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import websocket from '@fastify/websocket'
import type { Logger } from 'pino'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { ENGINE_TIMINGS, type EngineTimings } from '../lib/engine/engine.js'
import { EndpointAllowlist } from '../lib/functions.js'
import { LIMIT_DEFAULTS, PLUGIN_LIMITS, limitProblem } from '../lib/limits.js'
import type { PluginLimits } from '../lib/limits.js'
import { createMetrics } from '../lib/metrics.js'
import type { ProxyMetrics } from '../lib/metrics.js'
import { CLOSE_HANDSHAKE_TIMEOUT_MS, CLOSE_TIMEOUT_OPTION, CloseCode, CloseReason, Refusals } from '../lib/protocol/codes.js'
import type { Refusal } from '../lib/protocol/codes.js'
import type { SettingsPolicy } from '../lib/mapping.js'
import { SessionRegistry } from '../lib/registry.js'
import { digest, matchesAny } from '../lib/secrets.js'
import { Session, sessionOptions } from '../lib/session.js'
import { traceContextFrom } from '../lib/telemetry.js'
import { API_KEY_HEADERS } from '../lib/upstream.js'
import type { ApiKeyHeader } from '../lib/upstream.js'

export const CONVERSE_PATH = '/v1/agent/converse'

export interface RealtimeOptions extends Partial<PluginLimits> {
  /** Upstream WebSocket URL including `?model=`. */
  upstreamUrl: string
  /** Sent upstream as `Authorization: Bearer …` (or `api-key: …`, see apiKeyHeader); never logged. */
  apiKey?: string
  /** `authorization` or `api-key` (Azure OpenAI); default: `api-key` for `*.openai.azure.com` URLs. */
  apiKeyHeader?: ApiKeyHeader
  /** Models a client's Settings may choose (`agent.think.provider.model`); the first is the default. Default: the URL's model only. */
  models?: string[]
  /** URL prefixes server-side functions (`functions[].endpoint`) may call; empty = none, they go to the client. */
  functionEndpointAllowlist?: string[]
  /** Tokens a client must present; empty = no client auth. */
  authTokens?: string[]
  /** Allowed `Origin` values for browser clients; empty = any. */
  allowedOrigins?: string[]
  /** Watchdog timings of the turn engine. */
  engine?: EngineTimings
  /** Shared with the admin plugin; one is created when omitted. */
  sessions?: SessionRegistry
  metrics?: ProxyMetrics
  /** False while draining: new upgrades get 503. */
  isAccepting?: () => boolean
}

const AUTH_SCHEMES = ['token', 'bearer']
/** The v5 SDK's browser bundle also offers `x-deepgram-session-id, <uuid>`. */
const SESSION_ID_PROTOCOL = 'x-deepgram-session-id'

/** What a client sees when the server shuts down under it. */
export const SHUTDOWN_CLOSE_CODE = CloseCode.goingAway
export const SHUTDOWN_CLOSE_REASON = CloseReason.shutdown

const realtime: FastifyPluginAsync<RealtimeOptions> = async (fastify, options) => {
  checkOptions(options)
  const sessions = options.sessions ?? new SessionRegistry()
  const metrics = options.metrics ?? createMetrics(sessions)
  const tokens = (options.authTokens ?? []).map(digest)
  const allowedOrigins = options.allowedOrigins ?? []
  const isAccepting = options.isAccepting ?? (() => true)
  // Unset options take the same defaults as `npm start`.
  const limits = { ...LIMIT_DEFAULTS }
  for (const row of PLUGIN_LIMITS) limits[row.option] = options[row.option] ?? row.default
  const { maxSessions, maxClientFrameBytes, ...sessionLimits } = limits
  const policy: SettingsPolicy = {
    models: options.models ?? [],
    functionEndpoints: EndpointAllowlist.parse(options.functionEndpointAllowlist ?? [], 'functionEndpointAllowlist')
  }

  let lastSessionEnded: (() => void) | undefined

  // What every session shares, built once (`policy` and `apiKeyHeader` are for the session to read once it takes them).
  const shared = sessionOptions({
    // Fastify's logger is pino (the app passes one in); sessions use pino's full API.
    // One child per session (not request.log's child's child): it lives as long as the session.
    logger: fastify.log as unknown as Logger,
    metrics,
    upstreamUrl: options.upstreamUrl,
    apiKey: options.apiKey,
    ...(options.apiKeyHeader === undefined ? {} : { apiKeyHeader: options.apiKeyHeader }),
    policy,
    ...sessionLimits,
    onClosed: (closed: Session) => {
      sessions.delete(closed.id)
      metrics.sessionEnded(closed.summary())
      fastify.log.info({ sessionId: closed.id }, 'session ended')
      if (sessions.size === 0) lastSessionEnded?.()
    }
  }, options.engine)

  /**
   * app.close(): refuse upgrades from now on (answered and destroyed, or close() would
   * wait for them), close every session with a code and a reason (@fastify/websocket's
   * default sends none: clients see 1005), and wait until both legs of each are closed;
   * the close handshake timeout bounds that wait.
   */
  async function closeSessions (): Promise<void> {
    refuseUpgrades(fastify.server, Refusals.shuttingDown.code, Refusals.shuttingDown.message)
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
        maxPayload: maxClientFrameBytes,
        perMessageDeflate: false,
        // Browsers authenticate with `Sec-WebSocket-Protocol: token, <key>`: select the
        // scheme, never the secret, exactly as offered (`Token` too), or the browser aborts
        // the handshake. An offer with nothing to select was refused before the upgrade.
        handleProtocols: (protocols: Set<string>) => selectedProtocol([...protocols]) ?? false,
        ...CLOSE_TIMEOUT_OPTION
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
    releaseUpgrade(socket, request.raw)
    const trace = traceContextFrom(request.headers.traceparent)
    const session = new Session(shared, socket, request.socket.remoteAddress ?? 'unknown',
      { traceId: trace.traceId, spanId: trace.spanId, traceFlags: trace.traceFlags })
    sessions.add(session)
    metrics.sessionStarted()
    fastify.log.info({ sessionId: session.id, remoteAddress: request.socket.remoteAddress }, 'session started')
  })

  function refuse (request: FastifyRequest): Refusal | undefined {
    if (!isAccepting()) return Refusals.draining
    const origin = request.headers.origin
    if (allowedOrigins.length > 0 && origin !== undefined && !allowedOrigins.includes(origin)) return Refusals.origin
    if (tokens.length > 0 && !presentsValidToken(request.raw, tokens)) return Refusals.auth
    const offered = offeredProtocols(request.raw)
    if (offered.length > 0 && selectedProtocol(offered) === undefined) return Refusals.subprotocol
    if (sessions.size >= maxSessions) return Refusals.tooManySessions(maxSessions)
    return undefined
  }
}

/** Every option checked at registration, with a message that says what to pass. */
function checkOptions (options: RealtimeOptions): void {
  const problems: string[] = []
  if (typeof options.upstreamUrl !== 'string' || !/^wss?:\/\//.test(options.upstreamUrl)) {
    problems.push('`upstreamUrl`, the OpenAI Realtime WebSocket URL (ws:// or wss://)')
  }
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey === '')) problems.push('`apiKey` as a non-empty string, or leave it out')
  if (options.apiKeyHeader !== undefined && !API_KEY_HEADERS.includes(options.apiKeyHeader)) problems.push(`\`apiKeyHeader\` as one of ${API_KEY_HEADERS.join(', ')}, or leave it out`)
  for (const name of ['authTokens', 'allowedOrigins', 'models', 'functionEndpointAllowlist'] as const) {
    const value = options[name]
    if (value !== undefined && (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item !== ''))) {
      problems.push(`\`${name}\` as an array of non-empty strings`)
    }
  }
  for (const row of PLUGIN_LIMITS) {
    const value = options[row.option]
    if (value === undefined) continue
    const problem = limitProblem(row, value)
    if (problem !== undefined) problems.push(`\`${row.option}\` as ${problem}`)
  }
  if (Array.isArray(options.functionEndpointAllowlist) && options.functionEndpointAllowlist.every((item) => typeof item === 'string')) {
    try {
      EndpointAllowlist.parse(options.functionEndpointAllowlist, '`functionEndpointAllowlist`')
    } catch (error) {
      problems.push((error as Error).message.replace(' takes ', ' as '))
    }
  }
  if (options.engine !== undefined) {
    if (typeof options.engine !== 'object' || options.engine === null) {
      problems.push('`engine` as an object of watchdog timings ({ createAckMs, responseMaxMs, … })')
    } else {
      for (const [name, value] of Object.entries(options.engine)) {
        if (!(ENGINE_TIMINGS as readonly string[]).includes(name)) problems.push(`only known timings in \`engine\` (${ENGINE_TIMINGS.join(', ')}): \`engine.${name}\` is not one`)
        else if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) problems.push(`\`engine.${name}\` as a non-negative integer`)
      }
    }
  }
  if (options.sessions !== undefined && !(options.sessions instanceof SessionRegistry)) problems.push('`sessions` as a SessionRegistry (shared with the admin plugin), or leave it out')
  if (options.metrics !== undefined && typeof options.metrics?.registry?.metrics !== 'function') problems.push('`metrics` from createMetrics, or leave it out')
  if (options.isAccepting !== undefined && typeof options.isAccepting !== 'function') problems.push('`isAccepting` as a function returning a boolean')
  if (problems.length > 0) throw new TypeError(`realtime plugin: pass ${problems.join('; ')}`)
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

/** The subprotocols a client offers, in order. */
/**
 * Lets the upgrade's request and reply go once the WebSocket is open, instead of keeping
 * them (≈ 3 KB of heap) for the session's life: @fastify/websocket's own `error`
 * listener on the WebSocket closes over both (the session listens for errors itself),
 * and the upgraded TCP socket still points to the `ServerResponse` it was assigned.
 */
function releaseUpgrade (socket: WebSocket, request: IncomingMessage): void {
  socket.removeAllListeners('error')
  const tcp = request.socket as Socket & { _httpMessage?: ServerResponse | null }
  tcp._httpMessage?.detachSocket(tcp)
}

function offeredProtocols (request: IncomingMessage): string[] {
  return (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '')
}

/**
 * The subprotocol to select, exactly as offered: the auth scheme (`token`, `bearer`, in
 * any case), else the SDK's session-id marker; never a secret. Undefined: nothing to select.
 */
export function selectedProtocol (offered: readonly string[]): string | undefined {
  return offered.find((protocol) => AUTH_SCHEMES.includes(protocol.toLowerCase())) ??
    offered.find((protocol) => protocol.toLowerCase() === SESSION_ID_PROTOCOL)
}

/** The client's token, from the header, the subprotocol list or the query, in that order. */
export function clientToken (request: IncomingMessage): string | undefined {
  const authorization = request.headers.authorization
  if (authorization !== undefined) {
    const match = /^(token|bearer)\s+(\S+)$/i.exec(authorization.trim())
    if (match !== null) return match[2]
  }
  const protocols = offeredProtocols(request)
  const scheme = protocols.findIndex((p) => AUTH_SCHEMES.includes(p.toLowerCase()))
  if (scheme >= 0 && protocols[scheme + 1] !== undefined) return protocols[scheme + 1]
  const query = new URL(request.url ?? '/', 'http://localhost').searchParams.get('token')
  return query ?? undefined
}

function presentsValidToken (request: IncomingMessage, tokens: Buffer[]): boolean {
  const presented = clientToken(request)
  return presented !== undefined && matchesAny(presented, tokens)
}

export default realtime
