// lib/mapping.ts: Deepgram Settings / UpdateThink / UpdateSpeak / UpdateListen → the
// upstream session's fields, context items, greeting, audio formats, the model and the
// server-side functions. Pure. The audio converters
// themselves are test/audio.test.ts; what reaches the upstream is test/realtime/settings.test.ts.

import t from 'tap'
import { EndpointAllowlist } from '../lib/functions.js'
import { DEFAULT_TRANSCRIPTION_MODEL, FALLBACK_VOICE, OPENAI_VOICES, SettingsError, VOICE_SUBSTITUTES, listenFields, planSettings, speakFields, thinkFields, upstreamUrlFor } from '../lib/mapping.js'
import type { SessionPlan, SettingsPolicy } from '../lib/mapping.js'
import { ErrorCode, WarningCode } from '../lib/protocol/deepgram.js'
import type { SettingsMessage } from '../lib/protocol/deepgram.js'

function plan (settings: Record<string, unknown>, policy?: SettingsPolicy): SessionPlan {
  return planSettings({ type: 'Settings', ...settings } as SettingsMessage, policy)
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
    input: { encoding: 'linear16', sampleRate: 24000 },
    output: { encoding: 'linear16', sampleRate: 24000 },
    serverFunctions: new Map(),
    warnings: [],
    history: true,
    tags: []
  })
  t.equal(DEFAULT_TRANSCRIPTION_MODEL, 'gpt-4o-mini-transcribe')
  t.same(plan({ audio: 5, agent: null }), plan({}), 'audio that is not an object, and a null agent, take the defaults')
  t.throws(() => plan({ agent: 'agent_01HZ' }), { code: ErrorCode.agentIdNotSupported, message: /a string, the id of a saved agent configuration/ }, 'a saved agent configuration\'s id is refused, never run as defaults')
  t.throws(() => plan({ agent: ['x'] }), { code: ErrorCode.settingsInvalid })
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

