// Composes the product from its plugins: the realtime route and the admin API,
// sharing one session registry and one metrics registry, the talk-to-the-agent page
// at `/`, the fleet registry when REDIS_URL is set, plus the drain logic a load
// balancer relies on.

import { randomUUID } from 'node:crypto'
import Fastify, { LogController } from 'fastify'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { ProxyConfig } from './lib/config.js'
import type { EngineTimings } from './lib/engine/engine.js'
import { Fleet } from './lib/fleet.js'
import { PLUGIN_LIMITS } from './lib/limits.js'
import { createMetrics } from './lib/metrics.js'
import type { ProxyMetrics } from './lib/metrics.js'
import { CloseCode, CloseReason, Refusals } from './lib/protocol/codes.js'
import { SessionRegistry } from './lib/registry.js'
import admin from './plugins/admin.js'
import demo from './plugins/demo.js'
import realtime, { CONVERSE_PATH, refuseUpgrades } from './plugins/realtime.js'

/** What a client still connected when the drain deadline passes sees. */
export const DRAIN_CLOSE_CODE = CloseCode.serviceRestart
export const DRAIN_CLOSE_REASON = CloseReason.drain

export interface AppOptions {
  config: ProxyConfig
  /** The upstream to use (the config's, or the embedded simulator's). */
  upstreamUrl: string
  logger: Logger
  instanceId?: string
  engine?: EngineTimings
}

export type Lifecycle = 'starting' | 'ready' | 'draining'

export interface ProxyApp {
  app: FastifyInstance
  sessions: SessionRegistry
  metrics: ProxyMetrics
  instanceId: string
  /** The fleet registry, when REDIS_URL is set: joins once the app is ready, leaves when it closes. */
  fleet: Fleet | undefined
  readonly lifecycle: Lifecycle
  /** Call once listening: /readyz turns 200. */
  markReady (): void
  /**
   * Graceful drain: /readyz 503 and new upgrades 503 at once; sessions in the middle
   * of a response may finish that turn until `deadlineMs`; then every client is
   * closed with 1012 and a reason, and the server closes.
   */
  drain (deadlineMs: number): Promise<void>
}

export async function buildApp (options: AppOptions): Promise<ProxyApp> {
  const { config } = options
  const instanceId = options.instanceId ?? randomUUID()
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // Probes and scrapes would drown the session logs; sessions log their own lines.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true
  })
  const sessions = new SessionRegistry()
  const metrics = createMetrics(sessions)
  let lifecycle: Lifecycle = 'starting'
  const isReady = (): boolean => lifecycle === 'ready'
  const startedAt = new Date()

  const fleet = config.redisUrl === undefined
    ? undefined
    : new Fleet({ redisUrl: config.redisUrl, instance: instanceId, startedAt, sessions, isReady, logger: options.logger })
  if (fleet !== undefined) {
    app.addHook('onReady', async () => fleet.start())
    app.addHook('onClose', async () => await fleet.stop())
  }

  await app.register(admin, {
    sessions,
    metrics,
    instanceId,
    startedAt,
    ...(fleet === undefined ? {} : { fleet }),
    ...(config.adminToken === undefined ? {} : { adminToken: config.adminToken }),
    isReady,
    isDraining: () => lifecycle === 'draining'
  })
  await app.register(demo, {
    simulator: config.upstreamUrl === undefined,
    authRequired: config.proxyAuthTokens.length > 0,
    model: config.model,
    conversePath: CONVERSE_PATH
  })
  await app.register(realtime, {
    upstreamUrl: options.upstreamUrl,
    ...(config.openaiApiKey === undefined ? {} : { apiKey: config.openaiApiKey }),
    apiKeyHeader: config.openaiAuthHeader,
    models: config.models,
    functionEndpointAllowlist: config.functionEndpointAllowlist,
    authTokens: config.proxyAuthTokens,
    allowedOrigins: config.allowedOrigins,
    ...Object.fromEntries(PLUGIN_LIMITS.map((row) => [row.option, config[row.option]])),
    ...(options.engine === undefined ? {} : { engine: options.engine }),
    sessions,
    metrics,
    isAccepting: () => lifecycle === 'ready'
  })

  return {
    app,
    sessions,
    metrics,
    instanceId,
    fleet,
    get lifecycle () { return lifecycle },
    markReady () {
      if (lifecycle === 'starting') lifecycle = 'ready'
    },
    async drain (deadlineMs: number) {
      if (lifecycle === 'draining') return
      lifecycle = 'draining'
      // An upgrade arriving mid-drain must be answered and destroyed, or close() hangs.
      refuseUpgrades(app.server, Refusals.draining.code, Refusals.draining.message)
      app.log.info({ sessions: sessions.size, deadlineMs }, 'draining')
      const deadline = Date.now() + deadlineMs
      while (Date.now() < deadline && [...sessions].some((s) => s.inTurn)) {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      for (const session of sessions) session.close(DRAIN_CLOSE_CODE, DRAIN_CLOSE_REASON)
      await app.close()
    }
  }
}
