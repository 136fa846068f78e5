// `npm run bench`: the proxy against the bare relay (bench/relay.js), same load,
// same machine, same run. For each session count N and each hop, in fresh processes:
//
//   1. start the simulator (bench/simulator.js) and the hop (bench/proxy.js or
//      bench/relay.js), each a child process, so their CPU and memory are their own;
//   2. run a few sessions through it briefly, so code loading is not counted as memory;
//   3. open N sessions (Settings → SettingsApplied), let them idle, and take the
//      hop's RSS after a full GC: (RSS with N idle sessions − RSS before) / N;
//   4. stream: every session sends a 20 ms frame every 20 ms and gets each one back,
//      echoed by the simulator; after --warmup seconds, measure for --duration
//      seconds (CPU is the hop's process time over that window);
//   5. drain, then count what never came back.
//
// Then, per hop, idle memory at scale: --idle-sessions (1000) configured sessions
// opened in steps, RSS after a full GC at each step (see idleMemory).
//
// The machine may be shared: before each run it waits (up to --quiet-wait seconds)
// for other processes to go quiet, measures their CPU during the run (/proc/stat),
// and repeats a disturbed run (--retries), keeping the quietest attempt.
//
// Options (or environment):
//   --sessions 50,100,200   session counts N (BENCH_SESSIONS)
//   --duration 10           seconds measured per run (BENCH_DURATION), after
//   --warmup 2              seconds of streaming at full load
//   --repeat 1              runs per hop and N, hops taking turns; a row is then the
//                           median of each figure and the worst of each failure count
//                           (BENCH_REPEAT); with --conversation too
//   --idle-sessions 1000    sessions of the idle-memory phase (0 skips it)
//   --targets relay,proxy   the hops (and `baseline`, with --baseline)
//   --baseline DIR          also run the proxy built in DIR (a dist/ with openapi.yaml and
//                           node_modules/ beside it, e.g. a git worktree of another commit)
//   --retries 2, --quiet-wait 120   see above
//   --profile               the hops run with --cpu-prof; profiles in bench/results/profiles/,
//                           a summary on stderr (bench/profile.js)
//   --log-level info        the proxy's LOG_LEVEL
//   --json FILE             where the results go (default bench/results/bench-<time>.json)
//   --quick                 a smoke run (BENCH_QUICK=1): 5 sessions for 2 s, 20 idle sessions,
//                           processes shared between runs, no waiting for quiet
//   --conversation          the conversational workload instead (bench/conversation-run.js):
//                           turns while streaming, then the proxy's long sessions; with
//   --turn-interval 4       seconds between one session's turns
//   --mic-frame-ms 20       length of each microphone frame (a multiple of 20 ms; sent as
//                           often): longer frames are fewer messages, for more sessions
//   --long-sessions 20      sessions of the long-session and renewal phases (0 skips them)
//   --long-turns 360        turns per long session (an hour at one turn every 10 s; 0 skips)
//   --renew-duration 10     seconds of each renewal phase (0 skips)
// Markdown goes to stdout, progress to stderr.

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { startChild } from './child.js'
import { FRAME_BYTES, FRAME_MS, SAMPLE_RATE, nowMs } from './frame.js'
import { Measurement, drain, establish, stream } from './loadgen.js'
import { summarizeProfile } from './profile.js'
import { runConversation } from './conversation-run.js'
import { conversationReport, markdownReport } from './report.js'

const RESULTS = new URL('./results/', import.meta.url)
const FIRST_SESSIONS = 5
const IDLE_STEPS = 4
const DRAIN_MS = 2000
const RSS_SAMPLE_MS = 1000
/** Other processes' CPU (% of one core) above which a run counts as disturbed and is repeated. */
const BACKGROUND_LIMIT = 15

