// lib/functions.ts: server-side functions called for real, against local HTTP servers:
// only URLs under the allowlist (compared on parsed URLs, redirects included), the
// declared method and headers, the arguments as body or query, and every failure (refused,
// too slow, an HTTP error, an answer too big) an output the model can explain, never an
// exception.

import t from 'tap'
import { EndpointAllowlist, callEndpoint, readEndpoint } from '../lib/functions.js'
import type { FunctionEndpoint } from '../lib/functions.js'
import { endpointServer as server, json } from './helpers/http-endpoint.js'
import type { Seen } from './helpers/http-endpoint.js'

function endpoint (url: string, method: FunctionEndpoint['method'] = 'POST', headers: Record<string, string> = {}): FunctionEndpoint {
  return { url, method, headers }
}

const options = (allowlist: EndpointAllowlist, more: { timeoutMs?: number, maxResponseBytes?: number } = {}): Parameters<typeof callEndpoint>[2] =>
  ({ allowlist, timeoutMs: more.timeoutMs ?? 5000, maxResponseBytes: more.maxResponseBytes ?? 65536 })

t.test('the allowlist compares parsed URLs: scheme, host and port, and the path on a segment boundary', async (t) => {
  const allow = EndpointAllowlist.parse(['https://api.example.com', 'https://tools.example.com/v1', 'http://127.0.0.1:9000/hooks/'])
  for (const url of ['https://api.example.com/', 'https://api.example.com/anything?x=1', 'https://API.example.com/x', 'https://api.example.com:443/x',
    'https://tools.example.com/v1', 'https://tools.example.com/v1/weather', 'http://127.0.0.1:9000/hooks/a']) {
    t.ok(allow.allows(url), `allows ${url}`)
  }
  for (const url of [
    'https://api.example.com.evil.io/', // a longer host
    'https://evil.io/?https://api.example.com', // the prefix in the query
    'https://api.example.com@evil.io/', // credentials that look like the host
    'https://user:pw@api.example.com/', // credentials at all
    'http://api.example.com/', // another scheme
    'https://api.example.com:8443/', // another port
    'https://tools.example.com/v10', // not on a segment boundary
    'https://tools.example.com/v1/../admin', // normalised away from the prefix
    'https://tools.example.com/v1/%2e%2e/admin', // the same, percent-encoded
    'https://tools.example.com/', // above the prefix
    'http://127.0.0.1:9000/hooks', // the prefix ends with a slash: only below it
    'http://127.0.0.1:9001/hooks/a',
    'ftp://api.example.com/',
    'not a url'
  ]) {
    t.notOk(allow.allows(url), `refuses ${url}`)
  }
  t.ok(EndpointAllowlist.none.isEmpty)
  t.notOk(EndpointAllowlist.none.allows('https://api.example.com/'), 'an empty allowlist allows nothing')
  for (const entry of ['api.example.com', 'ftp://x/', 'https://u:p@x/', 'https://x/?q=1', 'https://x/#f', '']) {
    t.throws(() => EndpointAllowlist.parse([entry]), { message: `FUNCTION_ENDPOINT_ALLOWLIST takes http:// or https:// URL prefixes without credentials, query or fragment (e.g. https://api.example.com/v1/), got "${entry}"` }, entry)
  }
})

t.test('readEndpoint: url, method (POST by default, upper-cased), headers; anything else is why not', async (t) => {
  t.same(readEndpoint({ url: 'https://x.example/f' }), { url: 'https://x.example/f', method: 'POST', headers: {} })
  t.same(readEndpoint({ url: 'https://x.example/f', method: 'get', headers: { 'X-Key': 'k' } }), { url: 'https://x.example/f', method: 'GET', headers: { 'X-Key': 'k' } })
  t.equal(readEndpoint('https://x.example/f'), 'its endpoint needs "url" as an http:// or https:// URL')
  t.equal(readEndpoint({ url: 'file:///etc/passwd' }), 'its endpoint needs "url" as an http:// or https:// URL')
  t.equal(readEndpoint({ url: 'https://x.example/f', method: 'CONNECT' }), 'its endpoint\'s "method" must be one of GET, POST, PUT, PATCH, DELETE')
  t.equal(readEndpoint({ url: 'https://x.example/f', headers: ['a'] }), 'its endpoint\'s "headers" must be an object of strings')
  for (const headers of [{ 'bad name': 'x' }, { a: 5 }, { a: 'x\r\nInjected: y' }, Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`h${i}`, 'v']))]) {
    t.type(readEndpoint({ url: 'https://x.example/f', headers }), 'string', JSON.stringify(headers))
  }
})

