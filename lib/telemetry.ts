// Logging and OpenTelemetry log export. pino writes JSON lines as usual; when an
// OTLP endpoint is configured, a second pino destination turns every line that
// passed the level check into an OTel log record, using the metadata pino hands
// its destinations (level, message, merge object, logger) rather than re-parsing
// the serialized line. Child-logger bindings are translated once per logger and
// cached, so a session's per-line cost is the call's own fields.

import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { ROOT_CONTEXT, trace, type Context } from '@opentelemetry/api'
import { SeverityNumber, type AnyValueMap, type Logger as OtelLogger } from '@opentelemetry/api-logs'
import { ExportResultCode, parseKeyPairsIntoRecord, parseTraceParent, type ExportResult } from '@opentelemetry/core'
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchLogRecordProcessor, LoggerProvider, type LogRecordExporter, type ReadableLogRecord } from '@opentelemetry/sdk-logs'
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions'

export const DEFAULT_SERVICE_NAME = 'deepgram-openai-realtime-proxy'

/** Upper bound for `flush()` and `shutdown()`, so a dead collector cannot hold up a drain. */
const DEFAULT_FLUSH_TIMEOUT_MS = 5000

export interface TelemetryOptions {
  /** pino level */
  level: string
  serviceVersion: string
  /** service.instance.id */
  instanceId: string
  /** Default `process.env`. Reads the standard OTEL_* variables the README lists. */
  env?: Record<string, string | undefined>
  /** Where JSON lines go; stdout by default. */
  destination?: pino.DestinationStream
  /** Longest `flush()`/`shutdown()` waits for the collector, ms (default 5000). */
  flushTimeoutMs?: number
}

interface Telemetry {
  /** Pass to Fastify as `loggerInstance`. */
  readonly logger: pino.Logger
  /** True when an OTLP endpoint is configured. */
  readonly exporting: boolean
  /** Force-flush pending OTel records; never rejects. */
  flush (): Promise<void>
  /** Flush, then shut the LoggerProvider down; idempotent, never rejects. */
  shutdown (): Promise<void>
}

interface TraceContext { traceId: string, spanId: string, traceFlags: number }

/** Field names that hold secrets: redacted in JSON lines, never exported as attributes. */
const SECRET_FIELDS = ['authorization', 'apiKey', 'openaiApiKey', 'adminToken', 'proxyAuthTokens', 'token', 'password', 'secret']

const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  'headers.cookie',
  'headers["sec-websocket-protocol"]'
]

/** Log fields with an OpenTelemetry name of their own; the rest keep theirs. */
const ATTRIBUTE_NAMES: Record<string, string> = {
  sessionId: 'session.id',
  direction: 'proxy.direction',
  messageType: 'proxy.message_type',
  responseId: 'proxy.response_id',
  errorCode: 'error.code'
}

/** Never attributes: pino's own line fields and the trace ids that go on the record's context. */
const NOT_ATTRIBUTES = new Set(['pid', 'hostname', 'time', 'level', 'msg', 'traceId', 'spanId', 'traceFlags', ...SECRET_FIELDS])

