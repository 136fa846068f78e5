// lib/client-frames.ts: every client text frame → what the session does with it. Pure:
// no sockets. The real-socket tests (test/realtime/, test/hardening/client-input.test.ts)
// show the same refusals reach a client; these pin each decision on its own. Deepgram's
// clients treat every Error as the end of the session, so a refused message is a
// Warning (the session goes on) and only Settings that cannot be served end it.

import t, { type Test } from 'tap'
import { decodeClientText } from '../lib/client-frames.js'
import type { ClientAction, DecodedFrame } from '../lib/client-frames.js'
import { CLIENT_MESSAGE_TYPES, ErrorCode, UNSUPPORTED_CLIENT_MESSAGE_TYPES, WarningCode } from '../lib/protocol/deepgram.js'
import type { ServerMessage } from '../lib/protocol/deepgram.js'

const BOUNDS = { maxBytes: 512 * 1024, maxDepth: 64 }
const decodeText = (text: string): DecodedFrame => decodeClientText(Buffer.from(text), BOUNDS)
const decode = (message: unknown): DecodedFrame => decodeText(JSON.stringify(message))

function action (message: unknown): ClientAction {
  return decode(message).action
}

/** The reply a refused message gets; fails the test when it was not refused. */
function reply (t: Test, message: unknown): ServerMessage {
  const result = typeof message === 'string' ? decodeText(message).action : action(message)
  if (result.kind !== 'reply') {
    t.fail(`expected a refusal, got ${result.kind}`)
    return { type: 'Warning', code: '', description: '' }
  }
  return result.message
}

function intentOf (message: unknown): Extract<ClientAction, { kind: 'intent' }> {
  const result = action(message)
  if (result.kind !== 'intent') throw new Error(`expected an intent, got ${JSON.stringify(result)}`)
  return result
}

t.test('not JSON: UNPARSABLE_CLIENT_MESSAGE, counted as invalid, not recorded', async (t) => {
  for (const text of ['{', 'hello', '', '{"type":"KeepAlive"']) {
    const frame = decodeText(text)
    t.equal(frame.type, 'invalid', text)
    t.equal(frame.recorded, false)
    t.match(frame.action, { kind: 'reply', message: { type: 'Warning', code: WarningCode.unparsable, description: /not valid JSON/ } })
  }
})

t.test('JSON that is not an object with a string type: UNPARSABLE_CLIENT_MESSAGE, counted as invalid, recorded', async (t) => {
  for (const value of [null, 5, 'Settings', [], [{ type: 'KeepAlive' }], {}, { type: 5 }, { type: null }, { type: ['KeepAlive'] }, { kind: 'KeepAlive' }]) {
    const frame = decode(value)
    t.equal(frame.type, 'invalid', JSON.stringify(value))
    t.equal(frame.recorded, true)
    t.match(frame.action, { kind: 'reply', message: { type: 'Warning', code: WarningCode.unparsable, description: /JSON object with a string "type"/ } })
  }
})

t.test('an unknown type: UNPARSABLE_CLIENT_MESSAGE listing every known type', async (t) => {
  const frame = decode({ type: 'SayHello' })
  t.equal(frame.type, 'unknown', 'counted under "unknown", never under a type the client chose')
  t.equal(frame.recorded, true)
  const message = reply(t, { type: 'SayHello' })
  t.match(message, { type: 'Warning', code: WarningCode.unparsable })
  t.ok(message.type === 'Warning' && message.description.includes('"SayHello"'))
  for (const known of CLIENT_MESSAGE_TYPES) t.ok(message.type === 'Warning' && message.description.includes(known), `lists ${known}`)
  // Type names are case-sensitive, as in Deepgram's API.
  t.match(reply(t, { type: 'keepalive' }), { type: 'Warning', code: WarningCode.unparsable })
  // Prototype names are not message types.
  for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    t.match(reply(t, { type }), { type: 'Warning', code: WarningCode.unparsable }, type)
  }
})

t.test('a Deepgram type this proxy does not serve: a Warning, nothing else', async (t) => {
  t.same([...UNSUPPORTED_CLIENT_MESSAGE_TYPES], ['AgentKeepAlive', 'UpdateInstructions', 'Close'])
  for (const type of UNSUPPORTED_CLIENT_MESSAGE_TYPES) {
    const frame = decode({ type, instructions: 'x' })
    t.equal(frame.type, type)
    t.match(frame.action, { kind: 'reply', message: { type: 'Warning', code: WarningCode.unsupportedMessage, description: `${type} is not supported by this proxy and was ignored.` } })
  }
})

