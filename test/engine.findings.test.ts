// Engine behaviour found while writing docs/turn-engine.md that differs from its rules,
// kept as `todo` tests until lib/engine/engine.ts changes. Pure: the engine alone.

import t from 'tap'
import { TurnEngine } from '../lib/engine/engine.js'
import type { Command, EngineInput } from '../lib/engine/io.js'

function drive (): { step: (input: Record<string, unknown>) => Command[], engine: TurnEngine } {
  const engine = new TurnEngine({ idPrefix: 't_' })
  let at = 0
  const step = (input: Record<string, unknown>): Command[] => {
    at += 10
    return engine.step({ ...input, at } as EngineInput)
  }
  step({ type: 'settings', fields: {}, context: [] })
  step({ type: 'upstream', event: { type: 'session.updated' } })
  return { step, engine }
}

t.test('rule 7: barge-in while our response is requested but not yet created silences that response too', {
  todo: 'the engine mutes `speaking ?? activeResponseId`; a response still being created is neither, so its audio plays over the user once it exists'
}, async (t) => {
  const { step, engine } = drive()
  const [create] = step({ type: 'injectAgent', message: 'Here is the news.', behavior: 'queue' }).flatMap((c) => c.kind === 'upstream' ? [c.event] : [])
  t.equal(create?.type, 'response.create')
  step({ type: 'upstream', event: { type: 'input_audio_buffer.speech_started' } })
  step({ type: 'upstream', event: { type: 'response.created', response: { id: 'resp_1', metadata: { proxy_event_id: create?.event_id } } } })
  const heard = step({ type: 'agentAudio', responseId: 'resp_1' })
  t.same(heard.filter((c) => c.kind === 'client'), [], 'no AgentStartedSpeaking')
  t.equal(engine.audibleResponse, null, 'its audio does not play')
})
