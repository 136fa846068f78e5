// Small stand-ins for live sessions and a helper that serves the admin plugin on
// a real loopback socket.

import Fastify, { type FastifyInstance } from 'fastify'
import admin, { type AdminOptions } from '../../plugins/admin.js'
import { createMetrics, type ProxyMetrics } from '../../lib/metrics.js'
import { SessionRegistry, type ConnectionDetail, type ConnectionSummary, type LiveSession, type TimelineEvent, type TypeCounts } from '../../lib/registry.js'

export interface FakeCounts {
  upstreamSent?: TypeCounts
  upstreamReceived?: TypeCounts
  clientSent?: TypeCounts
  clientReceived?: TypeCounts
}

/** A LiveSession with fixed counts that records how it was closed. */
export class FakeSession implements LiveSession {
  readonly id: string
  readonly closes: Array<{ code: number, reason: string }> = []
  counts: Required<FakeCounts>
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
  }

  summary (): ConnectionSummary {
    return {
      id: this.id,
      startedAt: '2025-01-01T00:00:00.000Z',
      remoteAddress: '127.0.0.1',
      phase: 'ready',
      responseInProgress: false,
      activeResponseId: null,
      upstream: { state: 'open', sent: { ...this.counts.upstreamSent }, received: { ...this.counts.upstreamReceived } },
      client: { sent: { ...this.counts.clientSent }, received: { ...this.counts.clientReceived } },
      pending: { responseCreate: 0, sessionUpdate: 0, functionCalls: 0 }
    }
  }

  detail (): ConnectionDetail {
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
}

/** Builds a Fastify app with only the admin plugin and listens on loopback. */
export async function startAdmin (options: Partial<Pick<AdminOptions, 'adminToken' | 'instanceId'>> = {}): Promise<AdminServer> {
  const sessions = new SessionRegistry()
  const metrics = createMetrics(sessions)
  const ready = { value: true, draining: false }
  const app = Fastify({ logger: false })
  await app.register(admin, {
    sessions,
    metrics,
    instanceId: options.instanceId ?? 'test-instance',
    adminToken: options.adminToken,
    isReady: () => ready.value,
    isDraining: () => ready.draining
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url, sessions, metrics, ready }
}
