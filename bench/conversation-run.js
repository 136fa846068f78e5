// `npm run bench -- --conversation`: the conversational workload (bench/conversation.js)
// through each hop, then the proxy's long sessions. bench/run.js provides the processes
// (`ctx`: startSimulator(env), startHop(target, simulator, env), waitForQuiet).
//
// 1. Turns, per N and hop (--repeat times, hops taking turns), in fresh processes: N sessions stream the microphone; after a
//    warm-up, --duration seconds of audio only (the baseline), then turns start (one per
//    session every --turn-interval seconds); after a turn interval of warm-up, --duration
//    seconds measured. CPU per turn = (hop CPU in the turn window − in the audio-only
//    window, per second) × window ÷ turns started in the window and finished; writes
//    per turn, the same of the hop's write syscalls. And how late the hop's event loop
//    ran (bench/child.js) in each window: the wait any message has in the hop. Latency
//    per protocol message: client message → upstream event and upstream event →
//    client message, by the keys of conversation-stamps.js.
// 2. Long sessions (the proxy): --long-sessions sessions run --long-turns turns back to
//    back (answers instant), the proxy's V8 heap (+ external) after a full GC sampled
//    every LONG_BLOCKS-th of the way: growth per session against turns, and so against
//    the record's bound (lib/engine/record.ts: 200 entries, 48,000 characters).
// 3. Renewals (the proxy): the same sessions for --renew-duration seconds with
//    UPSTREAM_RENEW_AFTER_MS (planned: at a quiet moment, invisible), then again with the
//    simulator's maxSessionMs (it closes 1001 with OpenAI's reason, as at 60 minutes):
//    upstream gone → new upstream open → its first audio, from the simulator's side.

import { LONG_TURNS, TurnLog, converse, openConversations, sleep, summaries, tripsByKind, turnsBackToBack } from './conversation.js'
import { nowMs } from './frame.js'
import { Measurement, Samples, stream } from './loadgen.js'

/** Answers spoken at real-time pace, 1 s long (25 deltas of 40 ms); the simulator's energy VAD hears the microphone. */
const STREAMING_SCRIPT = { energyVad: true, audioChunks: 25, chunkIntervalMs: 40 }
/** Long sessions: answers at once (3 deltas, 120 ms of audio), so an hour of turns runs in a minute. */
const LONG_SCRIPT = { energyVad: true, audioChunks: 3, chunkIntervalMs: 0, maxSessionMs: 0 }
const LONG_BLOCKS = 6
/** Back-to-back turns send far more than a person would: the proxy's message rate limit (100/s) is off for them. */
/** Renewal phases: a turn every 300 ms per session, so that there are quiet moments (a planned renewal waits for one). */
const RENEWAL_TURN_MS = 300
const BACK_TO_BACK_ENV = { MAX_CLIENT_MESSAGES_PER_SECOND: '0' }

export async function runConversation (ctx, options) {
  const runs = []
  for (const sessions of options.sessions) {
    const attempts = new Map(options.targets.map((target) => [target, []]))
    // Hops take turns (--repeat), as in the audio benchmark; a row is the median of their runs.
    for (let round = 1; round <= options.repeat; round++) {
      for (const target of options.targets) {
        process.stderr.write(`conversation: ${target} × ${sessions} sessions${options.repeat > 1 ? ` (${round}/${options.repeat})` : ''} … `)
        await ctx.waitForQuiet()
        const run = await turnsRun(ctx, options, target, sessions)
        attempts.get(target).push(run)
        process.stderr.write(`done (${run.established}/${sessions} up, ${run.turns.started} turns, ${sum(run.turns.timedOut)} timed out, ` +
          `${fixed(run.cpu.perTurnMs, 2)} ms CPU per turn, p99 ↑${fixed(run.latency.upAll.p99)} ↓${fixed(run.latency.downAll.p99)} ms)\n`)
      }
    }
    for (const target of options.targets) runs.push(ctx.combine(attempts.get(target)))
  }
  let long = null
  const renewals = []
  if (options.targets.includes('proxy') && options.longSessions > 0) {
    if (options.longTurns > 0) {
      process.stderr.write(`long sessions: ${options.longSessions} × ${options.longTurns} turns … `)
      await ctx.waitForQuiet()
      long = await longRun(ctx, options)
      process.stderr.write(`done (${fixed(long.blocks.at(-1).heapPerSession / 1024)} KB heap per session at the end)\n`)
    }
    if (options.renewDurationS > 0) {
      for (const kind of ['planned', 'maxDuration']) {
        process.stderr.write(`renewals (${kind}): ${options.longSessions} sessions for ${options.renewDurationS} s … `)
        const renewal = await renewalRun(ctx, options, kind)
        renewals.push(renewal)
        process.stderr.write(`done (${renewal.gaps.count} renewals, gone → first audio p50 ${fixed(renewal.goneToAudio.p50)} ms, ${JSON.stringify(renewal.warnings)})\n`)
      }
    }
  }
  return { runs, long, renewals }
}

