// Summarizes a V8 .cpuprofile (from `node --cpu-prof`, which `npm run bench -- --profile`
// passes to the proxy): the functions with the most self time, and the share of
// time spent under each of the proxy's own hot-path functions (inclusive).
//
//   node bench/profile.js bench/results/profiles/CPU.….cpuprofile

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const TOP = 25

export function summarizeProfile (profile) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  // Time the process sat idle is not cost: shares are of the busy samples.
  const busy = profile.nodes.filter((node) => node.callFrame.functionName !== '(idle)')
  const total = busy.reduce((sum, node) => sum + node.hitCount, 0)
  const self = new Map()
  const inclusive = new Map()
  for (const node of busy) {
    if (node.hitCount === 0) continue
    const key = label(node.callFrame)
    self.set(key, (self.get(key) ?? 0) + node.hitCount)
    // Each sample counts once per distinct function on its stack.
    const seen = new Set()
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const frameKey = label(nodes.get(id).callFrame)
      if (seen.has(frameKey)) continue
      seen.add(frameKey)
      inclusive.set(frameKey, (inclusive.get(frameKey) ?? 0) + node.hitCount)
    }
  }
  const share = (hits) => `${(hits / total * 100).toFixed(1).padStart(5)} %`
  const lines = [`${total} busy samples; self time:`]
  for (const [key, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) lines.push(`  ${share(hits)}  ${key}`)
  lines.push('inclusive time under the proxy\'s own functions (lib/, plugins/, app):')
  const own = [...inclusive].filter(([key]) => /\/(lib|plugins)\/|\/app\.[jt]s/.test(key) && !key.includes('node_modules'))
  for (const [key, hits] of own.sort((a, b) => b[1] - a[1]).slice(0, TOP)) lines.push(`  ${share(hits)}  ${key}`)
  return lines.join('\n')
}

function label ({ functionName, url, lineNumber }) {
  const file = url === '' ? '' : ` ${url.replace(/^file:\/\/.*?\/(node_modules|dist|lib|plugins)\//, '$1/').replace(/^node:/, 'node:')}:${lineNumber + 1}`
  return `${functionName === '' ? '(anonymous)' : functionName}${file}`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of process.argv.slice(2)) {
    process.stdout.write(`${file}\n${summarizeProfile(JSON.parse(readFileSync(file, 'utf8')))}\n`)
  }
}
