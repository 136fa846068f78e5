// A strict-enough parser for the Prometheus text exposition format (0.0.4):
// every line must be a HELP/TYPE comment or a well-formed sample.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  samples: Sample[]
  /** metric family name → TYPE */
  types: Map<string, string>
  /** Sum of the samples named `name` whose labels include `labels`. */
  value (name: string, labels?: Record<string, string>): number
  /** The samples named `name`. */
  series (name: string): Sample[]
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`)
const COMMENT = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`)
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)/y
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

export function parseExposition (text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const [index, line] of text.split('\n').entries()) {
    if (line === '') continue
    const comment = COMMENT.exec(line)
    if (comment !== null) {
      const [, kind, name, rest] = comment as unknown as [string, string, string, string]
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`line ${index + 1}: unknown TYPE "${rest}"`)
        types.set(name, rest)
      }
      continue
    }
    const sample = SAMPLE.exec(line)
    if (sample === null) throw new Error(`line ${index + 1} is not a sample: ${line}`)
    const [, name, labelText, valueText] = sample as unknown as [string, string, string | undefined, string]
    // Prometheus parses values with Go's ParseFloat: case-insensitive NaN and Inf (prom-client writes "Nan").
    const value = /^[+-]?inf$/i.test(valueText) ? (valueText.startsWith('-') ? -Infinity : Infinity) : Number(valueText)
    if (Number.isNaN(value) && !/^nan$/i.test(valueText)) throw new Error(`line ${index + 1}: bad value "${valueText}"`)
    samples.push({ name, labels: parseLabels(labelText ?? '', index + 1), value })
  }

  const series = (name: string): Sample[] => samples.filter((sample) => sample.name === name)
  return {
    samples,
    types,
    series,
    value (name, labels = {}) {
      return series(name)
        .filter((sample) => Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
        .reduce((sum, sample) => sum + sample.value, 0)
    }
  }
}

function parseLabels (text: string, lineNumber: number): Record<string, string> {
  const labels: Record<string, string> = {}
  LABEL.lastIndex = 0
  while (LABEL.lastIndex < text.length) {
    const match = LABEL.exec(text)
    if (match === null) throw new Error(`line ${lineNumber}: bad labels {${text}}`)
    const [, key, raw] = match as unknown as [string, string, string]
    labels[key] = raw.replace(/\\(.)/g, (_all, escaped: string) => escaped === 'n' ? '\n' : escaped)
  }
  return labels
}