const options = readOptions()
/** The processes a --quick run shares between its runs, by name. */
const shared = {}
// A smoke run only checks that everything works: shorter pauses.
const FIRST_STREAM_MS = options.quick ? 200 : 500
const IDLE_SETTLE_MS = options.quick ? 100 : 500
/** Profiles already summarized. */
const summarized = new Set()
const results = {
  startedAt: new Date().toISOString(),
  machine: machine(),
  load: {
    frameMs: FRAME_MS,
    frameBytes: FRAME_BYTES,
    sampleRate: SAMPLE_RATE,
    durationS: options.durationS,
    warmupS: options.warmupS,
    proxyLogLevel: options.logLevel,
    repeat: options.repeat,
    baseline: options.baseline ?? null
  },
  runs: []
}

mkdirSync(RESULTS, { recursive: true })
if (options.conversation) {
  results.load.turnIntervalS = options.turnIntervalS
  results.load.frameMs = options.micFrameMs
  results.load.frameBytes = FRAME_BYTES * options.micFrameMs / FRAME_MS
  Object.assign(results, await runConversation({ startSimulator, startHop, waitForQuiet, combine }, options))
} else {
  await audioBench()
}
for (const child of Object.values(shared)) await (await child).exit()
results.finishedAt = new Date().toISOString()

const jsonFile = options.json ?? new URL(`${options.conversation ? 'conversation' : 'bench'}-${results.startedAt.replace(/[:.]/g, '-')}.json`, RESULTS)
writeFileSync(jsonFile, JSON.stringify(results, null, 2) + '\n')
process.stdout.write(options.conversation ? conversationReport(results, process.argv.slice(2)) : markdownReport(results))
process.stderr.write(`\nJSON: ${jsonFile instanceof URL ? jsonFile.pathname : jsonFile}\n`)

async function audioBench () {
  for (const sessions of options.sessions) {
    const attempts = new Map(options.targets.map((target) => [target, []]))
    // Hops take turns, so that a slow stretch of the machine does not fall on one of them only.
    for (let round = 1; round <= options.repeat; round++) {
      for (const target of options.targets) {
        process.stderr.write(`${target} × ${sessions} sessions${options.repeat > 1 ? ` (${round}/${options.repeat})` : ''} … `)
        const run = await runQuietly(target, sessions)
        attempts.get(target).push(run)
        process.stderr.write(`done (${run.established}/${sessions} up, ${run.frames.lost} lost, p99 ↑${fixed(run.upstream.p99)} ↓${fixed(run.downstream.p99)} ms, CPU ${fixed(run.cpu.hop, 0)} %)\n`)
      }
    }
    for (const target of options.targets) results.runs.push(combine(attempts.get(target)))
  }
  results.idle = []
  if (options.idleSessions > 0) {
    for (const target of options.targets) {
      process.stderr.write(`${target}: memory of ${options.idleSessions} idle sessions … `)
      await waitForQuiet()
      const idle = await idleMemory(target, options.idleSessions)
      results.idle.push(idle)
      process.stderr.write(`${(idle.retainedRssPerSession / 1024).toFixed(1)} KB RSS beyond the young generation (${(idle.rssPerSession / 1024).toFixed(1)} KB in all), ${(idle.heapPerSession / 1024).toFixed(1)} KB heap each\n`)
    }
  }
}

/**
 * One row from --repeat runs of a hop at one N: the median of every measured figure,
 * the worst of every count of failures (sessions up, frames lost…); the runs
 * themselves are kept in `repeats`.
 */
