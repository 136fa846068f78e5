// Content mapping: the upstream's transcripts → Deepgram `ConversationText`. The agent's
// words arrive up to three times per item (its audio transcript's done event, a text
// done event, and the item's own conversation.item.done); the client hears them once.
// Only items that responses produced count: the client's own context messages, echoed
// back as items, are not the agent speaking now.

import type { ServerMessage } from '../protocol/deepgram.js'

/** How many item ids are remembered for once-per-item (the last ones; items arrive in order). */
const MEMORY = 64

export class Transcripts {
  readonly #told: string[] = []
  readonly #responseItems: string[] = []

  /** `response.output_item.added`: this item is a response's output. */
  responseItem (itemId: string | undefined): void {
    remember(this.#responseItems, itemId)
  }

  /** A transcript's or text's done event of a response item. */
  assistantDone (itemId: string | undefined, text: string | undefined): ServerMessage | undefined {
    if (text === undefined || text === '') return undefined
    if (itemId !== undefined && this.#told.includes(itemId)) return undefined
    remember(this.#told, itemId)
    return { type: 'ConversationText', role: 'assistant', content: text }
  }

  /** `conversation.item.done` of an assistant item, with its text. */
  assistantItemDone (itemId: string | undefined, text: string | undefined): ServerMessage | undefined {
    if (text === undefined || !this.#responseItems.includes(itemId ?? '')) return undefined
    return this.assistantDone(itemId, text)
  }

  /** The user's transcribed speech. */
  userTranscript (text: string | undefined): ServerMessage | undefined {
    return text === undefined || text === '' ? undefined : { type: 'ConversationText', role: 'user', content: text }
  }
}

function remember (ids: string[], id: string | undefined): void {
  if (id === undefined || ids.includes(id)) return
  ids.push(id)
  if (ids.length > MEMORY) ids.shift()
}
