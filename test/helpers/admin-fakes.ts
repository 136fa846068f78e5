// Small stand-ins for live sessions and a helper that serves the admin plugin on
// a real loopback socket.

import Fastify, { type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import admin, { type AdminOptions } from '../../plugins/admin.js'
import { Fleet } from '../../lib/fleet.js'
import { createMetrics, type ProxyMetrics } from '../../lib/metrics.js'
import { SessionRegistry, type LiveSession, type SessionDetail, type SessionSummary, type TimelineEvent, type TypeCounts } from '../../lib/registry.js'

export interface FakeCounts {
  upstreamSent?: TypeCounts
  upstreamReceived?: TypeCounts
  clientSent?: TypeCounts
  clientReceived?: TypeCounts
  tags?: string[]
}

/** A LiveSession with fixed counts that records how it was closed. */
export class FakeSession implements LiveSession {
  readonly id: string
  readonly closes: Array<{ code: number, reason: string }> = []
  counts: Required<Omit<FakeCounts, 'tags'>>
  tags: string[]
  responseInProgress = false

  get inTurn (): boolean {
    return this.responseInProgress
  }

  events: TimelineEvent[] = [
    { at: '2025-01-01T00:00:00.000Z', direction: 'client->proxy', type: 'Settings' },
    { at: '2025-01-01T00:00:00.010Z', direction: 'proxy->upstream', type: 'session.update', eventId: 'evt_1' },
    { at: '2025-01-01T00:00:01.000Z', direction: 'client->proxy', type: 'binary', bytes: 1920, frames: 3 },
    { at: '2025-01-01T00:00:02.000Z', direction: 'upstream->proxy', type: 'response.done', responseId: 'resp_1', itemId: 'item_1' },
    { at: '2025-01-01T00:00:02.100Z', direction: 'proxy->client', type: 'Error', code: 'X' }
  ]

  constructor (id: string, counts: FakeCounts = {}) {
    this.id = id
    this.counts = {
      upstreamSent: counts.upstreamSent ?? { 'session.update': 1, 'response.create': 2 },
      upstreamReceived: counts.upstreamReceived ?? { 'response.done': 2 },
      clientSent: counts.clientSent ?? { Welcome: 1, SettingsApplied: 1, binary: 40 },
      clientReceived: counts.clientReceived ?? { Settings: 1, binary: 120 }
    }
    this.tags = counts.tags ?? []
  }

  summary (): SessionSummary {
    return {
      id: this.id,
      startedAt: '2025-01-01T00:00:00.000Z',
      remoteAddress: '127.0.0.1',
      phase: 'ready',
      responseInProgress: this.responseInProgress,
      activeResponseId: this.responseInProgress ? 'resp_1' : null,
      upstream: { state: 'open', connects: 1, sent: { ...this.counts.upstreamSent }, received: { ...this.counts.upstreamReceived } },
      client: { sent: { ...this.counts.clientSent }, received: { ...this.counts.clientReceived } },
      pending: { responseCreate: 0, sessionUpdate: 0, functionCalls: 0 },
      tags: [...this.tags],
      usage: { responses: 2, inputTokens: 120, outputTokens: 80, inputAudioTokens: 40, outputAudioTokens: 60, cachedInputTokens: 10 }
    }
  }

  detail (): SessionDetail {
    return { ...this.summary(), events: [...this.events] }
  }

  close (code: number, reason: string): void {
    this.closes.push({ code, reason })
  }
}

export interface AdminServer {
  app: FastifyInstance
  /** http://127.0.0.1:PORT */
  url: string
  sessions: SessionRegistry
  metrics: ProxyMetrics
  ready: { value: boolean, draining: boolean }
  fleet: Fleet | undefined
}

export interface StartAdminOptions extends Partial<Pick<AdminOptions, 'adminToken' | 'instanceId'>> {
  /** Joins this fleet registry (short timings: writes every 100 ms, entries expire after 1 s). */
  redisUrl?: string
}

/** Builds a Fastify app with only the admin plugin (and a fleet registry when asked) and listens on loopback. */
export async function startAdmin (options: StartAdminOptions = {}): Promise<AdminServer> {
  const sessions = new SessionRegistry()
  const metrics = createMetrics(sessions)
  const ready = { value: true, draining: false }
  const instanceId = options.instanceId ?? 'test-instance'
  // As the real app (app.ts): a closing server does not wait for clients to hang up.
  const app = Fastify({ logger: false, forceCloseConnections: true })
  const fleet = options.redisUrl === undefined
    ? undefined
    : new Fleet({ redisUrl: options.redisUrl, instance: instanceId, startedAt: new Date(), sessions, isReady: () => ready.value, logger: app.log as unknown as Logger, publishIntervalMs: 100, entryTtlMs: 1000 })
  await app.register(admin, {
    sessions,
    metrics,
    instanceId,
    adminToken: options.adminToken,
    isReady: () => ready.value,
    isDraining: () => ready.draining,
    ...(fleet === undefined ? {} : { fleet })
  })
  if (fleet !== undefined) {
    fleet.start()
    app.addHook('onClose', async () => await fleet.stop())
  }
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url, sessions, metrics, ready, fleet }
}