function combine (runs) {
  if (runs.length === 1) return runs[0]
  const worst = { established: Math.min, dropped: Math.max, lost: Math.max, duplicates: Math.max, corrupt: Math.max, unstamped: Math.max, strayBytes: Math.max }
  // Counts by kind (failure reasons, client messages, simulator violations, turns timed
  // out, client warnings): the worst run's.
  const worstOfAll = new Set(['failures', 'messages', 'violations', 'timedOut', 'warnings'])
  const merge = (values, key, pick) => {
    const [first] = values
    if (typeof first === 'number' || first === null) {
      const numbers = values.filter((value) => typeof value === 'number')
      if (numbers.length === 0) return null
      return (pick ?? worst[key] ?? median)(...numbers)
    }
    if (typeof first !== 'object' || first === null) return first
    const merged = {}
    for (const name of new Set(values.flatMap((value) => Object.keys(value ?? {})))) {
      const present = values.map((value) => value?.[name] ?? (worstOfAll.has(key) ? 0 : null))
      merged[name] = merge(present, name, pick ?? (worstOfAll.has(name) || worstOfAll.has(key) ? Math.max : undefined))
    }
    return merged
  }
  return { ...merge(runs, ''), target: runs[0].target, repeats: runs }
}

function median (...numbers) {
  const sorted = numbers.sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** Runs one hop at one N, again if other processes loaded the machine meanwhile; keeps the quietest attempt. */
async function runQuietly (target, count) {
  let best
  for (let attempt = 0; attempt <= options.retries; attempt++) {
    if (attempt > 0) process.stderr.write(`busy machine (${fixed(best.cpu.background, 0)} % of a core used by other processes), again … `)
    const waitedS = await waitForQuiet()
    const run = await runOne(target, count)
    run.waitedForQuietS = waitedS
    if (best === undefined || (run.cpu.background ?? 0) < (best.cpu.background ?? 0)) best = run
    if ((best.cpu.background ?? 0) <= BACKGROUND_LIMIT) break
  }
  return best
}

async function runOne (target, count) {
  const simulator = await startSimulator()
  let hop
  try {
    hop = await startHop(target, simulator)
    const url = hop.ready.url

    // Run every code path once (module loading, first compilation) before memory is measured.
    const first = await establish(url, Math.min(FIRST_SESSIONS, count))
    const firstStream = stream(first.sessions, new Measurement())
    await sleep(FIRST_STREAM_MS)
    firstStream.stop()
    await Promise.all(first.sessions.map((session) => session.close()))

    const empty = await hop.sample(true)
    const { sessions, failures } = await establish(url, count)
    await sleep(IDLE_SETTLE_MS)
    const idle = await hop.sample(true)

    // Warm up at full load (JIT, buffer pools, GC heuristics), then measure without a gap.
    const streaming = stream(sessions, new Measurement())
    await sleep(options.warmupS * 1000)
    const measurement = new Measurement()
    streaming.measure(measurement)
    const [hopStart, simStart] = await Promise.all([hop.sample(), simulator.sample(), hop.request({ cmd: 'loopDelay', reset: true })])
    const selfStart = process.cpuUsage()
    const machineStart = machineBusyMs()
    const startedAt = nowMs()
    let peakRss = hopStart.rss
    const rssTimer = setInterval(() => {
      hop.sample().then((sample) => { peakRss = Math.max(peakRss, sample.rss) }, () => {})
    }, RSS_SAMPLE_MS)
    await sleep(options.durationS * 1000)
    streaming.stop()
    clearInterval(rssTimer)
    const [hopEnd, simEnd, loopDelay] = await Promise.all([hop.sample(), simulator.sample(), hop.request({ cmd: 'loopDelay' })])
    const selfEnd = process.cpuUsage(selfStart)
    const machineEnd = machineBusyMs()
    const windowMs = nowMs() - startedAt
    peakRss = Math.max(peakRss, hopEnd.rss)
    await drain(measurement, DRAIN_MS)
    const { violations } = await simulator.request({ cmd: 'stats' })
    await Promise.all(sessions.map((session) => session.close()))

    const percent = (ms) => ms / windowMs * 100
    // Frames through the hop in the window, both ways: the unit of work per-frame costs are of.
    const framesThrough = 2 * measurement.sent
    const cpu = {
      hop: percent(hopEnd.cpuMs - hopStart.cpuMs),
      simulator: percent(simEnd.cpuMs - simStart.cpuMs),
      loadgen: percent((selfEnd.user + selfEnd.system) / 1000),
      background: null
    }
    if (machineStart !== null && machineEnd !== null) {
      cpu.background = Math.max(0, percent(machineEnd - machineStart) - cpu.hop - cpu.simulator - cpu.loadgen)
    }
    return {
      target,
      sessions: count,
      established: sessions.length,
      failures,
      dropped: measurement.dropped,
      frames: {
        sent: measurement.sent,
        received: measurement.received,
        lost: measurement.sent - measurement.received,
        duplicates: measurement.duplicates,
        corrupt: measurement.corrupt,
        unstamped: measurement.unstamped,
        strayBytes: measurement.strayBytes
      },
      upstream: measurement.up.summary(),
      downstream: measurement.down.summary(),
      sendLag: measurement.sendLag.summary(),
      loopDelay,
      cpu: { ...cpu, hopUser: percent(hopEnd.userMs - hopStart.userMs), hopSystem: percent(hopEnd.systemMs - hopStart.systemMs) },
      perFrame: {
        cpuUs: (hopEnd.cpuMs - hopStart.cpuMs) * 1000 / framesThrough,
        writeCalls: hopEnd.writeCalls === null ? null : (hopEnd.writeCalls - hopStart.writeCalls) / framesThrough,
        readCalls: hopEnd.readCalls === null ? null : (hopEnd.readCalls - hopStart.readCalls) / framesThrough
      },
      memory: {
        emptyRss: empty.rss,
        idleRss: idle.rss,
        peakRss,
        idlePerSession: sessions.length === 0 ? null : (idle.rss - empty.rss) / sessions.length,
        idleHeapPerSession: sessions.length === 0 ? null : (idle.heapUsed + idle.external - empty.heapUsed - empty.external) / sessions.length
      },
      messages: measurement.messages,
      violations
    }
  } finally {
    await hop?.release()
    await simulator.release()
    if (options.profile) summarizeNewProfiles(`${target} × ${count}`)
  }
}

/**
 * RSS of idle configured sessions, at a scale where V8's and malloc's growth steps
 * (hundreds of KB each) average out: `count` sessions opened in IDLE_STEPS steps, the
 * hop's RSS after a full GC at each. Per session = growth from the first step to the
 * last over the sessions in between, so one-time costs of the first sessions drop out.
 * Also without V8's young generation: V8 sizes it (up to 16 MB a semi-space, in steps)
 * by how fast the process allocates, not by what it keeps, so whether it grew during the
 * measurement (the relay's did, from 6 to 17 MB; the proxy's was at 30 MB before) moved
 * the per-session figure by up to 12 KB at 1000 sessions.
 */
async function idleMemory (target, count) {
  const simulator = await startSimulator()
  let hop
  try {
    hop = await startHop(target, simulator)
    const url = hop.ready.url
    const first = await establish(url, FIRST_SESSIONS)
    await Promise.all(first.sessions.map((session) => session.close()))
    const sessions = []
    const steps = [{ sessions: 0, ...await hop.sample(true) }]
    for (let step = 1; step <= IDLE_STEPS; step++) {
      const opened = await establish(url, Math.round(count * step / IDLE_STEPS) - sessions.length)
      sessions.push(...opened.sessions)
      await sleep(IDLE_SETTLE_MS)
      steps.push({ sessions: sessions.length, ...await hop.sample(true) })
    }
    await Promise.all(sessions.map((session) => session.close()))
    const [, from] = steps
    const to = steps[steps.length - 1]
    const added = to.sessions - from.sessions
    return {
      target,
      sessions: sessions.length,
      steps: steps.map(({ sessions, rss, heapUsed, external, youngGeneration }) => ({ sessions, rss, heapUsed, external, youngGeneration })),
      rssPerSession: (to.rss - from.rss) / added,
      youngGenerationGrowth: to.youngGeneration - from.youngGeneration,
      retainedRssPerSession: (to.rss - to.youngGeneration - from.rss + from.youngGeneration) / added,
      heapPerSession: (to.heapUsed + to.external - from.heapUsed - from.external) / added
    }
  } finally {
    await hop?.release()
    await simulator.release()
  }
}

/**
 * Fresh processes for every run, so that no run inherits another's connections, heap
 * or logs. A smoke run (--quick) shares one simulator and one process per hop, to start
 * (and, from the sources, compile) fewer.
 */
async function startSimulator (env = {}) {
  return startShared(`simulator ${JSON.stringify(env)}`, () => startChild('simulator.js', env))
}

/** `env`: more of the hop's environment (e.g. UPSTREAM_RENEW_AFTER_MS). */
async function startHop (target, simulator, env = {}) {
  return startShared(`${target} ${simulator.ready.url} ${JSON.stringify(env)}`,
    () => startChild(target === 'relay' ? 'relay.js' : 'proxy.js', { ...hopEnv(target, simulator.ready.url), ...env }, profileArgs()))
}

/** A fresh process, or (--quick) the one already started under `key`. */
async function startShared (key, start) {
  if (!options.quick) {
    const child = await start()
    return { ...child, release: () => child.exit() }
  }
  shared[key] ??= start()
  return { ...await shared[key], release: async () => {} }
}

/** Busy time of the whole machine (all cores) so far, in ms, from /proc/stat; null elsewhere. */
function machineBusyMs () {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number)
    const idle = fields[3] + fields[4]
    // USER_HZ is 100 on Linux: one tick is 10 ms.
    return (fields.reduce((sum, ticks) => sum + ticks, 0) - idle) * 10
  } catch {
    return null
  }
}

