// The codes this proxy answers with outside Deepgram's messages: WebSocket close codes
// and reasons towards clients, and the HTTP refusals of an upgrade. One source of truth
// for each; the README's tables describe them.

/** WebSocket close codes towards the client, by what ended the session. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  internal: 1011,
  serviceRestart: 1012,
  tryAgainLater: 1013
} as const

/** Close reasons that do not depend on the session. */
export const CloseReason = {
  clientClosed: 'client closed',
  /** The embedding app called app.close(). */
  shutdown: 'server shutting down',
  /** The drain deadline passed (SIGTERM). */
  drain: 'server restarting: reconnect',
  /** DELETE /connections/:id */
  admin: 'closed by admin'
} as const

/** How long a closing leg may take to answer our close frame before its socket is destroyed. */
export const CLOSE_HANDSHAKE_TIMEOUT_MS = 5000

/** ws (8.23+) reads `closeTimeout` from its options; @types/ws 8.18 does not list it yet. */
export const CLOSE_TIMEOUT_OPTION: object = { closeTimeout: CLOSE_HANDSHAKE_TIMEOUT_MS }

/** A close frame's reason is at most this many bytes of UTF-8 (ws throws beyond it). */
const MAX_REASON_BYTES = 123

/** Cuts a close reason to fit, never inside a character: a cut character decodes as U+FFFD (3 bytes) and can overflow the frame. */
export function truncateReason (reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_REASON_BYTES) return reason
  const budget = MAX_REASON_BYTES - '...'.length
  let bytes = 0
  let end = 0
  for (const char of reason) {
    bytes += Buffer.byteLength(char)
    if (bytes > budget) break
    end += char.length
  }
  return reason.slice(0, end) + '...'
}

/** An upgrade refused before any WebSocket exists: HTTP status, body code and message, metric reason. */
export interface Refusal {
  status: number
  code: string
  message: string
  /** `dgproxy_sessions_rejected_total{reason}` */
  reason: string
}

export const Refusals = {
  draining: { status: 503, code: 'DRAINING', message: 'This instance is draining; connect to another one.', reason: 'draining' },
  shuttingDown: { status: 503, code: 'SHUTTING_DOWN', message: 'This instance is shutting down; connect to another one.', reason: 'draining' },
  origin: { status: 403, code: 'ORIGIN_NOT_ALLOWED', message: 'This Origin may not connect.', reason: 'origin' },
  auth: { status: 401, code: 'UNAUTHORIZED', message: 'Missing or invalid token: send "Authorization: Token <token>", the subprotocols "token, <token>", or ?token=<token>.', reason: 'auth' },
  /** Offered subprotocols none of which the server could select: the client would abort the handshake anyway. */
  subprotocol: { status: 400, code: 'UNSUPPORTED_SUBPROTOCOL', message: 'None of the offered WebSocket subprotocols is one this server selects: offer "token, <token>" (or "bearer, <token>"), or none.', reason: 'subprotocol' },
  tooManySessions: (maxSessions: number): Refusal => ({ status: 503, code: 'TOO_MANY_SESSIONS', message: `This instance already serves ${maxSessions} sessions; try again later or another instance.`, reason: 'max_sessions' })
} as const satisfies Record<string, Refusal | ((...args: never[]) => Refusal)>
