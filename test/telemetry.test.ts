import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import t from 'tap'
import { createTelemetry, traceContextFrom, DEFAULT_SERVICE_NAME, type TelemetryOptions } from '../lib/telemetry.js'
import { startOtlpReceiver } from './helpers/admin-otlp.js'

const PARENT_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT_SPAN_ID = '00f067aa0ba902b7'
const TRACEPARENT = `00-${PARENT_TRACE_ID}-${PARENT_SPAN_ID}-01`

/** A pino destination that keeps the parsed JSON lines. */
function captureLines (): { lines: Array<Record<string, unknown>>, write: (line: string) => void } {
  const lines: Array<Record<string, unknown>> = []
  return { lines, write: (line) => { lines.push(JSON.parse(line)) } }
}

function options (env: Record<string, string>, extra: Partial<TelemetryOptions> = {}): TelemetryOptions {
  return { level: 'debug', serviceVersion: '1.2.3', instanceId: 'instance-a', env, destination: captureLines(), ...extra }
}

/** A port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

t.test('traceContextFrom', async (t) => {
  const joined = traceContextFrom(TRACEPARENT)
  t.equal(joined.traceId, PARENT_TRACE_ID, 'keeps the caller trace id')
  t.match(joined.spanId, /^[0-9a-f]{16}$/)
  t.not(joined.spanId, PARENT_SPAN_ID, 'a fresh span id for this session')
  t.equal(joined.traceFlags, 1)

  t.equal(traceContextFrom([TRACEPARENT, '00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-00']).traceId, PARENT_TRACE_ID, 'first header of several')
  t.equal(traceContextFrom(`00-${PARENT_TRACE_ID}-${PARENT_SPAN_ID}-00`).traceFlags, 0, 'unsampled stays unsampled')

  for (const invalid of [undefined, '', 'garbage', `00-${'0'.repeat(32)}-${PARENT_SPAN_ID}-01`, `00-${PARENT_TRACE_ID}-${'0'.repeat(16)}-01`, `ff-${PARENT_TRACE_ID}-${PARENT_SPAN_ID}-01`, `00-${PARENT_TRACE_ID}-${PARENT_SPAN_ID}-01-extra`]) {
    const fresh = traceContextFrom(invalid)
    t.match(fresh, { traceId: /^[0-9a-f]{32}$/, spanId: /^[0-9a-f]{16}$/, traceFlags: 1 }, `new trace for ${String(invalid)}`)
    t.not(fresh.traceId, PARENT_TRACE_ID)
  }
  t.not(traceContextFrom(undefined).traceId, traceContextFrom(undefined).traceId, 'random each time')
})

t.test('without an endpoint: JSON lines only', async (t) => {
  const destination = captureLines()
  const telemetry = createTelemetry(options({}, { destination }))
  t.equal(telemetry.exporting, false)
  telemetry.logger.info({ sessionId: 's1' }, 'hello')
  telemetry.logger.trace('off level')
  t.match(destination.lines, [{ level: 30, msg: 'hello', sessionId: 's1' }])
  t.equal(destination.lines.length, 1)
  await telemetry.flush()
  await telemetry.shutdown()
})

t.test('secrets are redacted from JSON lines', async (t) => {
  const destination = captureLines()
  const { logger } = createTelemetry(options({}, { destination }))
  logger.info({
    headers: { authorization: 'Bearer s3cret', 'sec-websocket-protocol': 'token, s3cret' },
    config: { openaiApiKey: 'sk-s3cret', adminToken: 's3cret' },
    apiKey: 'sk-s3cret'
  }, 'config')
  logger.info({ req: { method: 'GET', url: '/v1/agent/converse?model=x&token=s3cret&y=1', headers: {}, ip: '10.0.0.1' } }, 'incoming request')
  const text = JSON.stringify(destination.lines)
  t.notMatch(text, /s3cret/)
  t.match(destination.lines[1], { req: { method: 'GET', url: '/v1/agent/converse?model=x&token=[Redacted]&y=1', remoteAddress: '10.0.0.1' } })
})

t.test('an endpoint that is not a URL is a start-up error', async (t) => {
  t.throws(() => createTelemetry(options({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })), /OTEL_EXPORTER_OTLP_ENDPOINT must be an absolute http\(s\) URL/)
  t.throws(() => createTelemetry(options({ OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'nope' })), /OTEL_EXPORTER_OTLP_LOGS_ENDPOINT/)
})

t.test('exports every log record over OTLP/HTTP', async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(() => receiver.close())
  const destination = captureLines()
  const telemetry = createTelemetry(options({
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=k1',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,service.name=overridden'
  }, { destination }))
  t.teardown(() => telemetry.shutdown())
  t.equal(telemetry.exporting, true)

  const traceContext = traceContextFrom(TRACEPARENT)
  const session = telemetry.logger.child({ sessionId: 'sess-1', ...traceContext })
  session.info({ direction: 'client->proxy', messageType: 'Settings', responseId: 'resp_1', errorCode: 'NONE', bytes: 12, nested: { a: 1 }, apiKey: 'sk-s3cret' }, 'settings received')
  session.warn({ errorCode: 'SLOW' }, 'upstream slow')
  session.error(Object.assign(new Error('upstream went away'), { code: 'UPSTREAM_CLOSED' }))
  session.trace('off level: never built, never exported')
  telemetry.logger.info('process line')

  t.equal(destination.lines.length, 4, 'JSON lines still written')
  await telemetry.flush()
  const records = await receiver.waitForRecords(4)
  t.equal(records.length, 4)

  const [info, warn, error, processLine] = records
  t.match(info, {
    resource: {
      'service.name': DEFAULT_SERVICE_NAME,
      'service.version': '1.2.3',
      'service.instance.id': 'instance-a',
      'deployment.environment.name': 'test'
    },
    scope: { name: DEFAULT_SERVICE_NAME, version: '1.2.3' },
    severityNumber: 9,
    severityText: 'info',
    body: 'settings received',
    traceId: PARENT_TRACE_ID,
    spanId: traceContext.spanId,
    flags: 1
  })
  t.same(info?.attributes, {
    'session.id': 'sess-1',
    'proxy.direction': 'client->proxy',
    'proxy.message_type': 'Settings',
    'proxy.response_id': 'resp_1',
    'error.code': 'NONE',
    bytes: 12
  }, 'mapped names; no pid/hostname/time/level/msg/trace ids/secrets/objects')
  t.equal(BigInt(info?.timeUnixNano ?? 0), BigInt(destination.lines[0]?.time as number) * 1_000_000n, 'same timestamp as the JSON line')

  t.match(warn, { severityNumber: 13, severityText: 'warn', body: 'upstream slow', attributes: { 'session.id': 'sess-1', 'error.code': 'SLOW' }, traceId: PARENT_TRACE_ID })
  t.match(error, {
    severityNumber: 17,
    severityText: 'error',
    body: 'upstream went away',
    attributes: { 'session.id': 'sess-1', 'exception.message': 'upstream went away', 'exception.type': 'UPSTREAM_CLOSED', 'exception.stacktrace': /upstream went away/ },
    traceId: PARENT_TRACE_ID
  })
  t.match(processLine, { body: 'process line', severityNumber: 9 })
  t.notOk(processLine?.traceId, 'no trace id outside a session')
  t.same(processLine?.attributes, {})

  t.match(receiver.requestHeaders[0], { 'x-collector-key': 'k1', 'content-type': 'application/json' }, 'OTEL_EXPORTER_OTLP_HEADERS sent')
})

t.test('OTEL_SERVICE_NAME and the logs-specific endpoint', async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(() => receiver.close())
  const telemetry = createTelemetry(options({
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: `${receiver.url}/v1/logs`,
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1',
    OTEL_SERVICE_NAME: 'voice-edge'
  }))
  telemetry.logger.info({ sessionId: 's2' }, 'one')
  // Set bindings change what later records carry.
  const child = telemetry.logger.child({ sessionId: 's3' })
  child.info('two')
  child.setBindings({ responseId: 'resp_9' })
  child.info('three')
  await telemetry.shutdown()
  const records = await receiver.waitForRecords(3)
  t.match(records[0], { resource: { 'service.name': 'voice-edge' }, attributes: { 'session.id': 's2' } })
  t.match(records[1]?.attributes, { 'session.id': 's3' })
  t.notOk(records[1]?.attributes['proxy.response_id'])
  t.match(records[2]?.attributes, { 'session.id': 's3', 'proxy.response_id': 'resp_9' })
})

t.test('shutdown() flushes pending records and is idempotent', async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(() => receiver.close())
  const telemetry = createTelemetry(options({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }))
  telemetry.logger.info('before shutdown')
  const first = telemetry.shutdown()
  t.equal(telemetry.shutdown(), first, 'same promise')
  await first
  t.match(receiver.records, [{ body: 'before shutdown' }], 'received by the time shutdown resolves')
  telemetry.logger.info('after shutdown: JSON only')
  await telemetry.flush()
  t.equal(receiver.records.length, 1)
})

t.test('an unreachable collector neither throws nor blocks', async (t) => {
  const port = await closedPort()
  const destination = captureLines()
  const telemetry = createTelemetry(options({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_EXPORTER_OTLP_TIMEOUT: '1000' }, { destination, flushTimeoutMs: 300 }))
  t.equal(telemetry.exporting, true)
  const started = performance.now()
  for (let i = 0; i < 100; i++) telemetry.logger.info({ i }, 'line')
  t.ok(performance.now() - started < 1000, 'logging does not wait for the collector')
  await telemetry.flush()
  await telemetry.shutdown()
  t.ok(performance.now() - started < 3000, 'flush and shutdown are bounded')
  t.equal(destination.lines.filter((line) => line.msg === 'line').length, 100, 'JSON lines unaffected')
})

t.test('export failures are logged once, and recovery too', async (t) => {
  let status = 400
  const collector: Server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  collector.listen(0, '127.0.0.1')
  await once(collector, 'listening')
  t.teardown(() => { collector.close() })
  const { port } = collector.address() as AddressInfo

  const destination = captureLines()
  const telemetry = createTelemetry(options({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }, { destination }))
  t.teardown(() => telemetry.shutdown())
  telemetry.logger.info('first')
  await telemetry.flush()
  telemetry.logger.info('second')
  await telemetry.flush()
  const failures = destination.lines.filter((line) => line.errorCode === 'OTLP_EXPORT_FAILED')
  t.equal(failures.length, 1, 'one warning while failing')
  t.match(failures[0], { level: 40, reason: String })

  status = 200
  telemetry.logger.info('third')
  await telemetry.flush()
  t.match(destination.lines.filter((line) => line.errorCode === 'OTLP_EXPORT_RECOVERED'), [{ level: 30 }])
})

t.test("as Fastify's loggerInstance", async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(() => receiver.close())
  const destination = captureLines()
  const telemetry = createTelemetry(options({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, { level: 'info', destination }))
  const app = Fastify({ loggerInstance: telemetry.logger })
  app.get('/v1/agent/converse', async () => 'ok')
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())

  const res = await fetch(`${url}/v1/agent/converse?model=m&token=s3cret`, { headers: { authorization: 'Token s3cret' } })
  t.equal(res.status, 200)
  await telemetry.flush()
  t.notMatch(JSON.stringify(destination.lines), /s3cret/, 'the client token never reaches the JSON lines')
  const requestLines = destination.lines.filter((line) => line.reqId !== undefined)
  t.match(requestLines, [
    { msg: 'incoming request', reqId: String, req: { url: '/v1/agent/converse?model=m&token=[Redacted]' } },
    { msg: 'request completed', reqId: String, res: { statusCode: 200 } }
  ])
  const records = await receiver.waitForRecords(3)
  t.notMatch(JSON.stringify(records), /s3cret/, 'nor the exported records')
  t.match(records.filter((record) => record.attributes.reqId !== undefined), [
    { body: 'incoming request', attributes: { reqId: requestLines[0]?.reqId } },
    { body: 'request completed', attributes: { reqId: requestLines[0]?.reqId, responseTime: Number } }
  ])
})
