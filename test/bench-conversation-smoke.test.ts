// Keeps `npm run bench -- --conversation` from rotting: turns through both hops, the
// long sessions and both kinds of renewal, at 5 (and 3) sessions for a few seconds, twice
// per hop (--repeat), from the TypeScript sources. Performance itself is not asserted.

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
  const stdout = await runBench(['--conversation', '--quick', '--duration', '1', '--warmup', '0.2', '--turn-interval', '0.5', '--mic-frame-ms', '40', '--repeat', '2', '--long-turns', '12', '--renew-duration', '3', '--json', json], 200_000)
  const results = JSON.parse(await readFile(json, 'utf8'))
  t.same([results.load.frameMs, results.load.frameBytes], [40, 1920], 'the microphone sent 40 ms frames (--mic-frame-ms)')
  t.same(results.runs.map((run: any) => run.target), ['relay', 'proxy'])
  for (const run of results.runs) {
    t.equal(run.established, 5, `${run.target}: every session configured`)
    t.ok(run.turns.started > 0 && Object.values(run.turns.done).length > 0, `${run.target}: turns finished (${JSON.stringify(run.turns.done)})`)
    t.ok(run.latency.up.InjectUserMessage?.count > 0, `${run.target}: InjectUserMessage timed to its upstream event`)
    t.ok(run.cpu.withTurns > 0 && run.cpu.audioOnly > 0, `${run.target}: CPU measured`)
    if (process.platform === 'linux') t.type(run.writesPerTurn, 'number', `${run.target}: write syscalls per turn measured (/proc/self/io)`)
    for (const phase of ['audioOnly', 'withTurns']) {
      const late = run.loopDelay[phase]
      t.ok(late.p99 >= 0 && late.p99 <= late.max, `${run.target}: the hop's event-loop lateness measured, ${phase} (p99 ${late.p99}, max ${late.max} ms)`)
    }
    t.same(run.repeats?.map((repeat: any) => repeat.target), [run.target, run.target], `${run.target}: a row of two runs (--repeat 2)`)
    const perTurn = run.repeats.map((repeat: any) => repeat.cpu.perTurnMs).sort((a: number, b: number) => a - b)
    t.equal(run.cpu.perTurnMs, (perTurn[0] + perTurn[1]) / 2, `${run.target}: its figures are the runs' median`)
  }
  t.equal(results.long.sessions, 3, 'long sessions ran')
  t.equal(results.long.open, 3, 'every long session survived its turns')
  t.equal(results.long.blocks.length, 6)
  t.same(results.renewals.map((renewal: any) => renewal.kind), ['planned', 'maxDuration'])
  const [planned, maxDuration] = results.renewals
  t.ok(planned.gaps.count > 0, `planned renewals happened (${planned.gaps.count})`)
  t.same(planned.warnings, {}, 'a planned renewal is invisible to the client')
  t.ok(maxDuration.gaps.count > 0 && maxDuration.gaps.closes['1001 Your session hit the maximum duration of 60 minutes.'] > 0, 'the simulator ended sessions at their maximum duration')
  t.match(stdout, /CPU ms per turn \| writes per turn \| hop loop late p99 \/ max/)
  t.match(stdout, /the median of 2 runs per hop, hops taking turns/)
  t.match(stdout, /Long sessions \(proxy\)/)
  t.match(stdout, /Upstream renewals/)
})
