// Builds the real app on a real port against a real simulator, and a raw
// Deepgram-protocol client, for real-socket tests. One helper for every test.

import { Writable } from 'node:stream'
import pino from 'pino'
import WebSocket from 'ws'
import { buildApp } from '../../app.js'
import type { ProxyApp } from '../../app.js'
import { loadConfig, withModel } from '../../lib/config.js'
import type { EngineTimings } from '../../lib/engine/engine.js'
import { emptyViolations } from '../../lib/simulator/script.js'
import { startSimulator } from '../../lib/simulator/index.js'
import type { SimScript, Simulator } from '../../lib/simulator/index.js'
import type { SimConnection, Violations } from '../../lib/simulator/index.js'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestProxy {
  proxy: ProxyApp
  sim: Simulator
  /** ws://127.0.0.1:PORT/v1/agent/converse */
  url: string
  /** http://127.0.0.1:PORT */
  base: string
  /** Every JSON log line the app wrote. */
  logs: Array<Record<string, unknown>>
}

/** pino's `hooks.logMethod`: sees every log call of the app (`this` is the logger, with its bindings) before it is written. */
export type LogHook = (this: pino.Logger, args: unknown[], method: (...args: unknown[]) => void, level: number) => void

export async function startProxy (t: Teardown, options: { script?: Partial<SimScript>, env?: Record<string, string>, engine?: EngineTimings, logHook?: LogHook } = {}): Promise<TestProxy> {
  const sim = await startSimulator({ port: 0, ...(options.script === undefined ? {} : { script: options.script }) })
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', ...options.env })
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      done()
    }
  })
  const logger = pino({ level: options.env?.LOG_LEVEL ?? 'info', ...(options.logHook === undefined ? {} : { hooks: { logMethod: options.logHook as NonNullable<pino.LoggerOptions['hooks']>['logMethod'] } }) }, sink)
  const proxy = await buildApp({ config, upstreamUrl: config.upstreamUrl ?? withModel(sim.url, config.model), logger, ...(options.engine === undefined ? {} : { engine: options.engine }) })
  await proxy.app.listen({ port: 0, host: '127.0.0.1' })
  proxy.markReady()
  const address = proxy.app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  t.teardown(async () => {
    await proxy.app.close()
    await sim.close()
  })
  return { proxy, sim, url: `ws://127.0.0.1:${port}/v1/agent/converse`, base: `http://127.0.0.1:${port}`, logs }
}

export type ClientMessage = Record<string, any> & { type: string }

/** A raw Deepgram Voice Agent client: records every message, waits for types. */
export class TestClient {
  readonly messages: ClientMessage[] = []
  readonly audio: Buffer[] = []
  readonly closed: Promise<{ code: number, reason: string }>
  readonly #claimed = new Map<string, number>()
  #waiters: Array<() => void> = []

  constructor (readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) this.audio.push(data)
      else this.messages.push(JSON.parse(data.toString()) as ClientMessage)
      const waiters = this.#waiters
      this.#waiters = []
      for (const wake of waiters) wake()
    })
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString() })
      const waiters = this.#waiters
      this.#waiters = []
      for (const wake of waiters) wake()
    }))
  }

  static async connect (url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<TestClient> {
    const { protocols, ...rest } = options
    const ws = new WebSocket(url, protocols, rest)
    const client = new TestClient(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode ?? 0}`)))
    })
    return client
  }

  send (message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message))
  }

  sendAudio (audio: Buffer): void {
    this.ws.send(audio, { binary: true })
  }

  /** All messages of a type received so far. */
  all (type: string): ClientMessage[] {
    return this.messages.filter((m) => m.type === type)
  }

  /** The next not-yet-claimed message of `type` (earlier ones count), within `timeoutMs`. */
  async next (type: string, timeoutMs = 5000): Promise<ClientMessage> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const claimed = this.#claimed.get(type) ?? 0
      const found = this.all(type)[claimed]
      if (found !== undefined) {
        this.#claimed.set(type, claimed + 1)
        return found
      }
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for ${type}; got ${this.types().join(', ')}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${type}; got ${this.types().join(', ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** Waits until `predicate` holds over what was received. */
  async until (predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.types().join(', ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50))
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  types (): string[] {
    return this.messages.map((m) => m.type)
  }

  async close (): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000)
    await this.closed
  }
}

export const BASIC_SETTINGS = {
  type: 'Settings',
  audio: {
    input: { encoding: 'linear16', sample_rate: 24000 },
    output: { encoding: 'linear16', sample_rate: 24000, container: 'none' }
  },
  agent: {
    think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'You are a helpful test agent.' },
    speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'alloy' } },
    listen: { provider: { type: 'deepgram', model: 'nova-3' } }
  }
}

/** Connects, sends Settings and waits for SettingsApplied. */
export async function configuredClient (url: string, settings: Record<string, unknown> = BASIC_SETTINGS): Promise<TestClient> {
  const client = await TestClient.connect(url)
  client.send(settings)
  await client.next('SettingsApplied')
  return client
}

/** What a well-behaved proxy leaves in the simulator's violation counters. */
export const NO_VIOLATIONS: Violations = emptyViolations()

/** Waits until the simulator has sent the proxy an event of `type` matching `predicate`; returns it. */
export async function simSent (conn: SimConnection, type: string, predicate: (event: any) => boolean = () => true, timeoutMs = 5000): Promise<any> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = conn.sent.find((event) => event.type === type && predicate(event))
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`timed out waiting for the simulator to send ${type}; sent ${conn.sent.map((e) => e.type).join(', ')}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Records, in arrival order, every frame the client gets: "binary" or the message type. */
export function arrivals (client: TestClient): string[] {
  const order: string[] = []
  client.ws.on('message', (data: Buffer, isBinary) => {
    order.push(isBinary ? 'binary' : (JSON.parse(data.toString()) as ClientMessage).type)
  })
  return order
}

/** Sends a message of an unknown type and waits for its Warning: every earlier client message was processed by then. */
export async function barrier (client: TestClient): Promise<void> {
  if (await settled(client) === 'closed') throw new Error(`the session closed before the barrier was answered; got ${client.types().join(', ')}`)
}

/** As `barrier`, but a session the proxy ends on the way (Settings it cannot serve) counts as settled too. */
export async function settled (client: TestClient): Promise<'answered' | 'closed'> {
  const marker = `Barrier${client.messages.length}_${Math.random().toString(36).slice(2)}`
  const closed = (): boolean => client.ws.readyState === WebSocket.CLOSED
  if (!closed()) client.send({ type: marker })
  const answered = (): boolean => client.all('Warning').some((m) => typeof m.description === 'string' && m.description.includes(marker))
  await client.until(() => answered() || closed(), `the Warning answering ${marker}`)
  return answered() ? 'answered' : 'closed'
}

/** The client's Errors (the answers to `barrier` are Warnings). */
export function errorsOf (client: TestClient): ClientMessage[] {
  return client.all('Error')
}

/** Client Warnings other than the answers to `barrier`. */
export function warningsOf (client: TestClient): ClientMessage[] {
  return client.all('Warning').filter((m) => !(typeof m.description === 'string' && m.description.includes('"Barrier')))
}
