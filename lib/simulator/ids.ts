import { randomBytes } from 'node:crypto'

// Ids shaped like OpenAI's (`resp_…`, `item_…`, `event_…`), unique within the
// process: a random per-process tag plus a counter, so minting one is cheap
// enough for an id on every audio delta.
const processTag = randomBytes(4).toString('hex')
let minted = 0

export function newId (prefix: string): string {
  minted += 1
  return `${prefix}_${processTag}${minted.toString(36).padStart(6, '0')}`
}