export function createTelemetry (options: TelemetryOptions): Telemetry {
  const env = options.env ?? process.env
  const destination = options.destination ?? pino.destination(1)
  const serviceName = nonEmpty(env.OTEL_SERVICE_NAME) ?? DEFAULT_SERVICE_NAME
  const base = { level: options.level, redact: REDACT_PATHS, serializers: { req: requestWithoutToken } }

  const endpoint = logsEndpoint(env)
  if (endpoint === undefined) {
    return {
      logger: pino(base, destination),
      exporting: false,
      flush: async () => {},
      shutdown: async () => {}
    }
  }

  // Export failures are reported through `logger`, defined below: they can only
  // arrive asynchronously, after it exists.
  const exporter = new FailureReportingExporter(
    new OTLPLogExporter({ url: endpoint, headers: exportHeaders(env), timeoutMillis: exportTimeout(env) }),
    (error) => {
      if (error === undefined) logger.info({ errorCode: 'OTLP_EXPORT_RECOVERED' }, 'OTLP log export works again')
      else logger.warn({ errorCode: 'OTLP_EXPORT_FAILED', reason: error.message }, 'OTLP log export failed; log records are being dropped until the collector answers')
    }
  )
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({
      ...parseKeyPairsIntoRecord(env.OTEL_RESOURCE_ATTRIBUTES),
      [ATTR_SERVICE_NAME]: serviceName,
      [ATTR_SERVICE_VERSION]: options.serviceVersion,
      [ATTR_SERVICE_INSTANCE_ID]: options.instanceId
    }),
    processors: [new BatchLogRecordProcessor({ exporter })]
  })
  const bridge = new OtelBridgeStream(provider.getLogger(serviceName, options.serviceVersion))
  const logger = pino(base, pino.multistream([
    { level: 'trace', stream: destination },
    { level: 'trace', stream: bridge }
  ]))

  const timeoutMs = options.flushTimeoutMs ?? DEFAULT_FLUSH_TIMEOUT_MS
  let shutdownDone: Promise<void> | undefined
  return {
    logger,
    exporting: true,
    flush: () => shutdownDone ?? settleWithin(provider.forceFlush(), timeoutMs),
    shutdown: () => {
      shutdownDone ??= settleWithin(provider.shutdown(), timeoutMs)
      return shutdownDone
    }
  }
}

/** A W3C `traceparent` header's trace id (with a fresh span id) when valid, otherwise a new random trace id. */
export function traceContextFrom (traceparent: string | string[] | undefined): TraceContext {
  const header = Array.isArray(traceparent) ? traceparent[0] : traceparent
  const parent = header === undefined ? null : parseTraceParent(header.trim())
  return {
    traceId: parent?.traceId ?? randomBytes(16).toString('hex'),
    spanId: randomBytes(8).toString('hex'),
    traceFlags: parent?.traceFlags ?? 1
  }
}

/** A pino destination that emits each line it receives as an OpenTelemetry log record. */
class OtelBridgeStream {
  readonly [pino.symbols.needsMetadataGsym] = true
  lastLevel = 0
  lastMsg: string | undefined
  lastObj: Record<string, unknown> = {}
  lastTime = ''
  lastLogger: pino.Logger | undefined
  readonly #otelLogger: OtelLogger
  readonly #bindings = new WeakMap<pino.Logger, TranslatedBindings>()

  constructor (otelLogger: OtelLogger) {
    this.#otelLogger = otelLogger
  }

  write (): void {
    // Export is best effort: nothing here may throw into a log call.
    try {
      this.#emit()
    } catch {}
  }

  #emit (): void {
    const obj = this.lastObj
    const bindings = this.lastLogger === undefined ? NO_BINDINGS : this.#translated(this.lastLogger)
    const attributes: AnyValueMap = { ...bindings.attributes }
    copyAttributes(obj, attributes)
    const time = Number(this.lastTime)
    const err = obj.err
    this.#otelLogger.emit({
      timestamp: Number.isFinite(time) && time > 0 ? time : Date.now(),
      severityNumber: severityOf(this.lastLevel),
      severityText: this.lastLogger?.levels.labels[this.lastLevel] ?? String(this.lastLevel),
      body: this.lastMsg ?? (typeof obj.msg === 'string' ? obj.msg : undefined),
      attributes,
      ...(err instanceof Error ? { exception: err } : {}),
      ...(bindings.context === undefined ? {} : { context: bindings.context })
    })
  }

  /** Bindings change only through `setBindings`, which replaces pino's serialized chindings. */
  #translated (logger: pino.Logger): TranslatedBindings {
    const chindings = (logger as unknown as Record<symbol, unknown>)[pino.symbols.chindingsSym]
    const cached = this.#bindings.get(logger)
    if (cached !== undefined && cached.chindings === chindings) return cached
    const bindings = logger.bindings()
    const translated: TranslatedBindings = { chindings, attributes: {}, context: spanContextOf(bindings) }
    copyAttributes(bindings, translated.attributes)
    this.#bindings.set(logger, translated)
    return translated
  }
}

interface TranslatedBindings {
  chindings: unknown
  attributes: AnyValueMap
  context: Context | undefined
}

const NO_BINDINGS: TranslatedBindings = { chindings: undefined, attributes: {}, context: undefined }

