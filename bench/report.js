// Turns bench/run.js results into the Markdown that the README's "Performance" section shows:
// one row per hop and N, a ratio row (proxy ÷ relay), the capacity of each hop and
// the issue #15 targets, each marked met or not.

const CAPACITY_P99_MS = 50
const TARGETS = {
  cpuRatio: 1.0,
  p99Ratio: 1.5,
  p99SmallMs: 5,
  p99SlackMs: 2,
  idleKB: 15
}

function machineLine ({ machine }) {
  return `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}, Node ${machine.node}; ` +
    'load generator, simulator and hop on the same machine.'
}

export function markdownReport (results) {
  const { load } = results
  const lines = [
    machineLine(results),
    `Load per session: full duplex, one ${load.frameMs} ms PCM16 frame (${load.frameBytes} B, ${load.sampleRate / 1000} kHz) each way every ${load.frameMs} ms; ` +
      `${load.durationS} s measured per run after a ${load.warmupS} s warm-up at full load` +
      (load.repeat > 1 ? `, ${load.repeat} runs per row (medians; failure counts: the worst run)` : '') + `; proxy LOG_LEVEL=${load.proxyLogLevel}.` +
      (load.baseline === null ? '' : ` Hop "baseline": the proxy built in ${load.baseline}.`),
    'Latency: ↑ client → hop → simulator, ↓ simulator → hop → client, in ms (p50 / p95 / p99 / max). CPU: the hop process, % of one core. ' +
      'Idle KB/session: (hop RSS with the N sessions configured and idle − before) / N, after a full GC; the heap grows in steps of ' +
      'hundreds of KB, so this is rough below a few hundred sessions (the at-scale figure below is the one to go by).',
    '',
    '| N | hop | up | lost | ↑ latency | ↓ latency | CPU % | peak RSS MB | idle KB/session |',
    '|---:|---|---:|---:|---|---|---:|---:|---:|'
  ]
  for (const count of unique(results.runs.map((run) => run.sessions))) {
    const relay = results.runs.find((run) => run.sessions === count && run.target === 'relay')
    const baseline = results.runs.find((run) => run.sessions === count && run.target === 'baseline')
    const proxy = results.runs.find((run) => run.sessions === count && run.target === 'proxy')
    for (const run of [relay, baseline, proxy]) {
      if (run === undefined) continue
      lines.push(`| ${count} | ${run.target} | ${run.established}/${count} | ${run.frames.lost} | ${latency(run.upstream)} | ${latency(run.downstream)} | ` +
        `${fixed(run.cpu.hop, 1)} | ${fixed(run.memory.peakRss / 2 ** 20, 1)} | ${kb(run.memory.idlePerSession)} |`)
    }
    if (relay !== undefined && proxy !== undefined) {
      lines.push(`| ${count} | **proxy ÷ relay** | | | ${latencyRatio(proxy.upstream, relay.upstream)} | ${latencyRatio(proxy.downstream, relay.downstream)} | ` +
        `**${ratio(proxy.cpu.hop, relay.cpu.hop)}** | ${ratio(proxy.memory.peakRss, relay.memory.peakRss)} | ${ratio(proxy.memory.idlePerSession, relay.memory.idlePerSession)} |`)
    }
    if (baseline !== undefined && proxy !== undefined) {
      lines.push(`| ${count} | proxy ÷ baseline | | | ${latencyRatio(proxy.upstream, baseline.upstream)} | ${latencyRatio(proxy.downstream, baseline.downstream)} | ` +
        `${ratio(proxy.cpu.hop, baseline.cpu.hop)} | ${ratio(proxy.memory.peakRss, baseline.memory.peakRss)} | ${ratio(proxy.memory.idlePerSession, baseline.memory.idlePerSession)} |`)
    }
  }
  lines.push('', ...idleMemory(results.idle ?? []), '', ...capacity(results.runs), '', ...targets(results.runs, results.idle ?? []), '', ...context(results.runs), '')
  return lines.join('\n')
}

function idleMemory (idle) {
  if (idle.length === 0) return ['Idle memory at scale: skipped (--idle-sessions 0).']
  const relay = idle.find((entry) => entry.target === 'relay')
  const lines = [
    `Idle configured sessions at scale (${idle[0].sessions} opened in steps; growth after a full GC from the first step to the last, per session). ` +
      'RSS beyond the young generation leaves out V8\'s young generation, which V8 sizes by the allocation rate (up to 16 MB a semi-space, per process), not by what is kept; ' +
      'its growth during the measurement is shown on its own:',
    '',
    '| hop | RSS KB/session, beyond the young generation | RSS KB/session, all | young generation growth MB | V8 heap + external KB/session | RSS beyond the young generation ÷ relay |',
    '|---|---:|---:|---:|---:|---:|'
  ]
  for (const entry of idle) {
    lines.push(`| ${entry.target} | ${kb(entry.retainedRssPerSession)} | ${kb(entry.rssPerSession)} | ${fixed(entry.youngGenerationGrowth / 2 ** 20, 1)} | ${kb(entry.heapPerSession)} | ` +
      `${relay === undefined ? '–' : ratio(entry.retainedRssPerSession, relay.retainedRssPerSession)} |`)
  }
  return lines
}

