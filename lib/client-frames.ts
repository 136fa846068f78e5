// Client text frames → what the session does with them: an engine intent, a Settings
// plan, nothing (KeepAlive), or a reply refusing the message. Pure: no sockets, no
// state. "What happens to a FunctionCallResponse?" starts here (it becomes the
// `functionResult` intent) and ends in the turn engine.

import type { EngineInput, InjectBehavior } from './engine/io.js'
import { SettingsError, planSettings, speakFields, thinkFields } from './mapping.js'
import type { SessionPlan } from './mapping.js'
import type { ServerMessage, SettingsMessage } from './protocol/deepgram.js'
import { CLIENT_MESSAGE_TYPES, ErrorCode, UNSUPPORTED_CLIENT_MESSAGE_TYPES, WarningCode } from './protocol/deepgram.js'
import { isObject } from './protocol/json.js'

/** An engine input before the session stamps its time. */
export type Intent = EngineInput extends infer I ? I extends EngineInput ? Omit<I, 'at'> : never : never

export type ClientAction =
  | { kind: 'settings', plan: SessionPlan }
  /** `warnings` go to the client before the intent is fed to the engine. */
  | { kind: 'intent', intent: Intent, warnings: ServerMessage[] }
  /** Nothing to do (KeepAlive: OpenAI has no such event). */
  | { kind: 'none' }
  /** The message is refused with this Error or Warning; nothing else happens. */
  | { kind: 'reply', message: ServerMessage }

export interface DecodedFrame {
  /** What the message counts as in `/connections`: its `type`, or `invalid`. */
  type: string
  /** Whether it goes into the session's timeline (text that is not JSON does not). */
  recorded: boolean
  action: ClientAction
}

export function decodeClientText (text: string): DecodedFrame {
  let message: unknown
  try {
    message = JSON.parse(text)
  } catch {
    return { type: 'invalid', recorded: false, action: unparsable('A text frame was not valid JSON. Send JSON messages as text and audio as binary frames.') }
  }
  if (!isObject(message) || typeof message.type !== 'string') {
    return { type: 'invalid', recorded: true, action: unparsable('A message must be a JSON object with a string "type".') }
  }
  const type = shownType(message.type)
  let action: ClientAction
  try {
    action = decodeMessage(message.type, type, message)
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error
    action = { kind: 'reply', message: { type: 'Error', code: error.code, description: error.message } }
  }
  return { type, recorded: true, action }
}

/** Longest type shown (counted, recorded in the timeline, quoted back): every real one is far shorter. */
const MAX_SHOWN_TYPE = 64

/** An unknown type as the session keeps and logs it: cut, so that a client cannot make it keep a frame's worth per message. */
function shownType (type: string): string {
  if (type.length <= MAX_SHOWN_TYPE) return type
  let characters = 0
  let end = 0
  for (const character of type) {
    if (++characters > MAX_SHOWN_TYPE) return type.slice(0, end) + '…'
    end += character.length
  }
  return type
}

function decodeMessage (type: string, shown: string, message: Record<string, unknown>): ClientAction {
  switch (type) {
    case 'Settings':
      return { kind: 'settings', plan: planSettings(message as SettingsMessage) }
    case 'UpdatePrompt':
      if (typeof message.prompt !== 'string') return badField('UpdatePrompt', 'prompt', 'a string')
      return intent({ type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: message.prompt })
    case 'UpdateSpeak': {
      const { fields, warnings } = speakFields(message.speak)
      return intent({ type: 'configure', fields, ack: 'SpeakUpdated' }, warnings)
    }
    case 'UpdateThink': {
      const { fields, warnings } = thinkFields(message.think)
      return intent({ type: 'configure', fields, ack: 'ThinkUpdated' }, warnings)
    }
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
    return { kind: 'reply', message: { type: 'Warning', code: WarningCode.unsupportedMessage, description: `${type} is not supported by this proxy and was ignored.` } }
  }
  return unparsable(`Unknown message type "${shown}". Known types: ${CLIENT_MESSAGE_TYPES.join(', ')}.`)
}

function intent (value: Intent, warnings: ServerMessage[] = []): ClientAction {
  return { kind: 'intent', intent: value, warnings }
}

function unparsable (description: string): ClientAction {
  return { kind: 'reply', message: { type: 'Error', code: ErrorCode.unparsable, description } }
}

function badField (type: string, field: string, expected: string): ClientAction {
  return unparsable(`${type} needs "${field}" as ${expected}.`)
}

function injectBehavior (value: unknown): InjectBehavior {
  return value === 'queue' || value === 'interrupt' ? value : 'refuse'
}
