// Shapes shared by the simulator's modules: events and items are plain JSON
// objects (the simulator must not depend on the `openai` package at runtime),
// and the `error` event with the codes the real API uses.

export type SimEvent = Record<string, any>
export type SimItem = Record<string, any>

/** Why a client event is refused: becomes `error.error` in an `error` event. */
export interface Problem {
  code: string
  message: string
  param?: string | null
}

export function errorEvent (problem: Problem, clientEventId: string | null): SimEvent {
  return {
    type: 'error',
    error: {
      type: 'invalid_request_error',
      code: problem.code,
      message: problem.message,
      param: problem.param ?? null,
      event_id: clientEventId
    }
  }
}

export function missingParameter (param: string): Problem {
  return { code: 'missing_required_parameter', message: `Missing required parameter: '${param}'.`, param }
}

export function unknownParameter (param: string): Problem {
  return { code: 'unknown_parameter', message: `Unknown parameter: '${param}'.`, param }
}

export function invalidValue (param: string, value: unknown, supported?: readonly unknown[]): Problem {
  const expected = supported === undefined ? '' : ` Supported values are: ${supported.map((v) => `'${String(v)}'`).join(', ')}.`
  return { code: 'invalid_value', message: `Invalid value: '${describe(value)}'.${expected}`, param }
}

export function isObject (value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function describe (value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? String(value)
}