t.test('POST, PUT, PATCH: the arguments as the JSON body, with the declared headers; the answer is the output', async (t) => {
  const { base, seen } = await server(t, (request, response) => json(response, 200, { ok: true, method: request.method }))
  const allow = EndpointAllowlist.parse([`${base}/api/`])
  for (const method of ['POST', 'PUT', 'PATCH'] as const) {
    const output = await callEndpoint(endpoint(`${base}/api/book`, method, { authorization: 'Bearer tool-key', 'X-Tenant': 'acme' }), '{"date":"2026-01-02","people":2}', options(allow))
    t.same(JSON.parse(output), { ok: true, method }, `${method}: the endpoint's answer, as it is`)
    const request = seen.at(-1) as Seen
    t.match(request, { method, url: '/api/book', body: '{"date":"2026-01-02","people":2}' })
    t.match(request.headers, { authorization: 'Bearer tool-key', 'x-tenant': 'acme', 'content-type': 'application/json' })
  }
  await callEndpoint(endpoint(`${base}/api/raw`, 'POST', { 'Content-Type': 'text/plain' }), 'hello', options(allow))
  t.equal(seen.at(-1)?.headers['content-type'], 'text/plain', 'a declared Content-Type is kept')
})

t.test('GET and DELETE: the arguments as the query string (non-strings as JSON); arguments that are not an object are refused', async (t) => {
  const { base, seen } = await server(t, (_request, response) => response.writeHead(200, { 'content-type': 'text/plain' }).end('21 degrees'))
  const allow = EndpointAllowlist.parse([base])
  t.equal(await callEndpoint(endpoint(`${base}/weather?units=metric`, 'GET'), '{"city":"Zürich","days":2,"detail":{"wind":true}}', options(allow)), '21 degrees')
  const url = new URL(seen.at(-1)?.url ?? '', base)
  t.same([...url.searchParams], [['units', 'metric'], ['city', 'Zürich'], ['days', '2'], ['detail', '{"wind":true}']])
  t.equal(seen.at(-1)?.body, '', 'no body')
  await callEndpoint(endpoint(`${base}/orders/7`, 'DELETE'), '{}', options(allow))
  t.match(seen.at(-1), { method: 'DELETE', url: '/orders/7' })
  const count = seen.length
  for (const args of ['[1,2]', 'not json', '"x"']) {
    t.same(JSON.parse(await callEndpoint(endpoint(`${base}/weather`, 'GET'), args, options(allow))), { error: 'the function\'s arguments are not a JSON object' }, args)
  }
  t.equal(seen.length, count, 'nothing was called')
})

t.test('a URL outside the allowlist is never called', async (t) => {
  const { base, seen } = await server(t, (_request, response) => json(response, 200, {}))
  const allow = EndpointAllowlist.parse([`${base}/allowed`])
  for (const url of [`${base}/allowed-not`, `${base}/other`, `${base}/allowed/../secret`, `${base.replace('127.0.0.1', 'localhost')}/allowed`]) {
    t.same(JSON.parse(await callEndpoint(endpoint(url), '{}', options(allow))), { error: 'this function\'s endpoint may not be called' }, url)
  }
  t.same(JSON.parse(await callEndpoint(endpoint(`${base}/allowed`), '{}', options(EndpointAllowlist.none))), { error: 'this function\'s endpoint may not be called' }, 'an empty allowlist')
  t.same(seen, [], 'no request reached the server')
})

