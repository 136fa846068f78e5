// The live-session registry shared by the realtime route (which adds and removes
// sessions) and the admin API (which reads and closes them). Field names here are
// public contract of `/connections` (openapi.yaml): ConnectionSummary / ConnectionDetail.

import type { EnginePhase } from './engine/engine.js'

type SessionPhase = EnginePhase
export type UpstreamState = 'connecting' | 'open' | 'closed'
export type EventDirection = 'client->proxy' | 'proxy->upstream' | 'upstream->proxy' | 'proxy->client'

/** Counts of messages by `type` (binary frames counted as "binary"). */
export type TypeCounts = Record<string, number>

/** The sums of the `usage` of every `response.done` of a session. */
export interface SessionUsage {
  responses: number
  inputTokens: number
  outputTokens: number
  inputAudioTokens: number
  outputAudioTokens: number
  cachedInputTokens: number
}

/** What a session reports about itself. */
export interface SessionSummary {
  id: string
  startedAt: string
  remoteAddress: string
  phase: SessionPhase
  responseInProgress: boolean
  activeResponseId: string | null
  /** `connects`: upstream connections opened (1, plus one per renewal or reconnect). */
  upstream: { state: UpstreamState, connects: number, sent: TypeCounts, received: TypeCounts }
  client: { sent: TypeCounts, received: TypeCounts }
  pending: { responseCreate: number, sessionUpdate: number, functionCalls: number }
  /** Settings.tags ([] when none). */
  tags: string[]
  usage: SessionUsage
}

/**
 * A session as the admin API and the fleet registry show it: what the session
 * reports, plus the instance serving it. Sessions do not know their instance; the
 * summary gets it where it leaves the instance (`withInstance`).
 */
export interface ConnectionSummary extends SessionSummary {
  instance: string
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
  /** How many consecutive audio frames, or deltas of one type, the entry stands for (absent for one). */
  frames?: number
}

export interface SessionDetail extends SessionSummary {
  events: TimelineEvent[]
}

export interface ConnectionDetail extends SessionDetail, ConnectionSummary {}

/**
 * What leaves the instance (admin API, fleet registry) is bounded: message types, tags
 * and codes are chosen by clients and the upstream, so names are clipped and each
 * count map keeps its first MAX_TYPES_PER_COUNT types, the rest summed as "other".
 */
const MAX_TYPES_PER_COUNT = 64
const MAX_NAME_CHARS = 100
const MAX_TAGS = 32
const OTHER_TYPE = 'other'

/** A session's summary as it leaves this instance: stamped with the instance serving it, and bounded. */
export function publicSummary (session: LiveSession, instance: string): ConnectionSummary {
  return bounded(session.summary(), instance)
}

/** A session's detail as it leaves this instance (see publicSummary). */
export function publicDetail (session: LiveSession, instance: string): ConnectionDetail {
  const detail = session.detail()
  return {
    ...bounded(detail, instance),
    events: detail.events.map((event) => {
      const clipped = { ...event, type: clip(event.type) }
      if (event.code !== undefined) clipped.code = clip(event.code)
      return clipped
    })
  }
}

function bounded<T extends SessionSummary> (report: T, instance: string): T & { instance: string } {
  return {
    ...report,
    instance,
    tags: report.tags.slice(0, MAX_TAGS).map(clip),
    upstream: { ...report.upstream, sent: compactCounts(report.upstream.sent), received: compactCounts(report.upstream.received) },
    client: { sent: compactCounts(report.client.sent), received: compactCounts(report.client.received) }
  }
}

function compactCounts (counts: TypeCounts): TypeCounts {
  const kept = new Map<string, number>()
  let other = 0
  for (const [type, count] of Object.entries(counts)) {
    if (kept.size < MAX_TYPES_PER_COUNT && type.length <= MAX_NAME_CHARS && type !== OTHER_TYPE) kept.set(type, count)
    else other += count
  }
  if (other > 0) kept.set(OTHER_TYPE, other)
  // fromEntries defines own properties: a type named "__proto__" stays a plain key.
  return Object.fromEntries(kept)
}

function clip (name: string): string {
  return name.length <= MAX_NAME_CHARS ? name : `${name.slice(0, MAX_NAME_CHARS - 1)}…`
}

/** What the registry needs from a live session. */
export interface LiveSession {
  readonly id: string
  summary (): SessionSummary
  detail (): SessionDetail
  /** A turn is under way: a response in progress, or words the client has not been told yet (a drain waits for it). */
  readonly inTurn: boolean
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
