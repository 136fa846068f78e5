// The simulator's server: an HTTP server that only upgrades
// `/v1/realtime?model=…` (OpenAI) or `/openai/v1/realtime?model=<deployment>`
// (Azure OpenAI), checking the key when one is configured (OpenAI's
// `Authorization: Bearer <key>` or Azure's `api-key: <key>`), and hands each
// WebSocket to a Connection. Cheap to start and stop: tests start one
// per file or per test, the benchmark runs hundreds of sessions on one.

import { createServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import { Connection, type SimConnection } from './connection.js'
import { emptyViolations, resolveScript, type SimScript, type Violations } from './script.js'

export interface SimulatorOptions {
  /** Default 0: any free port. */
  port?: number
  /** Default '127.0.0.1'. */
  host?: string
  /** When set, upgrades must carry `Authorization: Bearer <apiKey>` or `api-key: <apiKey>` (Azure), else HTTP 401. */
  apiKey?: string
  /** Default script of every new connection. */
  script?: Partial<SimScript>
}

export interface Simulator {
  /** `ws://HOST:PORT/v1/realtime`: add `?model=…` like for OpenAI. */
  readonly url: string
  readonly port: number
  /** Every connection accepted, in order, the last 1000. */
  readonly connections: SimConnection[]
  /** Default script of connections accepted from now on. */
  script: Partial<SimScript>
  /** While set, every upgrade is refused with this HTTP status (an outage: 503, a revoked key: 401). */
  refuseUpgrades: number | null
  /**
   * The oldest accepted connection no earlier call has returned, or the next one accepted.
   * Each connection is handed out once, in accept order, so it does not matter whether a test
   * calls this before or after its client connects.
   */
  nextConnection (): Promise<SimConnection>
  /** Violations summed over every connection ever accepted. */
  violations (): Violations
  /** Drops every connection and stops listening. */
  close (): Promise<void>
}

export const REALTIME_PATH = '/v1/realtime'
/** Azure OpenAI's path for the same protocol (`?model=` names the deployment). */
export const AZURE_REALTIME_PATH = '/openai/v1/realtime'
const PATHS = new Set([REALTIME_PATH, AZURE_REALTIME_PATH])
// OpenAI events (a long transcript, a big audio append) can exceed 1 MiB.
const MAX_PAYLOAD = 64 * 1024 * 1024
const KEPT_CONNECTIONS = 1000
const KEPT_UNCLAIMED = 1000

export async function startSimulator (options: SimulatorOptions = {}): Promise<Simulator> {
  const simulator = new SimulatorServer(validated(options))
  await simulator.listen()
  return simulator
}

interface Claim {
  resolve (connection: SimConnection): void
  reject (error: Error): void
}

class SimulatorServer implements Simulator {
  script: Partial<SimScript>
  refuseUpgrades: number | null = null
  readonly #options: Required<Omit<SimulatorOptions, 'apiKey' | 'script'>> & { apiKey: string | undefined }
  readonly #http: Server
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD, perMessageDeflate: false })
  readonly #connections: Connection[] = []
  readonly #open = new Set<Connection>()
  readonly #unclaimed: Connection[] = []
  readonly #claims: Claim[] = []
  readonly #totals = emptyViolations()
  #accepted = 0
  #port = 0
  #closing: Promise<void> | null = null

  constructor (options: SimulatorOptions) {
    this.#options = { port: options.port ?? 0, host: options.host ?? '127.0.0.1', apiKey: options.apiKey }
    this.script = { ...options.script }
    this.#http = createServer((_request, response) => {
      response.writeHead(426, { 'content-type': 'application/json', upgrade: 'websocket' })
      response.end(JSON.stringify(openaiError(`Connect a WebSocket to ${REALTIME_PATH}?model=…`, 'upgrade_required')))
    })
    this.#http.on('upgrade', (request, socket, head) => this.#onUpgrade(request, socket, head))
  }

  async listen (): Promise<void> {
    const { port, host } = this.#options
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject)
      this.#http.listen(port, host, () => {
        this.#http.off('error', reject)
        resolve()
      })
    })
    this.#port = (this.#http.address() as AddressInfo).port
  }

  get url (): string {
    const { host } = this.#options
    const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
    return `ws://${reachable.includes(':') ? `[${reachable}]` : reachable}:${this.#port}${REALTIME_PATH}`
  }

  get port (): number {
    return this.#port
  }

  get connections (): SimConnection[] {
    return [...this.#connections]
  }

  nextConnection (): Promise<SimConnection> {
    const waiting = this.#unclaimed.shift()
    if (waiting !== undefined) return Promise.resolve(waiting)
    if (this.#closing !== null) return Promise.reject(new Error('The simulator is closed: no connection will come'))
    return new Promise((resolve, reject) => this.#claims.push({ resolve, reject }))
  }

  violations (): Violations {
    return { ...this.#totals }
  }

  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    for (const connection of [...this.#open]) connection.terminate()
    for (const claim of this.#claims.splice(0)) claim.reject(new Error('The simulator closed before a connection came'))
    this.#unclaimed.length = 0
    this.#wss.close()
    const closed = new Promise<void>((resolve) => this.#http.close(() => resolve()))
    this.#http.closeAllConnections()
    await closed
  }

  #onUpgrade (request: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A client resetting mid-handshake must not crash the process.
    socket.on('error', () => socket.destroy())
    const url = new URL(request.url ?? '/', 'http://simulator')
    if (this.#closing !== null) return refuseUpgrade(socket, 503, openaiError('The simulator is shutting down.', 'server_shutting_down'))
    if (!PATHS.has(url.pathname)) {
      return refuseUpgrade(socket, 404, openaiError(`Unknown path ${url.pathname}: connect to ${REALTIME_PATH}?model=… (or Azure's ${AZURE_REALTIME_PATH}?model=…)`, 'not_found'))
    }
    if (this.refuseUpgrades !== null) return refuseUpgrade(socket, this.refuseUpgrades, openaiError('The simulator refuses connections (refuseUpgrades).', 'connection_refused'))
    const { apiKey } = this.#options
    if (apiKey !== undefined && request.headers.authorization !== `Bearer ${apiKey}` && request.headers['api-key'] !== apiKey) {
      return refuseUpgrade(socket, 401, openaiError('Incorrect API key provided. Send `Authorization: Bearer <key>` (or Azure\'s `api-key: <key>`).', 'invalid_api_key'))
    }
    this.#wss.handleUpgrade(request, socket, head, (ws) => this.#accept(ws, request, url))
  }

  #accept (ws: WebSocket, request: IncomingMessage, url: URL): void {
    this.#accepted += 1
    const connection = new Connection(ws, {
      id: `conn_${this.#accepted}`,
      model: url.searchParams.get('model'),
      headers: request.headers,
      script: resolveScript(this.script),
      onViolation: (kind) => { this.#totals[kind] += 1 },
      onClose: (closed) => this.#open.delete(closed)
    })
    this.#open.add(connection)
    keepLast(this.#connections, connection, KEPT_CONNECTIONS)
    connection.start()
    const claim = this.#claims.shift()
    if (claim !== undefined) claim.resolve(connection)
    else keepLast(this.#unclaimed, connection, KEPT_UNCLAIMED)
  }
}

function validated (options: SimulatorOptions): SimulatorOptions {
  const { port, host, apiKey, script } = options
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new TypeError(`startSimulator: port must be an integer from 0 to 65535 (0 = any free port), got ${String(port)}`)
  }
  if (host !== undefined && (typeof host !== 'string' || host === '')) {
    throw new TypeError('startSimulator: host must be a non-empty string such as \'127.0.0.1\'')
  }
  if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey === '')) {
    throw new TypeError('startSimulator: apiKey must be a non-empty string, or left out to accept any client')
  }
  if (script !== undefined && (typeof script !== 'object' || script === null)) {
    throw new TypeError('startSimulator: script must be an object of SimScript fields')
  }
  return options
}

function keepLast<T> (list: T[], entry: T, limit: number): void {
  list.push(entry)
  if (list.length > limit) list.shift()
}

function openaiError (message: string, code: string): object {
  return { error: { message, type: 'invalid_request_error', code, param: null } }
}

function refuseUpgrade (socket: Duplex, status: number, body: object): void {
  const json = JSON.stringify(body)
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    'Content-Type: application/json\r\n' +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    'Connection: close\r\n\r\n' +
    json
  )
}
