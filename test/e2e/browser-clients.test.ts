// Deepgram's browser clients in headless Chromium, each holding a spoken conversation
// with the proxy on the simulator: the v5 SDK's browser bundle (`Deepgram.DeepgramClient`,
// its subprotocol auth included) and the `<deepgram-agent>` element of
// `@deepgram/browser-agent`. The fake microphone plays a WAV made here: silence, then a
// phrase-long tone the simulator's energy VAD hears as the user saying SPOKEN, which
// names the page's function. What reaches the speakers is measured by
// fixtures/page-audio-probe.js. Passing: connected, the greeting heard, the user's audio
// sent and turned into a turn, the function called and answered, the answer heard.

import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { tempDir } from '../fixtures/deploy-stack.js'
import { launchBrowser } from '../helpers/browser.js'
import { startProxy } from '../helpers/proxy.js'
import type { TestProxy } from '../helpers/proxy.js'
import type { SimConnection } from '../../lib/simulator/index.js'
import { writeToneWav } from '../helpers/wav.js'

const require = createRequire(import.meta.url)
const AUDIO_PROBE = new URL('../fixtures/page-audio-probe.js', import.meta.url).pathname
const SPOKEN = 'What is the local time? City: Tokyo'
const GREETING = 'Hello from the test page.'
const ANSWER = '15:00 in Tokyo'
/** The simulator's tone is 0.1 of full scale. */
const AUDIBLE = 0.05
const TOKEN = 'browser-token-7d1f'

const LOCAL_TIME = {
  name: 'local_time',
  description: 'The local time in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
}

