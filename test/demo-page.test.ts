// Issue 16: the page at `/` in headless Chromium with a fake microphone, against the
// real app and the simulator. Deepgram's <deepgram-agent> element does the audio; the
// test hears what really reaches the speakers through fixtures/page-audio-probe.js,
// which also tells "playback stopped" apart from "the audio ran out". Screenshots go
// to test-artifacts/ (gitignored).

import { mkdir } from 'node:fs/promises'
import type { Page, WebSocket as PageSocket } from 'playwright-core'
import t, { type Test } from 'tap'
import { CONVERSE_PATH } from '../plugins/realtime.js'
import { tempDir } from './fixtures/deploy-stack.js'
import { launchBrowser } from './helpers/browser.js'
import { startProxy, type TestProxy } from './helpers/proxy.js'
import { writeToneWav } from './helpers/wav.js'

const ARTIFACTS = new URL('../test-artifacts/', import.meta.url)
const AUDIO_PROBE = new URL('./fixtures/page-audio-probe.js', import.meta.url).pathname
const GREETING = 'Hello! Ask me anything, or ask for the local time in a city.'
const TOOL_QUESTION = "What's the local time? City: Tokyo"
const TIME_IN_TOKYO = /^\d\d:\d\d on [A-Z][a-z]+day in Tokyo \(Asia\/Tokyo\)$/
/** The simulator's tone is 0.1 of full scale; silence is exactly 0. */
const AUDIBLE = 0.05

interface Output { peak: number, pending: number }
interface Entry { kind: string, who: string, text: string, callId?: string, status?: string }
interface Frames { sent: any[], received: any[] }

interface Wanted {
  /** Peak above this, or exactly 0 with `silent`. */
  above?: number
  silent?: boolean
  /** Seconds of audio still scheduled, above this. */
  pendingAbove?: number
}

// Predicates run in the page as functions with arguments: the page's CSP forbids evaluating strings.
async function waitForOutput (page: Page, wanted: Wanted): Promise<Output> {
  const handle = await page.waitForFunction((wanted: Wanted) => {
    const output = (globalThis as any).__output() as Output
    const loud = wanted.silent === true ? output.peak === 0 : output.peak > (wanted.above ?? 0)
    return loud && (wanted.pendingAbove === undefined || output.pending > wanted.pendingAbove) ? output : null
  }, wanted, { polling: 10 })
  return await handle.jsonValue() as Output
}

/** waitForOutput started now and awaited later (a failure before then is not an unhandled rejection). */
function listenFor (page: Page, wanted: Wanted): Promise<Output> {
  const heard = waitForOutput(page, wanted)
  heard.catch(() => {})
  return heard
}

async function transcript (page: Page): Promise<Entry[]> {
  return await page.$$eval('#transcript li', (items) => items.map((li: any) => ({
    kind: li.className,
    who: li.querySelector('.who')?.textContent ?? '',
    text: li.querySelector('.text')?.textContent ?? `${li.querySelector('.request')?.textContent ?? ''} ${li.querySelector('.response')?.textContent ?? ''}`,
    ...(li.dataset.callId !== undefined ? { callId: li.dataset.callId, status: li.dataset.status } : {})
  })))
}

/** Waits until `count` transcript entries of `kind` contain `text` (or match it). */
async function waitForEntry (page: Page, kind: string, text: string | RegExp, count = 1): Promise<void> {
  const pattern = typeof text === 'string' ? null : text.source
  await page.waitForFunction(({ kind, text, pattern, count }) => {
    const items = [...(globalThis as any).document.querySelectorAll('#transcript li')] as Array<{ className: string, textContent: string }>
    const matches = items.filter((li) => li.className === kind && (pattern === null ? li.textContent.includes(text) : new RegExp(pattern).test(li.textContent)))
    return matches.length >= count
  }, { kind, text: String(text), pattern, count })
}

async function waitForStatus (page: Page, status: string): Promise<void> {
  await page.waitForFunction((status) => (globalThis as any).document.getElementById('status').textContent === status, status)
}

/** Every state #state showed, in order (transient ones too: the probe records each change). */
async function states (page: Page): Promise<string[]> {
  return await page.evaluate('window.__states') as string[]
}

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#message', text)
  await page.click('#send')
}

