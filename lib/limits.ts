// Every limit in one table: its plugin option, its environment variable, its default
// and bounds, and what a client sees when it trips. The table drives `loadConfig`
// (environment → numbers), the realtime plugin's option type and its validation at
// registration, and the README's Limits table (test/limits.test.ts holds the README
// to it). Adding a limit is adding a row.

export interface LimitSpec {
  /** The realtime plugin's option (and the config's field). */
  option: string
  env: string
  default: number
  min: number
  max: number
  unit: 'bytes' | 'ms' | 'count'
  /** `0` turns it off (documented as such). */
  zeroIsOff?: true
  /** Who reads it: the realtime plugin (per session or per instance), or only `npm start`. */
  scope: 'plugin' | 'server'
  /** What it bounds (README). */
  bounds: string
  /** What the client sees when it trips (README). */
  trips: string
  /** The metric that counts it (README), if any. */
  metric: string
}

export const LIMITS = [
  {
    option: 'maxSessions',
    env: 'MAX_SESSIONS',
    default: 1000,
    min: 1,
    max: 1_000_000,
    unit: 'count',
    scope: 'plugin',
    bounds: 'concurrent sessions per instance',
    trips: 'HTTP `503` at the upgrade (no WebSocket is opened), body `{"code":"TOO_MANY_SESSIONS", …}`',
    metric: '`dgproxy_sessions_rejected_total{reason="max_sessions"}`'
  },
  {
    option: 'maxClientFrameBytes',
    env: 'MAX_CLIENT_FRAME_BYTES',
    default: 1024 * 1024,
    min: 1024,
    max: 64 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'one client frame (text or binary; a fragmented message counts as a whole)',
    trips: 'the connection is closed with **1009** (Message Too Big) as soon as the frame\'s header announces the size, before its payload is read. No `Error` message, no reason text',
    metric: '`dgproxy_dropped_frames_total{reason="client_frame_too_large"}`'
  },
  {
    option: 'maxClientMessageBytes',
    env: 'MAX_CLIENT_MESSAGE_BYTES',
    default: 512 * 1024,
    min: 1024,
    max: 64 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'one JSON text message (checked before it is parsed; binary audio frames only have `MAX_CLIENT_FRAME_BYTES`)',
    trips: '`Warning{code:"CLIENT_MESSAGE_TOO_LARGE"}`; the message is dropped unread. The session goes on',
    metric: '`dgproxy_client_warnings_total{code="CLIENT_MESSAGE_TOO_LARGE"}`'
  },
  {
    option: 'maxClientJsonDepth',
    env: 'MAX_CLIENT_JSON_DEPTH',
    default: 64,
    min: 8,
    max: 1024,
    unit: 'count',
    scope: 'plugin',
    bounds: 'nesting of objects and arrays in one JSON message (checked before it is parsed). A tool schema at OpenAI\'s own nesting limit for strict schemas needs about 30',
    trips: '`Warning{code:"CLIENT_MESSAGE_TOO_DEEP"}`; the message is dropped unread. The session goes on',
    metric: '`dgproxy_client_warnings_total{code="CLIENT_MESSAGE_TOO_DEEP"}`'
  },
  {
    option: 'maxClientMessagesPerSecond',
    env: 'MAX_CLIENT_MESSAGES_PER_SECOND',
    default: 100,
    min: 0,
    max: 1_000_000,
    unit: 'count',
    zeroIsOff: true,
    scope: 'plugin',
    bounds: 'JSON text messages per one-second window. Binary audio frames do not count',
    trips: '`Error{code:"CLIENT_MESSAGE_RATE_EXCEEDED"}`, then close **1008** `message rate limit exceeded`',
    metric: '`dgproxy_client_errors_total{code="CLIENT_MESSAGE_RATE_EXCEEDED"}`'
  },
  {
    option: 'maxPendingAudioBytes',
    env: 'MAX_PENDING_AUDIO_BYTES',
    default: 2 * 1024 * 1024,
    min: 0,
    max: 256 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'audio held before the session is configured (before the upstream accepted `Settings`)',
    trips: 'one `Warning{code:"AUDIO_BUFFER_FULL"}`. Audio beyond the limit is dropped until the session is ready. The session goes on',
    metric: '`dgproxy_dropped_frames_total{reason="audio_before_ready"}`'
  },
  {
    option: 'maxHeldMessages',
    env: 'MAX_HELD_MESSAGES',
    default: 64,
    min: 1,
    max: 10_000,
    unit: 'count',
    scope: 'plugin',
    bounds: 'messages (`InjectUserMessage`, `Update*`, …) held before the session is configured',
    trips: '`Warning{code:"TOO_MANY_PENDING_MESSAGES"}` for each message beyond the bound. That message is dropped; the session goes on',
    metric: '`dgproxy_client_warnings_total{code="TOO_MANY_PENDING_MESSAGES"}`'
  },
  {
    option: 'maxPromptChars',
    env: 'MAX_PROMPT_CHARS',
    default: 100_000,
    min: 1000,
    max: 10_000_000,
    unit: 'count',
    scope: 'plugin',
    bounds: 'the agent\'s instructions in characters (`think.prompt`, grown by each `UpdatePrompt`); gpt-realtime\'s whole context is 32,000 tokens',
    trips: '`Warning{code:"PROMPT_TOO_LONG"}`; that change of the instructions is refused (the instructions in force stay), the message\'s other changes apply',
    metric: '`dgproxy_client_warnings_total{code="PROMPT_TOO_LONG"}`'
  },
  {
    option: 'maxQueuedResponses',
    env: 'MAX_QUEUED_RESPONSES',
    default: 16,
    min: 1,
    max: 1000,
    unit: 'count',
    scope: 'plugin',
    bounds: 'responses waiting for the response slot (agent messages queued with `behavior:"queue"`; bare follow-ups always fit, they merge into one)',
    trips: '`InjectionRefused` for an `InjectAgentMessage` beyond it. The session goes on',
    metric: '`dgproxy_client_messages_total{direction="sent",type="InjectionRefused"}`'
  },
  {
    option: 'maxClientBufferedBytes',
    env: 'MAX_CLIENT_BUFFERED_BYTES',
    default: 4 * 1024 * 1024,
    min: 64 * 1024,
    max: 1024 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'output waiting in a slow client\'s send buffer: agent audio above it, protocol messages above twice it',
    trips: 'agent audio frames are dropped (gaps in the audio) while more than this waits. A protocol message that would find more than twice this waiting: `Error{code:"CLIENT_TOO_SLOW"}`, then close **1008** `client too slow: messages backed up`',
    metric: '`dgproxy_dropped_frames_total{reason="slow_client"}`, `dgproxy_client_errors_total{code="CLIENT_TOO_SLOW"}`'
  },
  {
    option: 'slowClientTimeoutMs',
    env: 'SLOW_CLIENT_TIMEOUT_MS',
    default: 10_000,
    min: 0,
    max: 3_600_000,
    unit: 'ms',
    scope: 'plugin',
    bounds: 'how long a client may stay over `MAX_CLIENT_BUFFERED_BYTES`',
    trips: '`Error{code:"CLIENT_TOO_SLOW"}` (queued behind the backlog), then close **1008** `client too slow: agent audio backed up`',
    metric: '`dgproxy_client_errors_total{code="CLIENT_TOO_SLOW"}`'
  },
  {
    option: 'maxUpstreamFrameBytes',
    env: 'MAX_UPSTREAM_FRAME_BYTES',
    default: 64 * 1024 * 1024,
    min: 1024 * 1024,
    max: 1024 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'one upstream frame (OpenAI events can exceed 1 MiB)',
    trips: '`Error{code:"UPSTREAM_PROTOCOL_ERROR"}`, then close **1011** `upstream protocol error`',
    metric: '`dgproxy_client_errors_total{code="UPSTREAM_PROTOCOL_ERROR"}`'
  },
  {
    option: 'maxUpstreamBufferedBytes',
    env: 'MAX_UPSTREAM_BUFFERED_BYTES',
    default: 4 * 1024 * 1024,
    min: 64 * 1024,
    max: 1024 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'client audio and messages waiting to be sent upstream (an upstream that reads slower than the client sends)',
    trips: 'nothing at first: the proxy stops reading that client (TCP backpressure) until the upstream has taken half of it',
    metric: '`dgproxy_backpressure_pauses_total`'
  },
  {
    option: 'slowUpstreamTimeoutMs',
    env: 'SLOW_UPSTREAM_TIMEOUT_MS',
    default: 10_000,
    min: 0,
    max: 3_600_000,
    unit: 'ms',
    scope: 'plugin',
    bounds: 'how long the upstream may stay over `MAX_UPSTREAM_BUFFERED_BYTES`',
    trips: '`Error{code:"UPSTREAM_TOO_SLOW"}`, then close **1013** `upstream too slow`',
    metric: '`dgproxy_client_errors_total{code="UPSTREAM_TOO_SLOW"}`'
  },
  {
    option: 'upstreamRenewAfterMs',
    env: 'UPSTREAM_RENEW_AFTER_MS',
    default: 3_000_000,
    min: 0,
    max: 86_400_000,
    unit: 'ms',
    zeroIsOff: true,
    scope: 'plugin',
    bounds: 'the age of an upstream connection: at this age it is renewed at the first quiet moment (no response in progress, nobody speaking), with the conversation carried over. OpenAI ends its sessions at 60 minutes (renewed too)',
    trips: 'nothing: the renewal is invisible (audio sent meanwhile is held and sent in order)',
    metric: '`upstream.connects` in `/connections`'
  },
  {
    option: 'upstreamReconnectAttempts',
    env: 'UPSTREAM_RECONNECT_ATTEMPTS',
    default: 3,
    min: 0,
    max: 100,
    unit: 'count',
    scope: 'plugin',
    bounds: 'reconnect attempts after the upstream closes (1001 going away, 1011, 1012, 1013) or drops (1006, no pong) mid-session: the first at once, then 250 ms apart doubling, the conversation carried over. A connection lost within 30 s of coming back counts toward the same attempts',
    trips: 'one `Warning{code:"UPSTREAM_RECONNECTED"}` per reconnect (none when a 1001 comes at a quiet moment: a renewal); when every attempt fails, the `Error` of the last failure and its close',
    metric: '`dgproxy_client_warnings_total{code="UPSTREAM_RECONNECTED"}`'
  },
  {
    option: 'upstreamConnectTimeoutMs',
    env: 'UPSTREAM_CONNECT_TIMEOUT_MS',
    default: 10_000,
    min: 100,
    max: 600_000,
    unit: 'ms',
    scope: 'plugin',
    bounds: 'the upstream WebSocket handshake',
    trips: '`Error{code:"UPSTREAM_TIMEOUT"}`, then close **1013** `upstream connect timeout`',
    metric: '`dgproxy_client_errors_total{code="UPSTREAM_TIMEOUT"}`'
  },
  {
    option: 'upstreamPingIntervalMs',
    env: 'UPSTREAM_PING_INTERVAL_MS',
    default: 15_000,
    min: 0,
    max: 3_600_000,
    unit: 'ms',
    zeroIsOff: true,
    scope: 'plugin',
    bounds: 'upstream liveness: a ping every interval. If the previous ping has no pong when the next is due, the upstream counts as dead (so it is detected within one to two intervals)',
    trips: '`Error{code:"UPSTREAM_UNRESPONSIVE"}`, then close **1011** `upstream unresponsive`',
    metric: '`dgproxy_client_errors_total{code="UPSTREAM_UNRESPONSIVE"}`'
  },
  {
    option: 'clientPingIntervalMs',
    env: 'CLIENT_PING_INTERVAL_MS',
    default: 30_000,
    min: 0,
    max: 3_600_000,
    unit: 'ms',
    zeroIsOff: true,
    scope: 'plugin',
    bounds: 'client liveness: a ping every interval; a client that has not answered the previous ping when the next is due has vanished (a dead network path)',
    trips: 'nothing can reach it: its socket is dropped, and its upstream closed with it',
    metric: '`dgproxy_sessions_active` falls'
  },
  {
    option: 'functionEndpointTimeoutMs',
    env: 'FUNCTION_ENDPOINT_TIMEOUT_MS',
    default: 10_000,
    min: 100,
    max: 120_000,
    unit: 'ms',
    scope: 'plugin',
    bounds: 'one call of a server-side function\'s endpoint (see `FUNCTION_ENDPOINT_ALLOWLIST`), redirects and the answer\'s body included',
    trips: 'the call is abandoned; the model gets `{"error":"the endpoint did not answer within … ms"}` as the function\'s output and can say so. The session goes on',
    metric: ''
  },
  {
    option: 'maxFunctionResponseBytes',
    env: 'MAX_FUNCTION_RESPONSE_BYTES',
    default: 64 * 1024,
    min: 1024,
    max: 16 * 1024 * 1024,
    unit: 'bytes',
    scope: 'plugin',
    bounds: 'the answer of a server-side function\'s endpoint (read no further)',
    trips: 'the model gets `{"error":"the endpoint\'s answer was larger than … bytes"}` as the function\'s output. The session goes on',
    metric: ''
  },
  {
    option: 'drainTimeoutMs',
    env: 'DRAIN_TIMEOUT_MS',
    default: 25_000,
    min: 0,
    max: 3_600_000,
    unit: 'ms',
    scope: 'server',
    bounds: 'how long a drain waits for responses in progress (see Shutdown)',
    trips: 'close **1012** `server restarting: reconnect`',
    metric: ''
  }
] as const satisfies readonly LimitSpec[]

