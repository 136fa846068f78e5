// A real OTLP/HTTP receiver (@elastic/mockotlpserver, in-process) that collects
// the log records it is sent, normalized to plain objects.

import { createRequire } from 'node:module'

export interface ReceivedLogRecord {
  resource: Record<string, unknown>
  scope: { name?: string, version?: string }
  timeUnixNano?: string
  severityNumber?: number
  severityText?: string
  body?: unknown
  attributes: Record<string, unknown>
  traceId?: string
  spanId?: string
  flags?: number
}

export interface OtlpReceiver {
  /** e.g. http://127.0.0.1:43123 — the OTEL_EXPORTER_OTLP_ENDPOINT to use */
  readonly url: string
  readonly records: ReceivedLogRecord[]
  readonly requestHeaders: Array<Record<string, string | string[] | undefined>>
  /** Resolves once at least `count` records arrived (rejects after `timeoutMs`). */
  waitForRecords (count: number, timeoutMs?: number): Promise<ReceivedLogRecord[]>
  close (): Promise<void>
}

interface MockOtlpServerOptions {
  services: Array<'http'>
  httpHostname: string
  httpPort: number
  logLevel: string
  onLogs: (logs: unknown) => void
  onRequest: (request: { path: string, headers: Record<string, string | string[] | undefined> }) => void
}

interface MockOtlpServer {
  httpUrl: URL | null
  start (): Promise<void>
  close (): Promise<void>
}

interface NormalizedLogs {
  resourceLogs?: Array<{
    resource?: { attributes?: Record<string, unknown> }
    scopeLogs?: Array<{
      scope?: { name?: string, version?: string }
      logRecords?: Array<Omit<ReceivedLogRecord, 'resource' | 'scope'>>
    }>
  }>
}

const require = createRequire(import.meta.url)
const mockotlpserver = require('@elastic/mockotlpserver') as {
  MockOtlpServer: new (options: MockOtlpServerOptions) => MockOtlpServer
  normalizeLogs: (logs: unknown) => NormalizedLogs
}

export async function startOtlpReceiver (): Promise<OtlpReceiver> {
  const records: ReceivedLogRecord[] = []
  const requestHeaders: OtlpReceiver['requestHeaders'] = []
  const waiters = new Set<() => void>()

  const server = new mockotlpserver.MockOtlpServer({
    services: ['http'],
    httpHostname: '127.0.0.1',
    httpPort: 0,
    logLevel: 'error',
    onRequest (request) {
      if (request.path === '/v1/logs') requestHeaders.push(request.headers)
    },
    onLogs (logs) {
      for (const resourceLogs of mockotlpserver.normalizeLogs(logs).resourceLogs ?? []) {
        for (const scopeLogs of resourceLogs.scopeLogs ?? []) {
          for (const record of scopeLogs.logRecords ?? []) {
            records.push({
              ...record,
              attributes: record.attributes ?? {},
              resource: resourceLogs.resource?.attributes ?? {},
              scope: scopeLogs.scope ?? {}
            })
          }
        }
      }
      for (const wake of waiters) wake()
    }
  })
  await server.start()
  const url = server.httpUrl?.toString().replace(/\/$/, '')
  if (url === undefined) throw new Error('mockotlpserver did not report its URL')

  return {
    url,
    records,
    requestHeaders,
    waitForRecords (count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (records.length < count) return
          waiters.delete(check)
          clearTimeout(timer)
          resolve(records)
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`OTLP receiver got ${records.length} log records, expected ${count}`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    close: () => server.close()
  }
}