t.test('KeepAlive: nothing to do', async (t) => {
  t.same(decode({ type: 'KeepAlive' }), { type: 'KeepAlive', recorded: true, action: { kind: 'none' } })
})

t.test('Settings: a plan (formats, fields, context, greeting, warnings)', async (t) => {
  const result = action({
    type: 'Settings',
    audio: { input: { encoding: 'mulaw', sample_rate: 8000 }, output: { encoding: 'linear16', sample_rate: 16000 } },
    agent: { think: { prompt: 'Be brief.' }, speak: { provider: { type: 'open_ai', voice: 'marin' } }, greeting: 'Hi' }
  })
  if (result.kind !== 'settings') throw new Error(`expected settings, got ${result.kind}`)
  t.same(result.plan.input, { encoding: 'mulaw', sampleRate: 8000 })
  t.same(result.plan.output, { encoding: 'linear16', sampleRate: 16000 })
  t.equal(result.plan.fields.instructions, 'Be brief.')
  t.equal(result.plan.fields.voice, 'marin')
  t.equal(result.plan.greeting, 'Hi')
})

t.test('Settings the proxy cannot serve: the session ends (an Error with the SettingsError\'s code, then close 1008 and a reason)', async (t) => {
  const ends = (message: unknown): ClientAction & { kind: 'end' } | undefined => {
    const result = action(message)
    if (result.kind === 'end') return result
    t.fail(`expected the end of the session, got ${JSON.stringify(result)}`)
    return undefined
  }
  t.match(ends({ type: 'Settings', audio: { input: { encoding: 'opus' } } }), { error: { type: 'Error', code: ErrorCode.unsupportedAudio, description: /audio\.input/ }, closeCode: 1008, reason: 'unsupported audio format' })
  t.match(ends({ type: 'Settings', audio: { output: { encoding: 'linear16', sample_rate: 16000, container: 'wav' } } }), { error: { code: ErrorCode.unsupportedAudio, description: /container/ }, closeCode: 1008 })
  t.match(ends({ type: 'Settings', agent: { think: { functions: {} } } }), { error: { type: 'Error', code: ErrorCode.settingsInvalid, description: /functions must be an array/ }, closeCode: 1008, reason: 'invalid settings' })
  t.match(ends({ type: 'Settings', agent: { think: { functions: [{ description: 'no name' }] } } }), { error: { code: ErrorCode.settingsInvalid, description: /functions\[0\] needs a non-empty "name"/ } })
  // Newer SDKs let `agent` be the id of a saved agent configuration: never run defaults silently.
  t.match(ends({ type: 'Settings', agent: 'agent_01HZ' }), { error: { type: 'Error', code: ErrorCode.agentIdNotSupported, description: /saved agent configuration.*object/ }, closeCode: 1008, reason: 'agent id not supported' })
  t.match(ends({ type: 'Settings', agent: 5 }), { error: { code: ErrorCode.settingsInvalid, description: 'Settings.agent must be an object ({listen, think, speak, greeting, …}).' } })
  t.equal(decode({ type: 'Settings', audio: { input: { encoding: 'opus' } } }).type, 'Settings', 'still counted as a Settings')
})

t.test('UpdatePrompt: a configure intent that appends; acknowledged with PromptUpdated', async (t) => {
  t.same(intentOf({ type: 'UpdatePrompt', prompt: 'Also be kind.' }), {
    kind: 'intent',
    intent: { type: 'configure', fields: {}, ack: 'PromptUpdated', appendInstructions: 'Also be kind.' },
    warnings: []
  })
  for (const prompt of [undefined, 5, null, ['a'], { text: 'a' }]) {
    t.match(reply(t, { type: 'UpdatePrompt', prompt }), { type: 'Warning', code: WarningCode.unparsable, description: 'UpdatePrompt needs "prompt" as a string.' }, JSON.stringify(prompt))
  }
})

