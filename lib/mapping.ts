// Deepgram Settings / Update* messages → the upstream session fields, context items,
// greeting and audio formats. Pure functions; errors carry a code and a sentence a
// user can act on.

import { AudioFormatError, toOpenAIFormat } from './audio.js'
import type { ClientAudioFormat } from './audio.js'
import type { ContextMessage, DeepgramFunction, ServerMessage, SettingsMessage, SpeakSettings, ThinkSettings } from './protocol/deepgram.js'
import { ErrorCode, WarningCode } from './protocol/deepgram.js'
import type { ConversationItem, FunctionTool, SessionFields, Transcription } from './protocol/openai.js'
import { isObject } from './protocol/json.js'
import { assistantText, userText } from './protocol/openai.js'

export class SettingsError extends Error {
  constructor (readonly code: string, description: string) {
    super(description)
  }
}

export interface SessionPlan {
  fields: SessionFields
  context: ConversationItem[]
  greeting?: string
  input: ClientAudioFormat
  output: ClientAudioFormat
  warnings: ServerMessage[]
}

/** OpenAI Realtime voices; a Deepgram speak provider naming one of them selects it. */
export const OPENAI_VOICES = ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar']

export const DEFAULT_TRANSCRIPTION_MODEL = 'gpt-4o-mini-transcribe'

/** Maps a whole Settings message. Throws SettingsError when it cannot be served. */
export function planSettings (settings: SettingsMessage): SessionPlan {
  const audio = isObject(settings.audio) ? settings.audio : {}
  const agent = isObject(settings.agent) ? settings.agent : {}
  const input = audioFormat(audio.input, 'input')
  const output = audioFormat(audio.output, 'output')
  const warnings: ServerMessage[] = []
  const think = firstProvider(agent.think, warnings, 'think') ?? {}
  const fields: SessionFields = {
    outputModalities: ['audio'],
    inputFormat: input.upstream,
    outputFormat: output.upstream,
    transcription: transcription(agent.listen?.provider, agent.language),
    turnDetection: { type: 'server_vad', create_response: true, interrupt_response: true },
    instructions: typeof think.prompt === 'string' ? think.prompt : '',
    tools: tools(think.functions, warnings)
  }
  const voice = speakVoice(agent.speak, warnings)
  if (voice !== undefined) fields.voice = voice
  const plan: SessionPlan = {
    fields,
    context: contextItems(agent.context?.messages),
    input: input.client,
    output: output.client,
    warnings
  }
  if (typeof agent.greeting === 'string' && agent.greeting.trim() !== '') plan.greeting = agent.greeting
  return plan
}

/** UpdateThink: new prompt and/or functions. */
export function thinkFields (think: unknown): { fields: SessionFields, warnings: ServerMessage[] } {
  const warnings: ServerMessage[] = []
  const settings = firstProvider(think as ThinkSettings | ThinkSettings[], warnings, 'think')
  if (settings === undefined) throw new SettingsError(ErrorCode.unparsable, 'UpdateThink needs a "think" object.')
  const fields: SessionFields = {}
  if (typeof settings.prompt === 'string') fields.instructions = settings.prompt
  if (settings.functions !== undefined) fields.tools = tools(settings.functions, warnings)
  return { fields, warnings }
}

/** UpdateSpeak: the voice. A provider that names no OpenAI voice keeps the current one; a list, as in Settings, uses its first. */
export function speakFields (speak: unknown): { fields: SessionFields, warnings: ServerMessage[] } {
  const warnings: ServerMessage[] = []
  if (firstProvider(speak as SpeakSettings | SpeakSettings[], undefined, 'speak') === undefined) {
    throw new SettingsError(ErrorCode.unparsable, 'UpdateSpeak needs a "speak" object.')
  }
  const voice = speakVoice(speak as SpeakSettings | SpeakSettings[], warnings)
  return { fields: voice === undefined ? {} : { voice }, warnings }
}

