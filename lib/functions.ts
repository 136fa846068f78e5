// Server-side functions: a function declared in Settings with `endpoint: {url, method,
// headers}` is called by the server itself (Deepgram's behaviour), not by the client.
// The proxy calls only URLs under the operator's FUNCTION_ENDPOINT_ALLOWLIST, so a
// client can never make it reach an internal address. A call never throws: whatever
// goes wrong (refused, too slow, an HTTP error, an answer too big) becomes a function
// output the model can explain to the user.

import { isObject } from './protocol/json.js'

/** A declared endpoint, checked: an http(s) URL, an HTTP method, header names and values that are valid. */
export interface FunctionEndpoint {
  url: string
  method: EndpointMethod
  headers: Record<string, string>
}

export type EndpointMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
const METHODS: ReadonlySet<string> = new Set<EndpointMethod>(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])
/** Methods whose arguments go in the query string (they have no body). */
const QUERY_METHODS: ReadonlySet<string> = new Set<EndpointMethod>(['GET', 'DELETE'])
/** Deepgram's default when a function's endpoint names no method. */
const DEFAULT_METHOD: EndpointMethod = 'POST'
/** RFC 9110 token characters: what a header name may be made of. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** Header values: visible characters, spaces and tabs, nothing that could split a header. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const MAX_HEADERS = 32
/** Redirects followed, each to an allowed URL only. */
const MAX_REDIRECTS = 5
/** How much of an error answer's body the model is shown. */
const ERROR_BODY_CHARS = 1000

/**
 * The URL prefixes server-side functions may call. Prefixes are compared on parsed URLs:
 * the same scheme, host and port, and a path at or below the prefix's path on a segment
 * boundary (`https://api.example.com/v1` allows `/v1` and `/v1/…`, not `/v10`, and never
 * `https://api.example.com.evil.io`).
 */
export class EndpointAllowlist {
  readonly #prefixes: readonly URL[]

  private constructor (prefixes: readonly URL[]) {
    this.#prefixes = prefixes
  }

  static readonly none = new EndpointAllowlist([])

  /** Parses the operator's prefixes; throws naming the first bad one (what to set instead). */
  static parse (entries: readonly string[], variable = 'FUNCTION_ENDPOINT_ALLOWLIST'): EndpointAllowlist {
    return new EndpointAllowlist(entries.map((entry) => {
      const url = URL.canParse(entry) ? new URL(entry) : undefined
      if (url === undefined || !/^https?:$/.test(url.protocol) || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
        throw new Error(`${variable} takes http:// or https:// URL prefixes without credentials, query or fragment (e.g. https://api.example.com/v1/), got "${entry}"`)
      }
      return url
    }))
  }

  get isEmpty (): boolean {
    return this.#prefixes.length === 0
  }

  allows (target: string | URL): boolean {
    const url = typeof target === 'string' ? (URL.canParse(target) ? new URL(target) : undefined) : target
    if (url === undefined || !/^https?:$/.test(url.protocol) || url.username !== '' || url.password !== '') return false
    return this.#prefixes.some((prefix) => prefix.protocol === url.protocol && prefix.host === url.host && underPath(url.pathname, prefix.pathname))
  }
}

function underPath (path: string, prefix: string): boolean {
  if (prefix.endsWith('/')) return path.startsWith(prefix)
  return path === prefix || path.startsWith(`${prefix}/`)
}

/** A declared `endpoint` checked, or why it cannot be called (a sentence for the client's Warning). */
export function readEndpoint (value: unknown): FunctionEndpoint | string {
  if (!isObject(value) || typeof value.url !== 'string' || !URL.canParse(value.url) || !/^https?:$/.test(new URL(value.url).protocol)) {
    return 'its endpoint needs "url" as an http:// or https:// URL'
  }
  const method = value.method === undefined ? DEFAULT_METHOD : typeof value.method === 'string' ? value.method.toUpperCase() : ''
  if (!METHODS.has(method)) return `its endpoint's "method" must be one of ${[...METHODS].join(', ')}`
  const headers: Record<string, string> = {}
  if (value.headers !== undefined && value.headers !== null) {
    if (!isObject(value.headers)) return 'its endpoint\'s "headers" must be an object of strings'
    const entries = Object.entries(value.headers)
    if (entries.length > MAX_HEADERS) return `its endpoint has more than ${MAX_HEADERS} headers`
    for (const [name, header] of entries) {
      if (!HEADER_NAME.test(name) || typeof header !== 'string' || !HEADER_VALUE.test(header)) return 'its endpoint\'s "headers" must map header names to strings on one line'
      headers[name] = header
    }
  }
  return { url: value.url, method: method as EndpointMethod, headers }
}

