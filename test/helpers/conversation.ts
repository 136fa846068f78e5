// Helpers for the conversation tests on real sockets (test/realtime/renewal, conversation,
// server-functions): a session with its first simulator connection, a spoken turn, what
// a simulator connection was given as items, and the session as /connections shows it.

import type { SimConnection, SimScript } from '../../lib/simulator/index.js'
import { BASIC_SETTINGS, configuredClient, startProxy } from './proxy.js'
import type { TestClient, TestProxy } from './proxy.js'

interface Teardown { teardown: (fn: () => unknown) => void }

export const WEATHER = {
  name: 'get_weather',
  description: 'Current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } } }
}

/** BASIC_SETTINGS with these `agent` fields replaced. */
export function withAgent (agent: Record<string, unknown>): Record<string, unknown> {
  return { ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, ...agent } }
}

export interface Session extends TestProxy {
  client: TestClient
  /** The simulator connection the session opened first. */
  conn: SimConnection
}

/** A proxy (with `env`) on a simulator (with `script`), a client configured with `settings`, and its first upstream. */
export async function openSession (t: Teardown, options: { script?: Partial<SimScript>, env?: Record<string, string>, settings?: Record<string, unknown> } = {}): Promise<Session> {
  const proxied = await startProxy(t, { ...(options.script !== undefined && { script: options.script }), ...(options.env !== undefined && { env: options.env }) })
  const client = await configuredClient(proxied.url, options.settings ?? BASIC_SETTINGS)
  t.teardown(() => client.close())
  const conn = await proxied.sim.nextConnection()
  return { ...proxied, client, conn }
}

/** The assistant's ConversationTexts so far. */
export function agentTexts (client: TestClient): string[] {
  return client.all('ConversationText').filter((m) => m.role === 'assistant').map((m) => m.content as string)
}

/** Waits until the agent has told `count` turns in all; returns the last one. */
export async function agentSaid (client: TestClient, count: number, timeoutMs = 5000): Promise<string> {
  await client.until(() => agentTexts(client).length >= count, `the agent's turn ${count}`, timeoutMs)
  return agentTexts(client)[count - 1] as string
}

/** Types `text` as the user (InjectUserMessage) and waits for the agent's answer, told once it was heard. */
export async function ask (client: TestClient, text: string): Promise<string> {
  const told = agentTexts(client).length
  client.send({ type: 'InjectUserMessage', content: text })
  return await agentSaid(client, told + 1)
}

/** The items a simulator connection was given (`conversation.item.create`), as `[role or type, text/arguments/output]`. */
export function itemsGiven (conn: SimConnection): Array<[string, string]> {
  return conn.received.filter((e) => e.type === 'conversation.item.create').map((e) => {
    const item = e.item
    if (item.type === 'message') return [item.role, item.content?.[0]?.text ?? item.content?.[0]?.transcript]
    if (item.type === 'function_call') return [`call ${item.name as string}`, item.arguments]
    return [item.type, item.output]
  })
}

/** The session's summary and timeline, as the admin routes show them (the proxy's only session). */
export async function sessionDetail (base: string): Promise<{ upstream: { connects: number }, events: Array<Record<string, any>> }> {
  const listing = await (await fetch(`${base}/connections`)).json() as { connections: Array<{ id: string }> }
  const id = listing.connections[0]?.id
  if (id === undefined || listing.connections.length !== 1) throw new Error(`expected one session in /connections, got ${listing.connections.length}`)
  return await (await fetch(`${base}/connections/${id}`)).json() as { upstream: { connects: number }, events: Array<Record<string, any>> }
}

/** The codes ('renew', 'reconnect') of the upstream connections the timeline shows after the first. */
export function upstreamConnects (events: Array<Record<string, any>>): string[] {
  return events.filter((e) => e.type === 'upstream.connect').map((e) => e.code as string)
}

/** Waits until `conn` acknowledged `count` conversation items (the replay is in its conversation). */
export async function replayed (conn: SimConnection, count: number): Promise<void> {
  const deadline = Date.now() + 5000
  while (conn.sent.filter((e) => e.type === 'conversation.item.done').length < count) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} items acknowledged on ${conn.id}; got ${itemsGiven(conn).length} given`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
