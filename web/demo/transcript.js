// One conversation turn may be reported twice: as `ConversationText` and, with
// history on (Deepgram's default), as `History {role, content}`, in no order the page
// may rely on. Both are reports of the same sequence of turns, so a turn is new only
// when one of them has now reported that (role, content) more often than the page
// has shown it. The same sentence said twice still shows twice.

const STREAMS = ['ConversationText', 'History']

export class TurnLedger {
  #turns = new Map()
  #limit

  /** `limit` bounds the distinct turns remembered; the oldest are forgotten first. */
  constructor (limit = 500) {
    this.#limit = limit
  }

  /** Records a report of a turn; true when the page should show it. */
  report (stream, role, content) {
    if (!STREAMS.includes(stream)) throw new TypeError(`unknown stream ${stream}`)
    const key = `${role}\u0000${content}`
    let counts = this.#turns.get(key)
    if (counts === undefined) {
      counts = { ConversationText: 0, History: 0, shown: 0 }
      this.#turns.set(key, counts)
      if (this.#turns.size > this.#limit) this.#turns.delete(this.#turns.keys().next().value)
    }
    counts[stream] += 1
    if (counts[stream] <= counts.shown) return false
    counts.shown = counts[stream]
    return true
  }
}
