// Client text frames → what the session does with them: an engine intent, a Settings
// plan, nothing (KeepAlive), a Warning refusing the message (the session goes on), or
// the end of the session (an Error, then a close: Deepgram's clients treat every Error
// as the end). Pure: no sockets, no state. "What happens to a FunctionCallResponse?"
// starts here (it becomes the `functionResult` intent) and ends in the turn engine.

import type { EngineInput, InjectBehavior } from './engine/io.js'
import type { FunctionEndpoint } from './functions.js'
import { NO_CHOICES, SettingsError, listenFields, planSettings, speakFields, thinkFields } from './mapping.js'
import type { SessionPlan, SettingsPolicy } from './mapping.js'
import { CloseCode } from './protocol/codes.js'
import type { ServerMessage, SettingsMessage } from './protocol/deepgram.js'
import { CLIENT_MESSAGE_TYPES, UNSUPPORTED_CLIENT_MESSAGE_TYPES, WarningCode, clientTypeBucket } from './protocol/deepgram.js'
import { quoted } from './protocol/json.js'
import { isObject } from './protocol/json.js'

/** An engine input before the session stamps its time. */
export type Intent = EngineInput extends infer I ? I extends EngineInput ? Omit<I, 'at'> : never : never

export type ClientAction =
  | { kind: 'settings', plan: SessionPlan }
  /**
   * `warnings` go to the client before the intent is fed to the engine. `serverFunctions`
   * (UpdateThink with functions): the functions the proxy now calls itself, by name.
   */
  | { kind: 'intent', intent: Intent, warnings: ServerMessage[], serverFunctions?: Map<string, FunctionEndpoint> }
  /** Nothing to do (KeepAlive: OpenAI has no such event). */
  | { kind: 'none' }
  /** The message is refused with this Warning (or other reply); the session goes on. */
  | { kind: 'reply', message: ServerMessage }
  /** The session cannot go on: this Error, then a close with this code and reason. */
  | { kind: 'end', error: Extract<ServerMessage, { type: 'Error' }>, closeCode: number, reason: string }

export interface DecodedFrame {
  /** What the message counts as in `/connections`: its `type`, or `invalid`. */
  type: string
  /** Whether it goes into the session's timeline (text that is not JSON does not). */
  recorded: boolean
  action: ClientAction
}

/** The bounds a text message is checked against before it is parsed, and what the operator lets clients choose. */
export interface DecodeOptions {
  maxBytes: number
  maxDepth: number
  /** Models and function endpoints clients may use; none when left out. */
  policy?: SettingsPolicy
}

/**
 * Decodes one text frame. Its size and nesting are checked on the raw bytes first, so a
 * message over either bound is never parsed, stored or copied.
 */
export function decodeClientText (data: Buffer, bounds: DecodeOptions): DecodedFrame {
  if (data.length > bounds.maxBytes) {
    return { type: 'invalid', recorded: false, action: warning(WarningCode.messageTooLarge, `A text message of ${data.length} bytes was dropped unread: the limit is ${bounds.maxBytes} bytes (MAX_CLIENT_MESSAGE_BYTES).`) }
  }
  if (nestingExceeds(data, bounds.maxDepth)) {
    return { type: 'invalid', recorded: false, action: warning(WarningCode.messageTooDeep, `A text message nested deeper than ${bounds.maxDepth} levels was dropped unread (MAX_CLIENT_JSON_DEPTH).`) }
  }
  let message: unknown
  try {
    message = JSON.parse(data.toString())
  } catch {
    return { type: 'invalid', recorded: false, action: unparsable('A text frame was not valid JSON. Send JSON messages as text and audio as binary frames.') }
  }
  if (!isObject(message) || typeof message.type !== 'string') {
    return { type: 'invalid', recorded: true, action: unparsable('A message must be a JSON object with a string "type".') }
  }
  let action: ClientAction
  try {
    action = decodeMessage(message.type, message, bounds.policy ?? NO_CHOICES)
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error
    // Settings the proxy cannot serve leave nothing to go on with; a refused change leaves the session as it was.
    action = message.type === 'Settings'
      ? { kind: 'end', error: { type: 'Error', code: error.code, description: error.message }, closeCode: CloseCode.policy, reason: closeReason(error.code) }
      : warning(error.code, error.message)
  }
  return { type: clientTypeBucket(message.type), recorded: true, action }
}

/**
 * Whether the JSON text nests objects and arrays deeper than `max`, by counting brackets
 * outside strings (no parsing, no recursion). Invalid JSON is left for JSON.parse to refuse.
 */
