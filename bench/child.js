// The IPC between the benchmark and every process it measures (simulator, proxy,
// bare relay). The child says when it is ready, answers samples of its own CPU time,
// syscalls and memory (after a full GC when asked, so idle-session memory is not
// garbage), writes heap snapshots on request, and exits when told to, or when the
// benchmark goes away.

import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8'

/** How often the event loop's delay is sampled (a timer this often: ~100 wake-ups a second in every process). */
const LOOP_DELAY_RESOLUTION_MS = 10

/**
 * @param {object} options
 * @param {object} options.ready what to tell the parent once listening (e.g. `{ url }`)
 * @param {() => Promise<void>} options.close releases the process's servers
 * @param {(message: any) => any} [options.extra] answers other commands (e.g. the simulator's stats)
 */
export function serveParent ({ ready, close, extra }) {
  if (process.send === undefined) throw new Error('Run this through bench/run.js: it needs an IPC channel to the benchmark')
  let exiting = false
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
  loopDelay.enable()
  const exit = async () => {
    if (exiting) return
    exiting = true
    await Promise.race([close(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
    // process.exit (not a signal) so that --cpu-prof writes its profile.
    process.exit(0)
  }
  process.on('message', (message) => {
    if (message.cmd === 'exit') return exit()
    if (message.cmd === 'sample') return process.send({ id: message.id, sample: sample(message.gc === true) })
    if (message.cmd === 'snapshot') return process.send({ id: message.id, result: writeHeapSnapshot(message.file) })
    if (message.cmd === 'loopDelay') {
      process.send({ id: message.id, result: lateness(loopDelay) })
      if (message.reset === true) loopDelay.reset()
      return
    }
    if (extra !== undefined) process.send({ id: message.id, result: extra(message) })
  })
  process.on('disconnect', exit)
  process.send({ ready })
}

/**
 * How late the event loop ran a timer since the last reset, in ms (p50 / p99 / max): what
 * any callback of this process (a socket's read, so a message's trip through it) waits
 * behind the work before it. The histogram holds the whole interval, so the resolution
 * comes off.
 */
function lateness (histogram) {
  if (histogram.count === 0) return { p50: null, p99: null, max: null }
  const late = (ns) => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS)
  return { p50: late(histogram.percentile(50)), p99: late(histogram.percentile(99)), max: late(histogram.max) }
}

function sample (collect) {
  if (collect && typeof globalThis.gc === 'function') {
    // Twice: the first pass can leave finalizable garbage for the second.
    globalThis.gc()
    globalThis.gc()
  }
  const { user, system } = process.cpuUsage()
  const memory = process.memoryUsage()
  return { cpuMs: (user + system) / 1000, userMs: user / 1000, systemMs: system / 1000, ...syscalls(), rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external, arrayBuffers: memory.arrayBuffers, youngGeneration: youngGeneration() }
}

/**
 * Bytes of memory V8's young generation holds: its size follows the allocation rate (it
 * grows up to 16 MB per semi-space in steps), not what the process keeps.
 */
function youngGeneration () {
  let bytes = 0
  for (const space of getHeapSpaceStatistics()) if (space.space_name === 'new_space' || space.space_name === 'new_large_object_space') bytes += space.physical_space_size
  return bytes
}

/** Read and write syscalls so far, from /proc/self/io (Linux); null elsewhere. */
function syscalls () {
  try {
    const io = readFileSync('/proc/self/io', 'utf8')
    return { readCalls: Number(/syscr: (\d+)/.exec(io)[1]), writeCalls: Number(/syscw: (\d+)/.exec(io)[1]) }
  } catch {
    return { readCalls: null, writeCalls: null }
  }
}

const INHERITED = /^(BENCH_FROM_SOURCE|BENCH_DIST|NODE_OPTIONS|_TAPJS_.*|TAP_.*)$/

function inherited () {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => INHERITED.test(name)))
}

/** Forks a bench child with an IPC channel; resolves once it reports ready. */
export async function startChild (script, env, extraExecArgv = []) {
  const child = fork(new URL(script, import.meta.url), [], {
    // Only what the bench sets, plus what says where the product's modules come from
    // (and, under tap, its loader's coverage settings).
    env: { ...inherited(), ...env },
    execArgv: [...process.execArgv, '--expose-gc', ...extraExecArgv],
    // The proxy's JSON log lines go nowhere; a crash still shows on stderr.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  const pending = new Map()
  let nextId = 0
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const ready = await new Promise((resolve, reject) => {
    const onExit = (code) => reject(new Error(`bench/${script} exited (${code}) before it was ready`))
    child.once('exit', onExit)
    child.once('message', (message) => {
      child.off('exit', onExit)
      resolve(message.ready)
    })
  })
  child.on('message', (message) => {
    const answer = pending.get(message.id)
    if (answer === undefined) return
    pending.delete(message.id)
    answer(message.sample ?? message.result)
  })
  const request = (command) => new Promise((resolve, reject) => {
    if (!child.connected) return reject(new Error(`bench/${script} is gone`))
    const id = ++nextId
    pending.set(id, resolve)
    child.send({ ...command, id })
  })
  return {
    ready,
    request,
    sample: (gc = false) => request({ cmd: 'sample', gc }),
    async exit () {
      if (child.exitCode === null && child.connected) child.send({ cmd: 'exit' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
  }
}