export interface CallOptions {
  allowlist: EndpointAllowlist
  /** The whole call, redirects and body included (FUNCTION_ENDPOINT_TIMEOUT_MS). */
  timeoutMs: number
  /** The answer's body (MAX_FUNCTION_RESPONSE_BYTES). */
  maxResponseBytes: number
  /** Aborts the call (the session ended); the output then says so. */
  signal?: AbortSignal
}

/**
 * Calls a server-side function's endpoint with the model's arguments (a JSON object):
 * as the JSON body for POST, PUT and PATCH, as the query string for GET and DELETE, with
 * the declared method and headers. Returns the function output for the model: the
 * answer's body, or `{"error": …}` saying what went wrong. Never throws.
 */
export async function callEndpoint (endpoint: FunctionEndpoint, argumentsJson: string, options: CallOptions): Promise<string> {
  const timeout = AbortSignal.timeout(options.timeoutMs)
  const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal])
  try {
    let url = new URL(endpoint.url)
    let method: string = endpoint.method
    let body: string | undefined
    if (QUERY_METHODS.has(method)) {
      const query = argumentsAsQuery(argumentsJson)
      if (query === undefined) return failure('the function\'s arguments are not a JSON object')
      for (const [name, value] of query) url.searchParams.append(name, value)
    } else {
      body = argumentsJson
    }
    for (let redirects = 0; ; redirects++) {
      if (!options.allowlist.allows(url)) return failure(redirects === 0 ? 'this function\'s endpoint may not be called' : 'the endpoint redirected to a URL that may not be called')
      const headers: Record<string, string> = { ...endpoint.headers }
      if (body !== undefined && !Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json'
      const response = await fetch(url, { method, headers, body, redirect: 'manual', signal })
      const location = response.headers.get('location')
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel()
        if (redirects === MAX_REDIRECTS) return failure(`the endpoint redirected more than ${MAX_REDIRECTS} times`)
        url = new URL(location, url)
        // As browsers do: a 303, or a 301/302 after a POST, continues as a GET without the body.
        if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
          method = 'GET'
          body = undefined
        }
        continue
      }
      const text = await boundedText(response, options.maxResponseBytes)
      if (text === undefined) return failure(`the endpoint's answer was larger than ${options.maxResponseBytes} bytes`)
      if (!response.ok) {
        const error: Record<string, string> = { error: `the endpoint answered HTTP ${response.status}` }
        if (text.trim() !== '') error.body = text.length > ERROR_BODY_CHARS ? `${text.slice(0, ERROR_BODY_CHARS)}…` : text
        return JSON.stringify(error)
      }
      return text === '' ? JSON.stringify({ result: `the endpoint answered HTTP ${response.status} with no content` }) : text
    }
  } catch {
    if (timeout.aborted) return failure(`the endpoint did not answer within ${options.timeoutMs} ms`)
    if (options.signal?.aborted === true) return failure('the call was abandoned: the session ended')
    return failure('the endpoint could not be reached')
  }
}

function failure (error: string): string {
  return JSON.stringify({ error })
}

/** A JSON object's top-level fields as query parameters (non-strings as their JSON); undefined if it is not an object. */
function argumentsAsQuery (argumentsJson: string): Array<[string, string]> | undefined {
  let parsed: unknown
  try {
    parsed = argumentsJson.trim() === '' ? {} : JSON.parse(argumentsJson)
  } catch {
    return undefined
  }
  if (!isObject(parsed)) return undefined
  return Object.entries(parsed).map(([name, value]) => [name, typeof value === 'string' ? value : JSON.stringify(value)])
}

/** The body as text, or undefined once it passes `maxBytes` (the rest is not read). */
async function boundedText (response: Response, maxBytes: number): Promise<string | undefined> {
  const declared = Number(response.headers.get('content-length'))
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel()
    return undefined
  }
  if (response.body === null) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let bytes = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    bytes += value.byteLength
    if (bytes > maxBytes) {
      await reader.cancel()
      return undefined
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}
