// Deepgram Settings / Update* messages → the upstream session fields, context items,
// greeting, audio formats, the model and the server-side functions. Pure functions;
// errors carry a code and a sentence a user can act on, and whatever the proxy serves
// differently from what the client asked (another voice, another model, a function
// sent to the client) is said in a Warning, never silently.

import { AudioFormatError, toOpenAIFormat } from './audio.js'
import type { ClientAudioFormat } from './audio.js'
import { EndpointAllowlist, readEndpoint } from './functions.js'
import type { FunctionEndpoint } from './functions.js'
import type { ContextMessage, DeepgramFunction, ServerMessage, SettingsMessage, SpeakSettings, ThinkSettings } from './protocol/deepgram.js'
import { ErrorCode, WarningCode } from './protocol/deepgram.js'
import type { ConversationItem, FunctionTool, SessionFields, Transcription } from './protocol/openai.js'
import { isObject, quoted } from './protocol/json.js'
import { assistantText, userText } from './protocol/openai.js'

export class SettingsError extends Error {
  constructor (readonly code: string, description: string) {
    super(description)
  }
}

/** What the operator lets a client choose. */
export interface SettingsPolicy {
  /** Models `agent.think.provider.model` may name (OPENAI_REALTIME_MODELS); the first serves otherwise. Empty: no choice, the upstream URL's model serves. */
  models: readonly string[]
  /** Where server-side functions may call (FUNCTION_ENDPOINT_ALLOWLIST); empty: nowhere, they go to the client. */
  functionEndpoints: EndpointAllowlist
}

export const NO_CHOICES: SettingsPolicy = { models: [], functionEndpoints: EndpointAllowlist.none }

export interface SessionPlan {
  fields: SessionFields
  context: ConversationItem[]
  /** Settings.flags.history: History messages unless false. */
  history: boolean
  /** Settings.tags, bounded (MAX_TAGS of at most MAX_TAG_CHARS each). */
  tags: string[]
  greeting?: string
  input: ClientAudioFormat
  output: ClientAudioFormat
  /** The model that serves this session (undefined when the policy offers no choice). */
  model?: string
  /** Functions the proxy calls itself, by name; every other function is the client's. */
  serverFunctions: Map<string, FunctionEndpoint>
  warnings: ServerMessage[]
}

/** A session's tags as it keeps them (they label its logs and its summary). */
export const MAX_TAGS = 32
export const MAX_TAG_CHARS = 100

/** OpenAI Realtime voices; a Deepgram speak provider naming one of them selects it. */
export const OPENAI_VOICES = ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar']

/**
 * Deepgram's `open_ai` speak voices (OpenAI's text-to-speech voices) that OpenAI Realtime
 * lacks, and the realtime voice closest in character: nova (bright, female) → coral,
 * onyx (deep, male) → cedar, fable (expressive, storytelling) → ballad.
 */
export const VOICE_SUBSTITUTES: ReadonlyMap<string, string> = new Map([['nova', 'coral'], ['onyx', 'cedar'], ['fable', 'ballad']])
/** The realtime voice for any other voice name an `open_ai` provider gives. */
export const FALLBACK_VOICE = 'alloy'

export const DEFAULT_TRANSCRIPTION_MODEL = 'gpt-4o-mini-transcribe'
/** OpenAI's transcription models (dated snapshots included); a listen provider naming another model (nova-3, flux…) gets the default. */
const TRANSCRIPTION_MODEL = /^(whisper-1|gpt-4o(-mini)?-transcribe(-[\w.-]+)?)$/
/** Listen provider fields OpenAI's transcription has no equivalent for. */
const UNSERVED_LISTEN_FIELDS = ['eot_threshold', 'eager_eot_threshold', 'eot_timeout_ms', 'smart_format']