function copyAttributes (fields: Record<string, unknown>, attributes: AnyValueMap): void {
  for (const key in fields) {
    if (NOT_ATTRIBUTES.has(key)) continue
    const value = fields[key]
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      attributes[ATTRIBUTE_NAMES[key] ?? key] = value
    }
  }
}

function spanContextOf (bindings: Record<string, unknown>): Context | undefined {
  const { traceId, spanId, traceFlags } = bindings
  if (typeof traceId !== 'string' || typeof spanId !== 'string') return undefined
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: typeof traceFlags === 'number' ? traceFlags : 0,
    isRemote: false
  })
}

function severityOf (level: number): SeverityNumber {
  if (level >= 60) return SeverityNumber.FATAL
  if (level >= 50) return SeverityNumber.ERROR
  if (level >= 40) return SeverityNumber.WARN
  if (level >= 30) return SeverityNumber.INFO
  if (level >= 20) return SeverityNumber.DEBUG
  return SeverityNumber.TRACE
}

/**
 * Passes exports through and reports changes between working and failing, so an
 * unreachable collector shows up once in the logs instead of once per batch.
 */
class FailureReportingExporter implements LogRecordExporter {
  readonly #inner: LogRecordExporter
  readonly #onChange: (error: Error | undefined) => void
  #failing = false

  constructor (inner: LogRecordExporter, onChange: (error: Error | undefined) => void) {
    this.#inner = inner
    this.#onChange = onChange
  }

  export (records: ReadableLogRecord[], done: (result: ExportResult) => void): void {
    this.#inner.export(records, (result) => {
      const failing = result.code !== ExportResultCode.SUCCESS
      if (failing !== this.#failing) {
        this.#failing = failing
        this.#onChange(failing ? (result.error ?? new Error('export failed')) : undefined)
      }
      done(result)
    })
  }

  async forceFlush (): Promise<void> {
    await this.#inner.forceFlush?.()
  }

  shutdown (): Promise<void> {
    return this.#inner.shutdown()
  }
}

/** The logs endpoint the OTLP exporter would derive from these variables. */
function logsEndpoint (env: Record<string, string | undefined>): string | undefined {
  const specific = nonEmpty(env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)
  const general = nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT)
  const url = specific ?? (general === undefined ? undefined : general.replace(/\/*$/, '/v1/logs'))
  if (url === undefined) return undefined
  const parsed = URL.parse(url)
  if (parsed?.protocol !== 'http:' && parsed?.protocol !== 'https:') {
    const name = specific === undefined ? 'OTEL_EXPORTER_OTLP_ENDPOINT' : 'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT'
    throw new Error(`${name} must be an absolute http(s) URL such as http://collector:4318, got "${specific ?? general}"`)
  }
  return parsed.toString()
}

/** OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT, ms, read from the same variables as the endpoint. */
function exportTimeout (env: Record<string, string | undefined>): number | undefined {
  const raw = nonEmpty(env.OTEL_EXPORTER_OTLP_LOGS_TIMEOUT) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_TIMEOUT)
  const ms = Number(raw)
  return raw !== undefined && Number.isFinite(ms) && ms > 0 ? ms : undefined
}

function exportHeaders (env: Record<string, string | undefined>): Record<string, string> {
  return {
    ...parseKeyPairsIntoRecord(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseKeyPairsIntoRecord(env.OTEL_EXPORTER_OTLP_LOGS_HEADERS)
  }
}

/** Waits for `work` at most `ms`; swallows its failure (export errors are reported by the exporter). */
async function settleWithin (work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
    timer.unref()
  })
  try {
    await Promise.race([work.then(() => {}, () => {}), timeout])
  } finally {
    clearTimeout(timer)
  }
}

interface LoggedRequest {
  method?: string
  url?: string
  host?: string
  ip?: string
  headers?: Record<string, unknown>
  socket?: { remotePort?: number }
}

/** Fastify's request serializer, minus the value of a `?token=` client credential. */
function requestWithoutToken (req: LoggedRequest): Record<string, unknown> {
  return {
    method: req.method,
    url: req.url?.replace(/([?&]token=)[^&#]*/gi, '$1[Redacted]'),
    version: req.headers?.['accept-version'],
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  const trimmed = value?.trim()
  return trimmed === undefined || trimmed === '' ? undefined : trimmed
}