t.test('UpdateSpeak: the voice it names, or no change', async (t) => {
  t.same(intentOf({ type: 'UpdateSpeak', speak: { provider: { type: 'open_ai', model: 'tts-1', voice: 'Coral' } } }).intent,
    { type: 'configure', fields: { voice: 'coral' }, ack: 'SpeakUpdated' })
  const aura = intentOf({ type: 'UpdateSpeak', speak: { provider: { type: 'deepgram', model: 'aura-2-thalia-en' } } })
  t.same(aura.intent, { type: 'configure', fields: {}, ack: 'SpeakUpdated' }, 'a provider naming no OpenAI voice keeps the voice')
  t.match(aura.warnings, [{ type: 'Warning', code: WarningCode.voiceSubstituted, description: /deepgram \(aura-2-thalia-en\).*the session's voice stays/ }], 'never silently')
  t.same(intentOf({ type: 'UpdateSpeak', speak: { provider: { voice: 'alloy' } } }).warnings, [])
  // As in Settings: a list of fallback providers is served by its first, with a Warning for the rest.
  const listed = intentOf({ type: 'UpdateSpeak', speak: [{ provider: { type: 'open_ai', voice: 'ash' } }, { provider: { type: 'deepgram' } }] })
  t.same(listed.intent, { type: 'configure', fields: { voice: 'ash' }, ack: 'SpeakUpdated' }, 'a list: the first provider')
  t.match(listed.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: /agent\.speak lists 2 providers/ }])
  const servable = intentOf({ type: 'UpdateSpeak', speak: [{ provider: { type: 'deepgram', model: 'aura-2-thalia-en' } }, { provider: { type: 'open_ai', model: 'tts-1', voice: 'shimmer' } }] })
  t.same(servable.intent.type === 'configure' && servable.intent.fields, { voice: 'shimmer' }, 'a list: the first provider the proxy can serve')
  t.match(servable.warnings, [{ code: WarningCode.settingsIgnored, description: /uses agent\.speak\[1\], open_ai \(shimmer, tts-1\)/ }])
  t.same(intentOf({ type: 'UpdateSpeak', speak: [{ provider: { voice: 'sage' } }] }).warnings, [], 'a list of one: no Warning')
  for (const speak of [undefined, 'alloy', 5, null, [], ['alloy']]) {
    t.match(reply(t, { type: 'UpdateSpeak', speak }), { type: 'Warning', code: WarningCode.unparsable, description: 'UpdateSpeak needs a "speak" object.' }, JSON.stringify(speak))
  }
})

t.test('UpdateThink: prompt and functions; a provider list carries its Warning before the intent', async (t) => {
  t.same(intentOf({ type: 'UpdateThink', think: { prompt: 'New.', functions: [{ name: 'f' }] } }), {
    kind: 'intent',
    intent: { type: 'configure', fields: { instructions: 'New.', tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} } }] }, ack: 'ThinkUpdated' },
    warnings: [],
    serverFunctions: new Map()
  }, 'new functions: which are the server\'s (none) comes with them')
  t.same(intentOf({ type: 'UpdateThink', think: { provider: { type: 'open_ai' } } }).intent, { type: 'configure', fields: {}, ack: 'ThinkUpdated' })
  const listed = intentOf({ type: 'UpdateThink', think: [{ prompt: 'First.' }, { prompt: 'Fallback.' }] })
  t.same(listed.intent, { type: 'configure', fields: { instructions: 'First.' }, ack: 'ThinkUpdated' })
  t.match(listed.warnings, [{ type: 'Warning', code: WarningCode.settingsIgnored, description: /agent\.think lists 2 providers/ }])
  const endpoint = intentOf({ type: 'UpdateThink', think: { functions: [{ name: 'lookup', endpoint: { url: 'https://example.com' } }] } })
  t.match(endpoint.warnings, [{ type: 'Warning', code: WarningCode.serverSideFunction, description: /"lookup" is not called by this server.*FUNCTION_ENDPOINT_ALLOWLIST is not set/ }])
  t.same(endpoint.serverFunctions, new Map(), 'no function is the server\'s')
  for (const think of [undefined, 'x', 5, null, [], ['x']]) {
    t.match(reply(t, { type: 'UpdateThink', think }), { type: 'Warning', code: WarningCode.unparsable, description: 'UpdateThink needs a "think" object.' }, JSON.stringify(think))
  }
  t.match(reply(t, { type: 'UpdateThink', think: { functions: 'f' } }), { type: 'Warning', code: ErrorCode.settingsInvalid }, 'a refused change is a Warning: the session goes on')
})

