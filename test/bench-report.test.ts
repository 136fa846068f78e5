// The benchmark report's verdicts on issue #15's targets, on made-up runs at and just
// past each line: a report that marks a missed target as met would hide a regression.

import t from 'tap'
// @ts-expect-error: the benchmark is plain JavaScript without types
import { markdownReport } from '../bench/report.js'

interface Shape { cpu: number, up: number, down: number, established?: number, lost?: number }

function run (target: string, sessions: number, shape: Shape): Record<string, unknown> {
  const summary = (p99: number): Record<string, number> => ({ p50: p99 / 4, p95: p99 / 2, p99, max: p99 * 2 })
  return {
    target,
    sessions,
    established: shape.established ?? sessions,
    dropped: 0,
    failures: {},
    messages: {},
    violations: {},
    frames: { lost: shape.lost ?? 0, duplicates: 0, corrupt: 0, unstamped: 0, strayBytes: 0 },
    upstream: summary(shape.up),
    downstream: summary(shape.down),
    cpu: { hop: shape.cpu, hopUser: shape.cpu / 2, hopSystem: shape.cpu / 2, simulator: 10, loadgen: 10, background: 0 },
    memory: { peakRss: 2 ** 26, idlePerSession: 20_000, idleHeapPerSession: 8000 },
    perFrame: { cpuUs: 10, writeCalls: 1, readCalls: 1 },
    sendLag: { p99: 1, max: 2 }
  }
}

function verdicts (runs: Array<Record<string, unknown>>, idleProxyKB = 14): string[] {
  const report: string = markdownReport({
    machine: { cpu: 'test', cores: 2, memoryGiB: 1, os: 'test', node: process.version },
    load: { frameMs: 20, frameBytes: 960, sampleRate: 24000, durationS: 1, warmupS: 1, repeat: 3, proxyLogLevel: 'warn', baseline: null },
    runs,
    idle: [
      { target: 'relay', sessions: 1000, rssPerSession: 29 * 1024, youngGenerationGrowth: 10 * 2 ** 20, retainedRssPerSession: 19 * 1024, heapPerSession: 6 * 1024 },
      // The young generation grew by 10 MB during the measurement: 10 KB per session, not kept by the sessions.
      { target: 'proxy', sessions: 1000, rssPerSession: (idleProxyKB + 10) * 1024, youngGenerationGrowth: 10 * 2 ** 20, retainedRssPerSession: idleProxyKB * 1024, heapPerSession: 9 * 1024 }
    ]
  })
  const start = report.split('\n').findIndex((line) => line.startsWith('Targets (issue #15)'))
  return report.split('\n').slice(start + 1, start + 6)
}

const met = (lines: string[], what: RegExp): boolean => {
  const line = lines.find((candidate) => what.test(candidate))
  if (line === undefined) throw new Error(`no target line matches ${String(what)}`)
  return line.startsWith('- ✅')
}

t.test('every target met: CPU at the relay, p99 within 1.5× or within 2 ms below 5 ms, capacity and idle memory', async (t) => {
  const lines = verdicts([
    run('relay', 50, { cpu: 10, up: 1, down: 1 }), run('proxy', 50, { cpu: 10, up: 2.9, down: 3 }),
    run('relay', 400, { cpu: 50, up: 20, down: 10 }), run('proxy', 400, { cpu: 49, up: 30, down: 15 })
  ])
  t.equal(lines.length, 5)
  for (const line of lines) t.ok(line.startsWith('- ✅'), line)
})

t.test('each target missed by a hair is marked missed', async (t) => {
  t.notOk(met(verdicts([run('relay', 50, { cpu: 10, up: 1, down: 1 }), run('proxy', 50, { cpu: 10.1, up: 1, down: 1 })]), /CPU/), 'CPU 1.01× the relay')
  t.notOk(met(verdicts([run('relay', 50, { cpu: 10, up: 1, down: 1 }), run('proxy', 50, { cpu: 10, up: 3.1, down: 1 })]), /p99 ↑/), '2.1 ms over the relay, both small')
  t.notOk(met(verdicts([run('relay', 50, { cpu: 10, up: 1, down: 4 }), run('proxy', 50, { cpu: 10, up: 1, down: 6.5 })]), /p99 ↓/), '6.5 ms is not under 5 ms, and 1.63× the relay')
  t.notOk(met(verdicts([run('relay', 50, { cpu: 10, up: 20, down: 1 }), run('proxy', 50, { cpu: 10, up: 31, down: 1 })]), /p99 ↑/), '1.55× the relay above 5 ms')
  t.notOk(met(verdicts([
    run('relay', 50, { cpu: 10, up: 1, down: 1 }), run('proxy', 50, { cpu: 10, up: 1, down: 1 }),
    run('relay', 400, { cpu: 50, up: 40, down: 40 }), run('proxy', 400, { cpu: 50, up: 40, down: 40, lost: 1 })
  ]), /capacity/), 'the relay handled 400, the proxy lost a frame there')
  t.notOk(met(verdicts([run('relay', 50, { cpu: 10, up: 1, down: 1 }), run('proxy', 50, { cpu: 10, up: 1, down: 1 })], 15.1), /idle/), '15.1 KB per idle session')
})
