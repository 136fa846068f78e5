// Where an idle configured session's memory goes: starts the simulator and a hop
// like bench/run.js does, takes a heap snapshot of the hop with N/2 and with N idle
// configured sessions, and prints what the second half added per session, by kind
// of object (V8 heap only; sockets' native memory shows in RSS, not here).
//
//   npm run build && node bench/heap.js [--sessions 200] [--target proxy|relay]

import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startChild } from './child.js'
import { establish } from './loadgen.js'

const TOP = 30

const { values } = parseArgs({ options: { sessions: { type: 'string', short: 'n' }, target: { type: 'string' } } })
const count = Number(values.sessions ?? 200)
const target = values.target ?? 'proxy'

const simulator = await startChild('simulator.js', {})
const env = { ...process.env }
delete env.OPENAI_API_KEY
const hop = await startChild(target === 'relay' ? 'relay.js' : 'proxy.js', target === 'relay'
  ? { ...env, BENCH_UPSTREAM_URL: simulator.ready.url }
  : { ...env, PORT: '0', HOST: '127.0.0.1', OPENAI_REALTIME_URL: simulator.ready.url, PROXY_AUTH_TOKENS: '' })
try {
  const warm = await establish(hop.ready.url, 5)
  await Promise.all(warm.sessions.map((session) => session.close()))
  const first = await establish(hop.ready.url, Math.floor(count / 2))
  const before = await snapshot('before')
  const second = await establish(hop.ready.url, count - first.sessions.length)
  const after = await snapshot('after')
  const added = second.sessions.length
  const diff = new Map(after)
  for (const [key, { size, count }] of before) {
    const entry = diff.get(key) ?? { size: 0, count: 0 }
    diff.set(key, { size: entry.size - size, count: entry.count - count })
  }
  const rows = [...diff].sort((a, b) => b[1].size - a[1].size)
  const total = rows.reduce((sum, [, { size }]) => sum + size, 0)
  process.stdout.write(`${target}: ${added} more idle configured sessions added ${(total / added / 1024).toFixed(1)} KB of V8 heap each (self sizes):\n`)
  for (const [key, { size, count }] of rows.slice(0, TOP)) {
    process.stdout.write(`  ${(size / added).toFixed(0).padStart(7)} B  ${(count / added).toFixed(1).padStart(6)} ×  ${key}\n`)
  }
  await Promise.all([...first.sessions, ...second.sessions].map((session) => session.close()))
} finally {
  await hop.exit()
  await simulator.exit()
}

/** Self size and count of the hop's heap objects, by node type and name (the constructor, for objects). */
async function snapshot (name) {
  await hop.sample(true)
  const file = await hop.request({ cmd: 'snapshot', file: join(tmpdir(), `bench-heap-${process.pid}-${name}.heapsnapshot`) })
  const { snapshot: { meta }, nodes, strings } = JSON.parse(readFileSync(file, 'utf8'))
  rmSync(file)
  const fields = meta.node_fields
  const types = meta.node_types[0]
  const at = { type: fields.indexOf('type'), name: fields.indexOf('name'), size: fields.indexOf('self_size') }
  const byKind = new Map()
  for (let i = 0; i < nodes.length; i += fields.length) {
    const type = types[nodes[i + at.type]]
    const label = type === 'object' || type === 'closure' || type === 'native' ? `${type} ${strings[nodes[i + at.name]]}` : type
    const entry = byKind.get(label) ?? { size: 0, count: 0 }
    entry.size += nodes[i + at.size]
    entry.count += 1
    byKind.set(label, entry)
  }
  return byKind
}
