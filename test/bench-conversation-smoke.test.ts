// Keeps `npm run bench -- --conversation` from rotting: turns through both hops, the
// long sessions and both kinds of renewal, at 5 (and 3) sessions for a few seconds, from
// the TypeScript sources. Performance itself is not asserted.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runBench } from './helpers/bench.js'

// Nine processes started from the TypeScript sources, six phases: more than the usual 120 s on a busy machine.
t.setTimeout(240_000)

t.test('npm run bench -- --conversation, quick: turns through both hops, long sessions and renewals measured and reported', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const json = join(dir, 'results.json')
  const stdout = await runBench(['--conversation', '--quick', '--duration', '1', '--warmup', '0.2', '--turn-interval', '0.5', '--mic-frame-ms', '40', '--long-turns', '12', '--renew-duration', '3', '--json', json], 200_000)
  const results = JSON.parse(await readFile(json, 'utf8'))
  t.same([results.load.frameMs, results.load.frameBytes], [40, 1920], 'the microphone sent 40 ms frames (--mic-frame-ms)')
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
