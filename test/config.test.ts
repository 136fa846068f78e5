// lib/config.ts: the environment → the configuration `npm start` runs with. Every
// variable unset takes its default; every bad value stops the start with a message
// naming the variable and what to set. Pure: loadConfig takes the environment.

import t from 'tap'
import { DEFAULT_MODEL, DEFAULT_REALTIME_URL, loadConfig, withModel } from '../lib/config.js'
import { LIMITS, LIMIT_DEFAULTS } from '../lib/limits.js'

t.test('defaults: no variable set', async (t) => {
  t.same(loadConfig({}), {
    port: 8080,
    host: '0.0.0.0',
    openaiApiKey: undefined,
    upstreamUrl: undefined,
    model: 'gpt-realtime',
    models: ['gpt-realtime'],
    openaiAuthHeader: 'authorization',
    functionEndpointAllowlist: [],
    adminToken: undefined,
    proxyAuthTokens: [],
    logLevel: 'info',
    allowedOrigins: [],
    ...LIMIT_DEFAULTS
  })
  t.equal(DEFAULT_MODEL, 'gpt-realtime')
  t.equal(DEFAULT_REALTIME_URL, 'wss://api.openai.com/v1/realtime')
})

t.test('empty or blank variables count as unset', async (t) => {
  const blank: Record<string, string> = { PORT: '', HOST: ' ', OPENAI_API_KEY: '', OPENAI_REALTIME_URL: '  ', OPENAI_REALTIME_MODEL: '', OPENAI_REALTIME_MODELS: ' , ', OPENAI_AUTH_HEADER: ' ', FUNCTION_ENDPOINT_ALLOWLIST: ' ', ADMIN_TOKEN: ' ', PROXY_AUTH_TOKENS: ' , ', LOG_LEVEL: '', ALLOWED_ORIGINS: '' }
  for (const row of LIMITS) blank[row.env] = ' '
  t.same(loadConfig(blank), loadConfig({}))
})

t.test('the upstream: the simulator unless a key or a URL is set; ?model= added unless the URL names one', async (t) => {
  t.equal(loadConfig({}).upstreamUrl, undefined, 'neither: the built-in simulator')
  t.equal(loadConfig({ OPENAI_API_KEY: 'sk-test' }).upstreamUrl, 'wss://api.openai.com/v1/realtime?model=gpt-realtime', 'a key alone: OpenAI')
  t.equal(loadConfig({ OPENAI_API_KEY: ' sk-test ' }).openaiApiKey, 'sk-test', 'trimmed')
  t.equal(loadConfig({ OPENAI_API_KEY: 'sk', OPENAI_REALTIME_MODEL: 'gpt-realtime-mini' }).upstreamUrl, 'wss://api.openai.com/v1/realtime?model=gpt-realtime-mini')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'ws://127.0.0.1:9000/v1/realtime' }).upstreamUrl, 'ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime', 'a URL without a key')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'wss://example.openai.azure.com/openai/v1/realtime?model=my-deployment', OPENAI_REALTIME_MODEL: 'other' }).upstreamUrl,
    'wss://example.openai.azure.com/openai/v1/realtime?model=my-deployment', 'the URL\'s own model wins')
  t.equal(loadConfig({ OPENAI_REALTIME_MODEL: 'gpt-realtime-mini' }).model, 'gpt-realtime-mini', 'kept for the simulator too')
})

