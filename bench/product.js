// The product's modules as the benchmark loads them: from the build (`npm run bench`
// builds dist/ first), from another build (BENCH_DIST=path, to compare two versions
// of the code on the same machine; keep it inside the repository so its imports
// resolve to node_modules/), or, with BENCH_FROM_SOURCE=1, from the TypeScript
// sources. The latter needs a TypeScript loader in the process's execArgv: the smoke
// test runs under tap, whose loader the benchmark's child processes inherit.

import { pathToFileURL } from 'node:url'

const fromSource = process.env.BENCH_FROM_SOURCE === '1'
const dist = process.env.BENCH_DIST === undefined ? new URL('../dist/', import.meta.url) : pathToFileURL(process.env.BENCH_DIST.replace(/\/?$/, '/'))

/** `name` is a path from the repository root without extension, e.g. 'lib/simulator/index'. */
export function importProduct (name) {
  return import(fromSource ? new URL(`../${name}.ts`, import.meta.url).href : new URL(`${name}.js`, dist).href)
}