t.test('speak: a provider naming an OpenAI voice (voice, else model) selects it, lower-cased', async (t) => {
  t.same(OPENAI_VOICES, ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar'])
  for (const voice of OPENAI_VOICES) {
    const result = agent({ speak: { provider: { type: 'open_ai', model: 'tts-1', voice } } })
    t.equal(result.fields.voice, voice)
    t.same(result.warnings, [], `${voice}: no Warning`)
  }
  t.equal(agent({ speak: { provider: { type: 'open_ai', voice: 'Marin' } } }).fields.voice, 'marin')
  t.equal(agent({ speak: { provider: { type: 'open_ai', model: 'CEDAR' } } }).fields.voice, 'cedar', 'a model that is a voice name')
  t.equal(agent({ speak: { provider: { voice: 'nova', model: 'alloy' } } }).fields.voice, 'alloy', 'voice first, then model')
  for (const speak of [{ provider: 'alloy' }, {}, 'alloy', undefined]) {
    const result = agent({ speak })
    t.notOk('voice' in result.fields, JSON.stringify(speak))
    t.same(result.warnings, [], `${JSON.stringify(speak)}: nothing asked, nothing to warn about`)
  }
})

t.test('speak: Deepgram\'s open_ai voices OpenAI Realtime lacks get the closest realtime voice, with a Warning naming it', async (t) => {
  t.same([...VOICE_SUBSTITUTES], [['nova', 'coral'], ['onyx', 'cedar'], ['fable', 'ballad']])
  for (const [asked, serves] of [...VOICE_SUBSTITUTES, ['NOVA', 'coral'], ['aria', FALLBACK_VOICE]] as Array<[string, string]>) {
    const result = agent({ speak: { provider: { type: 'open_ai', model: 'tts-1', voice: asked } } })
    t.equal(result.fields.voice, serves, `${asked} → ${serves}`)
    t.same(result.warnings, [{ type: 'Warning', code: WarningCode.voiceSubstituted, description: `agent.speak asks for open_ai (${asked}, tts-1), which OpenAI Realtime does not have: the OpenAI Realtime voice "${serves}" speaks instead. Voices: ${OPENAI_VOICES.join(', ')} (as an open_ai provider's voice).` }])
  }
  t.equal(FALLBACK_VOICE, 'alloy')
})

t.test('speak: another provider (aura, ElevenLabs, …) keeps OpenAI\'s default voice, with a Warning saying so', async (t) => {
  for (const provider of [{ type: 'deepgram', model: 'aura-2-thalia-en' }, { type: 'eleven_labs', model_id: 'eleven_turbo_v2_5', voice_id: 'x' }, { type: 'cartesia', voice: { mode: 'id', id: 'y' } }]) {
    const result = agent({ speak: { provider } })
    t.notOk('voice' in result.fields, provider.type)
    t.match(result.warnings, [{ type: 'Warning', code: WarningCode.voiceSubstituted, description: new RegExp(`^agent\\.speak asks for ${provider.type}.*which OpenAI Realtime does not have: OpenAI's default voice speaks instead`) }])
  }
  t.match(speakFields({ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }).warnings, [{ description: /the session's voice stays/ }], 'UpdateSpeak: the session\'s voice stays')
})

t.test('speak as a list: the first provider the proxy can serve, with a Warning naming it', async (t) => {
  const listed = agent({ speak: [{ provider: { type: 'open_ai', voice: 'verse' } }, { provider: { type: 'deepgram' } }] })
  t.equal(listed.fields.voice, 'verse')
  t.same(listed.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: 'agent.speak lists 2 providers; this proxy uses agent.speak[0], open_ai (verse), and ignores the others.' }])
  const skipped = agent({ speak: [{ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }, { provider: { type: 'open_ai', voice: 'onyx' } }, { provider: { type: 'open_ai', voice: 'sage' } }] })
  t.equal(skipped.fields.voice, 'sage', 'a voice of OpenAI Realtime\'s own before a substitute')
  const substitute = agent({ speak: [{ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }, { provider: { type: 'open_ai', voice: 'onyx' } }] })
  t.equal(substitute.fields.voice, 'cedar', 'else a substitute before no voice at all')
  t.match(substitute.warnings, [{ code: WarningCode.settingsIgnored, description: /agent\.speak\[1\]/ }, { code: WarningCode.voiceSubstituted, description: /"cedar"/ }])
})

t.test('listen and language: the transcription model, language and keyterms', async (t) => {
  t.same(agent({ listen: { provider: { type: 'open_ai', model: 'gpt-4o-transcribe' } } }).fields.transcription, { model: 'gpt-4o-transcribe' })
  for (const model of ['whisper-1', 'gpt-4o-mini-transcribe', 'gpt-4o-transcribe-2025-03-20']) {
    t.same(agent({ listen: { provider: { model } } }).fields.transcription, { model }, `${model}: OpenAI's, whatever the type`)
  }
  t.same(agent({ listen: { provider: { type: 'deepgram', model: 'nova-3' } } }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL }, 'another provider\'s model is not OpenAI\'s')
  t.same(agent({ listen: { provider: { type: 'open_ai' } } }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL })
  t.same(agent({ language: 'EN' }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'en' }, '"EN" lower-cased')
  t.same(agent({ language: 'de' }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'de' })
  t.same(agent({ language: 'en-US' }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'en' }, 'a BCP-47 tag: its language')
  t.same(agent({ language: 'de', listen: { provider: { language: 'fr' } } }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'fr' }, 'the provider\'s language before the deprecated agent.language')
  for (const language of [5, '', 'multi']) {
    const result = agent({ language })
    t.same(result.fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL }, `${JSON.stringify(language)}: no language (auto-detected)`)
    t.same(result.warnings, [])
  }
  for (const language of ['english', 'e']) {
    const result = agent({ language })
    t.same(result.fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL }, `${language}: no language`)
    t.same(result.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: `agent.listen.provider: language "${language}" has no equivalent in OpenAI's transcription and was ignored.` }])
  }
  const flux = agent({ listen: { provider: { type: 'deepgram', version: 'v2', model: 'flux-general-en', keyterms: ['Deepgram', '', 7, 'OpenAI'], eot_threshold: 0.7, eager_eot_threshold: 0.5 } } })
  t.same(flux.fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, prompt: 'Deepgram, OpenAI' }, 'keyterms: the transcription\'s prompt')
  t.same(flux.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: 'agent.listen.provider: eot_threshold, eager_eot_threshold have no equivalent in OpenAI\'s transcription and were ignored.' }])
  t.same(agent({ listen: { provider: { language_hints: ['es'] } } }).fields.transcription, { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'es' }, 'one language hint is the language')
})

t.test('listenFields (UpdateListen): the whole transcription; what cannot change is a Warning with Deepgram\'s code', async (t) => {
  t.same(listenFields({ provider: { type: 'deepgram', model: 'nova-3', language: 'pt-BR', keyterms: ['Lisboa'] } }),
    { fields: { transcription: { model: DEFAULT_TRANSCRIPTION_MODEL, language: 'pt', prompt: 'Lisboa' } }, warnings: [] })
  t.same(listenFields({ provider: { model: 'whisper-1', smart_format: true } }), {
    fields: { transcription: { model: 'whisper-1' } },
    warnings: [{ type: 'Warning', code: WarningCode.updateListenUnsupported, description: 'UpdateListen: smart_format cannot change with OpenAI\'s transcription and was ignored; the rest was applied.' }]
  })
  for (const listen of [undefined, null, 'x', {}, { provider: null }]) {
    t.throws(() => listenFields(listen), { code: WarningCode.unparsable, message: 'UpdateListen needs a "listen" object with a "provider".' }, JSON.stringify(listen))
  }
})