type Row = typeof LIMITS[number]
type LimitName = Row['option']
/** Every limit, as numbers. */
export type Limits = { [K in LimitName]: number }
/** The limits the realtime plugin takes as options. */
type PluginLimitName = Extract<Row, { scope: 'plugin' }>['option']
export type PluginLimits = { [K in PluginLimitName]: number }

export const LIMIT_DEFAULTS: Limits = Object.fromEntries(LIMITS.map((row) => [row.option, row.default])) as Limits

export const PLUGIN_LIMITS: ReadonlyArray<Extract<Row, { scope: 'plugin' }>> = LIMITS.filter((row): row is Extract<Row, { scope: 'plugin' }> => row.scope === 'plugin')

/** Why `value` is not acceptable for this limit (a sentence saying what to pass), or undefined. */
export function limitProblem (row: LimitSpec, value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= row.min && value <= row.max) return undefined
  const off = row.zeroIsOff === true ? ', 0 = off' : ''
  return `an integer from ${row.min} to ${row.max} (${row.unit}${off}; ${row.bounds.split(/[.(:]/)[0]?.trim() ?? row.option})`
}

/** The limits from the environment: each variable unset takes its default; a bad value throws, naming the variable. */
export function limitsFromEnv (env: Record<string, string | undefined>): Limits {
  const limits = { ...LIMIT_DEFAULTS }
  for (const row of LIMITS) {
    const raw = env[row.env]?.trim()
    if (raw === undefined || raw === '') continue
    const value = Number(raw)
    const problem = limitProblem(row, value)
    if (problem !== undefined) throw new Error(`${row.env} must be ${problem}, got "${raw}"`)
    limits[row.option] = value
  }
  return limits
}

/** A default as the README shows it: `1048576` (1 MiB), `100` (`0` = off). */
export function formatDefault (row: LimitSpec): string {
  const notes: string[] = []
  if (row.unit === 'bytes' && row.default >= 1024) {
    const mib = row.default / (1024 * 1024)
    notes.push(Number.isInteger(mib) ? `${mib} MiB` : `${row.default / 1024} KiB`)
  }
  if (row.zeroIsOff === true) notes.push('`0` = off')
  return `\`${row.default}\`${notes.length === 0 ? '' : ` (${notes.join('; ')})`}`
}

/** One row of the README's Limits table. */
export function readmeRow (row: LimitSpec): string {
  return `| \`${row.env}\` | ${formatDefault(row)} | ${row.bounds} | ${row.trips} | ${row.metric} |`
}