/** Every text frame the page sent and received, parsed. */
function recordFrames (page: Page): Frames {
  const frames: Frames = { sent: [], received: [] }
  page.on('websocket', (socket: PageSocket) => {
    if (!socket.url().endsWith(CONVERSE_PATH)) return
    socket.on('framesent', ({ payload }) => { if (typeof payload === 'string') frames.sent.push(JSON.parse(payload)) })
    socket.on('framereceived', ({ payload }) => { if (typeof payload === 'string') frames.received.push(JSON.parse(payload)) })
  })
  return frames
}

/** Console errors and uncaught exceptions: a page that works says nothing alarming. */
function recordErrors (page: Page): string[] {
  const errors: string[] = []
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()) })
  page.on('pageerror', (error) => errors.push(error.message))
  return errors
}

/** Chromium with a fake microphone playing a tone, on the page, probes installed; `prepare` runs before it loads. */
async function openPage (t: Test, proxy: TestProxy, prepare?: (page: Page) => Promise<void>): Promise<{ page: Page, frames: Frames, errors: string[] } | undefined> {
  const microphone = `${await tempDir(t, 'demo-mic-')}/tone.wav`
  await writeToneWav(microphone)
  const browser = await launchBrowser(t, { fakeMicrophoneWav: microphone })
  if (browser === undefined) return undefined
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  page.setDefaultTimeout(15_000)
  await page.addInitScript({ path: AUDIO_PROBE })
  const frames = recordFrames(page)
  const errors = recordErrors(page)
  await prepare?.(page)
  await page.goto(`${proxy.base}/`)
  await page.waitForSelector('body[data-ready="true"]')
  return { page, frames, errors }
}

async function screenshot (page: Page, name: string): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: new URL(name, ARTIFACTS).pathname, fullPage: true })
}

