// Tests that need a program from a system package (nginx, chromium, redis-server).
// On a developer machine without it, the test is skipped with one line saying what to
// install; where REQUIRE_SYSTEM_PACKAGES names it (CI: `.ci/run` installs the packages
// and sets it), a missing program fails the test instead, so CI can never skip it.

import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import type { Test } from 'tap'

export interface SystemProgram {
  /** The executable's name, e.g. `nginx`. */
  name: string
  /** The Debian package that provides it. */
  aptPackage: string
  /** Extra directories to look in beyond PATH (e.g. /usr/sbin, which a user's PATH may lack). */
  extraDirs?: string[]
}

export const NGINX: SystemProgram = { name: 'nginx', aptPackage: 'nginx', extraDirs: ['/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin'] }
export const CHROMIUM: SystemProgram = { name: 'chromium', aptPackage: 'chromium' }
export const REDIS_SERVER: SystemProgram = { name: 'redis-server', aptPackage: 'redis-server', extraDirs: ['/usr/sbin'] }

/** The program's path, or undefined when it is not installed. */
export function findProgram (program: SystemProgram): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...(program.extraDirs ?? [])]
  for (const dir of dirs) {
    const bin = join(dir, program.name)
    try {
      accessSync(bin, constants.X_OK)
      return bin
    } catch {}
  }
  return undefined
}

/** Whether CI (or the developer) demands this program: `REQUIRE_SYSTEM_PACKAGES=nginx,chromium` or `all`. */
export function isRequired (program: SystemProgram, env: Record<string, string | undefined> = process.env): boolean {
  const wanted = (env.REQUIRE_SYSTEM_PACKAGES ?? '').split(',').map((name) => name.trim())
  return wanted.includes('all') || wanted.includes(program.name) || wanted.includes(program.aptPackage)
}

/**
 * The program's path, or undefined after skipping the test (developer machine) or failing
 * it (required): the caller returns at once on undefined.
 */
export function requireProgram (t: Pick<Test, 'skip' | 'fail'>, program: SystemProgram): string | undefined {
  const bin = findProgram(program)
  if (bin !== undefined) return bin
  const install = `install the Debian package \`${program.aptPackage}\` (apt-get install ${program.aptPackage}) to run it`
  if (isRequired(program)) t.fail(`${program.name} is not installed but REQUIRE_SYSTEM_PACKAGES names it: ${install}`)
  else t.skip(`${program.name} is not installed: ${install}`, () => undefined)
  return undefined
}
