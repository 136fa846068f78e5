// Keeps `npm run bench` from rotting: the whole benchmark (simulator, proxy and bare
// relay in child processes, the load generator, the report) at 5 sessions for 1 s,
// from the TypeScript sources (the children inherit tap's loader), checked for a
// complete, sane result. Performance itself is not asserted: CI machines vary.

import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const BENCH = fileURLToPath(new URL('../bench/', import.meta.url))
const RUN = join(BENCH, 'run.js')

/** Runs bench/run.js from the sources with `args`; resolves with its stdout. */
async function runBench (args: string[]): Promise<string> {
  const benchScripts = (await readdir(BENCH)).filter((name) => name.endsWith('.js')).map((name) => join(BENCH, name))
  const coverageExcluded = [process.env._TAPJS_PROCESSINFO_COV_EXCLUDE_FILES_ ?? '', ...benchScripts].join('\n')
  const { stdout } = await new Promise<{ stdout: string, stderr: string }>((resolve, reject) => {
    execFile(process.execPath, [...process.execArgv, RUN, ...args], {
      env: { ...process.env, BENCH_FROM_SOURCE: '1', _TAPJS_PROCESSINFO_COV_EXCLUDE_FILES_: coverageExcluded },
      timeout: 90_000
    }, (error, stdout, stderr) => error === null ? resolve({ stdout, stderr }) : reject(new Error(`${error.message}\n${stderr}`)))
  })
  return stdout
}

t.test('npm run bench, quick: every frame echoed through both hops, measured and reported', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const json = join(dir, 'results.json')
  // The benchmark's scripts are tooling, not the product: keep them out of the coverage
  // floors (tap's processinfo reads this list in every process it follows).
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
    t.ok(run.memory.peakRss > 0, `${run.target}: memory measured`)
    t.same(Object.values(run.violations).filter((n) => n !== 0), [], `${run.target}: the simulator saw no protocol violation`)
  }
  t.same(results.idle.map((idle: any) => idle.target), ['relay', 'proxy'], 'idle memory measured for both hops')
  for (const idle of results.idle) {
    t.equal(idle.sessions, 20, `${idle.target}: every idle session configured`)
    t.ok(Number.isFinite(idle.rssPerSession) && idle.heapPerSession > 0, `${idle.target}: idle memory per session (${idle.heapPerSession} B of heap)`)
  }
  t.match(stdout, /\| 5 \| \*\*proxy ÷ relay\*\* \|/)
  t.match(stdout, /Capacity/)
  t.match(stdout, /Targets \(issue #6\)/)
})

t.test('npm run bench -- --conversation, quick: turns through both hops, long sessions and renewals measured and reported', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const json = join(dir, 'results.json')
  const stdout = await runBench(['--conversation', '--quick', '--duration', '1', '--warmup', '0.2', '--turn-interval', '0.5', '--long-turns', '12', '--renew-duration', '2', '--json', json])
  const results = JSON.parse(await readFile(json, 'utf8'))
  t.same(results.runs.map((run: any) => run.target), ['relay', 'proxy'])
  for (const run of results.runs) {
    t.equal(run.established, 5, `${run.target}: every session configured`)
    t.ok(run.turns.started > 0 && Object.values(run.turns.done).length > 0, `${run.target}: turns finished (${JSON.stringify(run.turns.done)})`)
    t.ok(run.latency.up.InjectUserMessage?.count > 0, `${run.target}: InjectUserMessage timed to its upstream event`)
    t.ok(run.cpu.withTurns > 0 && run.cpu.audioOnly > 0, `${run.target}: CPU measured`)
  }
  t.equal(results.long.sessions, 3, 'long sessions ran')
  t.equal(results.long.open, 3, 'every long session survived its turns')
  t.equal(results.long.blocks.length, 6)
  t.same(results.renewals.map((renewal: any) => renewal.kind), ['planned', 'maxDuration'])
  const [planned, maxDuration] = results.renewals
  t.ok(planned.gaps.count > 0, `planned renewals happened (${planned.gaps.count})`)
  t.same(planned.warnings, {}, 'a planned renewal is invisible to the client')
  t.ok(maxDuration.gaps.count > 0 && maxDuration.gaps.closes['1001 Your session hit the maximum duration of 60 minutes.'] > 0, 'the simulator ended sessions at their maximum duration')
  t.match(stdout, /CPU ms per turn/)
  t.match(stdout, /Long sessions \(proxy\)/)
  t.match(stdout, /Upstream renewals/)
})