t.test('a conversation on the simulator: greeting heard, typed turns, a tool call, barge-in', async (t) => {
  const proxy = await startProxy(t, { script: { audioChunks: 25 } })
  const opened = await openPage(t, proxy)
  if (opened === undefined) return
  const { page, frames, errors } = opened

  t.ok(await page.isVisible('#simulator-note'), 'the page says it is the simulator')
  t.equal(await page.textContent('#upstream'), 'the built-in simulator')
  t.notOk(await page.isVisible('#token-field'), 'no token asked without PROXY_AUTH_TOKENS')
  t.ok(await page.isDisabled('#message'), 'nothing to type into before a conversation')

  await page.click('#start')
  // Listened for from now on: the greeting's 1 s of audio can be over by the time a
  // loaded machine has shown its text and asked.
  const greetingHeard = listenFor(page, { above: AUDIBLE })
  const conn = await proxy.sim.nextConnection()
  await page.waitForSelector('#state[data-state="listening"]')
  t.ok(await page.isEnabled('#message'), 'the text box opens once the session is configured')

  // What the page sent: a Settings the server can serve, as Deepgram's element sent it.
  const settings = frames.sent.find((m) => m.type === 'Settings')
  const micRate = await page.$eval('#agent', (element: any) => element.micContext.sampleRate as number)
  t.same(settings.audio.input, { encoding: 'linear16', sample_rate: micRate }, "the input rate is the element's microphone rate")
  t.same(settings.audio.output, { encoding: 'linear16', sample_rate: 24000, container: 'none' })
  t.same(settings.agent.think.functions.map((f: any) => f.name), ['local_time'])
  t.equal(settings.agent.greeting, GREETING)
  const constraints = await page.evaluate('window.__micConstraints') as any[]
  t.equal(constraints.length, 2, "the page's own microphone check, then the element's")
  t.ok(constraints.every((c) => c.audio.echoCancellation === true), 'the microphone is opened with echo cancellation')

  // The greeting is shown and heard.
  await waitForEntry(page, 'turn assistant', GREETING)
  const greeting = await greetingHeard
  t.ok(greeting.peak > AUDIBLE, `the greeting's audio reaches the speakers (peak ${greeting.peak.toFixed(3)})`)
  await conn.waitFor('input_audio_buffer.append', () => true, 10_000)
  t.pass('microphone audio reaches the upstream')

  // A typed turn, answered.
  await say(page, 'Hello there!')
  await waitForEntry(page, 'turn assistant', 'You said: Hello there.')

  // The sample function: requested by the agent, answered by the page, then spoken about.
  await say(page, TOOL_QUESTION)
  await waitForEntry(page, 'turn assistant', /The result is \d\d:\d\d on \w+ in Tokyo/)
  const request = frames.received.find((m) => m.type === 'FunctionCallRequest')
  const call = request.functions[0]
  t.match(call, { name: 'local_time', arguments: '{"city":"Tokyo"}', client_side: true })
  const response = frames.sent.find((m) => m.type === 'FunctionCallResponse')
  t.match(response, { id: call.id, name: 'local_time', content: TIME_IN_TOKYO }, 'the page answered that call')
  const output = conn.received.find((e) => e.type === 'conversation.item.create' && e.item.type === 'function_call_output')
  t.match(output?.item, { call_id: call.id, output: response.content }, 'the answer reached the upstream')

  const entries = await transcript(page)
  t.same(entries.map(({ kind, who }) => `${kind}:${who}`), [
    'turn assistant:Agent',
    'turn user:You', 'turn assistant:Agent',
    'turn user:You', 'call:Function call', 'turn assistant:Agent'
  ], 'each turn shows once, in order')
  t.equal(entries[4]?.callId, call.id)
  t.equal(entries[4]?.status, 'answered')
  t.equal(entries[4]?.text, `local_time({"city":"Tokyo"}) → ${response.content as string}`, 'the call shows its request and the answer sent')
  t.equal(entries[5]?.text, `The result is ${response.content as string}.`)
  await screenshot(page, 'demo-page.png')

  // The prompt grows by UpdatePrompt; a voice change after the agent spoke is refused with a warning.
  await page.fill('#prompt-addition', 'Answer in French.')
  await page.click('#prompt-send')
  await waitForEntry(page, 'note info', 'Prompt updated.')
  t.match(await page.inputValue('#prompt'), /call local_time\.\nAnswer in French\.$/, 'the prompt shown is the one in force')
  t.match(conn.session.instructions, /Answer in French\.$/, 'the upstream instructions end with the addition')
  await page.selectOption('#voice', 'marin')
  await page.click('#voice-send')
  await waitForEntry(page, 'note warning', 'VOICE_CHANGE_NOT_ALLOWED')
  t.match(frames.sent.find((m) => m.type === 'UpdateSpeak'), { speak: { provider: { type: 'open_ai', voice: 'marin' } } })

  // Barge-in: seconds of agent audio arrive at once and are scheduled; the user speaks.
  conn.script = { ...conn.script, audioChunks: 150, chunkIntervalMs: 0, neverComplete: true }
  // More than the earlier answers (1 s each) could still have scheduled: the story's 6 s are.
  const storyHeard = listenFor(page, { above: AUDIBLE, pendingAbove: 4 })
  await say(page, 'Tell me a long story.')
  const speaking = await storyHeard
  t.ok(speaking.pending > 4, `the agent is speaking with ${speaking.pending.toFixed(1)} s of audio still scheduled`)
  const shown = (await states(page)).length
  conn.speechStarted()
  await page.waitForFunction(({ shown }) => ((globalThis as any).__states as string[]).slice(shown).includes('user'), { shown })
  const stopped = await waitForOutput(page, { silent: true })
  t.ok(stopped.pending > 0, `silent while ${stopped.pending.toFixed(1)} s of the agent's audio were still scheduled: playback was stopped, not run out`)

  const shownStates = await states(page)
  for (const state of ['connecting', 'listening', 'agent', 'user']) t.ok(shownStates.includes(state), `state "${state}" was shown`)

  // Hanging up ends the session on the server.
  await page.click('#stop')
  await page.waitForSelector('#state[data-state="idle"]')
  await waitUntil(() => proxy.proxy.sessions.size === 0, 'the session to end on the server')
  t.equal(await page.textContent('#status'), '', 'a hang-up is no error')

  // And a new conversation starts from the same page.
  await page.click('#start')
  await page.waitForSelector('#state[data-state="listening"]')
  await waitForEntry(page, 'turn assistant', GREETING, 2)
  t.equal(await page.locator('#transcript li.divider').count(), 1, 'the conversations are set apart')
  t.same(errors, [], 'no console errors')
})