export function nestingExceeds (data: Buffer, max: number): boolean {
  // Most messages have fewer brackets than the bound at all: counted natively, no scan needed.
  if (countUpTo(data, 0x7b, max + 1) + countUpTo(data, 0x5b, max + 1) <= max) return false
  let depth = 0
  let inString = false
  for (let i = 0; i < data.length; i++) {
    const byte = data[i]
    if (inString) {
      if (byte === 0x5c) i++ // a backslash escapes the next byte
      else if (byte === 0x22) inString = false
    } else if (byte === 0x22) {
      inString = true
    } else if (byte === 0x7b || byte === 0x5b) {
      if (++depth > max) return true
    } else if (byte === 0x7d || byte === 0x5d) {
      depth--
    }
  }
  return false
}

function decodeMessage (type: string, message: Record<string, unknown>, policy: SettingsPolicy): ClientAction {
  switch (type) {
    case 'Settings':
      return { kind: 'settings', plan: planSettings(message as SettingsMessage, policy) }
    case 'UpdatePrompt':
      if (typeof message.prompt !== 'string') return badField('UpdatePrompt', 'prompt', 'a string')
      return intent({ type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: message.prompt })
    case 'UpdateSpeak': {
      const { fields, warnings } = speakFields(message.speak)
      return intent({ type: 'configure', fields, ack: 'SpeakUpdated' }, warnings)
    }
    case 'UpdateThink': {
      const { fields, warnings, serverFunctions } = thinkFields(message.think, policy)
      const action = intent({ type: 'configure', fields, ack: 'ThinkUpdated' }, warnings)
      return serverFunctions === undefined ? action : { ...action, serverFunctions }
    }
    case 'UpdateListen': {
      const { fields, warnings } = listenFields(message.listen)
      return intent({ type: 'configure', fields, ack: 'ListenUpdated' }, warnings)
    }
    case 'ForceEndTurn':
      return intent({ type: 'forceEndTurn' })
    case 'InjectUserMessage':
      if (typeof message.content !== 'string' || message.content === '') return badField('InjectUserMessage', 'content', 'a non-empty string')
      return intent({ type: 'injectUser', content: message.content })
    case 'InjectAgentMessage': {
      // Older clients send `content`.
      const text = typeof message.message === 'string' ? message.message : message.content
      if (typeof text !== 'string' || text === '') return badField('InjectAgentMessage', 'message', 'a non-empty string')
      return intent({ type: 'injectAgent', message: text, behavior: injectBehavior(message.behavior) })
    }
    case 'FunctionCallResponse': {
      if (typeof message.id !== 'string') return badField('FunctionCallResponse', 'id', 'the function call id')
      const output = typeof message.content === 'string' ? message.content : JSON.stringify(message.content ?? null)
      return intent({ type: 'functionResult', callId: message.id, output })
    }
    case 'KeepAlive':
      return { kind: 'none' }
  }
  if ((UNSUPPORTED_CLIENT_MESSAGE_TYPES as readonly string[]).includes(type)) {
    return warning(WarningCode.unsupportedMessage, `${type} is not supported by this proxy and was ignored.`)
  }
  return unparsable(`Unknown message type ${quoted(type)}. Known types: ${CLIENT_MESSAGE_TYPES.join(', ')}.`)
}

/** How often `byte` occurs in `data`, counting no further than `limit`. */
function countUpTo (data: Buffer, byte: number, limit: number): number {
  let count = 0
  for (let at = data.indexOf(byte); at >= 0 && count < limit; at = data.indexOf(byte, at + 1)) count++
  return count
}

function intent (value: Intent, warnings: ServerMessage[] = []): Extract<ClientAction, { kind: 'intent' }> {
  return { kind: 'intent', intent: value, warnings }
}

function warning (code: string, description: string): ClientAction {
  return { kind: 'reply', message: { type: 'Warning', code, description } }
}

function unparsable (description: string): ClientAction {
  return warning(WarningCode.unparsable, description)
}

/** A close reason from an Error code: `UNSUPPORTED_AUDIO_FORMAT` → `unsupported audio format`. */
function closeReason (code: string): string {
  return code.toLowerCase().replaceAll('_', ' ')
}

function badField (type: string, field: string, expected: string): ClientAction {
  return unparsable(`${type} needs "${field}" as ${expected}.`)
}

function injectBehavior (value: unknown): InjectBehavior {
  return value === 'queue' || value === 'interrupt' ? value : 'refuse'
}