/** Maps a whole Settings message. Throws SettingsError when it cannot be served. */
export function planSettings (settings: SettingsMessage, policy: SettingsPolicy = NO_CHOICES): SessionPlan {
  const audio = isObject(settings.audio) ? settings.audio : {}
  const agent = agentSettings(settings.agent)
  const input = audioFormat(audio.input, 'input')
  const output = audioFormat(audio.output, 'output')
  const warnings: ServerMessage[] = []
  const think = firstProvider(agent.think, warnings, 'think') ?? {}
  const listen = transcription(isObject(agent.listen) ? agent.listen.provider : undefined, agent.language)
  if (listen.ignored.length > 0) {
    warnings.push({ type: 'Warning', code: WarningCode.settingsIgnored, description: `agent.listen.provider: ${listen.ignored.join(', ')} ${listen.ignored.length === 1 ? 'has' : 'have'} no equivalent in OpenAI's transcription and ${listen.ignored.length === 1 ? 'was' : 'were'} ignored.` })
  }
  const declared = tools(think.functions, policy.functionEndpoints, warnings)
  const fields: SessionFields = {
    outputModalities: ['audio'],
    inputFormat: input.upstream,
    outputFormat: output.upstream,
    transcription: listen.transcription,
    turnDetection: { type: 'server_vad', create_response: true, interrupt_response: true },
    instructions: typeof think.prompt === 'string' ? think.prompt : '',
    tools: declared.tools
  }
  const voice = speakVoice(agent.speak, 'Settings', warnings)
  if (voice !== undefined) fields.voice = voice
  const plan: SessionPlan = {
    fields,
    context: contextItems(isObject(agent.context) ? agent.context.messages : undefined),
    history: !(isObject(settings.flags) && settings.flags.history === false),
    tags: tags(settings.tags),
    input: input.client,
    output: output.client,
    serverFunctions: declared.serverFunctions,
    warnings
  }
  const model = chooseModel(think.provider, policy.models, warnings)
  if (model !== undefined) plan.model = model
  if (typeof agent.greeting === 'string' && agent.greeting.trim() !== '') plan.greeting = agent.greeting
  return plan
}

/** UpdateThink: new prompt and/or functions (and which of them the proxy calls itself). */
export function thinkFields (think: unknown, policy: SettingsPolicy = NO_CHOICES): { fields: SessionFields, serverFunctions?: Map<string, FunctionEndpoint>, warnings: ServerMessage[] } {
  const warnings: ServerMessage[] = []
  const settings = firstProvider(think as ThinkSettings | ThinkSettings[], warnings, 'think')
  if (settings === undefined) throw new SettingsError(WarningCode.unparsable, 'UpdateThink needs a "think" object.')
  const fields: SessionFields = {}
  if (typeof settings.prompt === 'string') fields.instructions = settings.prompt
  const model = isObject(settings.provider) ? settings.provider.model : undefined
  // The model is the upstream connection's: it is chosen at Settings and stays for the session.
  if (typeof model === 'string' && policy.models.length > 1 && !policy.models.includes(model)) {
    warnings.push({ type: 'Warning', code: WarningCode.modelNotAllowed, description: `think.provider.model ${quoted(model)} is not offered here; the session's model keeps serving (offered: ${policy.models.join(', ')}).` })
  }
  if (settings.functions === undefined) return { fields, warnings }
  const declared = tools(settings.functions, policy.functionEndpoints, warnings)
  fields.tools = declared.tools
  return { fields, serverFunctions: declared.serverFunctions, warnings }
}

/**
 * UpdateSpeak: the voice. A provider OpenAI Realtime cannot speak with keeps the session's
 * voice (a Warning says so); a list, as in Settings, uses the first provider that names a
 * voice the proxy can serve.
 */
export function speakFields (speak: unknown): { fields: SessionFields, warnings: ServerMessage[] } {
  if (firstProvider(speak as SpeakSettings | SpeakSettings[], undefined, 'speak') === undefined) {
    throw new SettingsError(WarningCode.unparsable, 'UpdateSpeak needs a "speak" object.')
  }
  const warnings: ServerMessage[] = []
  const voice = speakVoice(speak as SpeakSettings | SpeakSettings[], 'UpdateSpeak', warnings)
  return { fields: voice === undefined ? {} : { voice }, warnings }
}

/**
 * UpdateListen: the transcription (model if it is OpenAI's, language, keyterms as its
 * prompt). What OpenAI's transcription cannot do is refused in a Warning with Deepgram's
 * code; the rest applies. The transcription is set whole: a language or keyterms the
 * message leaves out go back to their defaults (auto-detected language, no prompt).
 */
export function listenFields (listen: unknown): { fields: SessionFields, warnings: ServerMessage[] } {
  if (!isObject(listen) || !isObject(listen.provider)) throw new SettingsError(WarningCode.unparsable, 'UpdateListen needs a "listen" object with a "provider".')
  const { transcription: value, ignored } = transcription(listen.provider, undefined)
  const warnings: ServerMessage[] = ignored.length === 0
    ? []
    : [{ type: 'Warning', code: WarningCode.updateListenUnsupported, description: `UpdateListen: ${ignored.join(', ')} cannot change with OpenAI's transcription and ${ignored.length === 1 ? 'was' : 'were'} ignored; the rest was applied.` }]
  return { fields: { transcription: value }, warnings }
}

/**
 * The upstream URL serving `model`: the operator's URL with its `?model=` set to it (on
 * Azure OpenAI, the model is the deployment's name).
 */
export function upstreamUrlFor (baseUrl: string, model: string): string {
  const url = new URL(baseUrl)
  url.searchParams.set('model', model)
  return url.toString()
}