/** Serves the test pages and the clients' own files from node_modules (no CDN). */
async function pageServer (t: Test, pages: Record<string, string>): Promise<string> {
  const files: Record<string, [string, string]> = {
    '/vendor/deepgram.js': [require.resolve('@deepgram/sdk').replace(/dist\/cjs\/index\.js$/, 'dist/browser/index.global.js'), 'text/javascript'],
    '/vendor/browser-agent/index.mjs': [require.resolve('@deepgram/browser-agent'), 'text/javascript'],
    '/vendor/browser-agent/hoop.mjs': [require.resolve('@deepgram/browser-agent/hoop'), 'text/javascript']
  }
  const http = createServer((request, response) => {
    const page = pages[request.url ?? '']
    if (page !== undefined) return response.writeHead(200, { 'content-type': 'text/html' }).end(page)
    const file = files[request.url ?? '']
    if (file === undefined) return response.writeHead(404).end()
    readFile(file[0]).then((body) => response.writeHead(200, { 'content-type': file[1] }).end(body), () => response.writeHead(500).end())
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    http.closeAllConnections()
    await new Promise((resolve) => http.close(resolve))
  })
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}`
}

async function openPage (t: Test, url: string): Promise<{ page: Page, errors: string[] } | undefined> {
  const microphone = `${await tempDir(t, 'browser-clients-')}/utterance.wav`
  // 3 s of silence, a 0.8 s tone (the utterance), 2 s of silence.
  await writeToneWav(microphone, { before: 3, seconds: 0.8, after: 2 })
  const browser = await launchBrowser(t, { fakeMicrophoneWav: microphone })
  if (browser === undefined) return undefined
  const page = await browser.newPage()
  page.setDefaultTimeout(20_000)
  await page.addInitScript({ path: AUDIO_PROBE })
  const errors: string[] = []
  page.on('pageerror', (error) => errors.push(error.message))
  await page.goto(url)
  return { page, errors }
}

async function loudness (page: Page): Promise<number> {
  const handle = await page.waitForFunction((above: number) => {
    const output = (globalThis as any).__output() as { peak: number }
    return output.peak > above ? output.peak : null
  }, AUDIBLE, { polling: 10 })
  return await handle.jsonValue() as number
}

/** Waits until the page's `window.log` (every server message, parsed) holds one matching. */
async function received (page: Page, type: string, text?: string): Promise<any> {
  try {
    const handle = await page.waitForFunction(({ type, text }) => ((globalThis as any).log as any[]).find((m) => m.type === type && (text === undefined || JSON.stringify(m).includes(text))) ?? null, { type, text })
    return await handle.jsonValue()
  } catch (error) {
    throw new Error(`no ${type}${text === undefined ? '' : ` with ${text}`}; the page got ${JSON.stringify(await page.evaluate('window.log'))}: ${(error as Error).message}`)
  }
}

function startSpokenProxy (t: Test, env: Record<string, string> = {}): Promise<TestProxy> {
  return startProxy(t, { script: { energyVad: true, spokenTranscript: SPOKEN, audioChunks: 10 }, env })
}

/**
 * The conversation both browser clients hold on the spoken simulator: the greeting heard,
 * the microphone's speech a user turn, the page's answer to the function call upstream,
 * the answer heard, and nothing went wrong in the page. Returns the FunctionCallRequest.
 */
async function holdsSpokenConversation (t: Test, page: Page, conn: SimConnection, errors: string[]): Promise<any> {
  await received(page, 'SettingsApplied')
  await received(page, 'ConversationText', GREETING)
  t.ok(await loudness(page) > AUDIBLE, 'the greeting is heard')
  const user = await received(page, 'ConversationText', SPOKEN)
  t.equal(user.role, 'user', 'the microphone\'s audio became a user turn')
  t.ok(conn.count('input_audio_buffer.append') > 0, 'microphone audio reached the upstream')
  const request = await received(page, 'FunctionCallRequest')
  t.match(request.functions[0], { name: 'local_time', arguments: '{"city":"Tokyo"}', client_side: true })
  await received(page, 'ConversationText', `The result is ${ANSWER}.`)
  await page.waitForFunction(() => ((globalThis as any).log as any[]).filter((m) => m.type === 'AgentAudioDone').length >= 2)
  t.ok(await loudness(page) > AUDIBLE, 'the answer is heard')
  const output = conn.received.find((e) => e.type === 'conversation.item.create' && e.item.type === 'function_call_output')
  t.match(output?.item, { call_id: request.functions[0].id, output: ANSWER }, 'the page\'s answer reached the upstream')
  t.same(await page.evaluate('window.log.filter((m) => m.type === "Error")'), [], 'no Error')
  t.same(errors, [], 'no uncaught errors in the page')
  return request
}

const SETTINGS = (inputRate: number): Record<string, unknown> => ({
  type: 'Settings',
  audio: { input: { encoding: 'linear16', sample_rate: inputRate }, output: { encoding: 'linear16', sample_rate: 24000, container: 'none' } },
  agent: {
    listen: { provider: { type: 'deepgram', model: 'nova-3' } },
    think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'You are a test agent.', functions: [LOCAL_TIME] },
    speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'alloy' } },
    greeting: GREETING
  }
})

// The page's own microphone and speaker, as an app using the SDK writes them: PCM16 at 24 kHz both ways.
const SDK_PAGE = (converse: string, settings: string): string => `<!doctype html><meta charset="utf-8"><title>SDK v5 browser bundle</title>
<script src="/vendor/deepgram.js"></script>
<script>
window.log = []
window.sentMedia = 0
const context = new AudioContext({ sampleRate: 24000 })
let playAt = 0
function play (buffer) {
  const pcm = new Int16Array(buffer)
  const audio = context.createBuffer(1, pcm.length, 24000)
  audio.getChannelData(0).set(Float32Array.from(pcm, (s) => s / 32768))
  const source = context.createBufferSource()
  source.buffer = audio
  source.connect(context.destination)
  playAt = Math.max(playAt, context.currentTime)
  source.start(playAt)
  playAt += audio.duration
}
async function microphone (socket) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true })
  const input = context.createMediaStreamSource(stream)
  const tap = context.createScriptProcessor(2048, 1, 1)
  tap.onaudioprocess = (event) => {
    const samples = event.inputBuffer.getChannelData(0)
    socket.sendMedia(Int16Array.from(samples, (s) => Math.max(-32768, Math.min(32767, Math.round(s * 32767)))).buffer)
    window.sentMedia++
  }
  input.connect(tap)
  tap.connect(context.createMediaStreamDestination())
}
window.start = async () => {
  const client = new Deepgram.DeepgramClient({ apiKey: ${JSON.stringify(TOKEN)}, baseUrl: ${JSON.stringify(converse)} })
  const socket = await client.agent.v1.connect({ reconnectAttempts: 0 })
  let listening = false
  socket.on('message', async (message) => {
    if (message instanceof Blob) return play(await message.arrayBuffer())
    window.log.push(message)
    if (message.type === 'AgentAudioDone' && !listening) {
      listening = true
      await microphone(socket)
    }
    if (message.type === 'FunctionCallRequest') {
      for (const call of message.functions) if (call.client_side) socket.sendFunctionCallResponse({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: ${JSON.stringify(ANSWER)} })
    }
  })
  socket.connect()
  await socket.waitForOpen()
  socket.sendSettings(${settings})
}
</script>`

t.test('the v5 SDK\'s browser bundle holds a spoken conversation: greeting heard, the user\'s speech sent, a function call answered, the answer heard', async (t) => {
  const proxy = await startSpokenProxy(t, { PROXY_AUTH_TOKENS: TOKEN })
  const offered: Array<string | undefined> = []
  proxy.proxy.app.server.prependListener('upgrade', (request) => offered.push(request.headers['sec-websocket-protocol']))
  const base = await pageServer(t, { '/': SDK_PAGE(proxy.base.replace('http', 'ws'), JSON.stringify(SETTINGS(24000))) })
  const opened = await openPage(t, `${base}/`)
  if (opened === undefined) return
  const { page, errors } = opened
  await page.evaluate('window.start()')
  const conn = await proxy.sim.nextConnection()

  t.match(offered[0], /^token, browser-token-7d1f, x-deepgram-session-id, [0-9a-f-]{36}$/, 'the bundle authenticates with the subprotocols token, <key> and its session id')
  await holdsSpokenConversation(t, page, conn, errors)
})

// The element owns the microphone and the speaker; the page only configures it and answers
// calls. Without idle-timeout-ms the element hangs up as soon as it has sent its config.
const ELEMENT_PAGE = (converse: string): string => `<!doctype html><meta charset="utf-8"><title>deepgram-agent</title>
<deepgram-agent id="agent" idle-timeout-ms="300000" output-sample-rate="24000" auth-scheme="token"></deepgram-agent>
<script type="module">
import '/vendor/browser-agent/index.mjs'
window.log = []
const agent = document.getElementById('agent')
agent.setAttribute('url', ${JSON.stringify(converse)})
agent.addEventListener('structured message', (event) => {
  const message = event.detail
  window.log.push(message)
  if (message.type === 'FunctionCallRequest') {
    for (const call of message.functions) if (call.client_side) agent.sendClientMessage(JSON.stringify({ type: 'FunctionCallResponse', id: call.id, name: call.name, content: ${JSON.stringify(ANSWER)} }))
  }
})
window.start = async (settings) => {
  // The element streams at its AudioContext's rate, which a default context on this machine shares.
  const probe = new AudioContext()
  settings.audio.input.sample_rate = probe.sampleRate
  await probe.close()
  agent.setAttribute('config', JSON.stringify(settings))
}
</script>`

t.test('<deepgram-agent> (@deepgram/browser-agent) holds a spoken conversation: greeting heard, the user\'s speech sent, a function call answered, the answer heard', async (t) => {
  const proxy = await startSpokenProxy(t)
  const base = await pageServer(t, { '/': ELEMENT_PAGE(`${proxy.base.replace('http', 'ws')}/v1/agent/converse`) })
  const opened = await openPage(t, `${base}/`)
  if (opened === undefined) return
  const { page, errors } = opened
  await page.evaluate(async (settings) => await (globalThis as any).start(settings), SETTINGS(24000))
  const conn = await proxy.sim.nextConnection()

  await holdsSpokenConversation(t, page, conn, errors)
})
