// Runs the benchmark (bench/run.js) from the TypeScript sources, as the smoke tests do:
// the children inherit tap's loader, and the benchmark's scripts stay out of the coverage floors.

import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const BENCH = fileURLToPath(new URL('../../bench/', import.meta.url))
const RUN = join(BENCH, 'run.js')

/** Runs bench/run.js from the sources with `args`; resolves with its stdout. */
export async function runBench (args: string[], timeoutMs = 90_000): Promise<string> {
  // The benchmark's scripts are tooling, not the product: keep them out of the coverage
  // floors (tap's processinfo reads this list in every process it follows).
  const benchScripts = (await readdir(BENCH)).filter((name) => name.endsWith('.js')).map((name) => join(BENCH, name))
  const coverageExcluded = [process.env._TAPJS_PROCESSINFO_COV_EXCLUDE_FILES_ ?? '', ...benchScripts].join('\n')
  const { stdout } = await new Promise<{ stdout: string, stderr: string }>((resolve, reject) => {
    execFile(process.execPath, [...process.execArgv, RUN, ...args], {
      env: { ...process.env, BENCH_FROM_SOURCE: '1', _TAPJS_PROCESSINFO_COV_EXCLUDE_FILES_: coverageExcluded },
      timeout: timeoutMs
    }, (error, stdout, stderr) => error === null ? resolve({ stdout, stderr }) : reject(new Error(`${error.message}\n${stderr}`)))
  })
  return stdout
}