t.test('OPENAI_REALTIME_MODELS: the models Settings may choose, the first the default', async (t) => {
  const config = loadConfig({ OPENAI_API_KEY: 'sk', OPENAI_REALTIME_MODELS: 'gpt-realtime-mini, gpt-realtime,gpt-realtime-mini' })
  t.same(config.models, ['gpt-realtime-mini', 'gpt-realtime'], 'trimmed, each once, in order')
  t.equal(config.model, 'gpt-realtime-mini', 'the first is the default')
  t.equal(config.upstreamUrl, 'wss://api.openai.com/v1/realtime?model=gpt-realtime-mini')
  t.same(loadConfig({ OPENAI_REALTIME_MODEL: 'gpt-realtime-mini' }).models, ['gpt-realtime-mini'], 'unset: OPENAI_REALTIME_MODEL only')
  t.same(loadConfig({ OPENAI_REALTIME_URL: 'wss://r.openai.azure.com/openai/v1/realtime?model=my-deployment' }).models, ['my-deployment'], 'unset: the URL\'s own model only')
  t.same(loadConfig({ OPENAI_REALTIME_MODEL: 'a', OPENAI_REALTIME_MODELS: 'a,b' }).models, ['a', 'b'], 'both, agreeing')
  t.throws(() => loadConfig({ OPENAI_REALTIME_MODEL: 'b', OPENAI_REALTIME_MODELS: 'a,b' }), { message: 'OPENAI_REALTIME_MODEL ("b") must be the first of OPENAI_REALTIME_MODELS ("a,b"), the default: set one of them only, or put it first' })
})

t.test('OPENAI_AUTH_HEADER: authorization, or api-key, which *.openai.azure.com URLs get by default', async (t) => {
  t.equal(loadConfig({ OPENAI_API_KEY: 'sk' }).openaiAuthHeader, 'authorization')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'wss://my-resource.openai.azure.com/openai/v1/realtime?model=my-deployment' }).openaiAuthHeader, 'api-key', 'Azure OpenAI: chosen from the host')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'wss://my-resource.OPENAI.azure.com/openai/v1/realtime' }).openaiAuthHeader, 'api-key', 'hosts are case-insensitive')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'wss://openai.azure.com.evil.io/v1/realtime' }).openaiAuthHeader, 'authorization', 'only that domain')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'wss://gateway.example.com/openai/v1/realtime', OPENAI_AUTH_HEADER: 'API-Key' }).openaiAuthHeader, 'api-key', 'set explicitly (e.g. Azure behind a gateway)')
  t.equal(loadConfig({ OPENAI_REALTIME_URL: 'wss://my-resource.openai.azure.com/openai/v1/realtime', OPENAI_AUTH_HEADER: 'authorization' }).openaiAuthHeader, 'authorization', 'the variable wins over the host')
  t.throws(() => loadConfig({ OPENAI_AUTH_HEADER: 'bearer' }), { message: 'OPENAI_AUTH_HEADER must be one of authorization, api-key (api-key for Azure OpenAI), got "bearer"' })
})

t.test('FUNCTION_ENDPOINT_ALLOWLIST: comma-separated URL prefixes, each checked at start', async (t) => {
  t.same(loadConfig({ FUNCTION_ENDPOINT_ALLOWLIST: 'https://api.example.com/v1/, http://10.0.0.5:8080/hooks' }).functionEndpointAllowlist, ['https://api.example.com/v1/', 'http://10.0.0.5:8080/hooks'])
  t.throws(() => loadConfig({ FUNCTION_ENDPOINT_ALLOWLIST: 'https://ok.example.com/, api.example.com' }), { message: /^FUNCTION_ENDPOINT_ALLOWLIST takes http:\/\/ or https:\/\/ URL prefixes .*got "api\.example\.com"$/ })
})

t.test('OPENAI_REALTIME_URL that is not a WebSocket URL: a message naming it (and not echoing it, it may hold a secret)', async (t) => {
  for (const url of ['not a url', 'https://api.openai.com/v1/realtime', 'api.openai.com/v1/realtime', 'ftp://x/y?key=sk-secret']) {
    t.throws(() => loadConfig({ OPENAI_REALTIME_URL: url }), { message: 'OPENAI_REALTIME_URL must be a ws:// or wss:// URL, such as wss://api.openai.com/v1/realtime' }, url)
  }
})

t.test('PORT: an integer from 0 to 65535', async (t) => {
  for (const [raw, port] of [['0', 0], ['1', 1], ['65535', 65535], [' 8081 ', 8081], ['3000', 3000]] as const) {
    t.equal(loadConfig({ PORT: raw }).port, port, JSON.stringify(raw))
  }
  for (const raw of ['65536', '-1', '1.5', 'http', '80a', 'NaN', 'Infinity']) {
    t.throws(() => loadConfig({ PORT: raw }), { message: `PORT must be an integer from 0 to 65535, got "${raw}"` }, raw)
  }
})