async function turnsRun (ctx, options, target, count) {
  const simulator = await ctx.startSimulator(simulatorEnv(STREAMING_SCRIPT))
  let hop
  try {
    hop = await ctx.startHop(target, simulator)
    const { sessions, failures } = await openConversations(hop.ready.url, count, options.micFrameMs)
    const streaming = stream(sessions, new Measurement(), options.micFrameMs)
    await sleep(options.warmupS * 1000)

    const audioOnly = await window(hop, options.durationS)

    const log = new TurnLog()
    const talk = converse(sessions, log, { intervalMs: options.turnIntervalS * 1000 })
    await sleep(options.warmupS * 1000 + options.turnIntervalS * 1000)
    log.since = nowMs()
    const turns = await window(hop, options.durationS)
    log.until = nowMs()
    talk.stop()
    await talk.finished()
    streaming.stop()
    const stamps = await simulator.request({ cmd: 'conversation' })
    const { violations } = await simulator.request({ cmd: 'stats' })
    await Promise.all(sessions.map((session) => session.close()))

    const done = sum(log.done)
    const extraMs = (turns.cpuMs / turns.ms - audioOnly.cpuMs / audioOnly.ms) * turns.ms
    const extraWrites = turns.writeCalls === null ? null : (turns.writeCalls / turns.ms - audioOnly.writeCalls / audioOnly.ms) * turns.ms
    return {
      target,
      sessions: count,
      established: sessions.length,
      failures,
      turns: { started: done + sum(log.timedOut), done: log.done, timedOut: log.timedOut, durations: summaries(log.durations) },
      cpu: {
        audioOnly: audioOnly.cpuMs / audioOnly.ms * 100,
        withTurns: turns.cpuMs / turns.ms * 100,
        perTurnMs: done === 0 ? null : extraMs / done
      },
      writesPerTurn: done === 0 || extraWrites === null ? null : extraWrites / done,
      loopDelay: { audioOnly: audioOnly.loopDelay, withTurns: turns.loopDelay },
      latency: tripsByKind(log, stamps, log.since, log.until),
      messages: log.messages,
      warnings: log.warnings,
      violations
    }
  } finally {
    await hop?.release()
    await simulator.release()
  }
}

/** The hop's CPU, write syscalls (null where /proc does not say) and event-loop lateness over `seconds`. */
async function window (hop, seconds) {
  const start = await hop.sample()
  await hop.request({ cmd: 'loopDelay', reset: true })
  const startedAt = nowMs()
  await sleep(seconds * 1000)
  const end = await hop.sample()
  const loopDelay = await hop.request({ cmd: 'loopDelay' })
  return { cpuMs: end.cpuMs - start.cpuMs, writeCalls: end.writeCalls === null ? null : end.writeCalls - start.writeCalls, loopDelay, ms: nowMs() - startedAt }
}

