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
  'KeepAlive'
] as const

/** Known to Deepgram but not served by this proxy: answered with a Warning. */
export const UNSUPPORTED_CLIENT_MESSAGE_TYPES = ['AgentKeepAlive', 'UpdateInstructions', 'Close'] as const

export interface DeepgramFunction {
  name: string
  description?: string
  parameters?: Record<string, unknown>
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

/** Messages the proxy sends to clients (text frames). */
export type ServerMessage =
  | { type: 'Welcome', request_id: string }
  | { type: 'SettingsApplied' }
  | { type: 'PromptUpdated' }
  | { type: 'SpeakUpdated' }
  | { type: 'ThinkUpdated' }
  | { type: 'ConversationText', role: 'user' | 'assistant', content: string }
  | { type: 'UserStartedSpeaking' }
  | { type: 'AgentThinking', content: string }
  | { type: 'FunctionCallRequest', functions: Array<{ id: string, name: string, arguments: string, client_side: true }> }
  | { type: 'AgentStartedSpeaking', total_latency: number, tts_latency: number, ttt_latency: number }
  | { type: 'AgentAudioDone' }
  | { type: 'InjectionRefused', message: string }
  | { type: 'Error', code: string, description: string }
  | { type: 'Warning', code: string, description: string }

/** The acknowledgement a configuration change earns once the upstream applied it. */
export type ConfigAck = 'SettingsApplied' | 'PromptUpdated' | 'SpeakUpdated' | 'ThinkUpdated'

/** Error and warning codes this proxy sends. Deepgram's own codes are reused where they fit. */
export const ErrorCode = {
  unparsable: 'UNPARSABLE_CLIENT_MESSAGE',
  internal: 'INTERNAL_SERVER_ERROR',
  unsupportedAudio: 'UNSUPPORTED_AUDIO_FORMAT',
  settingsInvalid: 'INVALID_SETTINGS',
  upstreamUnavailable: 'UPSTREAM_UNAVAILABLE',
  upstreamClosed: 'UPSTREAM_CLOSED',
  upstreamTimeout: 'UPSTREAM_TIMEOUT',
  upstreamUnauthorized: 'UPSTREAM_UNAUTHORIZED',
  upstreamRateLimited: 'UPSTREAM_RATE_LIMITED',
  upstreamProtocolError: 'UPSTREAM_PROTOCOL_ERROR',
  upstreamUnresponsive: 'UPSTREAM_UNRESPONSIVE',
  clientMessageRate: 'CLIENT_MESSAGE_RATE_EXCEEDED',
  clientTooSlow: 'CLIENT_TOO_SLOW',
  upstreamTooSlow: 'UPSTREAM_TOO_SLOW',
  responseFailed: 'RESPONSE_FAILED',
  injectNotAcknowledged: 'INJECT_NOT_ACKNOWLEDGED',
  tooManyHeldMessages: 'TOO_MANY_PENDING_MESSAGES'
} as const

export const WarningCode = {
  unsupportedMessage: 'UNSUPPORTED_MESSAGE',
  unknownFunctionCall: 'UNKNOWN_FUNCTION_CALL',
  duplicateFunctionCallResponse: 'DUPLICATE_FUNCTION_CALL_RESPONSE',
  voiceChangeRefused: 'VOICE_CHANGE_NOT_ALLOWED',
  serverSideFunction: 'SERVER_SIDE_FUNCTION_UNSUPPORTED',
  responseTimeout: 'RESPONSE_TIMEOUT',
  settingsIgnored: 'SETTING_IGNORED',
  audioBufferFull: 'AUDIO_BUFFER_FULL',
  messageTooLarge: 'CLIENT_MESSAGE_TOO_LARGE',
  messageTooDeep: 'CLIENT_MESSAGE_TOO_DEEP',
  /** Deepgram's own code (its limit is 25,000 characters; ours is MAX_PROMPT_CHARS). */
  promptTooLong: 'PROMPT_TOO_LONG'
} as const

/** Types `/connections` counts client messages under: the known ones, else this bucket. */
export const UNKNOWN_TYPE = 'unknown'

/** The counted type of a client message: its own if it is one of the protocol's, else UNKNOWN_TYPE. */
export function clientTypeBucket (type: string): string {
  return KNOWN_CLIENT_TYPES.has(type) ? type : UNKNOWN_TYPE
}

const KNOWN_CLIENT_TYPES: ReadonlySet<string> = new Set([...CLIENT_MESSAGE_TYPES, ...UNSUPPORTED_CLIENT_MESSAGE_TYPES])
