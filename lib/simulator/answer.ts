// What a simulated response says: a pure, deterministic stand-in for the model.
//   1. Response instructions asking to say something exactly/verbatim → that text.
//   2. The conversation ends with tool outputs → "The result is <output>."
//   3. The last user message asks what the user said first → "You first said:
//      <first user text>."; or what the assistant just said → "I last said:
//      <the last assistant message as the model holds it>." (after a truncate,
//      only the words of the audio left), so a test can prove what the
//      conversation holds.
//   4. The last user message names a declared function (underscores may be
//      spaces) and no tool output followed it yet → call that function.
//   5. Otherwise → "You said: <last user text>."

import { isObject, type SimItem } from './events.js'

export type Answer =
  | { kind: 'speech', text: string }
  | { kind: 'tool_calls', calls: ToolCall[] }

export interface ToolCall {
  name: string
  arguments: string
}

export interface AnswerRequest {
  /** `response.instructions` of the create (session instructions are not read). */
  instructions: unknown
  /** The conversation as the model reads it (audio parts carry their words as `transcript`), or the create's own `response.input`. */
  items: readonly SimItem[]
  tools: unknown
  toolChoice: unknown
  parallelCalls: number
}

export const GREETING = 'Hello! How can I help you today?'
const UNHEARD = 'Sorry, I did not catch that.'

export function planAnswer (request: AnswerRequest): Answer {
  const verbatim = verbatimText(request.instructions)
  if (verbatim !== null) return speech(verbatim)

  const { items } = request
  const outputs = trailingToolOutputs(items)
  if (outputs.length > 0) return speech(`The result is ${outputs.join(' and ')}.`)

  const lastUser = items.findLastIndex(isUserMessage)
  if (lastUser === -1) return speech(GREETING)
  const text = messageText(items[lastUser] as SimItem)
  const recalled = recall(text, items.slice(0, lastUser))
  if (recalled !== null) return speech(recalled)
  const answered = items.slice(lastUser + 1).some((item) => item.type === 'function_call_output')
  if (!answered) {
    const calls = toolCalls(text, request)
    if (calls.length > 0) return { kind: 'tool_calls', calls }
  }
  return speech(text === '' ? UNHEARD : `You said: ${sentence(text)}.`)
}

const FIRST_SAID = /\bwhat (?:did i (?:say|ask) first|was my first (?:message|question))\b/i
const LAST_SAID = /\bwhat did you (?:just )?say\b/i

function recall (question: string, before: readonly SimItem[]): string | null {
  if (FIRST_SAID.test(question)) {
    const first = before.find(isUserMessage)
    return first === undefined ? 'This is the first thing you said.' : `You first said: ${sentence(messageText(first))}.`
  }
  if (LAST_SAID.test(question)) {
    const last = before.findLast((item) => item.type === 'message' && item.role === 'assistant')
    if (last === undefined) return 'I have not said anything yet.'
    const said = sentence(messageText(last))
    return said === '' ? 'I last said nothing you heard.' : `I last said: ${said}.`
  }
  return null
}

/** `text` without its final punctuation, to end a sentence of ours. */
function sentence (text: string): string {
  return text.replace(/[.!?\s]+$/, '')
}

// `Say exactly "Hi there"`, `Say the following verbatim: Hi there`, `… word for word “Hi”`.
const VERBATIM_QUOTED = /\b(?:say exactly|verbatim|word for word)\b[^"“\n]*["“]([^"”]+)["”]/i
const VERBATIM_UNQUOTED = /\b(?:say exactly|verbatim|word for word)\b\s*[:,-]?\s*(\S[^\n]*)/i

export function verbatimText (instructions: unknown): string | null {
  if (typeof instructions !== 'string') return null
  const match = VERBATIM_QUOTED.exec(instructions) ?? VERBATIM_UNQUOTED.exec(instructions)
  return match?.[1]?.trim() || null
}

function speech (text: string): Answer {
  return { kind: 'speech', text }
}

function isUserMessage (item: SimItem): boolean {
  return item.type === 'message' && item.role === 'user'
}

/** The text of a message: its text parts and the transcripts of its audio parts. */
function messageText (item: SimItem): string {
  const parts: unknown[] = Array.isArray(item.content) ? item.content : []
  return parts
    .map((part) => isObject(part) ? (part.text ?? part.transcript ?? '') : '')
    .filter((text) => typeof text === 'string' && text !== '')
    .join(' ')
    .trim()
}

function trailingToolOutputs (items: readonly SimItem[]): string[] {
  const outputs: string[] = []
  for (let i = items.length - 1; i >= 0 && items[i]?.type === 'function_call_output'; i--) {
    outputs.unshift(String(items[i]?.output))
  }
  return outputs
}

function toolCalls (text: string, request: AnswerRequest): ToolCall[] {
  const { toolChoice } = request
  if (toolChoice === 'none') return []
  const functions = (Array.isArray(request.tools) ? request.tools : [])
    .filter((tool): tool is SimItem => isObject(tool) && (tool.type ?? 'function') === 'function' && typeof tool.name === 'string')
  let chosen = functions.filter((tool) => mentions(text, tool.name))
  if (isObject(toolChoice) && toolChoice.type === 'function') chosen = functions.filter((tool) => tool.name === toolChoice.name)
  else if (chosen.length === 0 && toolChoice === 'required') chosen = functions.slice(0, 1)
  if (chosen.length === 0) return []
  const count = Math.max(1, Math.floor(request.parallelCalls))
  return Array.from({ length: count }, (_, index) => {
    const tool = chosen[index % chosen.length] as SimItem
    return { name: tool.name, arguments: extractArguments(tool, text) }
  })
}

function mentions (text: string, name: string): boolean {
  const lower = text.toLowerCase()
  const wanted = name.toLowerCase()
  return lower.includes(wanted) || lower.includes(wanted.replace(/_/g, ' '))
}

// Arguments the user spelled out as `<property> is|:|= <value>`, e.g.
// "get weather, city: Paris" → {"city":"Paris"}; anything else is left out.
function extractArguments (tool: SimItem, text: string): string {
  const properties = isObject(tool.parameters) && isObject(tool.parameters.properties) ? tool.parameters.properties : {}
  const args: Record<string, unknown> = {}
  for (const [key, schema] of Object.entries(properties)) {
    const name = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/_/g, '[ _]')
    const value = new RegExp(`\\b${name}\\b\\s*(?:is|:|=)\\s*([^,;.!?]+)`, 'i').exec(text)?.[1]?.trim()
    if (value === undefined || value === '') continue
    const numeric = isObject(schema) && (schema.type === 'number' || schema.type === 'integer')
    args[key] = numeric && Number.isFinite(Number(value)) ? Number(value) : value
  }
  return JSON.stringify(args)
}
