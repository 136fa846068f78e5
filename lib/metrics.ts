// Prometheus metrics for the proxy, on a private registry. Per-message-type
// counts are not incremented per frame: sessions already count them for their
// ConnectionSummary, so the two `*_events_total` / `*_messages_total` counters
// are computed at scrape time from the live sessions plus the totals of the
// sessions that have ended.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Usage } from './engine/io.js'
import type { SessionRegistry, SessionSummary, TypeCounts } from './registry.js'

export interface ProxyMetrics {
  /** A private registry (not prom-client's global one), default process metrics included. */
  readonly registry: Registry
  sessionStarted (): void
  /** Folds an ending session's per-type counts into the process totals. Call it in the same tick as `sessions.delete(id)`. */
  sessionEnded (summary: SessionSummary): void
  /** completed | cancelled | failed | incomplete */
  responseDone (status: string): void
  /** An upstream `conversation_already_has_active_response` error (should stay 0). */
  activeResponseConflict (): void
  /** How long a wanted response waited for the response slot, seconds. */
  queueWait (seconds: number): void
  timeToFirstAudio (seconds: number): void
  /** An Error message sent to a client, by its code. */
  clientError (code: string): void
  /** A Warning message sent to a client, by its code. */
  clientWarning (code: string): void
  /** The proxy stopped reading a client because its upstream was backed up. */
  backpressurePause (): void
  /** One response's token counts. */
  tokens (usage: Usage): void
  droppedFrames (reason: string, count?: number): void
  /** e.g. 'max_sessions', 'auth', 'draining' */
  sessionRejected (reason: string): void
}

/**
 * Distinct `type` label values kept per direction. Types come partly from
 * clients and the upstream, so they are capped to keep a misbehaving peer
 * from growing the exposition without bound; the excess is counted as OTHER_TYPE.
 */
const MAX_TYPES_PER_DIRECTION = 200
const OTHER_TYPE = 'other'

type Direction = 'sent' | 'received'
const DIRECTIONS: readonly Direction[] = ['sent', 'received']

/** Per-type totals for one counter, by direction. */
type Totals = Record<Direction, Map<string, number>>