t.test('with PROXY_AUTH_TOKENS the page asks for a token and offers it as "token, <t>"', async (t) => {
  const proxy = await startProxy(t, { env: { PROXY_AUTH_TOKENS: 'demo-token-1' } })
  const offered: Array<string | undefined> = []
  proxy.proxy.app.server.prependListener('upgrade', (request) => offered.push(request.headers['sec-websocket-protocol']))
  const opened = await openPage(t, proxy)
  if (opened === undefined) return
  const { page } = opened

  t.ok(await page.isVisible('#token-field'), 'the token field is shown')
  await page.selectOption('#voice', 'marin')
  await page.click('#start')
  t.ok(await page.$eval('#token', (input: any) => input.matches(':invalid') as boolean), 'Start without a token: the browser asks for it')
  await page.fill('#token', '   ')
  await page.click('#start')
  await waitForStatus(page, 'Could not start: enter the client token first.')
  t.same(offered, [], 'no connection attempted without a token')

  await page.fill('#token', 'wrong-token')
  await page.click('#start')
  await waitForStatus(page, 'Could not connect: check the token.')
  await page.waitForSelector('#state[data-state="idle"]')
  t.equal(proxy.proxy.sessions.size, 0, 'no session for a wrong token')

  await page.fill('#token', 'demo-token-1')
  await page.click('#start')
  await page.waitForSelector('#state[data-state="listening"]')
  t.same(offered, ['token, wrong-token', 'token, demo-token-1'], 'the subprotocol form, lower-case scheme')
  t.equal(await page.$eval('#agent', (element: any) => element.socket.protocol as string), 'token', 'the server selected the scheme')
  const conn = await proxy.sim.nextConnection()
  t.equal(conn.session.audio.output.voice, 'marin', 'the voice chosen before starting is the session voice')
  await say(page, 'Hello with a token')
  await waitForEntry(page, 'turn assistant', 'You said: Hello with a token.')
})

t.test('a blocked microphone: the page says so and opens no session', async (t) => {
  const proxy = await startProxy(t)
  const upgrades: string[] = []
  proxy.proxy.app.server.prependListener('upgrade', (request) => upgrades.push(request.url ?? ''))
  const opened = await openPage(t, proxy, async (page) => {
    await page.addInitScript(() => {
      (globalThis as any).navigator.mediaDevices.getUserMedia = async () => { throw new (globalThis as any).DOMException('Permission denied', 'NotAllowedError') }
    })
  })
  if (opened === undefined) return
  const { page } = opened
  await page.click('#start')
  await waitForStatus(page, 'Could not start: the microphone is blocked or missing; allow it for this page, then start again.')
  await page.waitForSelector('#state[data-state="idle"]')
  t.ok(await page.isVisible('#start'), 'Start is offered again')
  t.same(upgrades, [], 'no WebSocket was opened')
})

t.test('History (the proxy\'s) and AgentThinking (as Deepgram sends it): states shown, no turn or call twice', async (t) => {
  const proxy = await startProxy(t)
  // The proxy sends History after each ConversationText and each answered call; it does
  // not send AgentThinking (a realtime model has no unspoken text): add it to the real
  // stream the way Deepgram does, before the agent speaks.
  const opened = await openPage(t, proxy, async (page) => await page.routeWebSocket((url) => url.pathname === CONVERSE_PATH, (socket) => {
    const server = socket.connectToServer()
    socket.onMessage((message) => server.send(message))
    server.onMessage((message) => {
      if (typeof message !== 'string') return socket.send(message)
      if (JSON.parse(message).type === 'AgentStartedSpeaking') socket.send(JSON.stringify({ type: 'AgentThinking', content: '' }))
      socket.send(message)
    })
  }))
  if (opened === undefined) return
  const { page, errors } = opened
  await page.click('#start')
  await page.waitForSelector('#state[data-state="listening"]')
  await waitForEntry(page, 'turn assistant', GREETING)
  await say(page, 'Hello there!')
  await waitForEntry(page, 'turn assistant', 'You said: Hello there.')
  await say(page, 'Hello there!')
  await waitForEntry(page, 'turn assistant', 'You said: Hello there.', 2)
  await say(page, TOOL_QUESTION)
  await waitForEntry(page, 'turn assistant', /The result is/)

  const entries = await transcript(page)
  t.same(entries.map(({ kind, text }) => kind === 'call' ? kind : `${kind}:${text}`), [
    `turn assistant:${GREETING}`,
    'turn user:Hello there!', 'turn assistant:You said: Hello there.',
    'turn user:Hello there!', 'turn assistant:You said: Hello there.',
    `turn user:${TOOL_QUESTION}`, 'call', `turn assistant:${entries.at(-1)?.text ?? ''}`
  ], 'every turn once, a repeated sentence twice, the call once')
  t.equal(entries[6]?.status, 'answered')
  t.ok((await states(page)).includes('thinking'), 'AgentThinking is shown as a state')
  t.same(errors, [], 'no console errors')
  await screenshot(page, 'demo-page-history.png')
})

async function waitUntil (predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
