// One simulated response: its `response` object and the GA content events it
// streams, planned as steps the connection plays one hop (or interval) apart.
//
// Spoken message:  output_item.added, conversation.item.added, content_part.added,
//                  N × (output_audio.delta + output_audio_transcript.delta),
//                  output_audio_transcript.done + output_audio.done (either order),
//                  content_part.done, output_item.done, conversation.item.done
// Text message:    the same with output_text.delta / output_text.done
// Tool call (×n):  output_item.added, conversation.item.added,
//                  function_call_arguments.delta, function_call_arguments.done,
//                  output_item.done, conversation.item.done
// Out-of-band responses stay out of the conversation: no conversation.item.* events.
//
// A cancelled response closes what it was producing before its `response.done`,
// like the real server: a message gets its done events with the text so far and
// status "incomplete"; a function call gets output_item.done (incomplete) and
// conversation.item.done, never function_call_arguments.done.

import { audioChunk, bytesPerMs } from './audio.js'
import type { Answer, ToolCall } from './answer.js'
import { newId } from './ids.js'
import type { SimEvent, SimItem } from './events.js'
import type { SimScript } from './script.js'
import { noop, type Cancel } from './timers.js'
import { modelAudioTokens, textTokens, usage, type Segment } from './usage.js'

export type ResponseStatus = 'in_progress' | 'completed' | 'cancelled' | 'failed'
export type CancelReason = 'client_cancelled' | 'turn_detected'
export interface Failure { code: string, message?: string, type?: string }

export interface ResponseSettings {
  inBand: boolean
  conversationId: string | null
  outputModalities: string[]
  format: unknown
  voice: unknown
  maxOutputTokens: unknown
  metadata: unknown
}

/** What a response needs from its connection. */
export interface ResponseSink {
  emit (event: SimEvent): void
  /** Appends an item to the conversation; returns the id of the item it follows. */
  append (item: SimItem): string | null
  /** Audio (in `format`) produced for an in-band item's content part, with the words spoken in it. */
  spoke (itemId: string, contentIndex: number, bytes: number, words: string, format: unknown): void
}

export interface Step {
  delayMs: number
  run (): void
}

/** What one output item produced, for usage. */
interface Produced {
  text: string
  audioBytes: number
}

// Stands in for the random padding the real server adds to deltas: a field the
// GA types do not list, which clients must tolerate.
const OBFUSCATION = 'sim0bfu5c4t3'
const FAILURE_MESSAGE = 'The server had an error while processing your request. Sorry about that!'

export class ResponseRun {
  readonly id = newId('resp')
  readonly settings: ResponseSettings
  /** `response.created` was emitted: from then on the response can be cancelled. */
  created = false
  /** Stops whatever step or `response.done` is scheduled next. */
  cancelPending: Cancel = noop
  readonly #output: SimItem[] = []
  readonly #produced: Produced[] = []
  readonly #previousItemIds = new Map<string, string | null>()
  /** Closers of the items still being produced, in output order. */
  readonly #open = new Map<SimItem, (status: 'completed' | 'incomplete') => void>()
  #steps: Step[] = []
  #nextStep = 0
  #input: readonly Segment[] = []
  #cachedFrom: readonly Segment[] = []

  constructor (settings: ResponseSettings) {
    this.settings = settings
  }

  get speaksAudio (): boolean {
    return this.settings.outputModalities.includes('audio')
  }

  /** What the response reads (for its usage), and what the response before it read (for the cache). */
  read (input: readonly Segment[], previous: readonly Segment[]): void {
    this.#input = input
    this.#cachedFrom = previous
  }

  /** The `response` object of `response.created` (in progress) or `response.done`. */
  snapshot (status: ResponseStatus, details: { reason?: CancelReason, failure?: Failure } = {}): SimEvent {
    const { settings } = this
    const inProgress = status === 'in_progress'
    return {
      object: 'realtime.response',
      id: this.id,
      status,
      status_details: statusDetails(status, details),
      output: inProgress ? [] : this.#output.map((item) => structuredClone(item)),
      conversation_id: settings.conversationId,
      output_modalities: settings.outputModalities,
      max_output_tokens: settings.maxOutputTokens,
      audio: { output: { format: settings.format, voice: settings.voice } },
      usage: inProgress ? null : this.#usage(),
      metadata: settings.metadata
    }
  }

