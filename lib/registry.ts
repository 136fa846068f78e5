// The live-session registry shared by the realtime route (which adds and removes
// sessions) and the admin API (which reads and closes them). Field names here are
// public contract of `/connections` (openapi.yaml): ConnectionSummary / ConnectionDetail.

import type { EnginePhase } from './engine/engine.js'

type SessionPhase = EnginePhase
export type UpstreamState = 'connecting' | 'open' | 'closed'
export type EventDirection = 'client->proxy' | 'proxy->upstream' | 'upstream->proxy' | 'proxy->client'

/** Counts of messages by `type` (binary frames counted as "binary"). */
export type TypeCounts = Record<string, number>

export interface ConnectionSummary {
  id: string
  startedAt: string
  remoteAddress: string
  phase: SessionPhase
  responseInProgress: boolean
  activeResponseId: string | null
  upstream: { state: UpstreamState, sent: TypeCounts, received: TypeCounts }
  client: { sent: TypeCounts, received: TypeCounts }
  pending: { responseCreate: number, sessionUpdate: number, functionCalls: number }
}

export interface TimelineEvent {
  at: string
  direction: EventDirection
  type: string
  responseId?: string
  itemId?: string
  eventId?: string
  code?: string
  /** Audio payload size; consecutive audio frames fold into one entry. */
  bytes?: number
  frames?: number
}

export interface ConnectionDetail extends ConnectionSummary {
  events: TimelineEvent[]
}

/** What the registry needs from a live session. */
export interface LiveSession {
  readonly id: string
  summary (): ConnectionSummary
  detail (): ConnectionDetail
  /** Close both legs; the client gets a close frame with this code and reason. */
  close (code: number, reason: string): void
}

export class SessionRegistry {
  readonly #sessions = new Map<string, LiveSession>()

  add (session: LiveSession): void {
    this.#sessions.set(session.id, session)
  }

  delete (id: string): void {
    this.#sessions.delete(id)
  }

  get (id: string): LiveSession | undefined {
    return this.#sessions.get(id)
  }

  get size (): number {
    return this.#sessions.size
  }

  [Symbol.iterator] (): IterableIterator<LiveSession> {
    return this.#sessions.values()
  }
}