t.test('UpdateListen: the transcription as a configure intent acknowledged with ListenUpdated; what cannot change is a Warning', async (t) => {
  t.same(intentOf({ type: 'UpdateListen', listen: { provider: { type: 'deepgram', version: 'v1', model: 'nova-3', language: 'es', keyterms: ['Deepgram', 'Fastify'] } } }), {
    kind: 'intent',
    intent: { type: 'configure', fields: { transcription: { model: 'gpt-4o-mini-transcribe', language: 'es', prompt: 'Deepgram, Fastify' } }, ack: 'ListenUpdated' },
    warnings: []
  })
  t.same(intentOf({ type: 'UpdateListen', listen: { provider: { type: 'open_ai', model: 'gpt-4o-transcribe' } } }).intent,
    { type: 'configure', fields: { transcription: { model: 'gpt-4o-transcribe' } }, ack: 'ListenUpdated' }, 'an OpenAI transcription model is applied')
  const flux = intentOf({ type: 'UpdateListen', listen: { provider: { type: 'deepgram', version: 'v2', model: 'flux-general-multi', eot_threshold: 0.8, eot_timeout_ms: 3000, keyterms: ['Deepgram'], language_hints: ['en', 'es'] } } })
  t.same(flux.intent, { type: 'configure', fields: { transcription: { model: 'gpt-4o-mini-transcribe', language: 'en', prompt: 'Deepgram' } }, ack: 'ListenUpdated' }, 'the rest is applied')
  t.match(flux.warnings, [{ type: 'Warning', code: WarningCode.updateListenUnsupported, description: /eot_threshold, eot_timeout_ms, language_hints \(more than one language\) cannot change/ }])
  for (const listen of [undefined, 'nova-3', {}, { provider: 'deepgram' }, []]) {
    t.match(reply(t, { type: 'UpdateListen', listen }), { type: 'Warning', code: WarningCode.unparsable, description: 'UpdateListen needs a "listen" object with a "provider".' }, JSON.stringify(listen))
  }
})

t.test('ForceEndTurn ends the user\'s turn: a forceEndTurn intent', async (t) => {
  t.same(intentOf({ type: 'ForceEndTurn' }), { kind: 'intent', intent: { type: 'forceEndTurn' }, warnings: [] })
})

t.test('InjectUserMessage: an injectUser intent; empty or non-string content refused', async (t) => {
  t.same(intentOf({ type: 'InjectUserMessage', content: 'Hello' }), { kind: 'intent', intent: { type: 'injectUser', content: 'Hello' }, warnings: [] })
  // Whitespace is content: the user may mean it.
  t.same(intentOf({ type: 'InjectUserMessage', content: ' ' }).intent, { type: 'injectUser', content: ' ' })
  for (const content of ['', undefined, 5, null, ['Hello'], { text: 'Hello' }]) {
    t.match(reply(t, { type: 'InjectUserMessage', content }), { type: 'Warning', code: WarningCode.unparsable, description: 'InjectUserMessage needs "content" as a non-empty string.' }, JSON.stringify(content))
  }
  t.match(reply(t, { type: 'InjectUserMessage', message: 'Hello' }), { type: 'Warning', code: WarningCode.unparsable }, '`message` is the agent message\'s field, not this one\'s')
})

t.test('InjectAgentMessage: `message`, or `content` from older clients; behavior refuse unless queue or interrupt', async (t) => {
  t.same(intentOf({ type: 'InjectAgentMessage', message: 'One moment.' }), { kind: 'intent', intent: { type: 'injectAgent', message: 'One moment.', behavior: 'refuse' }, warnings: [] })
  t.same(intentOf({ type: 'InjectAgentMessage', content: 'One moment.' }).intent, { type: 'injectAgent', message: 'One moment.', behavior: 'refuse' }, 'content fallback')
  t.same(intentOf({ type: 'InjectAgentMessage', message: 'New', content: 'Old' }).intent, { type: 'injectAgent', message: 'New', behavior: 'refuse' }, '`message` wins over `content`')
  t.same(intentOf({ type: 'InjectAgentMessage', message: 5, content: 'Old' }).intent, { type: 'injectAgent', message: 'Old', behavior: 'refuse' }, 'a non-string `message` falls back to `content`')
  const behaviors: Array<[unknown, string]> = [['queue', 'queue'], ['interrupt', 'interrupt'], ['refuse', 'refuse'], [undefined, 'refuse'], ['QUEUE', 'refuse'], [1, 'refuse'], [null, 'refuse'], ['append', 'refuse']]
  for (const [behavior, expected] of behaviors) {
    t.same(intentOf({ type: 'InjectAgentMessage', message: 'x', behavior }).intent, { type: 'injectAgent', message: 'x', behavior: expected }, `behavior ${JSON.stringify(behavior)}`)
  }
  for (const fields of [{}, { message: '' }, { content: '' }, { message: 5 }, { content: ['x'] }, { message: null, content: null }]) {
    t.match(reply(t, { type: 'InjectAgentMessage', ...fields }), { type: 'Warning', code: WarningCode.unparsable, description: 'InjectAgentMessage needs "message" as a non-empty string.' }, JSON.stringify(fields))
  }
})

