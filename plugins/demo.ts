// The talk-to-the-agent page at `/`: plain HTML/JS/CSS from web/demo and Deepgram's
// own browser client (`@deepgram/browser-agent`, the `<deepgram-agent>` web
// component) from node_modules, pointed at this instance's WebSocket endpoint.
//
// Public on purpose: the page does nothing an anonymous client could not already do
// over the WebSocket, and /demo/config.json says only what the page must know (is
// this the simulator, is a client token needed), never a secret. Every file served
// is named here and read once at registration: no path from a request reaches the
// file system, and a missing file fails the start instead of a visitor.

import { access, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { FastifyPluginAsync } from 'fastify'

export interface DemoOptions {
  /** The agent is the built-in simulator (no OPENAI_API_KEY): the page says so. */
  simulator: boolean
  /** PROXY_AUTH_TOKENS is set: the page asks for a token. */
  authRequired: boolean
  /** The upstream model serving sessions, shown on the page and sent in its Settings. */
  model: string
  /** The WebSocket endpoint's path on this instance. */
  conversePath: string
}

/** What `GET /demo/config.json` answers. */
export interface DemoConfig {
  simulator: boolean
  authRequired: boolean
  model: string
  conversePath: string
}

/** URL → file in web/demo. */
const PAGE_FILES: Record<string, { file: string, type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/demo/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/demo/transcript.js': { file: 'transcript.js', type: 'text/javascript; charset=utf-8' },
  '/demo/local-time.js': { file: 'local-time.js', type: 'text/javascript; charset=utf-8' },
  '/demo/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' }
}

/**
 * URL → module specifier of the browser client. `index.mjs` imports `./hoop.mjs`, so
 * both keep their package file names side by side.
 */
const VENDOR_FILES: Record<string, string> = {
  '/demo/vendor/browser-agent/index.mjs': '@deepgram/browser-agent',
  '/demo/vendor/browser-agent/hoop.mjs': '@deepgram/browser-agent/hoop'
}

/** web/demo beside the package root: from `plugins/` in source, `dist/plugins/` after a build. */
const WEB_CANDIDATES = [new URL('../web/demo/', import.meta.url), new URL('../../web/demo/', import.meta.url)]

// The page loads its own scripts and styles only and talks to this origin's WebSocket.
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'permissions-policy': 'microphone=(self)',
  'referrer-policy': 'no-referrer'
}

const demo: FastifyPluginAsync<DemoOptions> = async (app, options) => {
  const config = validated(options)
  const files = new Map<string, { body: string, type: string }>()
  const web = await webDirectory()
  for (const [url, { file, type }] of Object.entries(PAGE_FILES)) {
    files.set(url, { body: await readFile(new URL(file, web), 'utf8'), type })
  }
  for (const [url, specifier] of Object.entries(VENDOR_FILES)) {
    files.set(url, { body: await readFile(installed(specifier), 'utf8'), type: 'text/javascript; charset=utf-8' })
  }

  for (const [url, { body, type }] of files) {
    app.get(url, async (_request, reply) => {
      reply.type(type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff')
      if (url === '/') reply.headers(PAGE_HEADERS)
      return reply.send(body)
    })
  }

  app.get('/demo/config.json', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    return config
  })
}

export default demo

function validated (options: DemoOptions): DemoConfig {
  const problems = []
  if (typeof options.simulator !== 'boolean') problems.push('`simulator` (a boolean)')
  if (typeof options.authRequired !== 'boolean') problems.push('`authRequired` (a boolean)')
  if (typeof options.model !== 'string' || options.model === '') problems.push('`model` (a non-empty string)')
  if (typeof options.conversePath !== 'string' || !options.conversePath.startsWith('/')) problems.push('`conversePath` (a path starting with /)')
  if (problems.length > 0) throw new TypeError(`demo plugin: pass ${problems.join(', ')}`)
  // Copied field by field: nothing else the caller passed may reach the page.
  return { simulator: options.simulator, authRequired: options.authRequired, model: options.model, conversePath: options.conversePath }
}

async function webDirectory (): Promise<URL> {
  for (const candidate of WEB_CANDIDATES) {
    try {
      await access(new URL('index.html', candidate))
      return candidate
    } catch {}
  }
  throw new Error(`demo plugin: web/demo not found at ${WEB_CANDIDATES.map((url) => url.pathname).join(' or ')}; ship web/ beside the package root`)
}

function installed (specifier: string): string {
  try {
    return createRequire(import.meta.url).resolve(specifier)
  } catch {
    throw new Error(`demo plugin: ${specifier} is not installed; run npm ci (it is a dependency of this package)`)
  }
}