async function longRun (ctx, options) {
  const simulator = await ctx.startSimulator(simulatorEnv(LONG_SCRIPT))
  let hop
  try {
    hop = await ctx.startHop('proxy', simulator, BACK_TO_BACK_ENV)
    const { sessions } = await openConversations(hop.ready.url, options.longSessions)
    const log = new TurnLog()
    // One round of each kind first, so code loading and first compilation are not counted.
    await turnsBackToBack(sessions, log, LONG_TURNS.length)
    const heap = (sample) => sample.heapUsed + sample.external
    const base = await hop.sample(true)
    const blocks = []
    const perBlock = Math.max(1, Math.round(options.longTurns / LONG_BLOCKS))
    const startedAt = nowMs()
    for (let turns = 0; turns < options.longTurns; turns += perBlock) {
      await turnsBackToBack(sessions, log, perBlock, LONG_TURNS.length + turns)
      const sample = await hop.sample(true)
      blocks.push({ turns: turns + perBlock, heapPerSession: (heap(sample) - heap(base)) / sessions.length, rss: sample.rss })
    }
    const elapsedS = (nowMs() - startedAt) / 1000
    const open = sessions.filter((session) => session.open).length
    await Promise.all(sessions.map((session) => session.close()))
    return { sessions: sessions.length, open, turnsPerSession: blocks.at(-1).turns, elapsedS, done: log.done, timedOut: log.timedOut, warnings: log.warnings, errors: log.messages.Error ?? 0, blocks }
  } finally {
    await hop?.release()
    await simulator.release()
  }
}

async function renewalRun (ctx, options, kind) {
  const renewAfterMs = Math.max(500, Math.round(options.renewDurationS * 1000 / 5))
  const script = kind === 'planned' ? LONG_SCRIPT : { ...LONG_SCRIPT, maxSessionMs: Math.max(1000, Math.round(options.renewDurationS * 1000 / 2.5)) }
  const simulator = await ctx.startSimulator(simulatorEnv(script))
  let hop
  try {
    hop = await ctx.startHop('proxy', simulator, kind === 'planned' ? { ...BACK_TO_BACK_ENV, UPSTREAM_RENEW_AFTER_MS: String(renewAfterMs) } : BACK_TO_BACK_ENV)
    const { sessions } = await openConversations(hop.ready.url, options.longSessions)
    const streaming = stream(sessions, new Measurement())
    const log = new TurnLog()
    const talk = converse(sessions, log, { intervalMs: RENEWAL_TURN_MS, kinds: LONG_TURNS })
    await sleep(options.renewDurationS * 1000)
    talk.stop()
    await talk.finished()
    streaming.stop()
    const { links } = await simulator.request({ cmd: 'conversation' })
    const open = sessions.filter((session) => session.open).length
    await Promise.all(sessions.map((session) => session.close()))
    const gaps = renewalGaps(links)
    return {
      kind,
      sessions: sessions.length,
      ...(kind === 'planned' ? { renewAfterMs } : { maxSessionMs: script.maxSessionMs }),
      gaps: { count: gaps.length, closes: countBy(gaps, (gap) => `${gap.code} ${gap.reason}`) },
      goneToOpen: summary(gaps.map((gap) => gap.open)),
      goneToAudio: summary(gaps.filter((gap) => gap.audio !== null).map((gap) => gap.audio)),
      withoutAudio: gaps.filter((gap) => gap.audio === null).length,
      open,
      errors: log.messages.Error ?? 0,
      turns: { done: log.done, timedOut: log.timedOut },
      warnings: log.warnings
    }
  } finally {
    await hop?.release()
    await simulator.release()
  }
}

/** Each session's consecutive upstreams: from the old one gone to the new one open, and to its first audio. */
function renewalGaps (links) {
  const bySession = new Map()
  for (const link of links) {
    if (link.session === null) continue
    bySession.set(link.session, [...(bySession.get(link.session) ?? []), link])
  }
  const gaps = []
  for (const list of bySession.values()) {
    list.sort((a, b) => a.openAt - b.openAt)
    for (let i = 1; i < list.length; i++) {
      const [old, next] = [list[i - 1], list[i]]
      if (old.closeAt === null) continue
      gaps.push({ code: old.code, reason: old.reason, open: next.openAt - old.closeAt, audio: next.firstDeltaAt === null ? null : next.firstDeltaAt - old.closeAt })
    }
  }
  return gaps
}

function simulatorEnv (script) {
  return { BENCH_CONVERSATION: '1', BENCH_SIM_SCRIPT: JSON.stringify(script) }
}

function summary (values) {
  const samples = new Samples()
  for (const value of values) samples.add(value)
  return { ...samples.summary(), count: samples.count }
}

function countBy (values, key) {
  const counts = {}
  for (const value of values) counts[key(value)] = (counts[key(value)] ?? 0) + 1
  return counts
}

function sum (table) {
  return Object.values(table).reduce((total, n) => total + n, 0)
}

function fixed (value, digits = 1) {
  return value === null || value === undefined ? '–' : value.toFixed(digits)
}