/** Waits (up to --quiet-wait seconds) until other processes leave the machine nearly idle; returns the seconds waited. */
async function waitForQuiet () {
  const started = Date.now()
  for (;;) {
    const before = machineBusyMs()
    if (before === null) return 0
    await sleep(1000)
    const busy = (machineBusyMs() - before) / 10
    const waitedS = (Date.now() - started) / 1000
    if (busy <= BACKGROUND_LIMIT || waitedS >= options.quietWaitS) return Math.round(waitedS)
  }
}

function hopEnv (target, simulatorUrl) {
  const env = { ...process.env }
  // The simulator takes any key; a real one must not even travel over loopback.
  delete env.OPENAI_API_KEY
  delete env.OTEL_EXPORTER_OTLP_ENDPOINT
  delete env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT
  if (target === 'relay') return { ...env, BENCH_UPSTREAM_URL: simulatorUrl }
  if (target === 'baseline') env.BENCH_DIST = options.baseline
  return {
    ...env,
    PORT: '0',
    HOST: '127.0.0.1',
    OPENAI_REALTIME_URL: simulatorUrl,
    LOG_LEVEL: options.logLevel,
    PROXY_AUTH_TOKENS: '',
    MAX_SESSIONS: String(2 * Math.max(1000, options.idleSessions, ...options.sessions))
  }
}