function audioFormat (spec: unknown, direction: 'input' | 'output'): ReturnType<typeof toOpenAIFormat> {
  try {
    return toOpenAIFormat(isObject(spec) ? spec : {}, direction)
  } catch (error) {
    if (error instanceof AudioFormatError) throw new SettingsError(error.code, error.message)
    throw error
  }
}

/** Deepgram accepts a list of fallback providers; the proxy uses the first. */
function firstProvider<T> (value: T | T[] | undefined, warnings: ServerMessage[] | undefined, what: string): T | undefined {
  if (!Array.isArray(value)) return isObject(value) ? value : undefined
  if (value.length > 1 && warnings !== undefined) {
    warnings.push({ type: 'Warning', code: WarningCode.settingsIgnored, description: `agent.${what} lists ${value.length} providers; this proxy uses the first and ignores the fallbacks.` })
  }
  return value.find(isObject) as T | undefined
}

function speakVoice (speak: SpeakSettings | SpeakSettings[] | undefined, warnings?: ServerMessage[]): string | undefined {
  const first = firstProvider(speak, warnings, 'speak')
  const provider = first?.provider
  if (!isObject(provider)) return undefined
  for (const key of ['voice', 'model']) {
    const value = provider[key]
    if (typeof value === 'string' && OPENAI_VOICES.includes(value.toLowerCase())) return value.toLowerCase()
  }
  return undefined
}

function transcription (provider: unknown, language: unknown): Transcription {
  const model = isObject(provider) && provider.type === 'open_ai' && typeof provider.model === 'string'
    ? provider.model
    : DEFAULT_TRANSCRIPTION_MODEL
  const result: Transcription = { model }
  if (typeof language === 'string' && /^[a-z]{2}$/i.test(language)) result.language = language.toLowerCase()
  return result
}

function tools (functions: unknown, warnings: ServerMessage[]): FunctionTool[] {
  if (functions === undefined || functions === null) return []
  if (!Array.isArray(functions)) throw new SettingsError(ErrorCode.settingsInvalid, 'agent.think.functions must be an array of {name, description, parameters}.')
  return functions.map((fn: unknown, index): FunctionTool => {
    if (!isObject(fn) || typeof fn.name !== 'string' || fn.name === '') {
      throw new SettingsError(ErrorCode.settingsInvalid, `agent.think.functions[${index}] needs a non-empty "name".`)
    }
    const declared = fn as unknown as DeepgramFunction
    if (declared.endpoint !== undefined) {
      warnings.push({ type: 'Warning', code: WarningCode.serverSideFunction, description: `Function "${declared.name}" has an endpoint; this proxy does not call endpoints, so it is requested from the client (client_side: true).` })
    }
    const tool: FunctionTool = { type: 'function', name: declared.name }
    if (typeof declared.description === 'string') tool.description = declared.description
    tool.parameters = isObject(declared.parameters) ? declared.parameters : { type: 'object', properties: {} }
    return tool
  })
}

function contextItems (messages: unknown): ConversationItem[] {
  if (!Array.isArray(messages)) return []
  const items: ConversationItem[] = []
  for (const message of messages as ContextMessage[]) {
    if (!isObject(message)) continue
    if (typeof message.content === 'string' && (message.role === 'user' || message.role === 'assistant')) {
      items.push(message.role === 'user' ? userText(message.content) : assistantText(message.content))
    }
    for (const call of Array.isArray(message.function_calls) ? message.function_calls : []) {
      if (!isObject(call) || typeof call.id !== 'string' || typeof call.name !== 'string') continue
      items.push({ type: 'function_call', call_id: call.id, name: call.name, arguments: typeof call.arguments === 'string' ? call.arguments : '{}' })
      if (typeof call.response === 'string') items.push({ type: 'function_call_output', call_id: call.id, output: call.response })
    }
  }
  return items
}