function capacity (runs) {
  const lines = [`Capacity (largest N with p99 < ${CAPACITY_P99_MS} ms both ways, every session up, no frame lost):`]
  for (const target of unique(runs.map((run) => run.target))) {
    const best = capacityOf(runs, target)
    const tried = Math.max(...runs.filter((run) => run.target === target).map((run) => run.sessions))
    lines.push(`- ${target}: ${best === 0 ? 'none of the N tried' : `${best}`}${best === tried ? ' (the largest N tried)' : ''}`)
  }
  return lines
}

/** The largest N a hop handled with p99 < CAPACITY_P99_MS both ways, every session up, nothing lost (0: none). */
function capacityOf (runs, target) {
  const ok = runs.filter((run) => run.target === target && healthy(run) &&
    Math.max(run.upstream.p99 ?? Infinity, run.downstream.p99 ?? Infinity) < CAPACITY_P99_MS)
  return Math.max(0, ...ok.map((run) => run.sessions))
}

function targets (runs, idle) {
  const lines = ['Targets (issue #15), proxy against the relay of the same run:']
  const pairs = unique(runs.map((run) => run.sessions)).map((count) => ({
    count,
    relay: runs.find((run) => run.sessions === count && run.target === 'relay'),
    proxy: runs.find((run) => run.sessions === count && run.target === 'proxy')
  })).filter((pair) => pair.relay !== undefined && pair.proxy !== undefined)
  if (pairs.length === 0) return [...lines, '- (needs both hops)']
  const mark = (ok) => ok ? '✅' : '❌'

  const cpu = pairs.map(({ count, relay, proxy }) => `${count}: ${ratio(proxy.cpu.hop, relay.cpu.hop)}`)
  lines.push(`- ${mark(pairs.every(({ relay, proxy }) => proxy.cpu.hop <= TARGETS.cpuRatio * relay.cpu.hop))} CPU ≤ ${TARGETS.cpuRatio.toFixed(1)}× the relay's at every N (${cpu.join(', ')})`)

  for (const [way, arrow] of [['upstream', '↑'], ['downstream', '↓']]) {
    const checks = pairs.map(({ count, relay, proxy }) => {
      const ok = p99Within(proxy[way].p99, relay[way].p99)
      return { ok, text: `${count}: ${fixed(proxy[way].p99, 1)} ms against ${fixed(relay[way].p99, 1)}` }
    })
    lines.push(`- ${mark(checks.every((check) => check.ok))} p99 ${arrow} ≤ ${TARGETS.p99Ratio}× the relay's, or within ${TARGETS.p99SlackMs} ms of it where both are under ${TARGETS.p99SmallMs} ms (${checks.map((check) => check.text).join(', ')})`)
  }

  const capacities = { proxy: capacityOf(runs, 'proxy'), relay: capacityOf(runs, 'relay') }
  lines.push(`- ${mark(capacities.proxy >= capacities.relay)} capacity ≥ the relay's (proxy ${capacities.proxy}, relay ${capacities.relay}, of the N tried)`)

  const atScale = { proxy: idle.find((entry) => entry.target === 'proxy'), relay: idle.find((entry) => entry.target === 'relay') }
  if (atScale.proxy !== undefined) {
    const rss = atScale.proxy.retainedRssPerSession
    lines.push(`- ${mark(rss <= TARGETS.idleKB * 1024)} idle configured session ≤ ${TARGETS.idleKB} KB RSS (${kb(rss)} KB beyond V8's young generation, ${kb(atScale.proxy.rssPerSession)} KB with it; ` +
      `V8 heap + external ${kb(atScale.proxy.heapPerSession)} KB, over ${atScale.proxy.sessions} sessions; relay ${kb(atScale.relay?.retainedRssPerSession)} KB, ${kb(atScale.relay?.rssPerSession)} KB with it)`)
  } else {
    const widest = pairs[pairs.length - 1]
    const rss = widest.proxy.memory.idlePerSession
    lines.push(`- ${mark(rss !== null && rss <= TARGETS.idleKB * 1024)} idle configured session ≤ ${TARGETS.idleKB} KB RSS (${kb(rss)} KB at N=${widest.count}, a small sample; relay ${kb(widest.relay.memory.idlePerSession)} KB)`)
  }
  return lines
}

