// Environment → typed configuration for `npm start`. The variables of the contract
// (PORT, OPENAI_*, ADMIN_TOKEN, …) are read here; every limit comes from the one table
// in lib/limits.ts.

import { EndpointAllowlist } from './functions.js'
import { limitsFromEnv } from './limits.js'
import type { Limits } from './limits.js'
import { API_KEY_HEADERS, apiKeyHeaderFor } from './upstream.js'
import type { ApiKeyHeader } from './upstream.js'

export interface ProxyConfig extends Limits {
  port: number
  host: string
  openaiApiKey: string | undefined
  /** Upstream URL with `?model=` already applied; undefined = use the embedded simulator. */
  upstreamUrl: string | undefined
  /** The default model: the first of `models`. */
  model: string
  /** Models a client's Settings may choose (OPENAI_REALTIME_MODELS); the first is the default. */
  models: string[]
  /** How the key goes upstream (OPENAI_AUTH_HEADER; by default chosen from the URL's host). */
  openaiAuthHeader: ApiKeyHeader
  /** URL prefixes server-side functions may call (FUNCTION_ENDPOINT_ALLOWLIST); empty = none. */
  functionEndpointAllowlist: string[]
  adminToken: string | undefined
  proxyAuthTokens: string[]
  logLevel: string
  /** The fleet registry (`redis://` or `rediss://`); undefined = this instance alone. */
  redisUrl: string | undefined
  /** Allowed Origin header values for browser clients; empty = any. */
  allowedOrigins: string[]
}

export const DEFAULT_REALTIME_URL = 'wss://api.openai.com/v1/realtime'
export const DEFAULT_MODEL = 'gpt-realtime'

type Env = Record<string, string | undefined>

export function loadConfig (env: Env = process.env): ProxyConfig {
  const openaiApiKey = nonEmpty(env.OPENAI_API_KEY)
  const explicitUrl = realtimeUrl(env.OPENAI_REALTIME_URL)
  const baseUrl = explicitUrl ?? (openaiApiKey !== undefined ? DEFAULT_REALTIME_URL : undefined)
  const models = realtimeModels(env, explicitUrl)
  const model = models[0] as string
  const functionEndpointAllowlist = list(env.FUNCTION_ENDPOINT_ALLOWLIST)
  EndpointAllowlist.parse(functionEndpointAllowlist)
  return {
    port: port(env.PORT),
    host: nonEmpty(env.HOST) ?? '0.0.0.0',
    openaiApiKey,
    upstreamUrl: baseUrl === undefined ? undefined : withModel(baseUrl, model),
    model,
    models,
    openaiAuthHeader: authHeader(env.OPENAI_AUTH_HEADER, baseUrl),
    functionEndpointAllowlist,
    adminToken: nonEmpty(env.ADMIN_TOKEN),
    proxyAuthTokens: list(env.PROXY_AUTH_TOKENS),
    logLevel: logLevel(env.LOG_LEVEL),
    redisUrl: redisUrl(env.REDIS_URL),
    allowedOrigins: list(env.ALLOWED_ORIGINS),
    ...limitsFromEnv(env)
  }
}

/** Adds `?model=` unless the URL already names one. */
export function withModel (url: string, model: string): string {
  const parsed = new URL(url)
  if (!parsed.searchParams.has('model')) parsed.searchParams.set('model', model)
  return parsed.toString()
}

/**
 * OPENAI_REALTIME_MODELS when set (the first is the default; OPENAI_REALTIME_MODEL, if set
 * too, must be that first one), else the one model of the URL's `?model=`, of
 * OPENAI_REALTIME_MODEL, or the default.
 */
function realtimeModels (env: Env, url: string | undefined): string[] {
  const single = nonEmpty(env.OPENAI_REALTIME_MODEL)
  const listed = [...new Set(list(env.OPENAI_REALTIME_MODELS))]
  if (listed.length === 0) return [(url === undefined ? undefined : nonEmpty(new URL(url).searchParams.get('model') ?? undefined)) ?? single ?? DEFAULT_MODEL]
  if (single !== undefined && single !== listed[0]) {
    throw new Error(`OPENAI_REALTIME_MODEL ("${single}") must be the first of OPENAI_REALTIME_MODELS ("${listed.join(',')}"), the default: set one of them only, or put it first`)
  }
  return listed
}

function authHeader (raw: string | undefined, url: string | undefined): ApiKeyHeader {
  const text = nonEmpty(raw)?.toLowerCase()
  if (text === undefined) return url === undefined ? 'authorization' : apiKeyHeaderFor(url)
  if (!(API_KEY_HEADERS as readonly string[]).includes(text)) throw new Error(`OPENAI_AUTH_HEADER must be one of ${API_KEY_HEADERS.join(', ')} (api-key for Azure OpenAI), got "${raw ?? ''}"`)
  return text as ApiKeyHeader
}

function redisUrl (value: string | undefined): string | undefined {
  const url = nonEmpty(value)
  if (url !== undefined && !/^rediss?:\/\/[^/]/.test(url)) {
    throw new Error(`REDIS_URL must be a redis:// or rediss:// URL (e.g. redis://redis:6379/0), got "${url.replace(/\/\/[^@/]*@/, '//…@')}"`)
  }
  return url
}

function nonEmpty (value: string | undefined): string | undefined {
  const trimmed = value?.trim()
  return trimmed === undefined || trimmed === '' ? undefined : trimmed
}

function list (value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
}

/** Not echoed when wrong: a URL can carry a secret in its query. */
function realtimeUrl (raw: string | undefined): string | undefined {
  const text = nonEmpty(raw)
  if (text === undefined) return undefined
  if (!URL.canParse(text) || !/^wss?:$/.test(new URL(text).protocol)) {
    throw new Error(`OPENAI_REALTIME_URL must be a ws:// or wss:// URL, such as ${DEFAULT_REALTIME_URL}`)
  }
  return text
}

/** pino's levels: any other value would stop pino with a message that does not name the variable. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function logLevel (raw: string | undefined): string {
  const text = nonEmpty(raw)
  if (text === undefined) return 'info'
  if (!LOG_LEVELS.includes(text)) throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${text}"`)
  return text
}

function port (raw: string | undefined): number {
  const text = nonEmpty(raw)
  if (text === undefined) return 8080
  const value = Number(text)
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new Error(`PORT must be an integer from 0 to 65535, got "${text}"`)
  return value
}
