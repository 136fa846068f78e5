// Every Error and Warning code the proxy sends is in the table of docs/protocol.md (§5)
// and the README's "Bad client input" section, as the kind it is sent as: Deepgram's
// clients treat every Error as the end of the session, so whether a code is an Error or a
// Warning is part of the contract. A code added to lib/protocol/deepgram.ts and not to the
// tables (or listed as the other kind) fails here.

import { readFileSync } from 'node:fs'
import t from 'tap'
import { ErrorCode, WarningCode } from '../lib/protocol/deepgram.js'

const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')

/** The code table's rows: each code named in the first cell, with the kind of the second. */
function table (text: string, heading: string): Array<{ codes: string[], kind: string }> {
  const start = text.indexOf(heading)
  const lines = start < 0 ? [] : text.slice(start).split('\n').slice(1)
  const rows = lines.slice(lines.findIndex((line) => line.startsWith('| code |')) + 2)
  return rows.slice(0, rows.findIndex((line) => !line.startsWith('|'))).map((line) => {
    const [first = '', second = ''] = line.split(' | ')
    return { codes: [...first.matchAll(/`([A-Z_]+)`/g)].map((match) => match[1] as string), kind: second.trim().split(' ')[0] ?? '' }
  })
}

for (const [path, heading] of [['docs/protocol.md', '## 5. Errors and Warnings'], ['README.md', '#### Bad client input']] as const) {
  t.test(`${path}: every code, as the kind it is sent as`, async (t) => {
    const rows = table(read(path), heading)
    t.ok(rows.length > 20, `${path} has the table under "${heading}"`)
    const listed = (code: string, kind: string): boolean => rows.some((row) => row.kind === kind && row.codes.includes(code))
    for (const code of Object.values(WarningCode)) t.ok(listed(code, 'Warning'), `Warning ${code}`)
    for (const code of Object.values(ErrorCode)) t.ok(listed(code, 'Error'), `Error ${code}`)
    for (const row of rows) for (const code of row.codes) t.ok((Object.values(ErrorCode) as string[]).includes(code) || (Object.values(WarningCode) as string[]).includes(code), `${code} is a code of lib/protocol/deepgram.ts`)
  })
}
