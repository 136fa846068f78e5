// OpenAI Realtime (GA) on the upstream side: the event names the proxy acts on and
// the shapes it sends. Upstream events are read leniently (extra fields are normal);
// what we send is built only here and in the turn engine.

import type { OpenAIAudioFormat } from '../audio.js'

/** Server event types the proxy reads (GA names). */
export const UpstreamType = {
  sessionUpdated: 'session.updated',
  responseCreated: 'response.created',
  responseDone: 'response.done',
  error: 'error',
  itemAdded: 'conversation.item.added',
  itemDone: 'conversation.item.done',
  functionCallArgumentsDone: 'response.function_call_arguments.done',
  speechStarted: 'input_audio_buffer.speech_started',
  speechStopped: 'input_audio_buffer.speech_stopped',
  outputAudioDelta: 'response.output_audio.delta',
  outputAudioDone: 'response.output_audio.done',
  outputAudioTranscriptDelta: 'response.output_audio_transcript.delta',
  outputAudioTranscriptDone: 'response.output_audio_transcript.done',
  outputTextDelta: 'response.output_text.delta',
  outputTextDone: 'response.output_text.done',
  outputItemAdded: 'response.output_item.added',
  inputAudioCommitted: 'input_audio_buffer.committed',
  inputTranscriptionCompleted: 'conversation.item.input_audio_transcription.completed',
  inputTranscriptionFailed: 'conversation.item.input_audio_transcription.failed'
} as const

/** Every GA server event type: what `/connections` counts upstream events under (any other is `unknown`). */
export const SERVER_EVENT_TYPES: ReadonlySet<string> = new Set([
  'error', 'session.created', 'session.updated', 'conversation.created', 'conversation.item.created',
  'conversation.item.added', 'conversation.item.done', 'conversation.item.retrieved', 'conversation.item.truncated',
  'conversation.item.deleted', 'conversation.item.input_audio_transcription.completed',
  'conversation.item.input_audio_transcription.delta', 'conversation.item.input_audio_transcription.segment',
  'conversation.item.input_audio_transcription.failed', 'input_audio_buffer.committed', 'input_audio_buffer.cleared',
  'input_audio_buffer.speech_started', 'input_audio_buffer.speech_stopped', 'input_audio_buffer.timeout_triggered',
  'input_audio_buffer.dtmf_event_received', 'output_audio_buffer.started', 'output_audio_buffer.stopped',
  'output_audio_buffer.cleared', 'response.created', 'response.done', 'response.output_item.added',
  'response.output_item.done', 'response.content_part.added', 'response.content_part.done', 'response.output_text.delta',
  'response.output_text.done', 'response.output_audio_transcript.delta', 'response.output_audio_transcript.done',
  'response.output_audio.delta', 'response.output_audio.done', 'response.function_call_arguments.delta',
  'response.function_call_arguments.done', 'response.mcp_call_arguments.delta', 'response.mcp_call_arguments.done',
  'response.mcp_call.in_progress', 'response.mcp_call.completed', 'response.mcp_call.failed',
  'mcp_list_tools.in_progress', 'mcp_list_tools.completed', 'mcp_list_tools.failed', 'rate_limits.updated'
])

/** Longest id kept from the upstream (OpenAI's are about 30 characters): a longer one is cut, the same way every time. */
export const MAX_UPSTREAM_ID_CHARS = 128

export function boundedId (id: string | undefined): string | undefined {
  return id === undefined || id.length <= MAX_UPSTREAM_ID_CHARS ? id : id.slice(0, MAX_UPSTREAM_ID_CHARS)
}

/**
 * An upstream error code as it may reach a client, a log line or a metric: OpenAI's codes
 * are short snake_case words; anything else (free text, a quoted key) becomes `upstream_error`.
 */
export function upstreamCode (code: string | undefined): string | undefined {
  if (code === undefined) return undefined
  return /^[a-z0-9_.]{1,64}$/i.test(code) ? code : 'upstream_error'
}

/** The client event the audio hot path sends (built by concatenation, never by the engine). */
export const INPUT_AUDIO_APPEND = 'input_audio_buffer.append'

/** A parsed upstream event. Never validated strictly: read fields defensively. */
export interface UpstreamEvent {
  type: string
  [field: string]: unknown
}

export interface FunctionTool {
  type: 'function'
  name: string
  description?: string
  parameters?: Record<string, unknown>
}

export interface Transcription {
  model: string
  language?: string
  /** Words to expect (Deepgram's keyterms), as the transcription model's prompt. */
  prompt?: string
}

interface TurnDetection {
  type: 'server_vad' | 'semantic_vad'
  create_response: boolean
  interrupt_response: boolean
  [field: string]: unknown
}

/**
 * The session settings the proxy manages, flat so that changes merge field by field
 * (latest value wins) and diff cheaply. Rendered to the GA `session` object by
 * `sessionPayload`.
 */
export interface SessionFields {
  instructions?: string
  tools?: FunctionTool[]
  voice?: string
  inputFormat?: OpenAIAudioFormat
  outputFormat?: OpenAIAudioFormat
  transcription?: Transcription | null
  turnDetection?: TurnDetection | null
  outputModalities?: Array<'audio' | 'text'>
}

export const SESSION_FIELD_NAMES = [
  'instructions', 'tools', 'voice', 'inputFormat', 'outputFormat', 'transcription', 'turnDetection', 'outputModalities'
] as const satisfies ReadonlyArray<keyof SessionFields>

/** The GA `session` object of a `session.update` carrying exactly these fields. */
export function sessionPayload (fields: SessionFields): Record<string, unknown> {
  const session: Record<string, unknown> = { type: 'realtime' }
  if (fields.instructions !== undefined) session.instructions = fields.instructions
  if (fields.tools !== undefined) {
    session.tools = fields.tools
    session.tool_choice = 'auto'
  }
  if (fields.outputModalities !== undefined) session.output_modalities = fields.outputModalities
  const input: Record<string, unknown> = {}
  if (fields.inputFormat !== undefined) input.format = fields.inputFormat
  if (fields.transcription !== undefined) input.transcription = fields.transcription
  if (fields.turnDetection !== undefined) input.turn_detection = fields.turnDetection
  const output: Record<string, unknown> = {}
  if (fields.outputFormat !== undefined) output.format = fields.outputFormat
  if (fields.voice !== undefined) output.voice = fields.voice
  const audio: Record<string, unknown> = {}
  if (Object.keys(input).length > 0) audio.input = input
  if (Object.keys(output).length > 0) audio.output = output
  if (Object.keys(audio).length > 0) session.audio = audio
  return session
}

/** A conversation item the proxy creates upstream. */
export type ConversationItem =
  | { type: 'message', role: 'user', content: Array<{ type: 'input_text', text: string }> }
  | { type: 'message', role: 'assistant', content: Array<{ type: 'output_text', text: string }> }
  | { type: 'function_call', call_id: string, name: string, arguments: string }
  | { type: 'function_call_output', call_id: string, output: string }

export function userText (text: string): ConversationItem {
  return { type: 'message', role: 'user', content: [{ type: 'input_text', text }] }
}

export function assistantText (text: string): ConversationItem {
  return { type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] }
}