t.test('redirects are followed only to allowed URLs (a 303 continues as a GET)', async (t) => {
  const { base: outside, seen: outsideSeen } = await server(t, (_request, response) => json(response, 200, { leaked: true }))
  const { base, seen } = await server(t, (request, response) => {
    if (request.url === '/api/moved') response.writeHead(307, { location: '/api/here' }).end()
    else if (request.url === '/api/see-other') response.writeHead(303, { location: `${base}/api/here` }).end()
    else if (request.url === '/api/away') response.writeHead(302, { location: `${outside}/api/here` }).end()
    else if (request.url === '/api/loop') response.writeHead(301, { location: '/api/loop' }).end()
    else json(response, 200, { at: request.url, method: request.method })
  })
  const allow = EndpointAllowlist.parse([`${base}/api/`])
  t.same(JSON.parse(await callEndpoint(endpoint(`${base}/api/moved`), '{"a":1}', options(allow))), { at: '/api/here', method: 'POST' }, '307: same method and body')
  t.equal(seen.at(-1)?.body, '{"a":1}')
  t.same(JSON.parse(await callEndpoint(endpoint(`${base}/api/see-other`), '{"a":1}', options(allow))), { at: '/api/here', method: 'GET' }, '303: a GET')
  t.same(JSON.parse(await callEndpoint(endpoint(`${base}/api/away`), '{}', options(allow))), { error: 'the endpoint redirected to a URL that may not be called' })
  t.same(outsideSeen, [], 'the unlisted host was never called')
  t.same(JSON.parse(await callEndpoint(endpoint(`${base}/api/loop`), '{}', options(allow))), { error: 'the endpoint redirected more than 5 times' })
})

t.test('failures become outputs: an HTTP error (with the start of its body), a refused connection, a timeout, an answer too big, no content', async (t) => {
  const { base } = await server(t, (request, response) => {
    if (request.url === '/unavailable') json(response, 503, { message: 'maintenance until 10:00' })
    else if (request.url === '/not-found') response.writeHead(404).end()
    else if (request.url === '/long-error') response.writeHead(500).end('e'.repeat(5000))
    else if (request.url === '/slow') setTimeout(() => json(response, 200, {}), 2000).unref()
    else if (request.url === '/big') json(response, 200, { data: 'x'.repeat(10_000) })
    else if (request.url === '/big-chunked') {
      response.writeHead(200, { 'content-type': 'text/plain' })
      for (let i = 0; i < 10; i++) response.write('y'.repeat(1000))
      response.end()
    } else response.writeHead(204).end()
  })
  const allow = EndpointAllowlist.parse([base, 'http://127.0.0.1:1/'])
  const call = async (path: string, more: { timeoutMs?: number, maxResponseBytes?: number } = {}): Promise<unknown> =>
    JSON.parse(await callEndpoint(endpoint(`${base}${path}`), '{}', options(allow, more)))
  t.same(await call('/unavailable'), { error: 'the endpoint answered HTTP 503', body: '{"message":"maintenance until 10:00"}' })
  t.same(await call('/not-found'), { error: 'the endpoint answered HTTP 404' })
  t.same(await call('/long-error'), { error: 'the endpoint answered HTTP 500', body: `${'e'.repeat(1000)}…` }, 'the body cut to 1000 characters')
  t.same(await call('/slow', { timeoutMs: 200 }), { error: 'the endpoint did not answer within 200 ms' })
  t.same(await call('/big', { maxResponseBytes: 4096 }), { error: 'the endpoint\'s answer was larger than 4096 bytes' }, 'Content-Length over the bound')
  t.same(await call('/big-chunked', { maxResponseBytes: 4096 }), { error: 'the endpoint\'s answer was larger than 4096 bytes' }, 'a chunked body over the bound')
  t.same(await call('/done'), { result: 'the endpoint answered HTTP 204 with no content' })
  t.same(JSON.parse(await callEndpoint(endpoint('http://127.0.0.1:1/x'), '{}', options(allow))), { error: 'the endpoint could not be reached' })
  const abort = new AbortController()
  const pending = callEndpoint(endpoint(`${base}/slow`), '{}', { ...options(allow), signal: abort.signal })
  abort.abort()
  t.same(JSON.parse(await pending), { error: 'the call was abandoned: the session ended' })
})
