// What the client hears of each response, and what it was told: the engine keeps one
// `AgentTurn` per in-band response from its response.created until its words have been
// told (ConversationText/History) as heard. Pure data and rules; the engine drives it.

/** One response as the client receives it. */
export interface AgentTurn {
  responseId: string
  /** Its assistant message items, in order (normally one). */
  items: string[]
  /** Each item's text, once the upstream finished it (transcript or text). */
  texts: Map<string, string>
  /** Each item's text so far, from its deltas (what is known of it if it never finishes), at most MAX_PARTIAL_CHARS. */
  partial: Map<string, string>
  /** Position of its response.created among upstream events (what it could have seen). */
  createdOrder: number
  /** When its first audio went to the client; undefined while none has. */
  firstSentAt: number | undefined
  /** Audio sent to the client, and produced by the upstream, in ms. */
  sentMs: number
  producedMs: number
  /** Set by barge-in: how much of its audio the client heard, in ms. */
  heardMs: number | undefined
  audioDoneSent: boolean
  done: boolean
  /** Its words were told (or found unheard): nothing more to do but forget it. */
  settled: boolean
}

export function newTurn (responseId: string, createdOrder: number): AgentTurn {
  return {
    responseId,
    items: [],
    texts: new Map(),
    partial: new Map(),
    createdOrder,
    firstSentAt: undefined,
    sentMs: 0,
    producedMs: 0,
    heardMs: undefined,
    audioDoneSent: false,
    done: false,
    settled: false
  }
}

/** Bound on an item's text gathered from deltas (a hostile upstream's endless deltas grow nothing beyond it). */
export const MAX_PARTIAL_CHARS = 16_000

/** The text of an item so far, with `delta` added (cut at MAX_PARTIAL_CHARS). */
export function withDelta (text: string | undefined, delta: string): string {
  const joined = (text ?? '') + delta
  return joined.length > MAX_PARTIAL_CHARS ? joined.slice(0, MAX_PARTIAL_CHARS) : joined
}

/**
 * How much of its audio the client heard when the user barged in at `at`: the audio
 * plays from its first delta in real time, so no more than the time since then, and no
 * more than what was sent (the rule of openai-agents-js and pipecat).
 */
export function heardAt (turn: AgentTurn, at: number): number {
  if (turn.firstSentAt === undefined) return 0
  return Math.max(0, Math.floor(Math.min(at - turn.firstSentAt, turn.sentMs)))
}

/**
 * The words of `text` heard when `fraction` of its audio played: speech runs at an even
 * pace through a transcript, so the cut falls at that fraction of its characters, moved
 * back to the end of the last whole word (as LiveKit's transcript synchronisation
 * estimates it); a text without spaces is cut between characters. Nothing heard → '';
 * all of it → the whole text.
 */
export function heardText (text: string, fraction: number): string {
  if (fraction >= 1) return text
  if (!(fraction > 0)) return ''
  let cut = Math.floor(text.length * fraction)
  if (cut >= text.length) return text
  // Scripts written without spaces (Chinese, Japanese, Thai) are cut between characters.
  if (!/\s/.test(text)) {
    if (/[\uD800-\uDBFF]/.test(text[cut - 1] ?? '')) cut--
    return text.slice(0, cut)
  }
  // A word the cut falls inside was not heard whole.
  const atBoundary = /\s/.test(text[cut] ?? ' ')
  const head = text.slice(0, cut)
  if (atBoundary) return head.trimEnd()
  const lastSpace = head.search(/\s\S*$/)
  return lastSpace < 0 ? '' : head.slice(0, lastSpace).trimEnd()
}