  plan (answer: Answer, script: SimScript, sink: ResponseSink): void {
    this.#steps = answer.kind === 'speech'
      ? this.#messageSteps(answer.text, script, sink)
      : answer.calls.flatMap((call, index) => this.#callSteps(call, index, script, sink))
    this.#nextStep = 0
  }

  /** The step to play next, left in place: scheduling it must not lose it if the schedule is cancelled. */
  get nextStep (): Step | undefined {
    return this.#steps[this.#nextStep]
  }

  takeStep (): Step | undefined {
    return this.#steps[this.#nextStep++]
  }

  /**
   * Closes what is still open before `response.done`: as incomplete when cancelled, as
   * completed when an open-ended response (echo) is finished.
   */
  end (status: ResponseStatus): void {
    this.#steps = []
    for (const close of [...this.#open.values()]) close(status === 'completed' ? 'completed' : 'incomplete')
  }

  /** Echo mode: opens the single audio message every echoed delta belongs to. */
  openEcho (script: SimScript, sink: ResponseSink): SimItem {
    const item = assistantMessage()
    this.#openMessage(item, true, script, sink)
    return item
  }

  /** Echo mode: `audio` (of `bytes` bytes) sent back as one delta of the echo message. */
  echo (item: SimItem, audio: string, bytes: number, sink: ResponseSink): void {
    (this.#produced[0] as Produced).audioBytes += bytes
    if (this.settings.inBand) sink.spoke(item.id, 0, bytes, '', this.settings.format)
    sink.emit({ type: 'response.output_audio.delta', ...this.#at(item, 0), delta: audio, obfuscation: OBFUSCATION })
  }

  #messageSteps (text: string, script: SimScript, sink: ResponseSink): Step[] {
    const audio = this.speaksAudio
    const item = assistantMessage()
    const gap = script.chunkIntervalMs
    let say: (piece: string, unspoken?: boolean) => void = noop
    const steps: Step[] = [{ delayMs: 0, run: () => { say = this.#openMessage(item, audio, script, sink) } }]
    const pieces = splitText(text, script.audioChunks)
    for (const piece of pieces) steps.push({ delayMs: gap, run: () => say(piece) })
    // Without deltas (audioChunks 0) the whole text comes with the done events.
    if (pieces.length === 0) steps.push({ delayMs: gap, run: () => say(text, true) })
    steps.push({ delayMs: gap, run: () => this.#open.get(item)?.('completed') })
    return steps
  }

  /** Opens a message and its content part; returns how to say the next piece of it (`unspoken`: no delta, no audio). */
  #openMessage (item: SimItem, audio: boolean, script: SimScript, sink: ResponseSink): (piece: string, unspoken?: boolean) => void {
    const produced = this.#openItem(item, 0, sink)
    const at = this.#at(item, 0)
    const part: SimItem = audio ? { type: 'output_audio', transcript: '' } : { type: 'output_text', text: '' }
    item.content.push(part)
    sink.emit({ type: 'response.content_part.added', ...at, part: audio ? { type: 'audio', transcript: '' } : { type: 'text', text: '' } })
    this.#open.set(item, (status) => {
      this.#open.delete(item)
      const said = produced.text
      if (audio) {
        const transcriptDone = { type: 'response.output_audio_transcript.done', ...at, transcript: said }
        const audioDone = { type: 'response.output_audio.done', ...at }
        const [first, second] = script.audioDoneBeforeTextDone ? [audioDone, transcriptDone] : [transcriptDone, audioDone]
        sink.emit(first)
        sink.emit(second)
      } else {
        sink.emit({ type: 'response.output_text.done', ...at, text: said })
      }
      sink.emit({ type: 'response.content_part.done', ...at, part: audio ? { type: 'audio', transcript: said } : { type: 'text', text: said } })
      this.#closeItem(item, 0, status, sink)
    })
    return (piece, unspoken = false) => {
      produced.text += piece
      if (!audio) {
        part.text = produced.text
        if (!unspoken) sink.emit({ type: 'response.output_text.delta', ...at, delta: piece, obfuscation: OBFUSCATION })
        return
      }
      part.transcript = produced.text
      const chunk = unspoken ? { base64: '', bytes: 0 } : audioChunk(this.settings.format)
      produced.audioBytes += chunk.bytes
      if (this.settings.inBand) sink.spoke(item.id, 0, chunk.bytes, piece, this.settings.format)
      if (unspoken) return
      sink.emit({ type: 'response.output_audio.delta', ...at, delta: chunk.base64, obfuscation: OBFUSCATION })
      sink.emit({ type: 'response.output_audio_transcript.delta', ...at, delta: piece, obfuscation: OBFUSCATION })
    }
  }

  #callSteps (call: ToolCall, outputIndex: number, script: SimScript, sink: ResponseSink): Step[] {
    const item: SimItem = {
      id: newId('item'),
      object: 'realtime.item',
      type: 'function_call',
      status: 'in_progress',
      name: call.name,
      call_id: newId('call'),
      arguments: ''
    }
    const at = { response_id: this.id, item_id: item.id, output_index: outputIndex, call_id: item.call_id }
    const gap = script.chunkIntervalMs
    let produced: Produced
    return [
      {
        delayMs: outputIndex === 0 ? 0 : gap,
        run: () => {
          produced = this.#openItem(item, outputIndex, sink)
          produced.text = call.name
          this.#open.set(item, (status) => {
            this.#open.delete(item)
            this.#closeItem(item, outputIndex, status, sink)
          })
        }
      },
      {
        delayMs: gap,
        run: () => {
          item.arguments = call.arguments
          produced.text += call.arguments
          sink.emit({ type: 'response.function_call_arguments.delta', ...at, delta: call.arguments, obfuscation: OBFUSCATION })
        }
      },
      {
        delayMs: gap,
        run: () => {
          sink.emit({ type: 'response.function_call_arguments.done', ...at, name: call.name, arguments: call.arguments })
          this.#open.get(item)?.('completed')
        }
      }
    ]
  }

  #openItem (item: SimItem, outputIndex: number, sink: ResponseSink): Produced {
    const produced: Produced = { text: '', audioBytes: 0 }
    this.#output.push(item)
    this.#produced.push(produced)
    sink.emit({ type: 'response.output_item.added', response_id: this.id, output_index: outputIndex, item: structuredClone(item) })
    if (this.settings.inBand) {
      const previousItemId = sink.append(item)
      this.#previousItemIds.set(item.id, previousItemId)
      sink.emit({ type: 'conversation.item.added', previous_item_id: previousItemId, item: structuredClone(item) })
    }
    return produced
  }

  #closeItem (item: SimItem, outputIndex: number, status: 'completed' | 'incomplete', sink: ResponseSink): void {
    item.status = status
    sink.emit({ type: 'response.output_item.done', response_id: this.id, output_index: outputIndex, item: structuredClone(item) })
    if (!this.settings.inBand) return
    sink.emit({ type: 'conversation.item.done', previous_item_id: this.#previousItemIds.get(item.id) ?? null, item: structuredClone(item) })
  }

  #at (item: SimItem, outputIndex: number): SimEvent {
    return { response_id: this.id, item_id: item.id, output_index: outputIndex, content_index: 0 }
  }

  #usage (): SimEvent {
    const perMs = bytesPerMs(this.settings.format)
    let text = 0
    let audio = 0
    for (const produced of this.#produced) {
      text += textTokens(produced.text)
      audio += modelAudioTokens(produced.audioBytes / perMs)
    }
    return usage(this.#input, this.#cachedFrom, { text, audio })
  }
}

function statusDetails (status: ResponseStatus, details: { reason?: CancelReason, failure?: Failure }): SimEvent | null {
  if (status === 'cancelled') return { type: 'cancelled', reason: details.reason }
  if (status === 'failed') {
    const { failure } = details
    return {
      type: 'failed',
      error: { type: failure?.type ?? 'server_error', code: failure?.code ?? null, message: failure?.message ?? FAILURE_MESSAGE }
    }
  }
  return null
}

function assistantMessage (): SimItem {
  return { id: newId('item'), object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] }
}

/** `text` cut into `parts` consecutive pieces that join back to it. */
export function splitText (text: string, parts: number): string[] {
  const count = Math.max(0, Math.floor(parts))
  const size = Math.ceil(text.length / Math.max(count, 1))
  return Array.from({ length: count }, (_, index) => text.slice(index * size, (index + 1) * size))
}
