// The repository stands on its own: the README and docs/ name only files that exist,
// nothing refers to documents outside the repository, every "rule N" cited exists in
// docs/turn-engine.md, and its table of timings is the engine's defaults.

import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { defaultEngineOptions } from '../lib/engine/engine.js'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const SKIP = new Set(['node_modules', 'dist', '.tap', '.git', 'results'])

/** The repository's own text files (sources, tests, docs, deployment files). */
function files (dir = REPO): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (SKIP.has(entry.name)) return []
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return files(path)
    return /\.(ts|js|md|ya?ml|json|template|conf)$|Dockerfile/.test(entry.name) && entry.name !== 'package-lock.json' ? [relative(REPO, path)] : []
  })
}

const read = (path: string): string => readFileSync(join(REPO, path), 'utf8')
const DOCS = ['README.md', ...readdirSync(join(REPO, 'docs')).map((name) => `docs/${name}`)]

t.test('every repository path the README and docs/ name exists', async (t) => {
  for (const doc of DOCS) {
    const text = read(doc)
    const paths = new Set<string>()
    for (const match of text.matchAll(/\b((?:lib|test|plugins|docs|docker|bench)\/[\w./-]*\w|app\.ts|server\.ts|openapi\.yaml)\b/g)) paths.add(match[1] as string)
    // Relative links inside docs/ (e.g. [turn-engine.md](turn-engine.md)).
    for (const match of text.matchAll(/\]\(([\w.-]+\.md)(?:#[\w-]+)?\)/g)) paths.add(doc.startsWith('docs/') ? `docs/${match[1] as string}` : match[1] as string)
    for (const path of paths) {
      const bare = path.replace(/\/$/, '')
      // bench/results/ is where a bench run writes (ignored by git).
      t.ok(existsSync(join(REPO, bare)) || bare.startsWith('bench/results'), `${doc} names ${bare}`)
    }
  }
})

t.test('nothing refers to documents outside the repository', async (t) => {
  const outside = /PROTOCOL\.md|INTERFACE\.md|STACK\.md|STYLE\.md|\/work\/|shared\/docs|shared\/seeds|\bseeds\//
  const own = relative(REPO, fileURLToPath(import.meta.url))
  const offending = files().filter((path) => path !== own && outside.test(read(path)))
  t.same(offending, [], 'files citing an outside document: describe it, or point to docs/')
})

t.test('every "rule N" cited in the code and tests is a rule of docs/turn-engine.md', async (t) => {
  const rules = new Set([...read('docs/turn-engine.md').matchAll(/^(\d+)\. \*\*/gm)].map((match) => Number(match[1])))
  t.same([...rules], Array.from({ length: rules.size }, (_, i) => i + 1), 'numbered 1, 2, 3, … without gaps')
  for (const path of files().filter((p) => /\.(ts|md)$/.test(p))) {
    for (const match of read(path).matchAll(/\brules? (\d+)(?: and (\d+))?/gi)) {
      for (const cited of [match[1], match[2]]) {
        if (cited !== undefined) t.ok(rules.has(Number(cited)), `${path}: rule ${cited}`)
      }
    }
  }
})

t.test('docs/turn-engine.md\'s timings are the engine\'s defaults', async (t) => {
  const table = read('docs/turn-engine.md').split('## Timings')[1] ?? ''
  const documented = Object.fromEntries([...table.matchAll(/^\| `(\w+)` \| (\d+) \|/gm)].map((match) => [match[1], Number(match[2])]))
  const { maxHeldIntents, maxPromptChars, maxQueuedResponses, renewAfterMs, reconnectAttempts, ...timings } = defaultEngineOptions
  t.same(documented, timings)
})