t.test('HOST, ADMIN_TOKEN, LOG_LEVEL: trimmed strings', async (t) => {
  const config = loadConfig({ HOST: ' 127.0.0.1 ', ADMIN_TOKEN: ' s3cret ', LOG_LEVEL: 'debug' })
  t.equal(config.host, '127.0.0.1')
  t.equal(config.adminToken, 's3cret')
  t.equal(config.logLevel, 'debug')
})

t.test('LOG_LEVEL: one of pino\'s levels, or a message naming them', async (t) => {
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) t.equal(loadConfig({ LOG_LEVEL: level }).logLevel, level)
  for (const level of ['loud', 'INFO', 'warning', '30']) {
    t.throws(() => loadConfig({ LOG_LEVEL: level }), { message: `LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${level}"` }, level)
  }
})

t.test('PROXY_AUTH_TOKENS, ALLOWED_ORIGINS: comma-separated, trimmed, empty entries dropped', async (t) => {
  const config = loadConfig({ PROXY_AUTH_TOKENS: ' a, b,,c ,', ALLOWED_ORIGINS: 'https://app.example,  https://other.example ' })
  t.same(config.proxyAuthTokens, ['a', 'b', 'c'])
  t.same(config.allowedOrigins, ['https://app.example', 'https://other.example'])
  t.same(loadConfig({ PROXY_AUTH_TOKENS: 'only' }).proxyAuthTokens, ['only'])
})

t.test('every limit: its variable is read, bounds included; outside them, or not an integer, a message naming the variable', async (t) => {
  for (const row of LIMITS) {
    t.equal(loadConfig({ [row.env]: String(row.min) })[row.option], row.min, `${row.env}=${row.min}`)
    t.equal(loadConfig({ [row.env]: String(row.max) })[row.option], row.max, `${row.env}=${row.max}`)
    t.equal(loadConfig({ [row.env]: ` ${row.default + 1} ` })[row.option], row.default + 1, `${row.env} trimmed`)
    for (const raw of [String(row.min - 1), String(row.max + 1), '1.5', 'lots', '10 MiB', '-0.5']) {
      t.throws(() => loadConfig({ [row.env]: raw }), { message: new RegExp(`^${row.env} must be an integer from ${row.min} to ${row.max} \\(${row.unit}.*\\), got "${raw.replace('.', '\\.')}"$`) }, `${row.env}=${raw}`)
    }
    // Only its own field changes.
    const others = { ...loadConfig({ [row.env]: String(row.max) }) } as Record<string, unknown>
    delete others[row.option]
    const defaults = { ...loadConfig({}) } as Record<string, unknown>
    delete defaults[row.option]
    t.same(others, defaults, `${row.env} sets ${row.option} only`)
  }
})

t.test('a limit where 0 turns it off says so in its message', async (t) => {
  t.throws(() => loadConfig({ UPSTREAM_PING_INTERVAL_MS: '-1' }), { message: /\(ms, 0 = off; / })
  t.throws(() => loadConfig({ MAX_SESSIONS: '0' }), { message: /^MAX_SESSIONS must be an integer from 1 to 1000000 \(count; concurrent sessions per instance\), got "0"$/ })
})

t.test('withModel: adds ?model= unless the URL has one; keeps the rest of the URL', async (t) => {
  t.equal(withModel('wss://api.openai.com/v1/realtime', 'gpt-realtime'), 'wss://api.openai.com/v1/realtime?model=gpt-realtime')
  t.equal(withModel('ws://127.0.0.1:1234/v1/realtime?x=1', 'm'), 'ws://127.0.0.1:1234/v1/realtime?x=1&model=m')
  t.equal(withModel('ws://127.0.0.1:1234/?model=kept', 'm'), 'ws://127.0.0.1:1234/?model=kept')
  t.equal(withModel('ws://127.0.0.1:1234', 'a b'), 'ws://127.0.0.1:1234/?model=a+b', 'the model is encoded')
  t.throws(() => withModel('not a url', 'm'))
})
