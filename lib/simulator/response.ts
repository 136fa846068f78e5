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

import { audioChunk } from './audio.js'
import type { Answer, ToolCall } from './answer.js'
import { newId } from './ids.js'
import type { SimEvent, SimItem } from './events.js'
import type { SimScript } from './script.js'
import { noop, type Cancel } from './timers.js'

export type ResponseStatus = 'in_progress' | 'completed' | 'cancelled'
export type CancelReason = 'client_cancelled' | 'turn_detected'

export interface ResponseSettings {
  inBand: boolean
  conversationId: string | null
  outputModalities: string[]
  format: unknown
  voice: unknown
  maxOutputTokens: unknown
  metadata: unknown
  inputTokens: number
}

/** What a response needs from its connection. */
export interface ResponseSink {
  emit (event: SimEvent): void
  /** Appends an item to the conversation; returns the id of the item it follows. */
  append (item: SimItem): string | null
}

export interface Step {
  delayMs: number
  run (): void
}

// Stands in for the random padding the real server adds to deltas: a field the
// GA types do not list, which clients must tolerate.
const OBFUSCATION = 'sim0bfu5c4t3'

export class ResponseRun {
  readonly id = newId('resp')
  readonly settings: ResponseSettings
  /** `response.created` was emitted: from then on the response can be cancelled. */
  created = false
  /** Stops whatever step or `response.done` is scheduled next. */
  cancelPending: Cancel = noop
  readonly #output: SimItem[] = []
  readonly #previousItemIds = new Map<string, string | null>()
  #steps: Step[] = []
  #nextStep = 0
  #textTokens = 0
  #audioTokens = 0

  constructor (settings: ResponseSettings) {
    this.settings = settings
  }

  get speaksAudio (): boolean {
    return this.settings.outputModalities.includes('audio')
  }

  /** The `response` object of `response.created` (in progress) or `response.done`. */
  snapshot (status: ResponseStatus, reason?: CancelReason): SimEvent {
    const { settings } = this
    const inProgress = status === 'in_progress'
    return {
      object: 'realtime.response',
      id: this.id,
      status,
      status_details: status === 'cancelled' ? { type: 'cancelled', reason } : null,
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

  /** Marks what was still being produced as incomplete, before a cancelled `response.done`. */
  interrupt (): void {
    for (const item of this.#output) {
      if (item.status === 'in_progress') item.status = 'incomplete'
    }
    this.#steps = []
  }

  /** Echo mode: opens the single audio message every echoed delta belongs to. */
  openEcho (sink: ResponseSink): string {
    const item = assistantMessage()
    this.#open(item, 0, sink)
    sink.emit({ type: 'response.content_part.added', ...this.#at(item), part: { type: 'audio', transcript: '' } })
    return item.id
  }

  echoDelta (itemId: string, audio: string): SimEvent {
    this.#audioTokens += 1
    return {
      type: 'response.output_audio.delta',
      response_id: this.id,
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      delta: audio,
      obfuscation: OBFUSCATION
    }
  }

  #messageSteps (text: string, script: SimScript, sink: ResponseSink): Step[] {
    const audio = this.speaksAudio
    const item = assistantMessage()
    const at = this.#at(item)
    const gap = script.chunkIntervalMs
    const steps: Step[] = [{
      delayMs: 0,
      run: () => {
        this.#open(item, 0, sink)
        sink.emit({ type: 'response.content_part.added', ...at, part: audio ? { type: 'audio', transcript: '' } : { type: 'text', text: '' } })
      }
    }]
    for (const piece of splitText(text, script.audioChunks)) {
      steps.push({ delayMs: gap, run: () => audio ? this.#speak(at, piece, sink) : this.#write(at, piece, sink) })
    }
    steps.push({
      delayMs: gap,
      run: () => {
        item.content = [audio ? { type: 'output_audio', transcript: text } : { type: 'output_text', text }]
        if (audio) {
          const transcriptDone = { type: 'response.output_audio_transcript.done', ...at, transcript: text }
          const audioDone = { type: 'response.output_audio.done', ...at }
          const [first, second] = script.audioDoneBeforeTextDone ? [audioDone, transcriptDone] : [transcriptDone, audioDone]
          sink.emit(first)
          sink.emit(second)
        } else {
          sink.emit({ type: 'response.output_text.done', ...at, text })
        }
        sink.emit({ type: 'response.content_part.done', ...at, part: audio ? { type: 'audio', transcript: text } : { type: 'text', text } })
        this.#close(item, 0, sink)
      }
    })
    return steps
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
    return [
      { delayMs: outputIndex === 0 ? 0 : gap, run: () => this.#open(item, outputIndex, sink) },
      {
        delayMs: gap,
        run: () => sink.emit({ type: 'response.function_call_arguments.delta', ...at, delta: call.arguments, obfuscation: OBFUSCATION })
      },
      {
        delayMs: gap,
        run: () => {
          item.arguments = call.arguments
          this.#textTokens += 1
          sink.emit({ type: 'response.function_call_arguments.done', ...at, name: call.name, arguments: call.arguments })
          this.#close(item, outputIndex, sink)
        }
      }
    ]
  }

  #speak (at: SimEvent, piece: string, sink: ResponseSink): void {
    const chunk = audioChunk(this.settings.format)
    this.#audioTokens += 1
    sink.emit({ type: 'response.output_audio.delta', ...at, delta: chunk.base64, obfuscation: OBFUSCATION })
    sink.emit({ type: 'response.output_audio_transcript.delta', ...at, delta: piece, obfuscation: OBFUSCATION })
  }

  #write (at: SimEvent, piece: string, sink: ResponseSink): void {
    this.#textTokens += 1
    sink.emit({ type: 'response.output_text.delta', ...at, delta: piece, obfuscation: OBFUSCATION })
  }

  #open (item: SimItem, outputIndex: number, sink: ResponseSink): void {
    this.#output.push(item)
    sink.emit({ type: 'response.output_item.added', response_id: this.id, output_index: outputIndex, item: structuredClone(item) })
    if (!this.settings.inBand) return
    const previousItemId = sink.append(item)
    this.#previousItemIds.set(item.id, previousItemId)
    sink.emit({ type: 'conversation.item.added', previous_item_id: previousItemId, item: structuredClone(item) })
  }

  #close (item: SimItem, outputIndex: number, sink: ResponseSink): void {
    item.status = 'completed'
    sink.emit({ type: 'response.output_item.done', response_id: this.id, output_index: outputIndex, item: structuredClone(item) })
    if (!this.settings.inBand) return
    sink.emit({ type: 'conversation.item.done', previous_item_id: this.#previousItemIds.get(item.id) ?? null, item: structuredClone(item) })
  }

  #at (item: SimItem): SimEvent {
    return { response_id: this.id, item_id: item.id, output_index: 0, content_index: 0 }
  }

  #usage (): SimEvent {
    const input = this.settings.inputTokens
    const output = this.#textTokens + this.#audioTokens
    return {
      total_tokens: input + output,
      input_tokens: input,
      output_tokens: output,
      input_token_details: {
        text_tokens: input,
        audio_tokens: 0,
        image_tokens: 0,
        cached_tokens: 0,
        cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 }
      },
      output_token_details: { text_tokens: this.#textTokens, audio_tokens: this.#audioTokens }
    }
  }
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
