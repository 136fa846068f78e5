// The upstream leg: one WebSocket to OpenAI Realtime. It connects (with the key and the
// limits), holds what is sent before the socket opens and flushes it in order, checks
// liveness by ping, and turns every way the connection can fail into one
// `UpstreamFailure`: the client's Error code and description, and the close code and
// reason its session ends with (the table below, also in the README).

import type { ClientRequest, IncomingMessage } from 'node:http'
import WebSocket from 'ws'
import type { RawData } from 'ws'
import { CLOSE_TIMEOUT_OPTION, CloseCode } from './protocol/codes.js'
import { ErrorCode } from './protocol/deepgram.js'
import { watchLiveness } from './liveness.js'
import type { UpstreamState } from './registry.js'
import { cork } from './ws-cork.js'

/** How an upstream connection failed, as the client is told. */
export interface UpstreamFailure {
  /** `Error.code` */
  code: string
  /** `Error.description` */
  description: string
  /** Close code towards the client. */
  closeCode: number
  /** Close reason towards the client. */
  reason: string
}

/** HTTP status of a refused upgrade → failure. */
export function refusedFailure (status: number): UpstreamFailure {
  const [code, closeCode] = status === 401 || status === 403
    ? [ErrorCode.upstreamUnauthorized, CloseCode.internal]
    : status === 429
      ? [ErrorCode.upstreamRateLimited, CloseCode.tryAgainLater]
      : [ErrorCode.upstreamUnavailable, status >= 500 ? CloseCode.tryAgainLater : CloseCode.internal]
  return { code, description: `The upstream refused the connection (HTTP ${status}).`, closeCode, reason: `upstream refused (HTTP ${status})` }
}

/** A connection that never opened: unreachable, or the handshake timed out. */
export function connectFailure (error: Error): UpstreamFailure {
  return /timed out/i.test(error.message)
    ? { code: ErrorCode.upstreamTimeout, description: 'The upstream did not answer the connection in time.', closeCode: CloseCode.tryAgainLater, reason: 'upstream connect timeout' }
    : { code: ErrorCode.upstreamUnavailable, description: 'The upstream could not be reached.', closeCode: CloseCode.tryAgainLater, reason: 'upstream unreachable' }
}

/** An invalid or oversized frame from an open upstream (ws's `WS_ERR_*` codes). */
export function protocolFailure (wsCode: string, message: string, maxFrameBytes: number): UpstreamFailure {
  return {
    code: ErrorCode.upstreamProtocolError,
    description: wsCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
      ? `The upstream sent a frame larger than ${maxFrameBytes} bytes (MAX_UPSTREAM_FRAME_BYTES).`
      : `The upstream sent an invalid WebSocket frame (${message}).`,
    closeCode: CloseCode.internal,
    reason: 'upstream protocol error'
  }
}

export function unresponsiveFailure (everyMs: number): UpstreamFailure {
  return { code: ErrorCode.upstreamUnresponsive, description: `The upstream did not answer a ping within ${everyMs} ms; the connection is presumed dead.`, closeCode: CloseCode.internal, reason: 'upstream unresponsive' }
}

/** What an upstream close code means, in our words: the upstream's own reason text is never passed on (it can quote anything, a key included). */
const UPSTREAM_CLOSE_MEANINGS: Record<number, string> = {
  1000: 'The upstream ended the session normally.',
  1001: 'The upstream ended the session (its maximum duration was reached or it is going away).',
  1006: 'The upstream connection dropped without a close frame.',
  1008: 'The upstream closed the session for a policy violation.',
  1009: 'The upstream closed the session: a message was too big for it.',
  1011: 'The upstream closed the session after an internal error.',
  1012: 'The upstream is restarting.',
  1013: 'The upstream is overloaded; try again later.'
}

/** The upstream closed an open session: its code is passed on where it means the same to a client. */
export function closedFailure (code: number): UpstreamFailure {
  const closeCode = code === 1000 || code === 1001 || code === 1011 || code === 1013 ? code : CloseCode.internal
  const description = UPSTREAM_CLOSE_MEANINGS[code] ?? `The upstream closed the connection (code ${code}).`
  return { code: ErrorCode.upstreamClosed, description, closeCode, reason: `upstream closed (${code})` }
}

/** How the API key goes upstream: `Authorization: Bearer <key>` (OpenAI) or `api-key: <key>` (Azure OpenAI). */
export type ApiKeyHeader = 'authorization' | 'api-key'
export const API_KEY_HEADERS: readonly ApiKeyHeader[] = ['authorization', 'api-key']

/** The header an upstream URL takes its key in: Azure OpenAI's hosts (`*.openai.azure.com`) want `api-key`. */
export function apiKeyHeaderFor (url: string): ApiKeyHeader {
  return URL.canParse(url) && new URL(url).hostname.toLowerCase().endsWith('.openai.azure.com') ? 'api-key' : 'authorization'
}

/**
 * What a leg reports to the session that owns it. One object serves every leg of every
 * session (each call names the owner and the leg), so a connection holds no closures.
 */
export interface UpstreamEvents<Owner> {
  opened (owner: Owner, leg: UpstreamLeg<Owner>): void
  frame (owner: Owner, leg: UpstreamLeg<Owner>, data: RawData, isBinary: boolean): void
  /** The connection failed (it is being dropped); `closed` follows. */
  failed (owner: Owner, leg: UpstreamLeg<Owner>, failure: UpstreamFailure): void
  /** An error that does not end the connection. */
  socketError (owner: Owner, leg: UpstreamLeg<Owner>, error: Error): void
  closed (owner: Owner, leg: UpstreamLeg<Owner>, code: number): void
}

