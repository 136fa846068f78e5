// lib/mapping.ts: Deepgram Settings / UpdateThink / UpdateSpeak → the upstream session's
// fields, context items, greeting and audio formats. Pure. The audio converters
// themselves are test/audio.test.ts; what reaches the upstream is test/realtime/settings.test.ts.

import t from 'tap'
import { DEFAULT_TRANSCRIPTION_MODEL, OPENAI_VOICES, SettingsError, planSettings, speakFields, thinkFields } from '../lib/mapping.js'
import type { SessionPlan } from '../lib/mapping.js'
import { ErrorCode, WarningCode } from '../lib/protocol/deepgram.js'
import type { SettingsMessage } from '../lib/protocol/deepgram.js'

function plan (settings: Record<string, unknown>): SessionPlan {
  return planSettings({ type: 'Settings', ...settings } as SettingsMessage)
}

function thrown (run: () => unknown): unknown {
  try {
    run()
  } catch (error) {
    return error
  }
  return undefined
}

function agent (fields: Record<string, unknown>): SessionPlan {
  return plan({ agent: fields })
}

t.test('an empty Settings: Deepgram\'s default formats, server VAD, audio out, no instructions, no tools', async (t) => {
  t.same(plan({}), {
    fields: {
      outputModalities: ['audio'],
      inputFormat: { type: 'audio/pcm', rate: 24000 },
      outputFormat: { type: 'audio/pcm', rate: 24000 },
      transcription: { model: 'gpt-4o-mini-transcribe' },
      turnDetection: { type: 'server_vad', create_response: true, interrupt_response: true },
      instructions: '',
      tools: []
    },
    context: [],
    input: { encoding: 'linear16', sampleRate: 16000 },
    output: { encoding: 'linear16', sampleRate: 24000 },
    warnings: []
  })
  t.equal(DEFAULT_TRANSCRIPTION_MODEL, 'gpt-4o-mini-transcribe')
  t.same(plan({ audio: 5, agent: 'x' }), plan({}), 'audio and agent that are not objects are ignored')
})

t.test('audio formats: linear16 at any served rate is PCM 24 kHz upstream; G.711 maps to pcmu/pcma', async (t) => {
  const cases: Array<[Record<string, unknown>, Record<string, unknown>, object, object]> = [
    [{ encoding: 'linear16', sample_rate: 24000 }, { encoding: 'linear16', sample_rate: 24000, container: 'none' }, { type: 'audio/pcm', rate: 24000 }, { type: 'audio/pcm', rate: 24000 }],
    [{ encoding: 'linear16', sample_rate: 8000 }, { encoding: 'linear16', sample_rate: 48000 }, { type: 'audio/pcm', rate: 24000 }, { type: 'audio/pcm', rate: 24000 }],
    [{ encoding: 'mulaw', sample_rate: 8000 }, { encoding: 'mulaw' }, { type: 'audio/pcmu' }, { type: 'audio/pcmu' }],
    [{ encoding: 'alaw' }, { encoding: 'ALAW', sample_rate: 8000 }, { type: 'audio/pcma' }, { type: 'audio/pcma' }]
  ]
  for (const [input, output, upstreamIn, upstreamOut] of cases) {
    const result = plan({ audio: { input, output } })
    t.same([result.fields.inputFormat, result.fields.outputFormat], [upstreamIn, upstreamOut], JSON.stringify({ input, output }))
  }
  const mixed = plan({ audio: { input: { encoding: 'mulaw' }, output: { encoding: 'linear16', sample_rate: 16000 } } })
  t.same(mixed.input, { encoding: 'mulaw', sampleRate: 8000 }, 'the client\'s own format, for the converters')
  t.same(mixed.output, { encoding: 'linear16', sampleRate: 16000 })
})

t.test('audio the proxy cannot serve: SettingsError UNSUPPORTED_AUDIO_FORMAT naming the field', async (t) => {
  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ input: { encoding: 'opus' } }, /^audio\.input\.encoding "opus" is not supported/],
    [{ output: { encoding: 'mp3' } }, /^audio\.output\.encoding "mp3"/],
    [{ input: { encoding: 'linear16', sample_rate: 4000 } }, /^audio\.input\.sample_rate 4000 Hz/],
    [{ input: { encoding: 'mulaw', sample_rate: 16000 } }, /^audio\.input\.sample_rate 16000 Hz is not supported for mulaw/],
    [{ output: { encoding: 'linear16', sample_rate: '24000' } }, /^audio\.output\.sample_rate must be an integer/],
    [{ output: { container: 'wav' } }, /^audio\.output\.container "wav"/]
  ]
  for (const [audio, message] of refused) {
    t.throws(() => plan({ audio }), { code: ErrorCode.unsupportedAudio, message }, JSON.stringify(audio))
    t.ok(thrown(() => plan({ audio })) instanceof SettingsError, 'a SettingsError, which the client is told as an Error')
  }
})

