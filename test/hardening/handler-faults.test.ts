// A bug in any of a session's socket handlers ends that session only: its client gets
// INTERNAL_SERVER_ERROR and close 1011, both of its legs close and it leaves the
// registry, and another session on the same instance goes on. The fault is injected
// through the app's own logger (a pino hook that throws on one log call of one session),
// so each handler fails on its real path, reached through real sockets: the listeners
// are shared by every session, and a mix-up of sessions would show here too.

import t from 'tap'
import type { Test } from 'tap'
import { ErrorCode } from '../../lib/protocol/deepgram.js'
import { eventually, within } from '../fixtures/leaks.js'
import { TestClient, configuredClient, startProxy } from '../helpers/proxy.js'
import type { LogHook, TestProxy } from '../helpers/proxy.js'

/** Throws once, on the first log call of session `target` that `matches`. */
interface Trap { target: string | undefined, matches: (fields: Record<string, unknown>, message: unknown) => boolean, sprung: boolean }

function trapHook (trap: Trap): LogHook {
  return function (args, method) {
    const fields = (typeof args[0] === 'object' && args[0] !== null ? args[0] : {}) as Record<string, unknown>
    const message = typeof args[0] === 'string' ? args[0] : args[1]
    if (!trap.sprung && this.bindings().sessionId === trap.target && trap.matches(fields, message)) {
      trap.sprung = true
      throw new Error('injected handler fault')
    }
    method.apply(this, args)
  }
}

async function setup (t: Test, matches: Trap['matches'], env: Record<string, string> = {}): Promise<{ proxied: TestProxy, trap: Trap, victim: TestClient, bystander: TestClient }> {
  const trap: Trap = { target: undefined, matches, sprung: false }
  const proxied = await startProxy(t, { env, logHook: trapHook(trap) })
  const bystander = await configuredClient(proxied.url)
  const victim = await configuredClient(proxied.url)
  t.teardown(async () => {
    await bystander.close()
    await victim.close()
  })
  trap.target = victim.messages.find((m) => m.type === 'Welcome')?.request_id
  t.ok(trap.target, 'the victim\'s session id, from its Welcome')
  return { proxied, trap, victim, bystander }
}

/** The victim's session ended as an internal error, alone; the bystander still talks to the agent. */
async function onlyTheVictimEnded (t: Test, { proxied, trap, bystander }: { proxied: TestProxy, trap: Trap, bystander: TestClient }): Promise<void> {
  t.ok(trap.sprung, 'the fault was injected')
  await eventually(() => proxied.proxy.sessions.size === 1, 'the victim\'s session to leave the registry (both legs closed)')
  const listed = await (await fetch(`${proxied.base}/connections`)).json() as { connections: Array<{ id: string }> }
  t.same(listed.connections.map((c) => c.id), [bystander.messages.find((m) => m.type === 'Welcome')?.request_id], '/connections lists the bystander only')
  t.ok(proxied.logs.some((line) => line.level === 50 && line.sessionId === trap.target && line.msg === 'internal error; closing the session'), 'logged as an internal error of the victim\'s session')
  bystander.send({ type: 'InjectUserMessage', content: 'Are you still there?' })
  await within(bystander.next('AgentAudioDone'), 'the bystander\'s answer')
  t.equal(bystander.all('Error').length, 0, 'the bystander saw no Error')
}

async function endedAsInternalError (t: Test, victim: TestClient): Promise<void> {
  const error = await within(victim.next('Error'), 'the victim\'s Error')
  t.equal(error.code, ErrorCode.internal, 'INTERNAL_SERVER_ERROR')
  t.equal((await within(victim.closed, 'the victim\'s close')).code, 1011, 'close 1011')
}

t.test('the client message handler: a fault while answering a client message', async (t) => {
  const s = await setup(t, (fields) => fields.direction === 'proxy->client')
  // An unknown type is answered (a Warning or an Error), whose log line is the trap.
  s.victim.send({ type: 'NoSuchMessage' })
  await endedAsInternalError(t, s.victim)
  await onlyTheVictimEnded(t, s)
})

t.test('the upstream message handler: a fault while handling an upstream event', async (t) => {
  const s = await setup(t, (fields) => fields.direction === 'upstream->proxy' && fields.messageType === 'response.created', { LOG_LEVEL: 'debug' })
  s.victim.send({ type: 'InjectUserMessage', content: 'Hello' })
  await endedAsInternalError(t, s.victim)
  await onlyTheVictimEnded(t, s)
})

t.test('the upstream close handler: a fault while handling the upstream\'s close', async (t) => {
  const s = await setup(t, (_fields, message) => message === 'upstream closed')
  const upstream = s.proxied.sim.connections.at(-1)
  upstream?.close(1011, 'server error')
  await endedAsInternalError(t, s.victim)
  await onlyTheVictimEnded(t, s)
})

t.test('the client close handler: a fault while the client leaves still closes the upstream', async (t) => {
  const s = await setup(t, (fields) => fields.clientCloseCode !== undefined)
  await s.victim.close()
  await onlyTheVictimEnded(t, s)
})
