// The server's conversation: its items in order, and for each audio content
// part what the server holds beside the item: how much audio it has and what
// that audio says (the model hears audio, whatever transcript the client sees).
// A truncate cuts the audio, keeps the words spoken before the cut, and drops
// the part's transcript, as the real API does so no unheard text stays in context.

import { isObject, type Problem, type SimItem } from './events.js'
import { ITEM_FRAMING_TOKENS, modelAudioTokens, textTokens, userAudioTokens, type Segment } from './usage.js'

interface AudioPart {
  bytesPerMs: number
  bytes: number
  /** The words of the audio: a user turn's speech, or the transcript the model generated with its audio. */
  said: string
  truncated: boolean
}

// Like the real context window, the oldest items go first; this only bounds memory.
const MAX_ITEMS = 10_000

export class Conversation {
  readonly #items: SimItem[] = []
  readonly #audio = new Map<string, Map<number, AudioPart>>()

  get items (): readonly SimItem[] {
    return this.#items
  }

  /** Appends `item`; returns the id of the item it follows. */
  append (item: SimItem): string | null {
    const previousItemId = this.#items.at(-1)?.id ?? null
    this.#items.push(item)
    if (this.#items.length > MAX_ITEMS) this.#audio.delete((this.#items.shift() as SimItem).id)
    return previousItemId
  }

  find (itemId: unknown): SimItem | undefined {
    return this.#items.find((item) => item.id === itemId)
  }

  delete (itemId: unknown): boolean {
    const index = this.#items.findIndex((item) => item.id === itemId)
    if (index === -1) return false
    this.#items.splice(index, 1)
    this.#audio.delete(itemId as string)
    return true
  }

  /** Records audio an item's content part holds (more of it for an answer being spoken), with the words it says. */
  addAudio (itemId: string, contentIndex: number, bytes: number, bytesPerMs: number, said: string): void {
    let parts = this.#audio.get(itemId)
    if (parts === undefined) {
      parts = new Map()
      this.#audio.set(itemId, parts)
    }
    const part = parts.get(contentIndex)
    if (part === undefined) {
      parts.set(contentIndex, { bytesPerMs, bytes, said, truncated: false })
    } else if (!part.truncated) {
      part.bytes += bytes
      part.said += said
    }
  }

  /** Milliseconds of audio the part holds (0 when it has none). */
  audioMs (itemId: string, contentIndex: number): number {
    const part = this.#audio.get(itemId)?.get(contentIndex)
    return part === undefined ? 0 : part.bytes / part.bytesPerMs
  }

  /** `conversation.item.truncate`: a Problem when the real API would refuse it. */
  truncate (itemId: unknown, contentIndex: number, audioEndMs: number): Problem | null {
    const item = this.find(itemId)
    if (item === undefined) return itemNotFound(itemId)
    const content = item.type === 'message' && item.role === 'assistant' && Array.isArray(item.content) ? item.content[contentIndex] : undefined
    const part = this.#audio.get(item.id)?.get(contentIndex)
    // Refused at 0 too: nothing of the audio would be left (delete the item instead).
    if (!isObject(content) || content.type !== 'output_audio' || part === undefined || part.bytes === 0 || audioEndMs === 0) {
      return { code: 'unsupported_content_type', message: 'Only model output audio messages can be truncated', param: null }
    }
    const durationMs = part.bytes / part.bytesPerMs
    if (audioEndMs > durationMs) {
      return { code: 'invalid_value', message: `Audio content of ${Math.floor(durationMs)}ms is already shorter than ${audioEndMs}ms`, param: 'audio_end_ms' }
    }
    part.said = wordsBefore(part.said, audioEndMs / durationMs)
    part.bytes = audioEndMs * part.bytesPerMs
    part.truncated = true
    const cut = { ...content }
    delete cut.transcript
    item.content[contentIndex] = cut
    return null
  }

  /** The items as the model reads them: each audio part carries the words of its audio as `transcript`. */
  heard (): SimItem[] {
    return this.#items.map((item) => {
      const parts = this.#audio.get(item.id)
      if (parts === undefined || !Array.isArray(item.content)) return item
      return {
        ...item,
        content: item.content.map((content: unknown, index: number) => {
          const part = parts.get(index)
          return part === undefined || !isObject(content) ? content : { ...content, transcript: part.said }
        })
      }
    })
  }

  /** The input segments of the conversation for usage: one per item, keyed by its id and its tokens. */
  segments (items: readonly SimItem[] = this.#items): Segment[] {
    return items.map((item, index) => {
      let text = ITEM_FRAMING_TOKENS
      let audio = 0
      switch (item.type) {
        case 'message':
          for (const [contentIndex, content] of (Array.isArray(item.content) ? item.content : []).entries()) {
            if (!isObject(content)) continue
            const ms = typeof item.id === 'string' ? this.audioMs(item.id, contentIndex) : 0
            if (content.type === 'input_audio') audio += userAudioTokens(ms)
            if (content.type === 'output_audio') audio += modelAudioTokens(ms)
            text += textTokens(stringOf(content.text) + (content.type === 'output_audio' ? stringOf(content.transcript) : ''))
          }
          break
        case 'function_call':
          text += textTokens(stringOf(item.name) + stringOf(item.arguments))
          break
        case 'function_call_output':
          text += textTokens(stringOf(item.output))
          break
      }
      const id = typeof item.id === 'string' ? item.id : `input_${index}`
      return { key: `${id}:${text}:${audio}`, text, audio }
    })
  }
}

export function itemNotFound (itemId: unknown): Problem {
  return { code: 'item_not_found', message: `Item with item_id '${String(itemId)}' not found.`, param: 'item_id' }
}

/** The whole words of `text` said in its first `fraction` (characters in proportion to audio time). */
export function wordsBefore (text: string, fraction: number): string {
  const end = Math.floor(text.length * fraction)
  if (end >= text.length) return text
  const cut = /\s/.test(text.charAt(end)) ? end : text.slice(0, end).search(/\s\S*$/)
  return cut <= 0 ? '' : text.slice(0, cut).trimEnd()
}

function stringOf (value: unknown): string {
  return typeof value === 'string' ? value : ''
}
