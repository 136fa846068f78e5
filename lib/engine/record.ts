// The conversation record: what was said in this session, in order, as the client
// heard it: user turns (typed, or transcribed speech), the agent's turns cut to what
// was heard, function calls with their arguments and outputs, and the Settings'
// context messages. It is what `History` messages report and what a new upstream is
// given when the session renews its upstream. Bounded: beyond MAX_RECORD_ITEMS entries
// or MAX_RECORD_CHARS characters of text, the oldest entries go.

import type { ConversationItem } from '../protocol/openai.js'
import { assistantText, userText } from '../protocol/openai.js'

/** Entries kept, and characters of text across them (about 12,000 tokens of the model's 32,000). */
export const MAX_RECORD_ITEMS = 200
export const MAX_RECORD_CHARS = 48_000

export type RecordEntry =
  /** `text` is undefined until known (a transcription on its way, an answer still playing). */
  | { kind: 'message', key: string, role: 'user' | 'assistant', text: string | undefined }
  | { kind: 'call', key: string, callId: string, name: string, arguments: string, output: string | undefined }

export class ConversationRecord {
  readonly #entries: RecordEntry[] = []
  #chars = 0

  get entries (): readonly RecordEntry[] {
    return this.#entries
  }

  get chars (): number {
    return this.#chars
  }

  /** A message at the end of the conversation; `key` names it for a later `setText` (an upstream item id, or ours). */
  message (key: string, role: 'user' | 'assistant', text: string | undefined): void {
    this.#add({ kind: 'message', key, role, text: capped(text) })
  }

  call (key: string, callId: string, name: string, args: string): void {
    this.#add({ kind: 'call', key, callId, name, arguments: capped(args) as string, output: undefined })
  }

  /** The text of the message `key` names; undefined while it is not known (or if there is none). */
  textOf (key: string): string | undefined {
    const entry = this.#entries.find((candidate) => candidate.key === key)
    return entry?.kind === 'message' ? entry.text : undefined
  }

  /** The text of a message known now (or dropped: `undefined` removes the entry). */
  setText (key: string, text: string | undefined): void {
    const index = this.#entries.findIndex((entry) => entry.key === key)
    const entry = this.#entries[index]
    if (entry?.kind !== 'message') return
    this.#chars -= entry.text?.length ?? 0
    if (text === undefined) {
      this.#entries.splice(index, 1)
      return
    }
    entry.text = capped(text)
    this.#chars += entry.text?.length ?? 0
    this.#trim()
  }

  answer (callId: string, output: string): void {
    const entry = this.#entries.find((candidate) => candidate.kind === 'call' && candidate.callId === callId)
    if (entry?.kind !== 'call') return
    this.#chars -= entry.output?.length ?? 0
    entry.output = capped(output)
    this.#chars += entry.output?.length ?? 0
    this.#trim()
  }

  /** Forgets a call that no longer stands (its response was cut before it was answered). */
  dropCall (callId: string): void {
    const index = this.#entries.findIndex((entry) => entry.kind === 'call' && entry.callId === callId)
    const entry = this.#entries[index]
    if (entry?.kind !== 'call') return
    this.#chars -= entry.arguments.length + (entry.output?.length ?? 0)
    this.#entries.splice(index, 1)
  }

  /** The conversation as upstream items, oldest first, for a new upstream (entries without text are left out). */
  replayItems (): ConversationItem[] {
    const items: ConversationItem[] = []
    for (const entry of this.#entries) {
      if (entry.kind === 'call') {
        items.push({ type: 'function_call', call_id: entry.callId, name: entry.name, arguments: entry.arguments })
        if (entry.output !== undefined) items.push({ type: 'function_call_output', call_id: entry.callId, output: entry.output })
      } else if (entry.text !== undefined && entry.text !== '') {
        items.push(entry.role === 'user' ? userText(entry.text) : assistantText(entry.text))
      }
    }
    return items
  }

  #add (entry: RecordEntry): void {
    this.#entries.push(entry)
    this.#chars += entry.kind === 'call' ? entry.arguments.length : (entry.text?.length ?? 0)
    this.#trim()
  }

  #trim (): void {
    while (this.#entries.length > 1 && (this.#entries.length > MAX_RECORD_ITEMS || this.#chars > MAX_RECORD_CHARS)) {
      const oldest = this.#entries.shift() as RecordEntry
      this.#chars -= oldest.kind === 'call' ? oldest.arguments.length + (oldest.output?.length ?? 0) : (oldest.text?.length ?? 0)
    }
  }
}

/** One entry never holds more than the whole record may: a longer text is cut. */
function capped (text: string | undefined): string | undefined {
  return text === undefined || text.length <= MAX_RECORD_CHARS ? text : `${text.slice(0, MAX_RECORD_CHARS - 1)}…`
}
