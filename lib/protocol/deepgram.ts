// Deepgram Voice Agent API v1: the client side of the proxy. One source of truth
// for message names and shapes. Incoming messages are validated only as far as the
// proxy reads them: unknown fields are ignored, never rejected.

/** Messages a client may send (text frames). */
export const CLIENT_MESSAGE_TYPES = [
  'Settings',
  'UpdatePrompt',
  'UpdateSpeak',
  'UpdateThink',
  'InjectUserMessage',
  'InjectAgentMessage',
  'FunctionCallResponse',
  'KeepAlive',
  'UpdateListen',
  'ForceEndTurn'
] as const

/** Known to Deepgram but not served by this proxy: answered with a Warning. */
export const UNSUPPORTED_CLIENT_MESSAGE_TYPES = ['AgentKeepAlive', 'UpdateInstructions', 'Close'] as const

export interface DeepgramFunction {
  name: string
  description?: string
  parameters?: Record<string, unknown>
  /** `{url, method, headers}`: Deepgram's server calls it (a server-side function). */
  endpoint?: unknown
}

export interface ContextMessage {
  type?: string
  role?: 'user' | 'assistant'
  content?: string
  function_calls?: Array<{ id?: string, name?: string, arguments?: string, response?: string, client_side?: boolean }>
}

export interface SettingsMessage {
  type: 'Settings'
  audio?: {
    input?: { encoding?: unknown, sample_rate?: unknown }
    output?: { encoding?: unknown, sample_rate?: unknown, container?: unknown, bitrate?: unknown }
  }
  /** An object; newer SDKs also allow a string, the id of a saved agent configuration. */
  agent?: {
    language?: unknown
    greeting?: unknown
    context?: { messages?: unknown }
    listen?: { provider?: Record<string, unknown> }
    think?: ThinkSettings | ThinkSettings[]
    speak?: SpeakSettings | SpeakSettings[]
  }
  [field: string]: unknown
}

export interface ThinkSettings {
  provider?: Record<string, unknown>
  prompt?: unknown
  functions?: unknown
  [field: string]: unknown
}

export interface SpeakSettings {
  provider?: Record<string, unknown>
  [field: string]: unknown
}

/** A function call as History reports it (Deepgram's "Function Call Context"). */
export interface HistoryFunctionCall { id: string, name: string, client_side: boolean, arguments: string, response: string }

/** Messages the proxy sends to clients (text frames); shapes as in Deepgram's specification. */
export type ServerMessage =
  | { type: 'Welcome', request_id: string }
  | { type: 'SettingsApplied' }
  | { type: 'PromptUpdated' }
  | { type: 'SpeakUpdated' }
  | { type: 'ThinkUpdated' }
  | { type: 'ListenUpdated' }
  | { type: 'ConversationText', role: 'user' | 'assistant', content: string }
  | { type: 'UserStartedSpeaking' }
  | { type: 'AgentThinking', content: string }
  /** `client_side: false`: the server calls the function itself and answers with FunctionCallResponse. */
  | { type: 'FunctionCallRequest', functions: Array<{ id: string, name: string, arguments: string, client_side: boolean }> }
  /** The server's answer to a server-side call (`client_side: false`). */
  | { type: 'FunctionCallResponse', id: string, name: string, content: string }
  /** Calls already requested that the client must no longer answer (the user spoke again). */
  | { type: 'FunctionCallCancelled', functions: Array<{ id: string, name: string }> }
  | { type: 'AgentStartedSpeaking', total_latency: number, tts_latency: number, ttt_latency: number }
  | { type: 'AgentAudioDone' }
  | { type: 'History', role: 'user' | 'assistant', content: string }
  | { type: 'History', function_calls: HistoryFunctionCall[] }
  | { type: 'InjectionRefused', message: string }
  | { type: 'History', role: 'user' | 'assistant', content: string }
  | { type: 'History', function_calls: Array<{ id: string, name: string, client_side: boolean, arguments: string, response: string }> }
  | { type: 'FunctionCallCancelled', functions: Array<{ id: string, name: string }> }
  | { type: 'Error', code: string, description: string }
  | { type: 'Warning', code: string, description: string }

/** The acknowledgement a configuration change earns once the upstream applied it. */
export type ConfigAck = 'SettingsApplied' | 'PromptUpdated' | 'SpeakUpdated' | 'ThinkUpdated' | 'ListenUpdated'

/**
 * Codes of `Error` messages. Deepgram's clients treat every `Error` as the end of the
 * session, so the proxy sends one only where the session then ends (and ends it); each
 * is followed by a close frame. Deepgram's own codes are reused where they fit.
 */