export interface UpstreamLegOptions<Owner> {
  url: string
  apiKey: string | undefined
  /** Default: the one the URL's host takes (apiKeyHeaderFor). */
  apiKeyHeader?: ApiKeyHeader
  maxFrameBytes: number
  connectTimeoutMs: number
  pingIntervalMs: number
  owner: Owner
  events: UpstreamEvents<Owner>
}

const LEG = Symbol('upstream leg')

type LegSocket = WebSocket & { [LEG]: UpstreamLeg<unknown> }

function legOf (ws: WebSocket): UpstreamLeg<unknown> {
  return (ws as LegSocket)[LEG]
}

export class UpstreamLeg<Owner> {
  state: UpstreamState = 'connecting'
  /** Set by the session once this connection no longer serves it (replaced, or lost): its events are ignored. */
  retired = false
  readonly #ws: WebSocket
  readonly #owner: Owner
  readonly #events: UpstreamEvents<Owner>
  readonly #maxFrameBytes: number
  readonly #pingIntervalMs: number
  /** What was sent before the socket opened, in order. */
  #outbox: string[] = []
  #ping: NodeJS.Timeout | undefined

  constructor (o: UpstreamLegOptions<Owner>) {
    const headers: Record<string, string> = {}
    if (o.apiKey !== undefined) {
      if ((o.apiKeyHeader ?? apiKeyHeaderFor(o.url)) === 'api-key') headers['api-key'] = o.apiKey
      else headers.Authorization = `Bearer ${o.apiKey}`
    }
    this.#owner = o.owner
    this.#events = o.events
    this.#maxFrameBytes = o.maxFrameBytes
    this.#pingIntervalMs = o.pingIntervalMs
    const ws = new WebSocket(o.url, {
      headers,
      maxPayload: o.maxFrameBytes,
      handshakeTimeout: o.connectTimeoutMs,
      perMessageDeflate: false,
      ...CLOSE_TIMEOUT_OPTION
    })
    this.#ws = ws
    ;(ws as LegSocket)[LEG] = this as unknown as UpstreamLeg<unknown>
    ws.on('open', UpstreamLeg.#onOpen)
    ws.on('message', UpstreamLeg.#onMessage)
    ws.on('unexpected-response', UpstreamLeg.#onUnexpectedResponse)
    ws.on('error', UpstreamLeg.#onError)
    ws.on('close', UpstreamLeg.#onClose)
  }

  // The socket's listeners, shared by every leg: `this` is the socket, which names its leg.

  static #onOpen (this: WebSocket): void {
    const leg = legOf(this)
    leg.state = 'open'
    const outbox = leg.#outbox
    leg.#outbox = []
    for (const text of outbox) this.send(text)
    leg.#ping = watchLiveness(this, leg.#pingIntervalMs, UpstreamLeg.#onUnresponsive, leg)
    leg.#events.opened(leg.#owner, leg)
  }

  static #onMessage (this: WebSocket, data: RawData, isBinary: boolean): void {
    const leg = legOf(this)
    leg.#events.frame(leg.#owner, leg, data, isBinary)
  }

  static #onUnexpectedResponse (this: WebSocket, _request: ClientRequest, response: IncomingMessage): void {
    const leg = legOf(this)
    response.resume()
    leg.#events.failed(leg.#owner, leg, refusedFailure(response.statusCode ?? 0))
    this.terminate()
  }

  static #onError (this: WebSocket, error: Error & { code?: string }): void {
    const leg = legOf(this)
    if (leg.state === 'connecting') {
      leg.#events.failed(leg.#owner, leg, connectFailure(error))
      return
    }
    const wsCode = error.code ?? ''
    if (!wsCode.startsWith('WS_ERR_')) {
      leg.#events.socketError(leg.#owner, leg, error)
      return
    }
    // A protocol fault: say so, and do not wait for a close handshake.
    leg.#events.failed(leg.#owner, leg, protocolFailure(wsCode, error.message, leg.#maxFrameBytes))
    this.terminate()
  }

  static #onClose (this: WebSocket, code: number): void {
    const leg = legOf(this)
    leg.state = 'closed'
    clearInterval(leg.#ping)
    leg.#events.closed(leg.#owner, leg, code)
  }

  static #onUnresponsive (leg: UpstreamLeg<unknown>): void {
    leg.#events.failed(leg.#owner, leg, unresponsiveFailure(leg.#pingIntervalMs))
    leg.#ws.terminate()
  }

  get isOpen (): boolean {
    return this.state === 'open'
  }

  /** True once the socket is closed (both directions done). */
  get isClosed (): boolean {
    return this.#ws.readyState === WebSocket.CLOSED
  }

  /** Bytes sent and not yet written to the network (the outbox while connecting). */
  get bufferedAmount (): number {
    if (this.state !== 'connecting') return this.#ws.bufferedAmount
    let bytes = 0
    for (const text of this.#outbox) bytes += text.length
    return bytes
  }

  /** Sends now, holds while connecting, drops once closed. */
  send (text: string): void {
    if (this.state === 'open') this.#ws.send(text)
    else if (this.state === 'connecting') this.#outbox.push(text)
  }

  /** Corks the socket for this tick (see ws-cork.ts); only while open. */
  cork (): void {
    if (this.state === 'open') cork(this.#ws)
  }

  /** Ends the leg: a close handshake when open, dropped while still connecting. */
  close (code: number, reason: string): void {
    clearInterval(this.#ping)
    this.#outbox = []
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.close(code, reason)
    else if (this.#ws.readyState === WebSocket.CONNECTING) this.#ws.terminate()
  }

  terminate (): void {
    this.#ws.terminate()
  }
}
