// Incidents (an earlier proxy, its issues #459 and #462): `session.update` sent while a
// response was active. That proxy forwarded every Settings at once (#459); its fix
// freed the flag on the first of `output_audio.done` / `output_text.done` and still
// sent the update before `response.done` (#462). docs/turn-engine.md rules 1 and 6: a response is active until
// its `response.done`; changes queue, merge, go out once the slot frees, and every
// change gets its acknowledgement.

import t from 'tap'
import { emptyViolations } from '../../lib/simulator/script.js'
import { BASIC_SETTINGS, configuredClient, startProxy } from '../helpers/proxy.js'

const LOOKUP = {
  name: 'lookup_order',
  description: 'Looks an order up by its number',
  parameters: { type: 'object', properties: { order: { type: 'string' } }, required: ['order'] }
}

for (const audioDoneBeforeTextDone of [true, false]) {
  const order = audioDoneBeforeTextDone ? 'output_audio.done before output_audio_transcript.done' : 'output_audio_transcript.done before output_audio.done'
  t.test(`#459/#462 session.update during an active response (${order})`, async (t) => {
    const { url, sim } = await startProxy(t, { script: { chunkIntervalMs: 30, responseDoneDelayMs: 450, audioDoneBeforeTextDone } })
    const client = await configuredClient(url)
    t.teardown(() => client.close())
    const conn = await sim.nextConnection()
    t.equal(conn.count('session.update'), 1, 'the first Settings made one session.update')

    // Evaluated synchronously when the simulator processes the deferred update.
    let slotAtUpdate: string | null | undefined
    let doneBeforeUpdate = 0
    const deferredUpdate = conn.waitFor('session.update', () => {
      slotAtUpdate = conn.activeResponseId
      doneBeforeUpdate = conn.sent.filter((e) => e.type === 'response.done').length
      return true
    })

    client.send({ type: 'InjectUserMessage', content: 'Where is my parcel?' })
    await client.next('AgentStartedSpeaking')
    // Mid-stream: a Settings change (a new prompt).
    client.send({ ...BASIC_SETTINGS, agent: { ...BASIC_SETTINGS.agent, think: { ...BASIC_SETTINGS.agent.think, prompt: 'You are a parcel tracker.' } } })
    await client.next('AgentAudioDone')
    t.ok(conn.activeResponseId !== null, 'the response is still active after output_audio.done')
    // The #462 window: both content "done" events are out, response.done is not.
    client.send({ type: 'UpdatePrompt', prompt: 'Answer in one sentence.' })
    client.send({ type: 'UpdateThink', think: { functions: [LOOKUP] } })

    const update = await deferredUpdate
    t.equal(slotAtUpdate, null, 'no response held the slot when session.update arrived')
    t.equal(doneBeforeUpdate, 1, 'session.update came after the response\'s response.done')
    t.equal(update.session.instructions, 'You are a parcel tracker.\n\nAnswer in one sentence.', 'the Settings prompt and the UpdatePrompt merged')
    t.same(update.session.tools?.map((tool: { name: string }) => tool.name), ['lookup_order'], 'the UpdateThink functions merged')

    await client.next('PromptUpdated')
    await client.next('ThinkUpdated')
    await client.until(() => client.all('SettingsApplied').length === 2, 'the second SettingsApplied')
    t.equal(conn.count('session.update'), 2, 'one merged session.update for the three changes')
    t.equal(conn.session.instructions, 'You are a parcel tracker.\n\nAnswer in one sentence.', 'the upstream session carries the merged prompt')
    const types = client.types()
    const audioDone = types.indexOf('AgentAudioDone')
    for (const [ack, at] of [['SettingsApplied', types.lastIndexOf('SettingsApplied')], ['PromptUpdated', types.indexOf('PromptUpdated')], ['ThinkUpdated', types.indexOf('ThinkUpdated')]] as const) {
      t.ok(at > audioDone, `${ack} came only once the deferred update was applied`)
    }

    // The session still works after the deferred update.
    client.send({ type: 'InjectUserMessage', content: 'And now?' })
    await client.until(() => client.all('AgentAudioDone').length === 2, 'a second answer')
    t.same(client.all('Error'), [], 'no Error reached the client')
    t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation (no session.update during a response)')
  })
}

t.test('#459 UpdatePrompt alone while a response streams: held, then sent, then acknowledged', async (t) => {
  const { url, sim } = await startProxy(t, { script: { chunkIntervalMs: 60 } })
  const client = await configuredClient(url)
  t.teardown(() => client.close())
  const conn = await sim.nextConnection()

  let slotAtUpdate: string | null | undefined
  const deferredUpdate = conn.waitFor('session.update', () => {
    slotAtUpdate = conn.activeResponseId
    return true
  })
  client.send({ type: 'InjectUserMessage', content: 'Hello' })
  await client.next('AgentStartedSpeaking')
  client.send({ type: 'UpdatePrompt', prompt: 'Be brief.' })
  await deferredUpdate
  t.equal(slotAtUpdate, null, 'sent once the slot was free')
  await client.next('PromptUpdated')
  t.equal(conn.count('session.update'), 2)
  t.same(sim.violations(), emptyViolations(), 'the simulator counted no violation')
})
