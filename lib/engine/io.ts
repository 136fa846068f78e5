// What the turn engine consumes and what it produces: its inputs (client intents,
// upstream events, timer ticks), its commands (for the session to carry out) and its
// timers (a typed table, never strings parsed back). Upstream events arrive as parsed
// JSON of any shape; `decodeUpstream` reads the few fields the engine acts on, once, so
// the engine itself works on typed events only.

import type { ConfigAck, ServerMessage } from '../protocol/deepgram.js'
import type { UpstreamFailure } from '../upstream.js'
import type { ConversationItem, SessionFields, UpstreamEvent } from '../protocol/openai.js'
import { obj, str as read } from '../protocol/json.js'
import { UpstreamType, boundedId, upstreamCode } from '../protocol/openai.js'

export type InjectBehavior = 'refuse' | 'queue' | 'interrupt'

/** Client intents and the other inputs. `at` is the current time in ms (a monotonic clock). */
export type EngineInput =
  /**
   * `history`: Settings.flags.history (History messages unless false). `serverFunctions`:
   * the names of the functions the server calls itself (their endpoints are the session's).
   */
  | { type: 'settings', at: number, fields: SessionFields, context: ConversationItem[], greeting?: string, history?: boolean, serverFunctions?: string[] }
  /** A change; `appendInstructions` adds to the instructions in force (UpdatePrompt); `serverFunctions` replaces them (UpdateThink with functions). */
  | { type: 'configure', at: number, fields: SessionFields, ack: ConfigAck, appendInstructions?: string, serverFunctions?: string[] }
  | { type: 'injectUser', at: number, content: string }
  | { type: 'injectAgent', at: number, message: string, behavior: InjectBehavior }
  /** A call's answer: the client's FunctionCallResponse, or (`serverSide`) the output of the endpoint the session called. */
  | { type: 'functionResult', at: number, callId: string, output: string, serverSide?: boolean }
  | { type: 'cancel', at: number }
  /** An audio delta of a response that is not the audible one: the engine decides whether it plays. */
  | { type: 'agentAudio', at: number, responseId: string }
  | { type: 'upstream', at: number, event: UpstreamEvent }
  | { type: 'forceEndTurn', at: number }
  | { type: 'timer', at: number, timer: Timer }
  /** The session ends: everything is released. */
  | { type: 'upstreamClosed', at: number }
  /**
   * The upstream connection ended under an open session: `closeCode` is its WebSocket
   * close code (undefined for a drop found by the ping check); `failure` is what the
   * client is told if the session cannot go on.
   */
  | { type: 'upstreamLost', at: number, closeCode: number | undefined, failure: UpstreamFailure }
  /** A new upstream connection (a renewal or a reconnect) is open. */
  | { type: 'upstreamOpened', at: number }
  /** A new upstream connection could not be opened. */
  | { type: 'upstreamConnectFailed', at: number, failure: UpstreamFailure }

/** The engine's timers. A response is named by its key: its id, or a placeholder's key. */
export type Timer =
  | { kind: 'createAck', eventId: string }
  | { kind: 'responseDeadline', responseKey: string }
  | { kind: 'cancelGrace', responseKey: string }
  | { kind: 'itemAck', itemId: string }
  | { kind: 'updateAck', eventId: string }
  /** The client has played a response's audio out (its text may be told as heard). */
  | { kind: 'playedOut', responseId: string }
  /** The agent's text waited long enough for the user's transcription. */
  | { kind: 'transcriptWait' }
  /** The conversation replayed into a new upstream was not all acknowledged in time. */
  | { kind: 'replayAck' }
  /** The upstream is old enough to be renewed at the next quiet moment. */
  | { kind: 'renewDue' }