/** The issue's latency rule: within the ratio, or, where both are small, within a few ms. */
function p99Within (proxy, relay) {
  if (proxy === null || relay === null) return false
  if (proxy <= TARGETS.p99Ratio * relay) return true
  return proxy < TARGETS.p99SmallMs && relay < TARGETS.p99SmallMs && proxy - relay <= TARGETS.p99SlackMs
}

/** The rest of the machine, and anything that would cast doubt on a row. */
function context (runs) {
  const lines = [
    '| N | hop | hop CPU µs / frame | hop user / system CPU % | hop writes / frame | hop reads / frame | simulator CPU % | load generator CPU % | other processes CPU % | send lag p99 / max ms | hop loop late p99 / max ms | idle heap KB/session | notes |',
    '|---:|---|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|'
  ]
  for (const run of runs) {
    const notes = []
    const { frames } = run
    if (frames.duplicates + frames.corrupt + frames.unstamped + frames.strayBytes > 0) {
      notes.push(`frames: ${frames.duplicates} duplicate, ${frames.corrupt} corrupt, ${frames.unstamped} unstamped, ${frames.strayBytes} stray bytes`)
    }
    if (run.dropped > 0) notes.push(`${run.dropped} sessions closed while streaming`)
    if (Object.keys(run.failures).length > 0) notes.push(`failed: ${Object.entries(run.failures).map(([reason, n]) => `${n}× ${reason}`).join('; ')}`)
    const messages = Object.entries(run.messages).filter(([type]) => type !== 'AgentStartedSpeaking')
    if (messages.length > 0) notes.push(`messages: ${messages.map(([type, n]) => `${n}× ${type}`).join(', ')}`)
    const violations = Object.entries(run.violations).filter(([, n]) => n > 0)
    if (violations.length > 0) notes.push(`simulator violations: ${violations.map(([kind, n]) => `${n}× ${kind}`).join(', ')}`)
    lines.push(`| ${run.sessions} | ${run.target} | ${fixed(run.perFrame.cpuUs, 1)} | ${fixed(run.cpu.hopUser, 1)} / ${fixed(run.cpu.hopSystem, 1)} | ${fixed(run.perFrame.writeCalls, 2)} | ${fixed(run.perFrame.readCalls, 2)} | ${fixed(run.cpu.simulator, 1)} | ${fixed(run.cpu.loadgen, 1)} | ${fixed(run.cpu.background, 1)} | ${fixed(run.sendLag.p99, 1)} / ${fixed(run.sendLag.max, 1)} | ${fixed(run.loopDelay?.p99, 2)} / ${fixed(run.loopDelay?.max, 1)} | ` +
      `${kb(run.memory.idleHeapPerSession)} | ${notes.join('; ')} |`)
  }
  return lines
}

function healthy (run) {
  return run.established === run.sessions && run.frames.lost === 0 && run.dropped === 0
}

function latency (summary) {
  return [summary.p50, summary.p95, summary.p99, summary.max].map((value) => fixed(value, 1)).join(' / ')
}

function latencyRatio (proxy, relay) {
  return ['p50', 'p95', 'p99', 'max'].map((key) => ratio(proxy[key], relay[key])).join(' / ')
}

function ratio (a, b) {
  if (a === null || b === null || a === undefined || b === undefined || b === 0) return '–'
  return `${(a / b).toFixed(2)}×`
}

function kb (bytes) {
  return bytes === null || bytes === undefined ? '–' : (bytes / 1024).toFixed(1)
}

function fixed (value, digits) {
  return value === null || value === undefined ? '–' : value.toFixed(digits)
}

function unique (values) {
  return [...new Set(values)]
}