t.test('the model: agent.think.provider.model when the operator offers it (OPENAI_REALTIME_MODELS), else the first with a Warning', async (t) => {
  const policy: SettingsPolicy = { models: ['gpt-realtime', 'gpt-realtime-mini'], functionEndpoints: EndpointAllowlist.none }
  t.equal(plan({}, policy).model, 'gpt-realtime', 'none asked: the first')
  t.same(plan({}, policy).warnings, [])
  const mini = plan({ agent: { think: { provider: { type: 'open_ai', model: 'gpt-realtime-mini' } } } }, policy)
  t.equal(mini.model, 'gpt-realtime-mini', 'an offered model serves')
  t.same(mini.warnings, [])
  const refused = plan({ agent: { think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' } } } }, policy)
  t.equal(refused.model, 'gpt-realtime')
  t.same(refused.warnings, [{ type: 'Warning', code: WarningCode.modelNotAllowed, description: 'agent.think.provider.model "gpt-4o-mini" is not offered here; gpt-realtime serves this session (offered: gpt-realtime, gpt-realtime-mini).' }])
  t.equal(plan({ agent: { think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' } } } }).model, undefined, 'no policy: the upstream URL\'s model, no choice')
  const single: SettingsPolicy = { models: ['gpt-realtime'], functionEndpoints: EndpointAllowlist.none }
  const asked = plan({ agent: { think: { provider: { type: 'open_ai', model: 'gpt-4o-mini' } } } }, single)
  t.same([asked.model, asked.warnings], [undefined, []], 'one model offered: no choice, and nothing to warn about (Deepgram clients name text models there)')
  t.same(thinkFields({ provider: { type: 'open_ai', model: 'gpt-4o' } }, single).warnings, [])
  t.same(thinkFields({ provider: { type: 'open_ai', model: 'gpt-realtime-mini' } }, policy).warnings, [], 'UpdateThink naming an offered model: nothing to say')
  t.match(thinkFields({ provider: { type: 'open_ai', model: 'gpt-4o' } }, policy).warnings, [{ type: 'Warning', code: WarningCode.modelNotAllowed, description: /"gpt-4o" is not offered here; the session's model keeps serving/ }])
})

t.test('upstreamUrlFor: the operator\'s URL with ?model= set to the session\'s model', async (t) => {
  t.equal(upstreamUrlFor('wss://api.openai.com/v1/realtime?model=gpt-realtime', 'gpt-realtime-mini'), 'wss://api.openai.com/v1/realtime?model=gpt-realtime-mini')
  t.equal(upstreamUrlFor('ws://127.0.0.1:9000/v1/realtime', 'gpt-realtime'), 'ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime')
  t.equal(upstreamUrlFor('wss://r.openai.azure.com/openai/v1/realtime?api-version=x&model=a', 'b'), 'wss://r.openai.azure.com/openai/v1/realtime?api-version=x&model=b', 'other parameters kept')
})

t.test('server-side functions: an endpoint under FUNCTION_ENDPOINT_ALLOWLIST is the server\'s; any other goes to the client with a Warning', async (t) => {
  const policy: SettingsPolicy = { models: [], functionEndpoints: EndpointAllowlist.parse(['https://api.example.com/v1/']) }
  const result = plan({
    agent: {
      think: {
        functions: [
          { name: 'weather', endpoint: { url: 'https://api.example.com/v1/weather', method: 'get', headers: { authorization: 'Bearer x' } } },
          { name: 'book', endpoint: { url: 'https://api.example.com/v1/book' } },
          { name: 'evil', endpoint: { url: 'https://api.example.com.evil.io/v1/x' } },
          { name: 'other', endpoint: { url: 'https://api.example.com/v2/x' } },
          { name: 'ftp', endpoint: { url: 'ftp://api.example.com/v1/x' } },
          { name: 'verb', endpoint: { url: 'https://api.example.com/v1/x', method: 'TRACE' } },
          { name: 'header', endpoint: { url: 'https://api.example.com/v1/x', headers: { 'x-a': 'line\r\nInjected: 1' } } },
          { name: 'local' }
        ]
      }
    }
  }, policy)
  t.same(result.fields.tools?.map((tool) => tool.name), ['weather', 'book', 'evil', 'other', 'ftp', 'verb', 'header', 'local'], 'every function is declared upstream')
  t.same(result.serverFunctions, new Map([
    ['weather', { url: 'https://api.example.com/v1/weather', method: 'GET', headers: { authorization: 'Bearer x' } }],
    ['book', { url: 'https://api.example.com/v1/book', method: 'POST', headers: {} }]
  ]), 'method upper-cased, POST by default (Deepgram\'s)')
  t.same(result.warnings.map((w) => w.type === 'Warning' ? [w.code, /^Function "(\w+)" is not called by this server: (.*)\. It is requested/.exec(w.description)?.slice(1)] : []), [
    [WarningCode.serverSideFunction, ['evil', 'its endpoint is not under FUNCTION_ENDPOINT_ALLOWLIST']],
    [WarningCode.serverSideFunction, ['other', 'its endpoint is not under FUNCTION_ENDPOINT_ALLOWLIST']],
    [WarningCode.serverSideFunction, ['ftp', 'its endpoint needs "url" as an http:// or https:// URL']],
    [WarningCode.serverSideFunction, ['verb', 'its endpoint\'s "method" must be one of GET, POST, PUT, PATCH, DELETE']],
    [WarningCode.serverSideFunction, ['header', 'its endpoint\'s "headers" must map header names to strings on one line']]
  ])
  const updated = thinkFields({ functions: [{ name: 'book', endpoint: { url: 'https://api.example.com/v1/book', method: 'PUT' } }] }, policy)
  t.same(updated.serverFunctions, new Map([['book', { url: 'https://api.example.com/v1/book', method: 'PUT', headers: {} }]]), 'UpdateThink: its functions, the same way')
})

t.test('greeting: spoken as given; blank or not a string, none', async (t) => {
  t.equal(agent({ greeting: 'Hello! How can I help?' }).greeting, 'Hello! How can I help?')
  t.equal(agent({ greeting: '  Hi  ' }).greeting, '  Hi  ', 'not trimmed: said exactly')
  for (const greeting of ['', ' ', '\n\t ', 5, null, ['Hi']]) {
    t.notOk('greeting' in agent({ greeting }), `${JSON.stringify(greeting)}: no greeting`)
  }
})

t.test('functions → tools; without FUNCTION_ENDPOINT_ALLOWLIST an endpoint is a Warning (the client is asked instead)', async (t) => {
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
  t.same(result.warnings, [{ type: 'Warning', code: WarningCode.serverSideFunction, description: 'Function "remote" is not called by this server: this server calls no function endpoints (FUNCTION_ENDPOINT_ALLOWLIST is not set). It is requested from the client instead (FunctionCallRequest with client_side: true).' }])
  t.same(result.serverFunctions, new Map())
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
  t.same(thinkFields({ functions: [] }), { fields: { tools: [] }, serverFunctions: new Map(), warnings: [] })
  t.same(thinkFields({ provider: { type: 'open_ai', model: 'gpt-4o' } }), { fields: {}, warnings: [] }, 'a provider change alone changes nothing upstream')
  t.same(thinkFields({ prompt: 'x', functions: null }), { fields: { instructions: 'x', tools: [] }, serverFunctions: new Map(), warnings: [] }, 'null functions clear the tools')
  t.same(thinkFields([{ prompt: 'a' }, { prompt: 'b' }]).warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: 'agent.think lists 2 providers; this proxy uses the first and ignores the fallbacks.' }])
  for (const think of [undefined, null, 'x', [], [1]]) {
    t.throws(() => thinkFields(think), { code: WarningCode.unparsable, message: 'UpdateThink needs a "think" object.' }, JSON.stringify(think))
  }
  t.throws(() => thinkFields({ functions: 'f' }), { code: ErrorCode.settingsInvalid })
})

t.test('speakFields (UpdateSpeak): the voice, or nothing', async (t) => {
  t.same(speakFields({ provider: { type: 'open_ai', voice: 'Shimmer' } }), { fields: { voice: 'shimmer' }, warnings: [] })
  t.same(speakFields({ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }).fields, {})
  t.same(speakFields({}), { fields: {}, warnings: [] })
  t.same(speakFields([{ provider: { voice: 'echo' } }, {}]).fields, { voice: 'echo' })
  for (const speak of [undefined, null, 'alloy', 5, []]) {
    t.throws(() => speakFields(speak), { code: WarningCode.unparsable, message: 'UpdateSpeak needs a "speak" object.' }, JSON.stringify(speak))
  }
})
