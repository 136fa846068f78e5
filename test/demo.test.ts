// Issue 16, server side: the page at `/` and what it loads are served from a fixed
// list (web/demo and the browser client from node_modules), /demo/config.json tells
// the page what it must know and no secret, and the files ship in the image and the
// npm package. The page's two pure modules (turn de-duplication, the sample
// function) are tested here too; the page itself runs in test/demo-page.test.ts.

import { readdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import Fastify from 'fastify'
import t from 'tap'
import demo from '../plugins/demo.js'
import { CONVERSE_PATH } from '../plugins/realtime.js'
import { buildServer, REPO, startInstance } from './fixtures/deploy-stack.js'
import { startProxy } from './helpers/proxy.js'

const PAGE_URLS = ['/', '/demo/app.js', '/demo/transcript.js', '/demo/local-time.js', '/demo/style.css']
const VENDOR_URLS = ['/demo/vendor/browser-agent/index.mjs', '/demo/vendor/browser-agent/hoop.mjs']
const require = createRequire(import.meta.url)

// Plain browser modules without type declarations: loaded as what they are.
const { TurnLedger } = await import(String(new URL('../web/demo/transcript.js', import.meta.url)))
const { LOCAL_TIME, answerLocalTime } = await import(String(new URL('../web/demo/local-time.js', import.meta.url)))

t.test('the page and everything it loads are served, with their types', async (t) => {
  const { base } = await startProxy(t)
  const page = await fetch(`${base}/`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html; charset=utf-8/)
  t.match(page.headers.get('content-security-policy'), /default-src 'none'.*script-src 'self'.*connect-src 'self'/)
  t.equal(page.headers.get('x-content-type-options'), 'nosniff')
  t.equal(await page.text(), await readFile(new URL('../web/demo/index.html', import.meta.url), 'utf8'))

  for (const url of PAGE_URLS.slice(1)) {
    const res = await fetch(`${base}${url}`)
    t.equal(res.status, 200, url)
    t.match(res.headers.get('content-type'), url.endsWith('.css') ? /^text\/css/ : /^text\/javascript/, url)
    t.equal(await res.text(), await readFile(new URL(`../web/demo/${url.split('/').at(-1)}`, import.meta.url), 'utf8'), `${url} is the file in web/demo`)
  }
  const fromPackage = [require.resolve('@deepgram/browser-agent'), require.resolve('@deepgram/browser-agent/hoop')]
  for (const [index, url] of VENDOR_URLS.entries()) {
    const res = await fetch(`${base}${url}`)
    t.equal(res.status, 200, url)
    t.match(res.headers.get('content-type'), /^text\/javascript/)
    t.equal(await res.text(), await readFile(fromPackage[index] as string, 'utf8'), `${url} is the installed package's file`)
  }
})

t.test('every file in web/demo is served, and nothing else is', async (t) => {
  const onDisk = (await readdir(new URL('../web/demo/', import.meta.url))).sort()
  const served = PAGE_URLS.map((url) => url === '/' ? 'index.html' : url.split('/').at(-1)).sort()
  t.same(served, onDisk, 'the plugin lists exactly the files in web/demo')

  const { base } = await startProxy(t)
  const probes = [
    '/index.html', '/demo/', '/demo/index.html', '/demo/config', '/demo/vendor/browser-agent/index.d.ts',
    '/demo/vendor/browser-agent/package.json', '/demo/vendor/browser-agent/../../../package.json',
    '/demo/vendor/browser-agent/%2e%2e/%2e%2e/%2e%2e/package.json', '/demo/..%2f..%2fpackage.json', '/web/demo/app.js',
    '/node_modules/@deepgram/browser-agent/dist/index.mjs', '/demo/app.js/'
  ]
  for (const url of probes) {
    const res = await fetch(`${base}${url}`)
    t.equal(res.status, 404, `${url} is not served`)
  }
})

t.test('config.json: what the page needs, no secret', async (t) => {
  const secrets = { OPENAI_API_KEY: 'sk-demo-secret-key', ADMIN_TOKEN: 'admin-demo-secret', PROXY_AUTH_TOKENS: 'client-demo-secret,second-demo-secret' }

  const simulated = await startProxy(t)
  let res = await fetch(`${simulated.base}/demo/config.json`)
  t.equal(res.headers.get('cache-control'), 'no-store')
  t.same(await res.json(), { simulator: true, authRequired: false, model: 'gpt-realtime', conversePath: CONVERSE_PATH })

  // The key makes it OpenAI (never reached here: the page is all this test loads).
  const real = await startProxy(t, { env: { ...secrets, OPENAI_REALTIME_MODEL: 'gpt-realtime-mini' } })
  res = await fetch(`${real.base}/demo/config.json`)
  t.same(await res.json(), { simulator: false, authRequired: true, model: 'gpt-realtime-mini', conversePath: CONVERSE_PATH })

  for (const url of ['/demo/config.json', ...PAGE_URLS, ...VENDOR_URLS]) {
    const body = await (await fetch(`${real.base}${url}`)).text()
    for (const secret of [secrets.OPENAI_API_KEY, secrets.ADMIN_TOKEN, 'client-demo-secret', 'second-demo-secret']) {
      t.notOk(body.includes(secret), `${url} does not contain ${secret}`)
    }
  }
})

t.test('the page is public: no admin token, any client address', async (t) => {
  const { base } = await startProxy(t, { env: { ADMIN_TOKEN: 'admin-demo-secret' } })
  t.equal((await fetch(`${base}/connections`)).status, 401, 'admin routes still need the token')
  t.equal((await fetch(`${base}/`)).status, 200)
  t.equal((await fetch(`${base}/demo/config.json`)).status, 200)
})

t.test('registration says what to pass', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(demo, {} as any) }, { message: /demo plugin: pass `simulator` \(a boolean\), `authRequired` \(a boolean\), `model`.*, `conversePath`/ })
})

