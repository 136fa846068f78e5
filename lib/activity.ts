// What `/connections` shows of a session's traffic: message counts by type in each
// direction, and a bounded timeline of its recent protocol events. Recording runs on
// the audio hot path (four records per echoed frame), so a frame that folds into the
// current run allocates nothing, finds its run by a slot number (no hashing) and counts
// itself in a number, not under a key; times are kept as numbers (formatted when the
// timeline is read).

import type { EventDirection, TimelineEvent, TypeCounts } from './registry.js'

/** Timeline entries kept per session (newest last). */
export const TIMELINE_SIZE = 200

/** The four message counts of a session. */
export type CountName = 'upstreamSent' | 'upstreamReceived' | 'clientSent' | 'clientReceived'

/**
 * Messages that fold into runs: audio frames, and the deltas of what a response says or
 * calls. Consecutive messages of a stream are one timeline entry (with `frames`, and
 * `bytes` for audio) until a protocol event comes between them; messages of other
 * streams do not end a run. `counted`: the counts its messages are counted in, under
 * `type` (none for audio the proxy dropped).
 */
export interface Stream {
  readonly direction: EventDirection
  readonly type: string
  readonly counted: CountName | undefined
  /** Where every session keeps this stream's run and count. */
  readonly slot: number
}

const STREAMS: Stream[] = []

/** A stream: built once, at module level, as each takes a slot in every session's activity. */
export function stream (direction: EventDirection, type: string, counted?: CountName): Stream {
  const built = { direction, type, counted, slot: STREAMS.length }
  STREAMS.push(built)
  return built
}

/** A timeline entry as kept: its time in ms since the epoch. */
type Entry = Omit<TimelineEvent, 'at'> & { at: number }

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
  // Keyed by message type (known types only: the others count as `unknown`); streamed
  // messages are counted apart (see counts()).
  readonly upstreamSent = typeCounts()
  readonly upstreamReceived = typeCounts()
  readonly clientSent = typeCounts()
  readonly clientReceived = typeCounts()
  readonly #timeline: Entry[] = []
  /** By stream slot, from a session's first streamed message on: its open run, and its count. */
  #runs: Array<Entry | undefined> | undefined
  #streamed: number[] | undefined

  /** Counts one message; callers pass known types only (others as `unknown`), so the keys stay bounded. */
  count (counts: TypeCounts, type: string): void {
    counts[type] = (counts[type] ?? 0) + 1
  }

  /** A copy of one of the counts, streamed messages included. */
  counts (name: CountName): TypeCounts {
    const copy = { ...this[name] }
    const streamed = this.#streamed
    if (streamed === undefined) return copy
    for (const { slot, counted, type } of STREAMS) {
      const n = streamed[slot] ?? 0
      if (counted === name && n > 0) copy[type] = (copy[type] ?? 0) + n
    }
    return copy
  }

  /** A protocol event: one timeline entry, and the end of every open run. */
  record (direction: EventDirection, type: string, extra?: Partial<TimelineEvent>): void {
    if (this.#runs !== undefined) this.#runs.fill(undefined)
    const event: Entry = { at: Date.now(), direction, type }
    if (extra !== undefined) {
      // for…in, not Object.entries: no array per event (every upstream event is recorded).
      for (const name in extra) {
        const value = extra[name as keyof TimelineEvent]
        if (value !== undefined) (event as unknown as Record<string, unknown>)[name] = value
      }
    }
    this.#push(event)
  }

  /** One audio frame of `bytes`: folding into the stream's open run (the usual case) allocates nothing. */
  recordAudio (stream: Stream, bytes: number, responseId?: string): void {
    const run = this.#open(stream)
    if (run === undefined) {
      const entry: Entry = { at: Date.now(), direction: stream.direction, type: stream.type, bytes }
      if (responseId !== undefined) entry.responseId = responseId
      this.#start(stream, entry)
      return
    }
    run.bytes = (run.bytes ?? 0) + bytes
    run.frames = (run.frames ?? 1) + 1
    run.at = Date.now()
  }

  /** One delta of a response's words or call arguments; a run carries the ids of its first. */
  recordDelta (stream: Stream, responseId: string | undefined, itemId: string | undefined): void {
    const run = this.#open(stream)
    if (run === undefined) {
      const entry: Entry = { at: Date.now(), direction: stream.direction, type: stream.type }
      if (responseId !== undefined) entry.responseId = responseId
      if (itemId !== undefined) entry.itemId = itemId
      this.#start(stream, entry)
      return
    }
    run.frames = (run.frames ?? 1) + 1
    run.at = Date.now()
  }

  /** A copy of the timeline, oldest first. */
  events (): TimelineEvent[] {
    return this.#timeline.map((event) => ({ ...event, at: new Date(event.at).toISOString() }))
  }

  /** Counts a message of the stream; its open run, if any. */
  #open (stream: Stream): Entry | undefined {
    let streamed = this.#streamed
    if (streamed === undefined || stream.slot >= streamed.length) {
      // Sized for every stream built so far, so the slots are read within bounds.
      streamed = this.#streamed = STREAMS.map(({ slot }) => streamed?.[slot] ?? 0)
      const runs = this.#runs
      this.#runs = STREAMS.map(({ slot }) => runs?.[slot])
    }
    streamed[stream.slot] = (streamed[stream.slot] ?? 0) + 1
    return (this.#runs as Array<Entry | undefined>)[stream.slot]
  }

  #start (stream: Stream, entry: Entry): void {
    (this.#runs as Array<Entry | undefined>)[stream.slot] = entry
    this.#push(entry)
  }

  #push (entry: Entry): void {
    this.#timeline.push(entry)
    if (this.#timeline.length > TIMELINE_SIZE) this.#timeline.shift()
  }
}
