// Issue #5, part 6: a soak small enough for CI. 200 concurrent sessions stream 20 ms
// audio frames for ~5 s through the proxy to a lean echo upstream (every append is
// answered with a frame of agent audio, so both directions are busy). Memory after
// a forced GC stays flat between the warm-up and the end, nothing errors, nothing is
// dropped, and every session ends cleanly.
//
// On a busy 2-core CI machine the single process running clients, proxy and upstream
// cannot always keep the nominal 10,000 frames/s; the test then streams for longer
// (up to 20 s) until every session sent at least 2 s of audio, and says how fast it went. What it holds to is the memory bound: after the
// warm-up (every session configured, its buffers and timeline allocated), a streaming
// session's memory must not grow with the frames it carries.

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import WebSocket from 'ws'
import { BASIC_SETTINGS, startProxy } from '../helpers/proxy.js'
import { eventually, noSessionsLeft } from '../fixtures/leaks.js'
import { echoUpstream } from '../fixtures/upstreams.js'

const SESSIONS = 200
const FRAME_MS = 20
const FRAME_BYTES = 24_000 * 2 * FRAME_MS / 1000 // PCM16 mono at 24 kHz
const SECONDS = Number(process.env.SOAK_SECONDS ?? 5)
/** At least this much audio per session (2 s), however long a loaded machine needs for it, up to MAX_SECONDS. */
const MIN_FRAMES_PER_SESSION = 100
const MAX_SECONDS = 20
const WARMUP_MS = 1000

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** A client that keeps counts only, so the test itself does not grow with the traffic. */
class StreamingClient {
  readonly ws: WebSocket
  audioBytes = 0
  readonly problems: string[] = []
  closed: { code: number, reason: string } | undefined
  readonly configured: Promise<void>

  constructor (url: string) {
    this.ws = new WebSocket(url, { perMessageDeflate: false })
    this.configured = new Promise((resolve, reject) => {
      this.ws.on('message', (data: Buffer, isBinary) => {
        if (isBinary) {
          this.audioBytes += data.length
          return
        }
        const message = JSON.parse(data.toString()) as { type: string, code?: string, description?: string }
        if (message.type === 'SettingsApplied') resolve()
        if (message.type === 'Error' || message.type === 'Warning') this.problems.push(`${message.type} ${message.code ?? ''}: ${message.description ?? ''}`)
      })
      this.ws.once('open', () => this.ws.send(JSON.stringify(BASIC_SETTINGS)))
      this.ws.once('error', reject)
      this.ws.once('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() }
        reject(new Error(`closed before SettingsApplied: ${code}`))
      })
    })
  }
}

function memory (): { heap: number, buffers: number } {
  gc()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return { heap: heapUsed, buffers: arrayBuffers }
}

t.test(`${SESSIONS} sessions × ${FRAME_MS} ms frames for ~${SECONDS} s: flat memory, no errors, no drops`, async (t) => {
  const upstream = await echoUpstream(t, FRAME_BYTES)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: upstream.url, MAX_SESSIONS: String(SESSIONS) } })
  const clients = Array.from({ length: SESSIONS }, () => new StreamingClient(proxied.url))
  await Promise.all(clients.map(async (client) => await client.configured))
  t.equal(proxied.proxy.sessions.size, SESSIONS, `${SESSIONS} sessions configured`)

  const frame = Buffer.alloc(FRAME_BYTES, 3)
  let framesSent = 0
  const started = Date.now()
  const samples: Array<{ at: number, heap: number, buffers: number }> = []
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      for (const client of clients) {
        client.ws.send(frame, { binary: true })
        framesSent++
      }
      const elapsed = Date.now() - started
      // One reading per second after the warm-up, however many ticks a loaded machine manages.
      if (elapsed >= WARMUP_MS + samples.length * 1000) samples.push({ at: elapsed, ...memory() })
      const enough = elapsed >= SECONDS * 1000 && framesSent >= SESSIONS * MIN_FRAMES_PER_SESSION
      if (enough || elapsed >= MAX_SECONDS * 1000) {
        clearInterval(timer)
        resolve()
      }
    }, FRAME_MS)
  })
  const runMs = Date.now() - started
  await eventually(() => clients.reduce((sum, c) => sum + c.audioBytes, 0) === framesSent * FRAME_BYTES, 'every frame to come back as agent audio', 15_000)
  // Frames in flight hold buffers for a moment: the end is the least of a few settled readings.
  const end = memory()
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    const again = memory()
    end.heap = Math.min(end.heap, again.heap)
    end.buffers = Math.min(end.buffers, again.buffers)
  }

  t.ok(framesSent >= SESSIONS * MIN_FRAMES_PER_SESSION, `${framesSent} frames sent in ${runMs} ms (${Math.round(framesSent / runMs * 1000)}/s; nominal ${SESSIONS * 1000 / FRAME_MS}/s)`)
  t.equal(upstream.appends(), framesSent, 'every frame went upstream')
  t.same(clients.flatMap((c) => c.problems), [], 'no Error or Warning')
  t.same(clients.filter((c) => c.closed !== undefined).map((c) => c.closed), [], 'no session closed')
  const metrics = await (await fetch(`${proxied.base}/metrics`)).text()
  t.notMatch(metrics, /dgproxy_dropped_frames_total\{reason="[^"]+"\} [1-9]/, 'nothing dropped')

  const first = samples[0] ?? { at: runMs, ...end }
  const MiB = 1024 * 1024
  const heapGrowth = (end.heap - first.heap) / MiB
  const bufferGrowth = (end.buffers - first.buffers) / MiB
  t.comment(`heap MiB after GC: ${samples.map((s) => (s.heap / MiB).toFixed(1)).join(' → ')} → ${(end.heap / MiB).toFixed(1)}`)
  t.comment(`buffers MiB after GC: ${samples.map((s) => (s.buffers / MiB).toFixed(1)).join(' → ')} → ${(end.buffers / MiB).toFixed(1)}`)
  t.ok(samples.length >= 3, `${samples.length} memory samples after the warm-up`)
  t.ok(heapGrowth < 3, `heap flat after warm-up: ${heapGrowth.toFixed(1)} MiB growth over ${((Date.now() - started - first.at) / 1000).toFixed(1)} s`)
  t.ok(bufferGrowth < 2, `buffers flat after warm-up: ${bufferGrowth.toFixed(1)} MiB growth`)

  await Promise.all(clients.map(async (client) => {
    client.ws.close(1000)
    if (client.closed === undefined) await new Promise((resolve) => client.ws.once('close', resolve))
  }))
  t.ok(clients.every((c) => c.closed?.code === 1000), 'every session ended with 1000')
  await noSessionsLeft(proxied)
})
