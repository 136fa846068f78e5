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