t.test('FunctionCallResponse: a functionResult intent; content that is not a string is sent as JSON', async (t) => {
  t.same(intentOf({ type: 'FunctionCallResponse', id: 'call_1', name: 'f', content: '{"ok":true}' }), {
    kind: 'intent',
    intent: { type: 'functionResult', callId: 'call_1', output: '{"ok":true}' },
    warnings: []
  })
  const outputs: Array<[unknown, string]> = [
    [{ temperature: 21 }, '{"temperature":21}'],
    [[1, 'a'], '[1,"a"]'],
    [42, '42'],
    [true, 'true'],
    [null, 'null'],
    [undefined, 'null'],
    ['', '']
  ]
  for (const [content, output] of outputs) {
    t.same(intentOf({ type: 'FunctionCallResponse', id: 'c', content }).intent, { type: 'functionResult', callId: 'c', output }, `content ${JSON.stringify(content)}`)
  }
  for (const id of [undefined, 7, null, { id: 'c' }]) {
    t.match(reply(t, { type: 'FunctionCallResponse', id, content: 'x' }), { type: 'Warning', code: WarningCode.unparsable, description: 'FunctionCallResponse needs "id" as the function call id.' }, JSON.stringify(id))
  }
})

t.test('each client message type, well formed, is accepted as its kind and counted under its type', async (t) => {
  const accepted: Array<[unknown, string]> = [
    [{ type: 'Settings' }, 'settings'],
    [{ type: 'UpdatePrompt', prompt: '' }, 'intent'],
    [{ type: 'UpdateSpeak', speak: {} }, 'intent'],
    [{ type: 'UpdateThink', think: {} }, 'intent'],
    [{ type: 'InjectUserMessage', content: 'a' }, 'intent'],
    [{ type: 'InjectAgentMessage', message: 'a' }, 'intent'],
    [{ type: 'FunctionCallResponse', id: 'a' }, 'intent'],
    [{ type: 'KeepAlive' }, 'none'],
    [{ type: 'UpdateListen', listen: { provider: {} } }, 'intent'],
    [{ type: 'ForceEndTurn' }, 'intent']
  ]
  t.same(accepted.map(([message]) => (message as { type: string }).type), [...CLIENT_MESSAGE_TYPES], 'one case per client message type')
  for (const [message, kind] of accepted) {
    const frame = decode(message)
    t.equal(frame.type, (message as { type: string }).type)
    t.equal(frame.recorded, true)
    t.equal(frame.action.kind, kind, frame.type)
  }
})

t.test('an unknown type is counted as "unknown" and quoted back cut to 64 characters: a client cannot make the session keep or log a megabyte per message', async (t) => {
  const describe = (type: string): string => {
    const frame = decode({ type })
    t.equal(frame.type, 'unknown')
    return frame.action.kind === 'reply' && frame.action.message.type === 'Warning' ? frame.action.message.description : ''
  }
  const description = describe('A'.repeat(100_000))
  t.ok(description.length < 400, `description of ${description.length} characters`)
  t.ok(description.includes(`"${'A'.repeat(64)}…"`))
  t.ok(describe('B'.repeat(64)).includes(`"${'B'.repeat(64)}"`), '64 characters are kept whole')
  t.ok(describe('😀'.repeat(40)).includes(`"${'😀'.repeat(40)}"`), 'characters, not UTF-16 units, are counted')
  t.ok(describe('😀'.repeat(100)).includes(`"${'😀'.repeat(64)}…"`), 'cut between characters, not inside one')
  t.ok(describe('a\nb\u0000c').includes('"a\\nb\\u0000c"'), 'control characters escaped')
})