function agentSettings (agent: unknown): NonNullable<SettingsMessage['agent']> {
  if (agent === undefined || agent === null) return {}
  if (typeof agent === 'string') {
    throw new SettingsError(ErrorCode.agentIdNotSupported, 'Settings.agent is a string, the id of a saved agent configuration: this proxy cannot load saved configurations. Send the agent settings as an object ({listen, think, speak, greeting, …}).')
  }
  if (!isObject(agent)) throw new SettingsError(ErrorCode.settingsInvalid, 'Settings.agent must be an object ({listen, think, speak, greeting, …}).')
  return agent
}

function audioFormat (spec: unknown, direction: 'input' | 'output'): ReturnType<typeof toOpenAIFormat> {
  try {
    return toOpenAIFormat(isObject(spec) ? spec : {}, direction)
  } catch (error) {
    if (error instanceof AudioFormatError) throw new SettingsError(error.code, error.message)
    throw error
  }
}

/** The model the client asked for if the operator offers it, else the default (with a Warning naming it); none when there is no choice. */
function chooseModel (provider: unknown, models: readonly string[], warnings: ServerMessage[]): string | undefined {
  const [fallback] = models
  // With one model there is no choice: the name a Deepgram client puts there (a text
  // model such as gpt-4o-mini, for Deepgram's pipeline) means nothing here.
  if (fallback === undefined || models.length === 1) return undefined
  const asked = isObject(provider) ? provider.model : undefined
  if (typeof asked !== 'string' || models.includes(asked)) return typeof asked === 'string' ? asked : fallback
  warnings.push({ type: 'Warning', code: WarningCode.modelNotAllowed, description: `agent.think.provider.model ${quoted(asked)} is not offered here; ${fallback} serves this session (offered: ${models.join(', ')}).` })
  return fallback
}

/** Deepgram accepts a list of fallback providers; the proxy uses the first. */
function firstProvider<T> (value: T | T[] | undefined, warnings: ServerMessage[] | undefined, what: string): T | undefined {
  if (!Array.isArray(value)) return isObject(value) ? value : undefined
  if (value.length > 1 && warnings !== undefined) {
    warnings.push({ type: 'Warning', code: WarningCode.settingsIgnored, description: `agent.${what} lists ${value.length} providers; this proxy uses the first and ignores the fallbacks.` })
  }
  return value.find(isObject) as T | undefined
}

/** What a speak provider asks for: the realtime voice that serves it (none: the default or current one), and whether it is not the one asked for. */
interface VoiceChoice { voice: string | undefined, asked: string, substitute: boolean }

function voiceOf (settings: SpeakSettings): VoiceChoice {
  if (!isObject(settings.provider)) return { voice: undefined, asked: 'no provider', substitute: false }
  const provider = settings.provider
  const type = typeof provider.type === 'string' ? provider.type : undefined
  const names = [provider.voice, provider.model].filter((value): value is string => typeof value === 'string')
  const exact = names.map((name) => name.toLowerCase()).find((name) => OPENAI_VOICES.includes(name))
  const asked = `${type ?? 'a provider'}${names.length > 0 ? ` (${names.join(', ')})` : ''}`
  if (exact !== undefined) return { voice: exact, asked, substitute: false }
  if (type !== undefined && type !== 'open_ai') return { voice: undefined, asked, substitute: true }
  const voice = typeof provider.voice === 'string' ? provider.voice.toLowerCase() : undefined
  return { voice: (voice === undefined ? undefined : VOICE_SUBSTITUTES.get(voice)) ?? FALLBACK_VOICE, asked, substitute: true }
}

function speakVoice (speak: SpeakSettings | SpeakSettings[] | undefined, message: 'Settings' | 'UpdateSpeak', warnings: ServerMessage[]): string | undefined {
  const providers = (Array.isArray(speak) ? speak : [speak]).filter(isObject) as SpeakSettings[]
  if (providers.length === 0) return undefined
  const choices = providers.map(voiceOf)
  // A list: the first provider with a voice of our own, else the first with a substitute, else the first.
  let index = choices.findIndex((choice) => choice.voice !== undefined && !choice.substitute)
  if (index < 0) index = choices.findIndex((choice) => choice.voice !== undefined)
  if (index < 0) index = 0
  const choice = choices[index] as VoiceChoice
  if (providers.length > 1) {
    warnings.push({ type: 'Warning', code: WarningCode.settingsIgnored, description: `agent.speak lists ${providers.length} providers; this proxy uses agent.speak[${index}], ${choice.asked}, and ignores the others.` })
  }
  if (choice.substitute) {
    const speaks = choice.voice !== undefined
      ? `the OpenAI Realtime voice "${choice.voice}" speaks instead`
      : message === 'Settings' ? 'OpenAI\'s default voice speaks instead' : 'the session\'s voice stays'
    warnings.push({ type: 'Warning', code: WarningCode.voiceSubstituted, description: `agent.speak asks for ${choice.asked}, which OpenAI Realtime does not have: ${speaks}. Voices: ${OPENAI_VOICES.join(', ')} (as an open_ai provider's voice).` })
  }
  return choice.voice
}

