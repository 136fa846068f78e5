// What `/connections` shows of a session's traffic: message counts by type in each
// direction, and a bounded timeline of its recent protocol events. Recording runs on
// the audio hot path (four records per echoed frame), so a frame that folds into the
// current audio run allocates nothing, and times are kept as numbers (formatted when
// the timeline is read).

import { LazyMap } from './lazy.js'
import type { EventDirection, TimelineEvent, TypeCounts } from './registry.js'

/** Timeline entries kept per session (newest last). */
export const TIMELINE_SIZE = 200

/** An audio stream of the timeline; `key` is the one its runs are keyed by (direction + type), built once. */
interface AudioStream { direction: EventDirection, type: string, key: string }

/** A timeline entry as kept: its time in ms since the epoch. */
type Entry = Omit<TimelineEvent, 'at'> & { at: number }

export function audioStream (direction: EventDirection, type: string): AudioStream {
  return { direction, type, key: direction + type }
}

/** An empty prototype: no key of a count can read `constructor` or `toString` from it. */
const EMPTY_PROTOTYPE: object = Object.freeze(Object.create(null))

/**
 * Message counts by type. Not `Object.create(null)`: V8 keeps such an object as a hash
 * table (≈ 200 B each, four per session), while one made from a prototype keeps its
 * keys in a shape shared by every session, the same keys read from none.
 */
function typeCounts (): TypeCounts {
  return Object.create(EMPTY_PROTOTYPE)
}

export class SessionActivity {
  // Keyed by message type (known types only: the others count as `unknown`).
  readonly upstreamSent = typeCounts()
  readonly upstreamReceived = typeCounts()
  readonly clientSent = typeCounts()
  readonly clientReceived = typeCounts()
  readonly #timeline: Entry[] = []
  readonly #audioRun = new LazyMap<string, Entry>()

  /** Counts one message; callers pass known types only (others as `unknown`), so the keys stay bounded. */
  count (counts: TypeCounts, type: string): void {
    counts[type] = (counts[type] ?? 0) + 1
  }

  /**
   * Bounded timeline. Audio frames (entries with `bytes`) fold into one entry per
   * direction and type until a protocol event comes between them.
   */
  record (direction: EventDirection, type: string, extra?: Partial<TimelineEvent>): void {
    const runKey = extra?.bytes !== undefined ? direction + type : undefined
    if (runKey !== undefined) {
      const run = this.#audioRun.get(runKey)
      if (run !== undefined) {
        run.bytes = (run.bytes ?? 0) + (extra?.bytes ?? 0)
        run.frames = (run.frames ?? 1) + 1
        run.at = Date.now()
        return
      }
    } else {
      this.#audioRun.clear()
    }
    const event: Entry = { at: Date.now(), direction, type }
    if (extra !== undefined) {
      // for…in, not Object.entries: no array per event (every upstream event is recorded).
      for (const name in extra) {
        const value = extra[name as keyof TimelineEvent]
        if (value !== undefined) (event as unknown as Record<string, unknown>)[name] = value
      }
    }
    if (runKey !== undefined) this.#audioRun.set(runKey, event)
    this.#timeline.push(event)
    if (this.#timeline.length > TIMELINE_SIZE) this.#timeline.shift()
  }

  /** `record` of one audio frame: folding into the current run (the usual case) allocates nothing. */
  recordAudio (stream: AudioStream, bytes: number, responseId?: string): void {
    const run = this.#audioRun.get(stream.key)
    if (run === undefined) {
      this.record(stream.direction, stream.type, responseId === undefined ? { bytes } : { bytes, responseId })
      return
    }
    run.bytes = (run.bytes ?? 0) + bytes
    run.frames = (run.frames ?? 1) + 1
    run.at = Date.now()
  }

  /** A copy of the timeline, oldest first. */
  events (): TimelineEvent[] {
    return this.#timeline.map((event) => ({ ...event, at: new Date(event.at).toISOString() }))
  }
}
