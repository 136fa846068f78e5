// `npm start`: the standalone server. Reads the environment (README, Configuration), starts
// the embedded Realtime simulator when neither OPENAI_API_KEY nor
// OPENAI_REALTIME_URL is set, listens, and drains gracefully on SIGTERM/SIGINT.

import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig, withModel } from './lib/config.js'
import { startSimulator } from './lib/simulator/index.js'
import type { Simulator } from './lib/simulator/index.js'
import { createTelemetry } from './lib/telemetry.js'
import { CONVERSE_PATH } from './plugins/realtime.js'

const config = loadConfig()
const instanceId = randomUUID()
const telemetry = createTelemetry({ level: config.logLevel, serviceVersion: packageVersion(), instanceId })
const log = telemetry.logger

let simulator: Simulator | undefined
let upstreamUrl = config.upstreamUrl
if (upstreamUrl === undefined) {
  // Energy VAD: a real microphone (the page at /) drives turns on the simulator too.
  simulator = await startSimulator({ port: 0, host: '127.0.0.1', script: { energyVad: true } })
  upstreamUrl = withModel(simulator.url, config.model)
  log.warn({ upstream: simulator.url }, '*** No OPENAI_API_KEY or OPENAI_REALTIME_URL set: serving the BUILT-IN REALTIME SIMULATOR, not OpenAI. Set OPENAI_API_KEY to talk to OpenAI. ***')
}
if (config.proxyAuthTokens.length === 0) {
  log.warn('PROXY_AUTH_TOKENS is unset: any client may open sessions. Set it before exposing this service.')
}

const proxy = await buildApp({ config, upstreamUrl, logger: log, instanceId })

closeWithGrace({ delay: config.drainTimeoutMs + 10_000, logger: log }, async ({ signal, err }) => {
  if (err !== undefined) log.error({ err }, 'shutting down after an error')
  else log.info({ signal }, 'shutting down: draining sessions')
  await proxy.drain(config.drainTimeoutMs)
  await simulator?.close()
  log.info('drained; exiting')
  await telemetry.shutdown()
})

await proxy.app.listen({ port: config.port, host: config.host })
proxy.markReady()
const address = proxy.app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : config.port
const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
log.info({ port, instanceId, upstream: simulator === undefined ? new URL(upstreamUrl).origin : 'simulator' },
  `listening on http://${shownHost}:${port} (Deepgram Voice Agent endpoint: ws://${shownHost}:${port}${CONVERSE_PATH})`)

function packageVersion (): string {
  for (const candidate of ['./package.json', '../package.json']) {
    try {
      const parsed = JSON.parse(readFileSync(new URL(candidate, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (parsed.name === 'deepgram-agent-openai-realtime' && typeof parsed.version === 'string') return parsed.version
    } catch {}
  }
  return '0.0.0'
}