t.test('a missing page or browser client fails the start with what to do', async (t) => {
  const options = { simulator: true, authRequired: false, model: 'gpt-realtime', conversePath: CONVERSE_PATH }
  const fs = await import('node:fs/promises')
  const withoutWeb = await t.mockImport<typeof import('../plugins/demo.js')>('../plugins/demo.js', {
    'node:fs/promises': { ...fs, access: async () => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }) } }
  })
  const first = Fastify()
  t.teardown(() => first.close())
  await t.rejects(async () => { await first.register(withoutWeb.default, options) }, { message: /^demo plugin: web\/demo not found at .*web\/demo\/ or .*; ship web\/ beside the package root$/ })

  const withoutClient = await t.mockImport<typeof import('../plugins/demo.js')>('../plugins/demo.js', {
    'node:module': { createRequire: () => ({ resolve: () => { throw new Error('Cannot find module') } }) }
  })
  const second = Fastify()
  t.teardown(() => second.close())
  await t.rejects(async () => { await second.register(withoutClient.default, options) }, { message: 'demo plugin: @deepgram/browser-agent is not installed; run npm ci (it is a dependency of this package)' })
})

t.test('from the image layout (dist/ beside web/)', async (t) => {
  const root = await buildServer(t)
  const instance = await startInstance(t, root, 'demo', {})
  for (const url of [...PAGE_URLS, ...VENDOR_URLS, '/demo/config.json']) {
    t.equal((await fetch(`${instance.base}${url}`)).status, 200, url)
  }
})

t.test('web/ ships in the npm package and the image', async (t) => {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { files: string[], dependencies: Record<string, string> }
  t.ok(pkg.files.includes('web'), 'package.json "files" has web')
  t.ok('@deepgram/browser-agent' in pkg.dependencies, 'the browser client is a runtime dependency (served from node_modules)')
  const dockerfile = await readFile(`${REPO}/docker/Dockerfile`, 'utf8')
  t.match(dockerfile, /^COPY web \.\/web$/m, 'the runtime stage copies web/')
})

t.test('TurnLedger: a turn reported as ConversationText and History shows once', async (t) => {
  const ledger = new TurnLedger()
  t.equal(ledger.report('ConversationText', 'user', 'Hi'), true)
  t.equal(ledger.report('History', 'user', 'Hi'), false, 'the History copy of a shown turn')
  t.equal(ledger.report('History', 'assistant', 'Hello'), true, 'History first')
  t.equal(ledger.report('ConversationText', 'assistant', 'Hello'), false, 'then its ConversationText')
  t.equal(ledger.report('ConversationText', 'user', 'Hi'), true, 'the same sentence said again is a new turn')
  t.equal(ledger.report('History', 'user', 'Hi'), false)
  t.equal(ledger.report('History', 'assistant', 'Hi'), true, 'the role is part of the turn')
  t.throws(() => ledger.report('Other', 'user', 'Hi'), TypeError)

  const small = new TurnLedger(2)
  small.report('ConversationText', 'user', 'a')
  small.report('ConversationText', 'user', 'b')
  small.report('ConversationText', 'user', 'c')
  t.equal(small.report('History', 'user', 'c'), false, 'recent turns are remembered')
  t.equal(small.report('History', 'user', 'a'), true, 'beyond the bound the oldest are forgotten')
})

t.test('local_time: the sample function', async (t) => {
  const now = new Date('2026-03-03T12:34:00Z') // a Tuesday
  t.same(LOCAL_TIME.parameters.required, ['city'])
  t.equal(answerLocalTime('{"city":"Tokyo"}', now), '21:34 on Tuesday in Tokyo (Asia/Tokyo)')
  t.equal(answerLocalTime('{"city":"new york"}', now), '07:34 on Tuesday in new york (America/New_York)')
  t.equal(answerLocalTime('{"city":"Reykjavik","timezone":"Atlantic/Reykjavik"}', now), '12:34 on Tuesday in Reykjavik (Atlantic/Reykjavik)')
  t.equal(answerLocalTime('{"city":"Atlantis"}', now), 'Error: the time zone of Atlantis is unknown; give its IANA time zone.')
  t.equal(answerLocalTime('{"city":"Paris","timezone":"Mars/Olympus"}', now), 'Error: "Mars/Olympus" is not a time zone.')
  t.equal(answerLocalTime('{}', now), 'Error: no city was given.')
  t.equal(answerLocalTime('null', now), 'Error: no city was given.')
  t.equal(answerLocalTime('not json', now), 'Error: the arguments were not JSON.')
})
