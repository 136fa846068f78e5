// Keeps `npm run bench` from rotting: the whole benchmark (simulator, proxy and bare
// relay in child processes, the load generator, the report) at 5 sessions for 1 s,
// from the TypeScript sources (the children inherit tap's loader), checked for a
// complete, sane result. Performance itself is not asserted: CI machines vary.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runBench } from './helpers/bench.js'

t.test('npm run bench, quick: every frame echoed through both hops, measured and reported', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const json = join(dir, 'results.json')
  const stdout = await runBench(['--quick', '--duration', '1', '--warmup', '0.2', '--json', json])
  const results = JSON.parse(await readFile(json, 'utf8'))
  t.same(results.runs.map((run: any) => run.target), ['relay', 'proxy'])
  for (const run of results.runs) {
    t.equal(run.established, 5, `${run.target}: every session configured`)
    t.ok(run.frames.sent >= 5 * 40, `${run.target}: 50 frames/s per session sent (${run.frames.sent})`)
    t.same(run.frames, { ...run.frames, lost: 0, duplicates: 0, corrupt: 0, unstamped: 0, strayBytes: 0 }, `${run.target}: every frame came back intact, once, stamped`)
    t.equal(run.frames.received, run.frames.sent)
    t.equal(run.dropped, 0)
    for (const direction of ['upstream', 'downstream']) {
      const { p50, p99, max } = run[direction]
      t.ok(p50 > 0 && p50 <= p99 && p99 <= max, `${run.target} ${direction}: ordered percentiles (${p50}, ${p99}, ${max})`)
    }
    t.ok(run.cpu.hop > 0, `${run.target}: CPU measured`)
    const late = run.loopDelay
    t.ok(late.p99 >= 0 && late.p99 <= late.max, `${run.target}: the hop's event-loop lateness measured (p99 ${late.p99}, max ${late.max} ms)`)
    t.ok(run.memory.peakRss > 0, `${run.target}: memory measured`)
    t.same(Object.values(run.violations).filter((n) => n !== 0), [], `${run.target}: the simulator saw no protocol violation`)
  }
  t.same(results.idle.map((idle: any) => idle.target), ['relay', 'proxy'], 'idle memory measured for both hops')
  for (const idle of results.idle) {
    t.equal(idle.sessions, 20, `${idle.target}: every idle session configured`)
    t.ok(Number.isFinite(idle.rssPerSession) && idle.heapPerSession > 0, `${idle.target}: idle memory per session (${idle.heapPerSession} B of heap)`)
    const beyondYoung = idle.rssPerSession - idle.youngGenerationGrowth / (idle.sessions - idle.steps[1].sessions)
    t.ok(Math.abs(idle.retainedRssPerSession - beyondYoung) < 1e-6, `${idle.target}: RSS per session beyond the young generation (${idle.retainedRssPerSession} B)`)
    t.ok(idle.steps.every((step: any) => step.youngGeneration > 0), `${idle.target}: the young generation's size sampled at every step`)
  }
  t.match(stdout, /\| 5 \| \*\*proxy ÷ relay\*\* \|/)
  t.match(stdout, /Capacity/)
  t.match(stdout, /hop loop late p99 \/ max ms/)
  t.match(stdout, /Targets \(issue #15\)/)
})
