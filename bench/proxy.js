// The proxy under test, in a process of its own: built exactly as `npm start` builds
// it (server.ts: configuration from the environment, the pino/OTel telemetry, the
// composed app), pointed at the benchmark's simulator through OPENAI_REALTIME_URL.
// Only signal handling is left out: the benchmark stops it over IPC, so that
// `--cpu-prof` can write its profile on the way out.

import { randomUUID } from 'node:crypto'
import { serveParent } from './child.js'
import { importProduct } from './product.js'

const { buildApp } = await importProduct('app')
const { loadConfig } = await importProduct('lib/config')
const { createTelemetry } = await importProduct('lib/telemetry')

const config = loadConfig()
if (config.upstreamUrl === undefined) throw new Error('bench/proxy.js needs OPENAI_REALTIME_URL (bench/run.js sets it to its simulator)')
const instanceId = randomUUID()
const telemetry = createTelemetry({ level: config.logLevel, serviceVersion: 'bench', instanceId })
const proxy = await buildApp({ config, upstreamUrl: config.upstreamUrl, logger: telemetry.logger, instanceId })
await proxy.app.listen({ port: config.port, host: config.host })
proxy.markReady()
const { port } = proxy.app.server.address()

serveParent({
  ready: { url: `ws://127.0.0.1:${port}/v1/agent/converse` },
  close: async () => {
    await proxy.app.close()
    await telemetry.shutdown()
  }
})