/** The Markdown of `npm run bench -- --conversation` (bench/conversation-run.js). */
export function conversationReport (results, argv) {
  const { load } = results
  const lines = [
    `Command: \`node bench/run.js ${argv.join(' ')}\``,
    machineLine(results),
    `Load per session: the microphone streamed (one ${load.frameMs} ms PCM16 frame every ${load.frameMs} ms, silence but for barge-ins) and one turn every ` +
      `${load.turnIntervalS} s, cycling say, call (function call round trip), say, barge (200 ms of loud audio as the answer starts), prompt (UpdatePrompt); ` +
      `answers are 1 s of audio at real-time pace. ${load.durationS} s of audio only, then ${load.durationS} s of turns measured; proxy LOG_LEVEL=${load.proxyLogLevel}.` +
      (load.repeat > 1 ? ` Each row: the median of ${load.repeat} runs per hop, hops taking turns (counts of failures, timeouts and warnings: the worst run's).` : ''),
    'CPU (and write syscalls) per turn: (hop CPU with turns − audio only) ÷ turns finished. Latency added per protocol message, in ms (p50 / p99 / max, count): ' +
      '↑ client message sent → its upstream event received by the simulator; ↓ upstream event sent by the simulator → client message received. ' +
      'Both include two loopback hops and the two ends\' own dispatch, the same for both hops. ' +
      'Hop loop late: how late the hop\'s event loop ran a 10 ms timer during the turns, in ms: the wait a message has in the hop before its turn, whatever the other processes do.',
    '',
    '| N | hop | up | turns (timed out) | CPU % audio only | CPU % with turns | CPU ms per turn | writes per turn | hop loop late p99 / max | ↑ all | ↓ all |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|'
  ]
  for (const run of results.runs) {
    lines.push(`| ${run.sessions} | ${run.target} | ${run.established}/${run.sessions} | ${run.turns.started} (${sumOf(run.turns.timedOut)}) | ${fixed(run.cpu.audioOnly, 1)} | ` +
      `${fixed(run.cpu.withTurns, 1)} | **${fixed(run.cpu.perTurnMs, 2)}** | ${fixed(run.writesPerTurn, 1)} | ${fixed(run.loopDelay?.withTurns?.p99, 2)} / ${fixed(run.loopDelay?.withTurns?.max, 1)} | ${trip(run.latency.upAll)} | ${trip(run.latency.downAll)} |`)
  }
  lines.push('', 'Per message (↑ by the client message, ↓ by the client message it becomes):', '',
    '| N | hop | message | ↑ / ↓ | p50 | p99 | max | count |', '|---:|---|---|---|---:|---:|---:|---:|')
  for (const run of results.runs) {
    for (const [direction, table] of [['↑', run.latency.up], ['↓', run.latency.down]]) {
      for (const [kind, s] of Object.entries(table)) {
        lines.push(`| ${run.sessions} | ${run.target} | ${kind} | ${direction} | ${fixed(s.p50, 2)} | ${fixed(s.p99, 2)} | ${fixed(s.max, 2)} | ${s.count} |`)
      }
    }
  }
  const odd = results.runs.filter((run) => Object.values(run.violations ?? {}).some((n) => n !== 0) || Object.keys(run.warnings).length > 0)
  for (const run of odd) lines.push('', `${run.target} × ${run.sessions}: warnings ${JSON.stringify(run.warnings)}, simulator violations ${JSON.stringify(run.violations)}`)
  if (results.long !== null && results.long !== undefined) {
    const { long } = results
    lines.push('', `Long sessions (proxy): ${long.sessions} sessions, ${long.turnsPerSession} turns each back to back (answers of 120 ms of audio; ` +
      `${long.elapsedS.toFixed(0)} s), V8 heap + external after a full GC, growth per session since the first round of turns ` +
      '(the record keeps at most 200 entries and 48,000 characters: it is full after ≈ 90 of these turns):', '',
    '| turns per session | heap KB per session |', '|---:|---:|')
    for (const block of long.blocks) lines.push(`| ${block.turns} | ${kb(block.heapPerSession)} |`)
    lines.push('', `Turns finished ${sumOf(long.done)}, timed out ${sumOf(long.timedOut)}; sessions still open ${long.open}/${long.sessions}, Errors ${long.errors}, warnings ${JSON.stringify(long.warnings)}. ` +
      'The proxy ran with MAX_CLIENT_MESSAGES_PER_SECOND=0: back-to-back turns exceed its 100 messages/s.')
  }
  if ((results.renewals ?? []).length > 0) {
    lines.push('', 'Upstream renewals (proxy, a turn every 300 ms per session, microphone streaming), from the simulator: old upstream gone (its close sent or received) → new upstream open → its first audio, ms:', '',
      '| kind | renewals | closes | gone → open p50 / p99 | gone → first audio p50 / p99 | client Warnings | sessions open at the end |', '|---|---:|---|---|---|---|---:|')
    for (const r of results.renewals) {
      const what = r.kind === 'planned' ? `planned (UPSTREAM_RENEW_AFTER_MS=${r.renewAfterMs})` : `max duration (simulator maxSessionMs=${r.maxSessionMs}, 1001)`
      lines.push(`| ${what} | ${r.gaps.count} | ${Object.entries(r.gaps.closes).map(([close, n]) => `${close}: ${n}`).join(', ')} | ` +
        `${fixed(r.goneToOpen.p50, 1)} / ${fixed(r.goneToOpen.p99, 1)} | ${fixed(r.goneToAudio.p50, 1)} / ${fixed(r.goneToAudio.p99, 1)} | ${JSON.stringify(r.warnings)} | ${r.open}/${r.sessions} |`)
    }
  }
  lines.push('')
  return lines.join('\n')
}

function trip (s) {
  return s === undefined || s.count === 0 ? '–' : `${fixed(s.p50, 2)} / ${fixed(s.p99, 2)} / ${fixed(s.max, 2)} (${s.count})`
}

function sumOf (table) {
  return Object.values(table ?? {}).reduce((total, n) => total + n, 0)
}
