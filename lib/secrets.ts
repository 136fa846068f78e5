// Comparing presented secrets (client tokens, the admin token) without leaking them
// through timing: both sides are hashed first, so even their lengths stay private.

import { createHash, timingSafeEqual } from 'node:crypto'

export function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** Whether `presented` is one of the secrets whose digests are given; every digest is compared, whatever matches. */
export function matchesAny (presented: string, digests: readonly Buffer[]): boolean {
  const candidate = digest(presented)
  return digests.reduce((ok, expected) => timingSafeEqual(expected, candidate) || ok, false)
}