/** A stable key per timer, for the session's map of running timers. */
export function timerKey (timer: Timer): string {
  switch (timer.kind) {
    case 'createAck':
    case 'updateAck': return `${timer.kind}:${timer.eventId}`
    case 'responseDeadline':
    case 'cancelGrace': return `${timer.kind}:${timer.responseKey}`
    case 'itemAck': return `${timer.kind}:${timer.itemId}`
    case 'playedOut': return `${timer.kind}:${timer.responseId}`
    case 'transcriptWait':
    case 'replayAck':
    case 'renewDue': return timer.kind
  }
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** An event the engine sends upstream: every one carries our event_id. */
export type UpstreamCommand = Record<string, unknown> & { type: string, event_id: string }

export type Command =
  | { kind: 'upstream', event: UpstreamCommand }
  | { kind: 'client', message: ServerMessage }
  | { kind: 'setTimer', timer: Timer, ms: number }
  | { kind: 'clearTimer', timer: Timer }
  /** The first `session.updated` arrived: held audio may flow. */
  | { kind: 'ready' }
  /** Barge-in: drop what the output converter carries of the interrupted audio. */
  | { kind: 'resetOutputAudio' }
  /** The session cannot continue. */
  | { kind: 'close', code: number, reason: string }
  /** Call a server-side function's endpoint; its output comes back as a `functionResult` with `serverSide`. */
  | { kind: 'callFunction', callId: string, name: string, arguments: string }
  /** Open a new upstream connection after `delayMs` (the current one, if any, is retired). */
  | { kind: 'connectUpstream', delayMs: number, reason: 'renew' | 'reconnect' }
  | { kind: 'log', level: LogLevel, msg: string, fields?: Record<string, unknown> }
  | { kind: 'metric', name: 'queueWait', seconds: number }
  | { kind: 'metric', name: 'responseDone', status: string }
  | { kind: 'metric', name: 'conflict' }
  | { kind: 'metric', name: 'timeToFirstAudio', seconds: number }
  | { kind: 'metric', name: 'tokens', usage: Usage }

/** A function call a response announced; `itemId` is its conversation item. */
export interface AnnouncedCall { callId: string, name: string, arguments: string, itemId: string | undefined }

/** Token counts of one response (or summed). */
export interface Usage {
  inputTokens: number
  outputTokens: number
  inputAudioTokens: number
  outputAudioTokens: number
  cachedInputTokens: number
}

/**
 * The upstream events the engine acts on, typed. `proxyEventId` of response.created is the
 * `metadata.proxy_event_id` our creates carry: undefined when the response has no
 * `metadata` field at all, null when it has one without our id (server VAD).
 */
export type UpstreamInput =
  | { type: 'session.updated' }
  | { type: 'response.created', responseId: string, outOfBand: boolean, proxyEventId: string | null | undefined }
  | { type: 'response.done', responseId: string | undefined, outOfBand: boolean, status: string, failureCode: string | undefined, calls: AnnouncedCall[], usage: Usage | undefined }
  | { type: 'error', code: string, eventId: string | undefined }
  | { type: 'item.added', itemId: string | undefined }
  | { type: 'item.done', itemId: string | undefined, assistantText: string | undefined }
  | { type: 'function_call.done', callId: string, responseId: string, call: AnnouncedCall }
  | { type: 'speech.started' }
  | { type: 'speech.stopped' }
  | { type: 'audio.done', responseId: string | undefined }
  | { type: 'transcript.done', itemId: string | undefined, text: string | undefined }
  /** The words of an assistant item as they are produced (kept for a response cut before its done events). */
  | { type: 'transcript.delta', itemId: string | undefined, delta: string | undefined }
  | { type: 'output_item.added', itemId: string | undefined, responseId: string | undefined, message: boolean }
  | { type: 'audio.committed', itemId: string | undefined }
  | { type: 'user.transcript', itemId: string | undefined, text: string | undefined }
  | { type: 'user.transcript.failed', itemId: string | undefined }

/** The upstream event types `decodeUpstream` reads; the session feeds the engine these only. */
export const ENGINE_EVENT_TYPES: ReadonlySet<string> = new Set([
  UpstreamType.sessionUpdated,
  UpstreamType.responseCreated,
  UpstreamType.responseDone,
  UpstreamType.error,
  UpstreamType.itemAdded,
  UpstreamType.itemDone,
  UpstreamType.functionCallArgumentsDone,
  UpstreamType.speechStarted,
  UpstreamType.speechStopped,
  UpstreamType.outputAudioDone,
  UpstreamType.outputAudioTranscriptDelta,
  UpstreamType.outputAudioTranscriptDone,
  UpstreamType.outputTextDelta,
  UpstreamType.outputTextDone,
  UpstreamType.outputItemAdded,
  UpstreamType.inputAudioCommitted,
  UpstreamType.inputTranscriptionCompleted,
  UpstreamType.inputTranscriptionFailed
])

/** Reads what the engine needs of an upstream event; undefined for events it does not act on. */
export function decodeUpstream (event: UpstreamEvent): UpstreamInput | undefined {
  // Ids are cut to a bound and codes checked for shape: an upstream's data grows no
  // memory and reaches no client beyond what the protocol needs.
  const str = (value: unknown, key: string): string | undefined => boundedId(read(value, key))
  switch (event.type) {
    case UpstreamType.sessionUpdated: return { type: 'session.updated' }
    case UpstreamType.responseCreated: {
      const response = obj(event, 'response')
      const responseId = str(response, 'id')
      if (response === undefined || responseId === undefined) return undefined
      const proxyEventId = 'metadata' in response ? (str(obj(response, 'metadata'), 'proxy_event_id') ?? null) : undefined
      return { type: 'response.created', responseId, outOfBand: isOutOfBand(response), proxyEventId }
    }
    case UpstreamType.responseDone: {
      const response = obj(event, 'response')
      const given = read(response, 'status')
      const status = given !== undefined && RESPONSE_STATUSES.has(given) ? given : 'unknown'
      const error = obj(obj(response, 'status_details'), 'error')
      return {
        type: 'response.done',
        responseId: str(response, 'id'),
        outOfBand: isOutOfBand(response),
        status,
        failureCode: status === 'failed' ? upstreamCode(read(error, 'code') ?? read(error, 'type')) : undefined,
        calls: completedCalls(response),
        usage: usageOf(obj(response, 'usage'))
      }
    }
    case UpstreamType.error: {
      const error = obj(event, 'error')
      return { type: 'error', code: upstreamCode(read(error, 'code') ?? read(error, 'type')) ?? 'upstream_error', eventId: str(error, 'event_id') }
    }
    case UpstreamType.itemAdded: return { type: 'item.added', itemId: str(obj(event, 'item'), 'id') }
    case UpstreamType.itemDone: {
      const item = obj(event, 'item')
      return { type: 'item.done', itemId: str(item, 'id'), assistantText: assistantText(item) }
    }
    case UpstreamType.functionCallArgumentsDone: {
      const callId = str(event, 'call_id')
      const responseId = str(event, 'response_id')
      if (callId === undefined || responseId === undefined) return undefined
      return { type: 'function_call.done', callId, responseId, call: { callId, name: str(event, 'name') ?? '', arguments: read(event, 'arguments') ?? '{}', itemId: str(event, 'item_id') } }
    }
    case UpstreamType.speechStarted: return { type: 'speech.started' }
    case UpstreamType.speechStopped: return { type: 'speech.stopped' }
    case UpstreamType.outputAudioDone: return { type: 'audio.done', responseId: str(event, 'response_id') }
    case UpstreamType.outputAudioTranscriptDelta:
    case UpstreamType.outputTextDelta: return { type: 'transcript.delta', itemId: str(event, 'item_id'), delta: read(event, 'delta') }
    case UpstreamType.outputAudioTranscriptDone: return { type: 'transcript.done', itemId: str(event, 'item_id'), text: read(event, 'transcript') }
    case UpstreamType.outputTextDone: return { type: 'transcript.done', itemId: str(event, 'item_id'), text: read(event, 'text') }
    case UpstreamType.outputItemAdded: {
      const item = obj(event, 'item')
      return { type: 'output_item.added', itemId: str(item, 'id'), responseId: str(event, 'response_id'), message: read(item, 'type') === 'message' }
    }
    case UpstreamType.inputAudioCommitted: return { type: 'audio.committed', itemId: str(event, 'item_id') }
    case UpstreamType.inputTranscriptionCompleted: return { type: 'user.transcript', itemId: str(event, 'item_id'), text: read(event, 'transcript') }
    case UpstreamType.inputTranscriptionFailed: return { type: 'user.transcript.failed', itemId: str(event, 'item_id') }
  }
  return undefined
}

/** The final statuses of a response (a metric label: anything else is counted as `unknown`). */
const RESPONSE_STATUSES: ReadonlySet<string> = new Set(['completed', 'cancelled', 'failed', 'incomplete'])

/** `response.conversation_id === null` marks an out-of-band response: it neither takes nor frees the slot. */
function isOutOfBand (response: Record<string, unknown> | undefined): boolean {
  return response !== undefined && 'conversation_id' in response && response.conversation_id === null
}

/** Function calls a finished response lists; a call cut off (status incomplete) never completes. */
function completedCalls (response: Record<string, unknown> | undefined): AnnouncedCall[] {
  const output = response?.output
  if (!Array.isArray(output)) return []
  const calls: AnnouncedCall[] = []
  for (const item of output) {
    if (read(item, 'type') !== 'function_call' || read(item, 'status') === 'incomplete') continue
    const callId = boundedId(read(item, 'call_id'))
    if (callId !== undefined) calls.push({ callId, name: boundedId(read(item, 'name')) ?? '', arguments: read(item, 'arguments') ?? '{}', itemId: boundedId(read(item, 'id')) })
  }
  return calls
}

/** A response's token counts (GA `usage`); numbers that are missing or not finite count 0. */
function usageOf (usage: Record<string, unknown> | undefined): Usage | undefined {
  if (usage === undefined) return undefined
  const input = obj(usage, 'input_token_details')
  const output = obj(usage, 'output_token_details')
  return {
    inputTokens: count(usage.input_tokens),
    outputTokens: count(usage.output_tokens),
    inputAudioTokens: count(input?.audio_tokens),
    outputAudioTokens: count(output?.audio_tokens),
    cachedInputTokens: count(input?.cached_tokens)
  }
}

function count (value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0
}

/** The text of an assistant message item (its audio transcripts or texts), or undefined for any other item. */
function assistantText (item: Record<string, unknown> | undefined): string | undefined {
  if (read(item, 'role') !== 'assistant' || !Array.isArray(item?.content)) return undefined
  return (item.content as unknown[]).map((part) => read(part, 'transcript') ?? read(part, 'text') ?? '').join('')
}
