// lib/limits.ts: the one table of limits, and the README's Limits table held to it. A
// limit added, renamed or re-bounded in the table and not in the README (or the other
// way round) fails here.

import { readFileSync } from 'node:fs'
import t from 'tap'
import { LIMITS, LIMIT_DEFAULTS, PLUGIN_LIMITS, formatDefault, limitProblem, limitsFromEnv, readmeRow } from '../lib/limits.js'
import type { LimitSpec } from '../lib/limits.js'

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

/** The lines of a Markdown section, from its heading to the next heading of the same or a higher level. */
function section (lines: string[], heading: string, from = 0): string[] {
  const level = /^#+/.exec(heading)?.[0].length ?? 0
  const start = lines.indexOf(heading, from)
  if (start < 0) return []
  const end = lines.findIndex((line, index) => index > start && /^#+ /.test(line) && (/^#+/.exec(line)?.[0].length ?? 0) <= level)
  return lines.slice(start, end < 0 ? lines.length : end)
}

/** The first table of some lines: its header and its rows (the separator line dropped). */
function firstTable (lines: string[]): { header: string, rows: string[] } {
  const start = lines.findIndex((line) => line.startsWith('|'))
  const after = start < 0 ? [] : lines.slice(start)
  const end = after.findIndex((line) => !line.startsWith('|'))
  const table = end < 0 ? after : after.slice(0, end)
  return { header: table[0] ?? '', rows: table.slice(2) }
}

const row = (overrides: Partial<LimitSpec>): LimitSpec => ({
  option: 'someLimit', env: 'SOME_LIMIT', default: 10, min: 1, max: 100, unit: 'count', scope: 'plugin', bounds: 'things per thing', trips: 'x', metric: '', ...overrides
})

t.test('the README\'s Limits table is the table in lib/limits.ts, row for row, in order', async (t) => {
  const limits = section(section(README.split('\n'), '## Limits'), '#### Limits')
  t.ok(limits.length > 0, 'README has "## Limits" → "#### Limits"')
  const { header, rows } = firstTable(limits)
  t.equal(header, '| variable | default | what it bounds | when it trips, the client sees | metric |')
  t.same(rows, LIMITS.map(readmeRow), 'regenerate the README rows from readmeRow(row) for every row of LIMITS')
})

t.test('the table itself: unique names, the variable is the option in capitals, the default within the bounds', async (t) => {
  t.equal(new Set(LIMITS.map((r) => r.option)).size, LIMITS.length, 'options unique')
  t.equal(new Set(LIMITS.map((r) => r.env)).size, LIMITS.length, 'variables unique')
  for (const limit of LIMITS as readonly LimitSpec[]) {
    t.equal(limit.env, limit.option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase(), `${limit.option} ↔ ${limit.env}`)
    t.ok(Number.isInteger(limit.default) && limit.min <= limit.default && limit.default <= limit.max, `${limit.env}: ${limit.min} ≤ ${limit.default} ≤ ${limit.max}`)
    if (limit.zeroIsOff === true) t.equal(limit.min, 0, `${limit.env}: 0 = off is within its bounds`)
    t.equal(LIMIT_DEFAULTS[limit.option as keyof typeof LIMIT_DEFAULTS], limit.default)
  }
  t.same(PLUGIN_LIMITS.map((r) => r.option), LIMITS.filter((r) => r.scope === 'plugin').map((r) => r.option))
  t.notOk((PLUGIN_LIMITS as readonly LimitSpec[]).some((r) => r.option === 'drainTimeoutMs'), 'the drain is the server\'s, not a plugin option')
  t.ok(LIMITS.some((r) => r.env === 'MAX_HELD_MESSAGES'), 'the held-message bound is a limit like the others')
})

t.test('formatDefault: the raw number, then MiB or KiB for bytes, and "0 = off"', async (t) => {
  t.equal(formatDefault(row({ default: 1000 })), '`1000`')
  t.equal(formatDefault(row({ default: 1048576, unit: 'bytes' })), '`1048576` (1 MiB)')
  t.equal(formatDefault(row({ default: 67108864, unit: 'bytes' })), '`67108864` (64 MiB)')
  t.equal(formatDefault(row({ default: 65536, unit: 'bytes' })), '`65536` (64 KiB)')
  t.equal(formatDefault(row({ default: 1536, unit: 'bytes' })), '`1536` (1.5 KiB)')
  t.equal(formatDefault(row({ default: 1023, unit: 'bytes' })), '`1023`', 'under 1 KiB: bytes only')
  t.equal(formatDefault(row({ default: 1024, unit: 'bytes' })), '`1024` (1 KiB)')
  t.equal(formatDefault(row({ default: 100, min: 0, zeroIsOff: true })), '`100` (`0` = off)')
  t.equal(formatDefault(row({ default: 2097152, min: 0, unit: 'bytes', zeroIsOff: true })), '`2097152` (2 MiB; `0` = off)')
  t.equal(formatDefault(row({ default: 15000, unit: 'ms' })), '`15000`', 'ms are shown as they are set')
})

t.test('readmeRow: variable, default, bounds, trips, metric', async (t) => {
  t.equal(readmeRow(row({ trips: '`Error`', metric: '`m_total`' })), '| `SOME_LIMIT` | `10` | things per thing | `Error` | `m_total` |')
  t.equal(readmeRow(row({})), '| `SOME_LIMIT` | `10` | things per thing | x |  |')
})

t.test('limitProblem: integers within the bounds pass; anything else says what to pass', async (t) => {
  const limit = row({ min: 1, max: 100, unit: 'ms', bounds: 'how long a thing waits. More text' })
  for (const value of [1, 50, 100]) t.equal(limitProblem(limit, value), undefined, String(value))
  for (const value of [0, 101, 1.5, Number.NaN, Infinity, -Infinity, '10', null, undefined, true, [10], {}]) {
    t.equal(limitProblem(limit, value), 'an integer from 1 to 100 (ms; how long a thing waits)', JSON.stringify(value) ?? String(value))
  }
  const off = row({ min: 0, max: 10, zeroIsOff: true, bounds: 'upstream liveness: a ping every interval' })
  t.equal(limitProblem(off, 0), undefined)
  t.equal(limitProblem(off, -1), 'an integer from 0 to 10 (count, 0 = off; upstream liveness)')
  t.equal(limitProblem(row({ bounds: 'one client frame (text or binary)' }), 0), 'an integer from 1 to 100 (count; one client frame)')
})

t.test('limitsFromEnv: defaults for what is unset, numbers for what is set, a message naming the variable otherwise', async (t) => {
  const before = { ...LIMIT_DEFAULTS }
  t.same(limitsFromEnv({}), LIMIT_DEFAULTS)
  const set = limitsFromEnv({ MAX_SESSIONS: '5', UPSTREAM_PING_INTERVAL_MS: '0', UNRELATED: 'x' })
  t.equal(set.maxSessions, 5)
  t.equal(set.upstreamPingIntervalMs, 0)
  t.equal(set.maxClientFrameBytes, LIMIT_DEFAULTS.maxClientFrameBytes)
  t.same(LIMIT_DEFAULTS, before, 'the defaults are not changed by reading an environment')
  t.throws(() => limitsFromEnv({ MAX_SESSIONS: '0' }), { message: /^MAX_SESSIONS must be an integer from 1 to 1000000 .*, got "0"$/ })
  t.throws(() => limitsFromEnv({ SLOW_CLIENT_TIMEOUT_MS: '1.5' }), { message: /^SLOW_CLIENT_TIMEOUT_MS must be an integer/ })
  t.throws(() => limitsFromEnv({ MAX_SESSIONS: 'ten', SLOW_CLIENT_TIMEOUT_MS: '1.5' }), { message: /^MAX_SESSIONS/ }, 'the first bad variable in table order')
})