t.test('think: the prompt becomes the instructions; a provider list is served by its first, with a Warning', async (t) => {
  t.equal(agent({ think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' }, prompt: 'Be brief.' } }).fields.instructions, 'Be brief.')
  t.equal(agent({ think: { prompt: 5 } }).fields.instructions, '', 'a prompt that is not a string is no prompt')
  const listed = agent({ think: [{ prompt: 'First.' }, { prompt: 'Second.' }, { prompt: 'Third.' }] })
  t.equal(listed.fields.instructions, 'First.')
  t.same(listed.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: 'agent.think lists 3 providers; this proxy uses the first and ignores the fallbacks.' }])
  t.same(agent({ think: [{ prompt: 'Only.' }] }).warnings, [], 'a list of one: no Warning')
  t.equal(agent({ think: ['junk', { prompt: 'Object.' }] }).fields.instructions, 'Object.', 'the first object of the list')
})

t.test('speak: a provider naming an OpenAI voice (voice, else model) selects it, lower-cased; any other keeps the default', async (t) => {
  t.same(OPENAI_VOICES, ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar'])
  for (const voice of OPENAI_VOICES) t.equal(agent({ speak: { provider: { type: 'open_ai', model: 'tts-1', voice } } }).fields.voice, voice)
  t.equal(agent({ speak: { provider: { type: 'open_ai', voice: 'Marin' } } }).fields.voice, 'marin')
  t.equal(agent({ speak: { provider: { type: 'open_ai', model: 'CEDAR' } } }).fields.voice, 'cedar', 'a model that is a voice name')
  t.equal(agent({ speak: { provider: { voice: 'nova', model: 'alloy' } } }).fields.voice, 'alloy', 'voice first, then model')
  for (const speak of [{ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }, { provider: 'alloy' }, {}, 'alloy', undefined]) {
    t.notOk('voice' in agent({ speak }).fields, JSON.stringify(speak))
  }
  const listed = agent({ speak: [{ provider: { type: 'open_ai', voice: 'verse' } }, { provider: { type: 'deepgram' } }] })
  t.equal(listed.fields.voice, 'verse')
  t.same(listed.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: 'agent.speak lists 2 providers; this proxy uses the first and ignores the fallbacks.' }])
})

t.test('listen and language: the transcription model and language', async (t) => {
  t.same(agent({ listen: { provider: { type: 'open_ai', model: 'gpt-4o-transcribe' } } }).fields.transcription, { model: 'gpt-4o-transcribe' })
  t.same(agent({ listen: { provider: { type: 'deepgram', model: 'nova-3' } } }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL }, 'another provider\'s model is not OpenAI\'s')
  t.same(agent({ listen: { provider: { type: 'open_ai' } } }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL })
  t.same(agent({ language: 'EN' }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'en' }, '"EN" lower-cased')
  t.same(agent({ language: 'de' }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'de' })
  for (const language of ['en-US', 'english', 'e', 5, '', 'multi']) {
    t.same(agent({ language }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL }, `${JSON.stringify(language)}: no language`)
  }
})

t.test('greeting: spoken as given; blank or not a string, none', async (t) => {
  t.equal(agent({ greeting: 'Hello! How can I help?' }).greeting, 'Hello! How can I help?')
  t.equal(agent({ greeting: '  Hi  ' }).greeting, '  Hi  ', 'not trimmed: said exactly')
  for (const greeting of ['', ' ', '\n\t ', 5, null, ['Hi']]) {
    t.notOk('greeting' in agent({ greeting }), `${JSON.stringify(greeting)}: no greeting`)
  }
})