export const ErrorCode = {
  internal: 'INTERNAL_SERVER_ERROR',
  unsupportedAudio: 'UNSUPPORTED_AUDIO_FORMAT',
  settingsInvalid: 'INVALID_SETTINGS',
  /** Deepgram's code for `agent` given as the id of a saved agent configuration. */
  agentIdNotSupported: 'AGENT_ID_NOT_SUPPORTED',
  upstreamUnavailable: 'UPSTREAM_UNAVAILABLE',
  upstreamClosed: 'UPSTREAM_CLOSED',
  upstreamTimeout: 'UPSTREAM_TIMEOUT',
  upstreamUnauthorized: 'UPSTREAM_UNAUTHORIZED',
  upstreamRateLimited: 'UPSTREAM_RATE_LIMITED',
  upstreamProtocolError: 'UPSTREAM_PROTOCOL_ERROR',
  upstreamUnresponsive: 'UPSTREAM_UNRESPONSIVE',
  clientMessageRate: 'CLIENT_MESSAGE_RATE_EXCEEDED',
  clientTooSlow: 'CLIENT_TOO_SLOW',
  upstreamTooSlow: 'UPSTREAM_TOO_SLOW'
} as const

/** Codes of `Warning` messages: the session goes on. Deepgram's own codes where it defines one. */
export const WarningCode = {
  /** Deepgram's code (an Error there); here a refused message leaves the session open. */
  unparsable: 'UNPARSABLE_CLIENT_MESSAGE',
  unsupportedMessage: 'UNSUPPORTED_MESSAGE',
  unknownFunctionCall: 'UNKNOWN_FUNCTION_CALL',
  duplicateFunctionCallResponse: 'DUPLICATE_FUNCTION_CALL_RESPONSE',
  voiceChangeRefused: 'VOICE_CHANGE_NOT_ALLOWED',
  /** A speak provider or voice OpenAI Realtime does not have: which voice speaks instead. */
  voiceSubstituted: 'VOICE_SUBSTITUTED',
  /** A model the operator does not allow (OPENAI_REALTIME_MODELS): which model serves. */
  modelNotAllowed: 'MODEL_NOT_ALLOWED',
  serverSideFunction: 'SERVER_SIDE_FUNCTION_UNSUPPORTED',
  responseTimeout: 'RESPONSE_TIMEOUT',
  settingsIgnored: 'SETTING_IGNORED',
  audioBufferFull: 'AUDIO_BUFFER_FULL',
  messageTooLarge: 'CLIENT_MESSAGE_TOO_LARGE',
  messageTooDeep: 'CLIENT_MESSAGE_TOO_DEEP',
  /** Deepgram's own code (its limit is 25,000 characters; ours is MAX_PROMPT_CHARS). */
  promptTooLong: 'PROMPT_TOO_LONG',
  /** Deepgram's own code: the agent's response failed upstream. */
  thinkRequestFailed: 'THINK_REQUEST_FAILED',
  /** Deepgram's own code: a server-side function's endpoint failed. */
  functionCallFailed: 'FUNCTION_CALL_FAILED',
  /** Deepgram's own code: what an UpdateListen asked that cannot change (the rest applies). */
  updateListenUnsupported: 'UPDATE_LISTEN_UNSUPPORTED_FIELDS_CHANGED',
  /** Deepgram's own code: ForceEndTurn did not end the turn. */
  forceEndTurnUnsupported: 'FORCE_END_TURN_UNSUPPORTED',
  injectNotAcknowledged: 'INJECT_NOT_ACKNOWLEDGED',
  tooManyHeldMessages: 'TOO_MANY_PENDING_MESSAGES',
  /** The upstream did not confirm a later change in time (at setup, the session ends instead). */
  upstreamTimeout: 'UPSTREAM_TIMEOUT',
  /** The user's words could not be transcribed (the agent still heard them). */
  transcriptionFailed: 'TRANSCRIPTION_FAILED',
  /** The upstream connection dropped and a new one carries the conversation on. */
  upstreamReconnected: 'UPSTREAM_RECONNECTED'
} as const

/** Types `/connections` counts client messages under: the known ones, else this bucket. */
export const UNKNOWN_TYPE = 'unknown'

/** The counted type of a client message: its own if it is one of the protocol's, else UNKNOWN_TYPE. */
export function clientTypeBucket (type: string): string {
  return KNOWN_CLIENT_TYPES.has(type) ? type : UNKNOWN_TYPE
}

const KNOWN_CLIENT_TYPES: ReadonlySet<string> = new Set([...CLIENT_MESSAGE_TYPES, ...UNSUPPORTED_CLIENT_MESSAGE_TYPES])