function profileArgs () {
  return options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir().pathname}`] : []
}

function profileDir () {
  return new URL(`profiles/${results.startedAt.replace(/[:.]/g, '-')}/`, RESULTS)
}

function summarizeNewProfiles (what) {
  const dir = profileDir()
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.cpuprofile') || summarized.has(name)) continue
    summarized.add(name)
    const summary = summarizeProfile(JSON.parse(readFileSync(new URL(name, dir), 'utf8')))
    process.stderr.write(`\n${what}: ${new URL(name, dir).pathname}\n${summary}\n`)
  }
}

function readOptions () {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string', short: 'n' },
      duration: { type: 'string', short: 'd' },
      warmup: { type: 'string' },
      targets: { type: 'string' },
      quick: { type: 'boolean' },
      profile: { type: 'boolean' },
      json: { type: 'string' },
      'log-level': { type: 'string' },
      retries: { type: 'string' },
      'quiet-wait': { type: 'string' },
      baseline: { type: 'string' },
      'idle-sessions': { type: 'string' },
      repeat: { type: 'string' },
      conversation: { type: 'boolean' },
      'turn-interval': { type: 'string' },
      'mic-frame-ms': { type: 'string' },
      'long-sessions': { type: 'string' },
      'long-turns': { type: 'string' },
      'renew-duration': { type: 'string' }
    }
  })
  const quick = values.quick === true || process.env.BENCH_QUICK === '1'
  const sessions = (values.sessions ?? process.env.BENCH_SESSIONS ?? (quick ? '5' : values.conversation === true ? '50,200' : '50,100,200')).split(',').map(Number)
  if (sessions.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--sessions takes a comma-separated list of positive integers, e.g. 50,100,200')
  const durationS = Number(values.duration ?? process.env.BENCH_DURATION ?? (quick ? 2 : 10))
  const warmupS = Number(values.warmup ?? (quick ? 0.5 : 2))
  if (!(durationS > 0) || !(warmupS >= 0)) throw new Error('--duration must be > 0 and --warmup ≥ 0 (seconds)')
  const targets = (values.targets ?? (values.baseline === undefined ? 'relay,proxy' : 'relay,baseline,proxy')).split(',')
  if (targets.some((target) => !['relay', 'proxy', 'baseline'].includes(target))) throw new Error('--targets takes relay, proxy and (with --baseline) baseline')
  if (targets.includes('baseline') && values.baseline === undefined) throw new Error('--baseline DIR (another build of the proxy) is needed to run the baseline target')
  const retries = Number(values.retries ?? (quick ? 0 : 2))
  const quietWaitS = Number(values['quiet-wait'] ?? (quick ? 0 : 120))
  if (!Number.isInteger(retries) || retries < 0 || !(quietWaitS >= 0)) throw new Error('--retries takes an integer ≥ 0 and --quiet-wait seconds ≥ 0')
  const repeat = Number(values.repeat ?? process.env.BENCH_REPEAT ?? 1)
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error('--repeat takes an integer ≥ 1')
  const idleSessions = Number(values['idle-sessions'] ?? (quick ? 20 : 1000))
  if (!Number.isInteger(idleSessions) || idleSessions < 0 || (idleSessions > 0 && idleSessions < 2 * IDLE_STEPS)) throw new Error(`--idle-sessions takes 0 (skip) or an integer ≥ ${2 * IDLE_STEPS}`)
  const conversation = values.conversation === true
  const turnIntervalS = Number(values['turn-interval'] ?? (quick ? 1 : 4))
  const longSessions = Number(values['long-sessions'] ?? (quick ? 3 : 20))
  const longTurns = Number(values['long-turns'] ?? (quick ? 12 : 360))
  const renewDurationS = Number(values['renew-duration'] ?? (quick ? 3 : 10))
  const micFrameMs = Number(values['mic-frame-ms'] ?? FRAME_MS)
  if (!Number.isInteger(micFrameMs / FRAME_MS) || micFrameMs < FRAME_MS || micFrameMs > 1000) throw new Error(`--mic-frame-ms takes a multiple of ${FRAME_MS} ms up to 1000`)
  if (!(turnIntervalS > 0) || !Number.isInteger(longSessions) || longSessions < 0 || !Number.isInteger(longTurns) || longTurns < 0 || !(renewDurationS >= 0)) {
    throw new Error('--turn-interval takes seconds > 0, --long-sessions and --long-turns integers ≥ 0, --renew-duration seconds ≥ 0')
  }
  return { conversation, turnIntervalS, micFrameMs, longSessions, longTurns, renewDurationS, quick, sessions, durationS, warmupS, targets, retries, repeat, idleSessions, quietWaitS, baseline: values.baseline, profile: values.profile === true, json: values.json, logLevel: values['log-level'] ?? 'info' }
}

function machine () {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30 * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version
  }
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function fixed (value, digits = 1) {
  return value === null ? '–' : value.toFixed(digits)
}