t.test('functions → tools; an endpoint is a Warning (the client is asked instead)', async (t) => {
  const result = agent({
    think: {
      functions: [
        { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
        { name: 'bare' },
        { name: 'remote', description: 5, parameters: 'x', endpoint: { url: 'https://api.example/f', method: 'post' } }
      ]
    }
  })
  t.same(result.fields.tools, [
    { type: 'function', name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
    { type: 'function', name: 'bare', parameters: { type: 'object', properties: {} } },
    { type: 'function', name: 'remote', parameters: { type: 'object', properties: {} } }
  ])
  t.same(result.warnings, [{ type: 'Warning', code: WarningCode.serverSideFunction, description: 'Function "remote" has an endpoint; this proxy does not call endpoints, so it is requested from the client (client_side: true).' }])
  t.same(agent({ think: { functions: null } }).fields.tools, [])
  t.throws(() => agent({ think: { functions: { name: 'f' } } }), { code: ErrorCode.settingsInvalid, message: 'agent.think.functions must be an array of {name, description, parameters}.' })
  for (const [functions, index] of [[[{ name: '' }], 0], [[{ name: 'ok' }, { description: 'x' }], 1], [[{ name: 'ok' }, { name: 'ok2' }, 'f'], 2], [[{ name: 7 }], 0]] as const) {
    t.throws(() => agent({ think: { functions } }), { code: ErrorCode.settingsInvalid, message: `agent.think.functions[${index}] needs a non-empty "name".` }, JSON.stringify(functions))
  }
})

t.test('context messages, in both forms: role/content and function calls with their responses', async (t) => {
  const result = agent({
    context: {
      messages: [
        { type: 'History', role: 'user', content: 'What is the weather?' },
        { role: 'assistant', content: 'Let me check.' },
        { type: 'History', function_calls: [{ id: 'call_1', name: 'get_weather', client_side: true, arguments: '{"city":"Paris"}', response: '{"temp":21}' }] },
        { function_calls: [{ id: 'call_2', name: 'pending' }, { id: 'call_3', name: 'args', arguments: { a: 1 } }] },
        { role: 'system', content: 'skipped' },
        { role: 'user', content: 5 },
        { function_calls: [{ name: 'no id' }, { id: 'no name' }, 'junk'] },
        'junk',
        null
      ]
    }
  })
  t.same(result.context, [
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What is the weather?' }] },
    { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Let me check.' }] },
    { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
    { type: 'function_call_output', call_id: 'call_1', output: '{"temp":21}' },
    { type: 'function_call', call_id: 'call_2', name: 'pending', arguments: '{}' },
    { type: 'function_call', call_id: 'call_3', name: 'args', arguments: '{}' }
  ])
  t.same(agent({ context: { messages: 'x' } }).context, [])
  t.same(agent({ context: 'x' }).context, [])
})

t.test('thinkFields (UpdateThink): only what it names changes', async (t) => {
  t.same(thinkFields({ prompt: 'New.' }), { fields: { instructions: 'New.' }, warnings: [] })
  t.same(thinkFields({ functions: [] }), { fields: { tools: [] }, warnings: [] })
  t.same(thinkFields({ provider: { type: 'open_ai', model: 'gpt-4o' } }), { fields: {}, warnings: [] }, 'a provider change alone changes nothing upstream')
  t.same(thinkFields({ prompt: 'x', functions: null }), { fields: { instructions: 'x', tools: [] }, warnings: [] }, 'null functions clear the tools')
  t.same(thinkFields([{ prompt: 'a' }, { prompt: 'b' }]).warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: 'agent.think lists 2 providers; this proxy uses the first and ignores the fallbacks.' }])
  for (const think of [undefined, null, 'x', [], [1]]) {
    t.throws(() => thinkFields(think), { code: ErrorCode.unparsable, message: 'UpdateThink needs a "think" object.' }, JSON.stringify(think))
  }
  t.throws(() => thinkFields({ functions: 'f' }), { code: ErrorCode.settingsInvalid })
})

t.test('speakFields (UpdateSpeak): the voice, or nothing', async (t) => {
  t.same(speakFields({ provider: { type: 'open_ai', voice: 'Shimmer' } }), { fields: { voice: 'shimmer' }, warnings: [] })
  t.same(speakFields({ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }), { fields: {}, warnings: [] })
  t.same(speakFields({}), { fields: {}, warnings: [] })
  t.same(speakFields([{ provider: { voice: 'echo' } }, {}]).fields, { voice: 'echo' })
  for (const speak of [undefined, null, 'alloy', 5, []]) {
    t.throws(() => speakFields(speak), { code: ErrorCode.unparsable, message: 'UpdateSpeak needs a "speak" object.' }, JSON.stringify(speak))
  }
})
