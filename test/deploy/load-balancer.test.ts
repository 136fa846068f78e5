// Issue 7: the compose stack's load balancer, for real on loopback. Two proxy
// processes, built and run the way the image does, behind the Debian nginx
// configured with the template docker/compose.yaml mounts, sharing one scriptable
// Realtime simulator. SIGTERM to one replica: nginx sends new sessions to the
// other while the draining one finishes its turn, and no client sees an error it
// would not see without the balancer.

import t from 'tap'
import { startSimulator, type SimConnection } from '../../lib/simulator/index.js'
import { NO_VIOLATIONS, configuredClient, type TestClient } from '../helpers/proxy.js'
import { buildServer, startInstance, startNginx, type Instance } from '../fixtures/deploy-stack.js'
import { NGINX, requireProgram } from '../helpers/system.js'

/** Short, so a drain that never ends fails the test rather than hanging it. */
const DRAIN_TIMEOUT_MS = 15_000

interface Opened {
  client: TestClient
  /** This session's upstream leg in the simulator. */
  upstream: SimConnection
  replica: Instance
}

t.test('SIGTERM to one replica behind nginx: new sessions go to the other while the running turn finishes', async (t) => {
  const nginx = requireProgram(t, NGINX)
  if (nginx === undefined) return
  const sim = await startSimulator({ port: 0 })
  t.teardown(() => sim.close())
  const root = await buildServer(t)
  const env = { OPENAI_REALTIME_URL: sim.url, DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS), LOG_LEVEL: 'info' }
  const replicas = await Promise.all([startInstance(t, root, 'replica-1', env), startInstance(t, root, 'replica-2', env)])
  const lb = await startNginx(t, nginx, [`127.0.0.1:${replicas[0].port}`, `127.0.0.1:${replicas[1].port}`])

  const sessions: Opened[] = []
  t.teardown(() => Promise.all(sessions.map(({ client }) => client.close())))

  /** A session through the balancer, configured, with the replica that serves it. */
  async function open (): Promise<Opened> {
    const client = await configuredClient(lb.url)
    // Sessions open one at a time, so upstream legs arrive in the same order.
    const upstream = await sim.nextConnection()
    const id = client.all('Welcome')[0]?.request_id as string
    const serving: Instance[] = []
    for (const replica of replicas) {
      if (replica.child.exitCode !== null) continue
      const { connections } = await adminGet(replica, '/connections') as { connections: Array<{ id: string }> }
      if (connections.some((c) => c.id === id)) serving.push(replica)
    }
    if (serving.length !== 1) throw new Error(`session ${id} is listed by ${serving.length} replicas`)
    const opened = { client, upstream, replica: serving[0] as Instance }
    sessions.push(opened)
    return opened
  }

  // Round robin: both replicas get sessions.
  while (sessions.length < 4 && new Set(sessions.map((s) => s.replica)).size < 2) await open()
  t.equal(new Set(sessions.map((s) => s.replica)).size, 2, 'sessions through nginx reach both replicas')
  t.equal((await fetch(`${lb.base}/connections`)).status, 404, 'the balancer does not expose one replica\'s /connections')

  const inTurn = sessions[0] as Opened
  const draining = inTurn.replica
  const survivor = replicas.find((r) => r !== draining) as Instance
  const onSurvivor = sessions.find((s) => s.replica === survivor) as Opened

  // A turn on the replica about to drain, held open: its response.done waits for us.
  inTurn.upstream.script.neverComplete = true
  inTurn.client.send({ type: 'InjectUserMessage', content: 'Tell me a long story' })
  await inTurn.client.next('AgentAudioDone')
  t.ok(await responseInProgress(draining, inTurn.client), 'the upstream response is still in progress on the replica that will drain')

  draining.child.kill('SIGTERM')
  await waitFor(async () => (await fetch(`${draining.base}/readyz`)).status === 503, `${draining.name} /readyz 503 after SIGTERM`)

  // New sessions while the turn runs: all on the other replica, none refused. (Round
  // robin offers the draining replica one of the first two.)
  const whileDraining: Opened[] = []
  for (let i = 0; i < 3; i++) {
    const opened = await open()
    t.equal(opened.replica, survivor, `session ${i + 1} opened during the drain went to the ready replica`)
    await completeTurn(opened.client)
    await opened.client.close()
    whileDraining.push(opened)
  }
  t.equal(inTurn.client.ws.readyState, inTurn.client.ws.OPEN, 'the session in a turn is still open while the replica drains')

  // nginx did offer sessions to the draining replica, which refused them with 503,
  // and retried them on the other: the clients above never saw it.
  const refusedThenRetried = `upstream=127.0.0.1:${draining.port}, 127.0.0.1:${survivor.port} upstream_status=503, 101`
  await waitFor(async () => (await lb.accessLog()).filter((line) => line.startsWith('/v1/agent/converse ')).length >= whileDraining.length, 'access log lines of the closed sessions')
  const log = await lb.accessLog()
  t.ok(log.some((line) => line.endsWith(refusedThenRetried)), `a new session was refused by the draining replica and retried: "${refusedThenRetried}"`, { log, nginx: lb.stderr.join('') })

  t.equal((await fetch(`${lb.base}/readyz`)).status, 200, 'the balancer is still ready: the other replica accepts sessions')

  // The turn ends; then the draining replica closes its sessions and exits.
  inTurn.upstream.finishResponse()
  const closed = await inTurn.client.closed
  t.equal(closed.code, 1012, 'the session is closed with 1012 (service restart) once its turn is done')
  t.not(closed.reason, '', `with a reason for the client ("${closed.reason}")`)
  t.ok(inTurn.client.all('ConversationText').some((m) => m.role === 'assistant') && inTurn.client.audio.length > 0, 'the turn was delivered (text and audio) before the close')
  for (const other of sessions.filter((s) => s.replica === draining && s !== inTurn)) {
    t.equal((await other.client.closed).code, 1012, 'an idle session on the draining replica is closed with 1012 too')
  }
  t.same(await draining.exited, { code: 0, signal: null }, 'the drained replica exits 0')
  const messages = draining.logs.map((l) => l.msg)
  t.ok(messages.includes('draining') && messages.includes('drained; exiting'), 'it logged the drain')

  // With the replica gone (connection refused), sessions still go through.
  const afterExit = await open()
  t.equal(afterExit.replica, survivor, 'a session opened after the drained replica exited went to the other one')
  await completeTurn(afterExit.client)
  await completeTurn(onSurvivor.client)

  for (const { client, replica } of sessions) {
    t.same(client.all('Error'), [], `no Error reached a client of ${replica.name}`)
  }
  t.same(sim.violations(), NO_VIOLATIONS)
})

async function adminGet (replica: Instance, path: string): Promise<unknown> {
  const response = await fetch(`${replica.base}${path}`)
  if (response.status !== 200) throw new Error(`${replica.name} ${path}: HTTP ${response.status}`)
  return await response.json()
}

async function responseInProgress (replica: Instance, client: TestClient): Promise<boolean> {
  const id = client.all('Welcome')[0]?.request_id as string
  const { connections } = await adminGet(replica, '/connections') as { connections: Array<{ id: string, responseInProgress: boolean }> }
  return connections.find((c) => c.id === id)?.responseInProgress === true
}

/** One user text turn, answered in full (text and audio). */
async function completeTurn (client: TestClient): Promise<void> {
  const answers = client.all('ConversationText').filter((m) => m.role === 'assistant').length
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.next('AgentAudioDone')
  await client.until(() => client.all('ConversationText').filter((m) => m.role === 'assistant').length > answers, 'the assistant ConversationText')
}

async function waitFor (check: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
