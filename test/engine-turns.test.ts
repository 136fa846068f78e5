// How much of a reply the client heard (lib/engine/turns.ts): the audio time heard, and
// the words of the transcript that time covers (docs/turn-engine.md rule 7).

import t from 'tap'
import { heardAt, heardText, newTurn, withDelta, MAX_PARTIAL_CHARS } from '../lib/engine/turns.js'

t.test('heardText: the words up to the fraction, never a word cut in half', async (t) => {
  const text = 'one two three four five six seven eight nine ten'
  t.equal(heardText(text, 1), text)
  t.equal(heardText(text, 0), '')
  t.equal(heardText(text, Number.NaN), '', 'an unknown fraction is nothing heard')
  t.equal(heardText(text, 0.5), 'one two three four five', 'cut at a space')
  t.equal(heardText(text, 0.3), 'one two three', 'a cut inside "four" drops it')
  t.equal(heardText(text, 0.05), '', 'a cut inside the first word: nothing heard whole')
})

t.test('heardText: a text written without spaces is cut between characters, never inside a surrogate pair', async (t) => {
  t.equal(heardText('今日はいい天気ですね', 0.5), '今日はいい')
  t.equal(heardText('😀😀😀', 0.5), '😀', 'half of six code units falls inside the second emoji: only the first is kept')
})

t.test('heardAt: no more than the time since the first audio, nor than the audio sent', async (t) => {
  const turn = newTurn('resp_1', 0)
  t.equal(heardAt(turn, 5000), 0, 'no audio sent: nothing heard')
  turn.firstSentAt = 1000
  turn.sentMs = 3000
  t.equal(heardAt(turn, 2500), 1500)
  t.equal(heardAt(turn, 9000), 3000)
})

t.test('withDelta: deltas gathered up to MAX_PARTIAL_CHARS', async (t) => {
  t.equal(withDelta(withDelta(undefined, 'Hel'), 'lo'), 'Hello')
  t.equal(withDelta('x'.repeat(MAX_PARTIAL_CHARS), 'more').length, MAX_PARTIAL_CHARS)
})
