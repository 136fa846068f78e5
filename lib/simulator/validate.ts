// Strict checks of what clients send, following the GA request types: a
// beta-shaped update (`session.voice`, `modalities`, `input_audio_format`) or
// a beta content type (`text` in an assistant message) is refused here the
// way the real API refuses it, so the proxy cannot pass tests by accident.

import { AUDIO_FORMAT_TYPES } from './audio.js'
import { invalidValue, isObject, missingParameter, unknownParameter, type Problem, type SimEvent } from './events.js'

const SESSION_KEYS = new Set([
  'type', 'audio', 'include', 'instructions', 'max_output_tokens', 'model', 'output_modalities',
  'parallel_tool_calls', 'prompt', 'reasoning', 'tool_choice', 'tools', 'tracing', 'truncation'
])
const AUDIO_KEYS = new Set(['input', 'output'])
const AUDIO_INPUT_KEYS = new Set(['format', 'noise_reduction', 'transcription', 'turn_detection'])
const AUDIO_OUTPUT_KEYS = new Set(['format', 'speed', 'voice'])
const TURN_DETECTION_TYPES = ['server_vad', 'semantic_vad']
const MODALITIES = [['audio'], ['text']]

const CONTENT_TYPES: Record<string, readonly string[]> = {
  user: ['input_text', 'input_audio', 'input_image'],
  system: ['input_text'],
  assistant: ['output_text', 'output_audio']
}
const OTHER_ITEM_TYPES = ['mcp_approval_response', 'mcp_list_tools', 'mcp_call', 'mcp_approval_request']

export function sessionUpdateProblem (session: unknown): Problem | null {
  if (!isObject(session)) return missingParameter('session')
  // The brief of this simulator asks for `unknown_parameter` when the GA `type` is absent or wrong.
  if (session.type === undefined) return { ...missingParameter('session.type'), code: 'unknown_parameter' }
  if (session.type !== 'realtime') return { ...invalidValue('session.type', session.type, ['realtime']), code: 'unknown_parameter' }
  return unknownKey(session, SESSION_KEYS, 'session') ??
    modalitiesProblem(session.output_modalities, 'session.output_modalities') ??
    toolsProblem(session.tools) ??
    audioProblem(session.audio)
}

export function responseParamsProblem (response: unknown): Problem | null {
  if (response === undefined) return null
  if (!isObject(response)) return invalidValue('response', response)
  return modalitiesProblem(response.output_modalities, 'response.output_modalities') ??
    toolsProblem(response.tools, 'response.tools') ??
    (response.input === undefined || Array.isArray(response.input) ? null : invalidValue('response.input', response.input))
}

export function itemProblem (item: unknown): Problem | null {
  if (!isObject(item)) return missingParameter('item')
  switch (item.type) {
    case 'message': return messageProblem(item)
    case 'function_call':
      if (typeof item.name !== 'string') return missingParameter('item.name')
      if (typeof item.arguments !== 'string') return missingParameter('item.arguments')
      return null
    case 'function_call_output':
      if (typeof item.call_id !== 'string') return missingParameter('item.call_id')
      if (typeof item.output !== 'string') return missingParameter('item.output')
      return null
    case undefined: return missingParameter('item.type')
    default:
      return OTHER_ITEM_TYPES.includes(item.type) ? null : invalidValue('item.type', item.type, ['message', 'function_call', 'function_call_output', ...OTHER_ITEM_TYPES])
  }
}

function messageProblem (item: SimEvent): Problem | null {
  const allowed = CONTENT_TYPES[item.role]
  if (allowed === undefined) return item.role === undefined ? missingParameter('item.role') : invalidValue('item.role', item.role, Object.keys(CONTENT_TYPES))
  if (!Array.isArray(item.content)) return missingParameter('item.content')
  for (const [index, part] of item.content.entries()) {
    const param = `item.content[${index}].type`
    if (!isObject(part) || part.type === undefined) return missingParameter(param)
    if (!allowed.includes(part.type)) return invalidValue(param, part.type, allowed)
  }
  return null
}

