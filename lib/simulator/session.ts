// The GA session object: what `session.created` announces and how a
// `session.update` changes it (a deep merge where arrays and nulls replace,
// and a format or turn detection of another type replaces the old one whole).

import { newId } from './ids.js'
import { isObject, type SimEvent } from './events.js'
import { SIXTY_MINUTES_MS } from './script.js'

export const DEFAULT_MODEL = 'gpt-realtime'
/** The session object a connection starts with; it expires when the server will close it (`lifetimeMs`, 0 = never: an hour). */
export function defaultSession (model: string | null, lifetimeMs: number): SimEvent {
  return {
    type: 'realtime',
    object: 'realtime.session',
    id: newId('sess'),
    model: model ?? DEFAULT_MODEL,
    output_modalities: ['audio'],
    instructions: '',
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: 'inf',
    tracing: null,
    truncation: 'auto',
    prompt: null,
    include: null,
    expires_at: Math.floor((Date.now() + (lifetimeMs > 0 ? lifetimeMs : SIXTY_MINUTES_MS)) / 1000),
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: turnDetectionDefaults('server_vad')
      },
      output: {
        format: { type: 'audio/pcm', rate: 24000 },
        voice: 'alloy',
        speed: 1
      }
    }
  }
}

/** A new session: `current` with `update` merged in. Neither argument is changed. */
export function mergeSession (current: SimEvent, update: SimEvent): SimEvent {
  const next = structuredClone(current)
  deepMerge(next, update)
  const { input, output } = next.audio
  input.format = normalizeFormat(input.format)
  output.format = normalizeFormat(output.format)
  if (isObject(input.turn_detection)) {
    input.turn_detection = { ...turnDetectionDefaults(input.turn_detection.type), ...input.turn_detection }
  }
  return next
}

const REPLACED_WHEN_TYPE_CHANGES = new Set(['format', 'turn_detection'])

function deepMerge (target: SimEvent, patch: SimEvent): void {
  for (const [key, value] of Object.entries(patch)) {
    const current = target[key]
    const typeChanged = REPLACED_WHEN_TYPE_CHANGES.has(key) && isObject(value) && isObject(current) &&
      value.type !== undefined && value.type !== current.type
    if (isObject(value) && isObject(current) && !typeChanged) deepMerge(current, value)
    else target[key] = structuredClone(value)
  }
}

function normalizeFormat (format: unknown): unknown {
  if (isObject(format) && format.type === 'audio/pcm') return { ...format, rate: 24000 }
  return format
}

function turnDetectionDefaults (type: unknown): SimEvent {
  if (type === 'semantic_vad') {
    return { type, eagerness: 'auto', create_response: true, interrupt_response: true }
  }
  return {
    type: 'server_vad',
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 200,
    create_response: true,
    interrupt_response: true,
    idle_timeout_ms: null
  }
}
