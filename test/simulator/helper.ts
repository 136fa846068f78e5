// A raw `ws` client for simulator tests: it sends GA client events with event
// ids and reads server events in order, like a strict proxy would.

import { once } from 'node:events'
import WebSocket from 'ws'
import { startSimulator, type SimConnection, type Simulator, type SimulatorOptions } from '../../lib/simulator/index.js'

interface TestContext {
  teardown (fn: () => unknown): void
}

export class Client {
  readonly ws: WebSocket
  /** Every server event received, in order. */
  readonly events: any[] = []
  #cursor = 0
  #sent = 0
  #wake: (() => void) | null = null

  constructor (ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data) => {
      this.events.push(JSON.parse(String(data)))
      this.#wake?.()
    })
    ws.on('close', () => this.#wake?.())
  }

  /** Sends a client event with a fresh `event_id` (unless it has one or `null`) and returns it. */
  send (event: Record<string, unknown>): any {
    const full = 'event_id' in event ? event : { event_id: `evt_test_${++this.#sent}`, ...event }
    if (full.event_id === null) delete full.event_id
    this.ws.send(JSON.stringify(full))
    return full
  }

  sendRaw (data: string | Buffer): void {
    this.ws.send(data)
  }

  /** The next server event of `type` after the last one returned; earlier events are skipped. */
  async next (type: string, predicate: (event: any) => boolean = () => true, timeoutMs = 2000): Promise<any> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      for (let i = this.#cursor; i < this.events.length; i++) {
        const event = this.events[i]
        if (event.type === type && predicate(event)) {
          this.#cursor = i + 1
          return event
        }
      }
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for ${type}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${type}; got ${this.types().join(', ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.#wake = null
    }
  }

  /** Event types received, in order, optionally from index `from`. */
  types (from = 0): string[] {
    return this.events.slice(from).map((event) => event.type)
  }

  /** Sends a configuring session.update and waits for its session.updated. */
  async configure (session: Record<string, unknown> = {}): Promise<any> {
    this.send({ type: 'session.update', session: { type: 'realtime', ...session } })
    return await this.next('session.updated')
  }

  async close (): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    const closed = once(this.ws, 'close')
    this.ws.close()
    await closed
  }
}

export async function simulator (t: TestContext, options: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await startSimulator({ port: 0, ...options })
  t.teardown(() => sim.close())
  return sim
}

/** Opens a client on `sim` and returns it with its server-side connection, after session.created. */
export async function connect (
  t: TestContext,
  sim: Simulator,
  options: { model?: string, headers?: Record<string, string> } = {}
): Promise<{ client: Client, connection: SimConnection }> {
  const ws = new WebSocket(`${sim.url}?model=${options.model ?? 'gpt-realtime'}`, { headers: options.headers })
  const client = new Client(ws)
  t.teardown(() => client.close())
  const [connection] = await Promise.all([sim.nextConnection(), once(ws, 'open')])
  await client.next('session.created')
  return { client, connection }
}

/** Lets pending server events arrive (a few event-loop turns and `ms` of wall time). */
export function settle (ms = 30): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** base64 PCM16 silence of `ms` milliseconds at 24 kHz. */
export function pcm (ms: number): string {
  return Buffer.alloc(48 * ms).toString('base64')
}