function audioProblem (audio: unknown): Problem | null {
  if (audio === undefined) return null
  if (!isObject(audio)) return invalidValue('session.audio', audio)
  const unknown = unknownKey(audio, AUDIO_KEYS, 'session.audio')
  if (unknown) return unknown
  const { input, output } = audio
  if (input !== undefined) {
    if (!isObject(input)) return invalidValue('session.audio.input', input)
    const problem = unknownKey(input, AUDIO_INPUT_KEYS, 'session.audio.input') ??
      formatProblem(input.format, 'session.audio.input.format') ??
      turnDetectionProblem(input.turn_detection)
    if (problem) return problem
  }
  if (output !== undefined) {
    if (!isObject(output)) return invalidValue('session.audio.output', output)
    const problem = unknownKey(output, AUDIO_OUTPUT_KEYS, 'session.audio.output') ??
      formatProblem(output.format, 'session.audio.output.format')
    if (problem) return problem
    const { voice } = output
    if (voice !== undefined && typeof voice !== 'string' && !(isObject(voice) && typeof voice.id === 'string')) {
      return invalidValue('session.audio.output.voice', voice)
    }
  }
  return null
}

function formatProblem (format: unknown, param: string): Problem | null {
  if (format === undefined) return null
  if (!isObject(format)) return invalidValue(param, format)
  if (format.type !== undefined && !AUDIO_FORMAT_TYPES.includes(format.type)) return invalidValue(`${param}.type`, format.type, AUDIO_FORMAT_TYPES)
  // OpenAI's PCM is 24 kHz only: anything else must be resampled by the caller.
  if (format.rate !== undefined && format.rate !== 24000) return invalidValue(`${param}.rate`, format.rate, [24000])
  return null
}

function turnDetectionProblem (turnDetection: unknown): Problem | null {
  if (turnDetection === undefined || turnDetection === null) return null
  if (!isObject(turnDetection)) return invalidValue('session.audio.input.turn_detection', turnDetection)
  if (!TURN_DETECTION_TYPES.includes(turnDetection.type)) {
    return invalidValue('session.audio.input.turn_detection.type', turnDetection.type, TURN_DETECTION_TYPES)
  }
  return null
}

function modalitiesProblem (modalities: unknown, param: string): Problem | null {
  if (modalities === undefined) return null
  // GA speaks or writes, never both in one response.
  const valid = Array.isArray(modalities) && MODALITIES.some((m) => m.length === modalities.length && m[0] === modalities[0])
  return valid ? null : invalidValue(param, modalities, ['["audio"]', '["text"]'])
}

function toolsProblem (tools: unknown, param = 'session.tools'): Problem | null {
  if (tools === undefined) return null
  if (!Array.isArray(tools)) return invalidValue(param, tools)
  for (const [index, tool] of tools.entries()) {
    if (!isObject(tool)) return invalidValue(`${param}[${index}]`, tool)
    if (tool.type === 'function' && typeof tool.name !== 'string') return missingParameter(`${param}[${index}].name`)
  }
  return null
}

function unknownKey (object: SimEvent, known: Set<string>, path: string): Problem | null {
  for (const key of Object.keys(object)) {
    if (!known.has(key)) return unknownParameter(`${path}.${key}`)
  }
  return null
}

/** A `conversation.item.truncate` whose fields the real API refuses before looking at the item. */
export function truncateProblem (event: SimEvent): Problem | null {
  for (const param of ['item_id', 'content_index', 'audio_end_ms']) {
    const value = event[param]
    if (value === undefined) return missingParameter(param)
    if (param === 'item_id' ? typeof value !== 'string' : !Number.isInteger(value)) {
      const expected = param === 'item_id' ? 'a string' : 'an integer'
      return { code: 'invalid_type', message: `Invalid type for '${param}': expected ${expected}, but got ${describeType(value)} instead.`, param }
    }
    if (typeof value === 'number' && value < 0) {
      return { code: 'integer_below_min_value', message: `Invalid '${param}': integer below minimum value. Expected a value >= 0, but got ${value} instead.`, param }
    }
  }
  return null
}

function describeType (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'number') return 'a decimal'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}