/** A listen provider as OpenAI's transcription, and the fields of it that have no equivalent. */
function transcription (provider: unknown, agentLanguage: unknown): { transcription: Transcription, ignored: string[] } {
  const given = isObject(provider) ? provider : {}
  const model = typeof given.model === 'string' && TRANSCRIPTION_MODEL.test(given.model) ? given.model : DEFAULT_TRANSCRIPTION_MODEL
  const result: Transcription = { model }
  const ignored = UNSERVED_LISTEN_FIELDS.filter((field) => given[field] !== undefined && given[field] !== null)
  const hints = Array.isArray(given.language_hints) ? given.language_hints.filter((hint): hint is string => typeof hint === 'string') : []
  if (hints.length > 1) ignored.push('language_hints (more than one language)')
  const requested = given.language ?? hints[0] ?? agentLanguage
  const language = languageCode(requested)
  if (language !== undefined) result.language = language
  else if (typeof requested === 'string' && requested !== '' && requested !== 'multi') ignored.push(`language ${quoted(requested)}`)
  const keyterms = Array.isArray(given.keyterms) ? given.keyterms.filter((term): term is string => typeof term === 'string' && term.trim() !== '') : []
  if (keyterms.length > 0) result.prompt = keyterms.join(', ')
  return { transcription: result, ignored }
}

/** A BCP-47 tag as OpenAI's transcription wants it: its two-letter ISO 639-1 language (`en-US` → `en`). */
function languageCode (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  const primary = value.split(/[-_]/)[0] ?? ''
  return /^[a-z]{2}$/i.test(primary) ? primary.toLowerCase() : undefined
}

/** The functions as upstream tools, and those the proxy calls itself (their endpoint is allowed). */
function tools (functions: unknown, allowlist: EndpointAllowlist, warnings: ServerMessage[]): { tools: FunctionTool[], serverFunctions: Map<string, FunctionEndpoint> } {
  const serverFunctions = new Map<string, FunctionEndpoint>()
  if (functions === undefined || functions === null) return { tools: [], serverFunctions }
  if (!Array.isArray(functions)) throw new SettingsError(ErrorCode.settingsInvalid, 'agent.think.functions must be an array of {name, description, parameters}.')
  const declared = functions.map((fn: unknown, index): FunctionTool => {
    if (!isObject(fn) || typeof fn.name !== 'string' || fn.name === '') {
      throw new SettingsError(ErrorCode.settingsInvalid, `agent.think.functions[${index}] needs a non-empty "name".`)
    }
    const declared = fn as unknown as DeepgramFunction
    if (declared.endpoint !== undefined && declared.endpoint !== null) {
      const endpoint = serverSide(declared, allowlist)
      if (typeof endpoint === 'string') {
        warnings.push({ type: 'Warning', code: WarningCode.serverSideFunction, description: `Function ${quoted(declared.name)} is not called by this server: ${endpoint}. It is requested from the client instead (FunctionCallRequest with client_side: true).` })
      } else {
        serverFunctions.set(declared.name, endpoint)
      }
    }
    const tool: FunctionTool = { type: 'function', name: declared.name }
    if (typeof declared.description === 'string') tool.description = declared.description
    tool.parameters = isObject(declared.parameters) ? declared.parameters : { type: 'object', properties: {} }
    return tool
  })
  return { tools: declared, serverFunctions }
}

/** A function's endpoint if the proxy may call it, else why not. */
function serverSide (fn: DeepgramFunction, allowlist: EndpointAllowlist): FunctionEndpoint | string {
  if (allowlist.isEmpty) return 'this server calls no function endpoints (FUNCTION_ENDPOINT_ALLOWLIST is not set)'
  const endpoint = readEndpoint(fn.endpoint)
  if (typeof endpoint === 'string') return endpoint
  if (!allowlist.allows(endpoint.url)) return 'its endpoint is not under FUNCTION_ENDPOINT_ALLOWLIST'
  return endpoint
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

/** Settings.tags: strings only, at most MAX_TAGS, each cut to MAX_TAG_CHARS. */
function tags (value: unknown): string[] {
  if (!Array.isArray(value)) return []
  return value.filter((tag): tag is string => typeof tag === 'string' && tag !== '').slice(0, MAX_TAGS).map((tag) => tag.slice(0, MAX_TAG_CHARS))
}
