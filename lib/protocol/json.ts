// Reading parsed JSON of unknown shape (client messages, upstream events) field by
// field, without trusting its types.

export function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Reads `obj.key` as a string, or undefined. */
export function str (obj: unknown, key: string): string | undefined {
  if (typeof obj !== 'object' || obj === null) return undefined
  const value = (obj as Record<string, unknown>)[key]
  return typeof value === 'string' ? value : undefined
}

/** Reads `obj.key` as an object, or undefined. */
export function obj (value: unknown, key: string): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const inner = (value as Record<string, unknown>)[key]
  return isObject(inner) ? inner : undefined
}

/** Longest piece of outside text (a message type, an id) echoed in a message or a log line. */
export const ECHO_CHARS = 64

/** Outside text made safe to echo: JSON-quoted (no control characters) and cut to ECHO_CHARS characters, between characters. */
export function quoted (text: string): string {
  if (text.length <= ECHO_CHARS) return JSON.stringify(text)
  let characters = 0
  let end = 0
  for (const character of text) {
    if (++characters > ECHO_CHARS) return JSON.stringify(`${text.slice(0, end)}…`)
    end += character.length
  }
  return JSON.stringify(text)
}