export function createMetrics (sessions: SessionRegistry): ProxyMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const retiredUpstream = emptyTotals()
  const retiredClient = emptyTotals()

  registry.registerMetric(new Gauge({
    name: 'dgproxy_sessions_active',
    help: 'Client sessions currently open',
    registers: [],
    collect () {
      this.set(sessions.size)
    }
  }))

  registry.registerMetric(new Counter({
    name: 'dgproxy_upstream_events_total',
    help: 'Events exchanged with the OpenAI Realtime upstream, by direction and event type',
    labelNames: ['direction', 'type'],
    registers: [],
    collect () {
      publish(this, withLive(retiredUpstream, (s) => s.upstream))
    }
  }))

  registry.registerMetric(new Counter({
    name: 'dgproxy_client_messages_total',
    help: 'Messages exchanged with clients, by direction and message type (binary frames as "binary")',
    labelNames: ['direction', 'type'],
    registers: [],
    collect () {
      publish(this, withLive(retiredClient, (s) => s.client))
    }
  }))

  const sessionsTotal = new Counter({
    name: 'dgproxy_sessions_total',
    help: 'Client sessions accepted since start',
    registers: [registry]
  })
  const sessionsRejected = new Counter({
    name: 'dgproxy_sessions_rejected_total',
    help: 'Client connections refused, by reason',
    labelNames: ['reason'],
    registers: [registry]
  })
  const responses = new Counter({
    name: 'dgproxy_responses_total',
    help: 'Upstream responses finished, by status',
    labelNames: ['status'],
    registers: [registry]
  })
  const conflicts = new Counter({
    name: 'dgproxy_active_response_conflicts_total',
    help: 'Upstream conversation_already_has_active_response errors (a response.create sent while one was active; should stay 0)',
    registers: [registry]
  })
  const queueWait = new Histogram({
    name: 'dgproxy_response_queue_wait_seconds',
    help: 'Time a wanted response waited for the in-flight response to finish',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const firstAudio = new Histogram({
    name: 'dgproxy_time_to_first_audio_seconds',
    help: 'Time from the end of user speech (or the response request) to the first audio frame sent to the client',
    buckets: [0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10],
    registers: [registry]
  })
  const clientErrors = new Counter({
    name: 'dgproxy_client_errors_total',
    help: 'Error messages sent to clients, by code',
    labelNames: ['code'],
    registers: [registry]
  })
  const clientWarnings = new Counter({
    name: 'dgproxy_client_warnings_total',
    help: 'Warning messages sent to clients, by code',
    labelNames: ['code'],
    registers: [registry]
  })
  const tokens = new Counter({
    name: 'dgproxy_tokens_total',
    help: 'Tokens of upstream responses (summed from response.done usage), by kind',
    labelNames: ['kind'],
    registers: [registry]
  })
  const pauses = new Counter({
    name: 'dgproxy_backpressure_pauses_total',
    help: 'Times the proxy stopped reading a client because that session\'s upstream was backed up (MAX_UPSTREAM_BUFFERED_BYTES)',
    registers: [registry]
  })
  const dropped = new Counter({
    name: 'dgproxy_dropped_frames_total',
    help: 'Frames dropped instead of forwarded, by reason',
    labelNames: ['reason'],
    registers: [registry]
  })

  // Error codes can come from the upstream: their label values are capped like types.
  const errorCodes = new Set<string>()
  const warningCodes = new Set<string>()

  /** Retired totals plus every live session's current counts. */
  function withLive (retired: Totals, pick: (summary: SessionSummary) => Record<Direction, TypeCounts>): Totals {
    const totals: Totals = { sent: new Map(retired.sent), received: new Map(retired.received) }
    for (const session of sessions) {
      const counts = pick(session.summary())
      for (const direction of DIRECTIONS) addCounts(totals[direction], counts[direction])
    }
    return totals
  }

  return {
    registry,
    sessionStarted: () => sessionsTotal.inc(),
    sessionEnded (summary) {
      for (const direction of DIRECTIONS) {
        addCounts(retiredUpstream[direction], summary.upstream[direction])
        addCounts(retiredClient[direction], summary.client[direction])
      }
    },
    responseDone: (status) => responses.inc({ status }),
    activeResponseConflict: () => conflicts.inc(),
    queueWait: (seconds) => queueWait.observe(seconds),
    timeToFirstAudio: (seconds) => firstAudio.observe(seconds),
    clientError: (code) => clientErrors.inc({ code: boundedLabel(errorCodes, code) }),
    clientWarning: (code) => clientWarnings.inc({ code: boundedLabel(warningCodes, code) }),
    backpressurePause: () => pauses.inc(),
    tokens (usage) {
      tokens.inc({ kind: 'input' }, usage.inputTokens)
      tokens.inc({ kind: 'output' }, usage.outputTokens)
      tokens.inc({ kind: 'input_audio' }, usage.inputAudioTokens)
      tokens.inc({ kind: 'output_audio' }, usage.outputAudioTokens)
      tokens.inc({ kind: 'cached_input' }, usage.cachedInputTokens)
    },
    droppedFrames: (reason, count = 1) => dropped.inc({ reason }, count),
    sessionRejected: (reason) => sessionsRejected.inc({ reason })
  }
}

/** `value` while fewer than MAX_TYPES_PER_DIRECTION distinct values were seen, then OTHER_TYPE for new ones. */
function boundedLabel (seen: Set<string>, value: string): string {
  if (seen.has(value)) return value
  if (seen.size >= MAX_TYPES_PER_DIRECTION) return OTHER_TYPE
  seen.add(value)
  return value
}

function emptyTotals (): Totals {
  return { sent: new Map(), received: new Map() }
}

function addCounts (totals: Map<string, number>, counts: TypeCounts): void {
  for (const type in counts) {
    const count = counts[type]
    if (typeof count !== 'number' || !(count > 0)) continue
    const key = totals.has(type) || totals.size < MAX_TYPES_PER_DIRECTION ? type : OTHER_TYPE
    totals.set(key, (totals.get(key) ?? 0) + count)
  }
}

function publish (counter: Counter<'direction' | 'type'>, totals: Totals): void {
  counter.reset()
  for (const direction of DIRECTIONS) {
    for (const [type, count] of totals[direction]) counter.inc({ direction, type }, count)
  }
}
