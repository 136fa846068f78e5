// Environment → typed configuration. Names and defaults are the contract in
// INTERFACE.md; everything after `// Limits` is this project's own tuning.

export interface ProxyConfig {
  port: number
  host: string
  openaiApiKey: string | undefined
  /** Upstream URL with `?model=` already applied; undefined = use the embedded simulator. */
  upstreamUrl: string | undefined
  model: string
  adminToken: string | undefined
  proxyAuthTokens: string[]
  logLevel: string
  /** The fleet registry (`redis://` or `rediss://`); undefined = this instance alone. */
  redisUrl: string | undefined
  // Limits
  maxSessions: number
  /** Largest client frame accepted, bytes. */
  maxClientFrameBytes: number
  /** Largest upstream frame accepted, bytes (OpenAI events can exceed 1 MiB). */
  maxUpstreamFrameBytes: number
  /** Audio held before the session is configured, bytes. */
  maxPendingAudioBytes: number
  /** Agent audio waiting in a slow client's send buffer beyond which new audio is dropped, bytes. */
  maxClientBufferedBytes: number
  /** How long a client may stay over `maxClientBufferedBytes` before it is closed, ms. */
  slowClientTimeoutMs: number
  /** Text messages per second a client may send before it is closed as a flood; 0 = no limit. */
  maxClientMessagesPerSecond: number
  /** Upstream ping period, ms; an upstream that misses one pong is closed. 0 = no pings. */
  upstreamPingIntervalMs: number
  /** Client ping period, ms; a client that has not answered the previous ping is gone. 0 = off. */
  clientPingIntervalMs: number
  /** Upstream WebSocket handshake timeout, ms. */
  upstreamConnectTimeoutMs: number
  /** Drain deadline on SIGTERM, ms. */
  drainTimeoutMs: number
  /** Allowed Origin header values for browser clients; empty = any. */
  allowedOrigins: string[]
}

/** Defaults of the limits, shared by `npm start` (through the environment) and the plugin. */
export const LIMIT_DEFAULTS = {
  maxSessions: 1000,
  maxClientFrameBytes: 1024 * 1024,
  maxUpstreamFrameBytes: 64 * 1024 * 1024,
  maxPendingAudioBytes: 2 * 1024 * 1024,
  maxClientBufferedBytes: 4 * 1024 * 1024,
  slowClientTimeoutMs: 10_000,
  maxClientMessagesPerSecond: 100,
  upstreamPingIntervalMs: 15_000,
  clientPingIntervalMs: 30_000,
  upstreamConnectTimeoutMs: 10_000
} as const

export const DEFAULT_REALTIME_URL = 'wss://api.openai.com/v1/realtime'
export const DEFAULT_MODEL = 'gpt-realtime'

type Env = Record<string, string | undefined>

export function loadConfig (env: Env = process.env): ProxyConfig {
  const model = nonEmpty(env.OPENAI_REALTIME_MODEL) ?? DEFAULT_MODEL
  const openaiApiKey = nonEmpty(env.OPENAI_API_KEY)
  const explicitUrl = nonEmpty(env.OPENAI_REALTIME_URL)
  const baseUrl = explicitUrl ?? (openaiApiKey !== undefined ? DEFAULT_REALTIME_URL : undefined)
  return {
    port: integer(env, 'PORT', 8080, 0, 65535),
    host: nonEmpty(env.HOST) ?? '0.0.0.0',
    openaiApiKey,
    upstreamUrl: baseUrl === undefined ? undefined : withModel(baseUrl, model),
    model,
    adminToken: nonEmpty(env.ADMIN_TOKEN),
    proxyAuthTokens: list(env.PROXY_AUTH_TOKENS),
    logLevel: nonEmpty(env.LOG_LEVEL) ?? 'info',
    redisUrl: redisUrl(env.REDIS_URL),
    maxSessions: integer(env, 'MAX_SESSIONS', LIMIT_DEFAULTS.maxSessions, 1, 1_000_000),
    maxClientFrameBytes: integer(env, 'MAX_CLIENT_FRAME_BYTES', LIMIT_DEFAULTS.maxClientFrameBytes, 1024, 64 * 1024 * 1024),
    maxUpstreamFrameBytes: integer(env, 'MAX_UPSTREAM_FRAME_BYTES', LIMIT_DEFAULTS.maxUpstreamFrameBytes, 1024 * 1024, 1024 * 1024 * 1024),
    maxPendingAudioBytes: integer(env, 'MAX_PENDING_AUDIO_BYTES', LIMIT_DEFAULTS.maxPendingAudioBytes, 0, 256 * 1024 * 1024),
    maxClientBufferedBytes: integer(env, 'MAX_CLIENT_BUFFERED_BYTES', LIMIT_DEFAULTS.maxClientBufferedBytes, 64 * 1024, 1024 * 1024 * 1024),
    slowClientTimeoutMs: integer(env, 'SLOW_CLIENT_TIMEOUT_MS', LIMIT_DEFAULTS.slowClientTimeoutMs, 0, 3_600_000),
    maxClientMessagesPerSecond: integer(env, 'MAX_CLIENT_MESSAGES_PER_SECOND', LIMIT_DEFAULTS.maxClientMessagesPerSecond, 0, 1_000_000),
    upstreamPingIntervalMs: integer(env, 'UPSTREAM_PING_INTERVAL_MS', LIMIT_DEFAULTS.upstreamPingIntervalMs, 0, 3_600_000),
    clientPingIntervalMs: integer(env, 'CLIENT_PING_INTERVAL_MS', LIMIT_DEFAULTS.clientPingIntervalMs, 0, 3_600_000),
    upstreamConnectTimeoutMs: integer(env, 'UPSTREAM_CONNECT_TIMEOUT_MS', LIMIT_DEFAULTS.upstreamConnectTimeoutMs, 100, 600_000),
    drainTimeoutMs: integer(env, 'DRAIN_TIMEOUT_MS', 25_000, 0, 3_600_000),
    allowedOrigins: list(env.ALLOWED_ORIGINS)
  }
}

/** Adds `?model=` unless the URL already names one. */
export function withModel (url: string, model: string): string {
  const parsed = new URL(url)
  if (!parsed.searchParams.has('model')) parsed.searchParams.set('model', model)
  return parsed.toString()
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

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env[name])
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`)
  }
  return value
}
