// Issue 7: the image and the compose stack cannot be built or started here (no
// Docker engine), so their files are held to what the rest of the repo says: the
// Dockerfile builds and runs with the commands CI and package.json use, the compose
// environment uses only variables the code reads (the README's names), and every
// config file, port and template variable the services refer to exists and agrees.

import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { LIMITS } from '../../lib/limits.js'
import { NGINX_TEMPLATE, REPO } from '../fixtures/deploy-stack.js'

const DOCKER = join(REPO, 'docker')
const read = (path: string): string => readFileSync(join(REPO, path), 'utf8')

/** The README's Configuration table (the OTEL_* row aside): names fixed by the contract. */
const INTERFACE_VARIABLES = ['PORT', 'HOST', 'OPENAI_API_KEY', 'OPENAI_REALTIME_URL', 'OPENAI_REALTIME_MODEL', 'ADMIN_TOKEN', 'PROXY_AUTH_TOKENS', 'LOG_LEVEL', 'REDIS_URL']
const SECRETS = ['OPENAI_API_KEY', 'ADMIN_TOKEN', 'PROXY_AUTH_TOKENS']
/** server.ts gives the drain this much beyond DRAIN_TIMEOUT_MS before close-with-grace gives up. */
const DRAIN_MARGIN_MS = 10_000

interface Instruction { keyword: string, args: string }
interface Service {
  image?: string
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { test: string[] }
  environment?: Record<string, string | number | null>
  stop_grace_period?: string
  volumes?: string[]
  ports?: string[]
  command?: string[]
}

/** Dockerfile instructions per stage, continuation lines joined, comments dropped. */
function dockerStages (text: string): Instruction[][] {
  const stages: Instruction[][] = []
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
  for (const line of logical) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? []
    const instruction = { keyword: keyword.toUpperCase(), args }
    if (instruction.keyword === 'FROM') stages.push([])
    stages.at(-1)?.push(instruction)
  }
  return stages
}

/** The names of the environment variables the code reads (the limits from their table). */
function variablesTheCodeReads (): Set<string> {
  const names = new Set<string>()
  for (const file of ['lib/config.ts', 'lib/telemetry.ts']) {
    const source = read(file)
    for (const match of source.matchAll(/env\.([A-Z][A-Z0-9_]+)/g)) names.add(match[1] as string)
  }
  for (const row of LIMITS) names.add(row.env)
  return names
}

/** The default of a compose `${NAME:-default}` value, or the value itself. */
function composeDefault (value: string): string {
  return /^\$\{[A-Z0-9_]+:-(.*)\}$/.exec(value)?.[1] ?? value
}

const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> }
const compose = parse(read('docker/compose.yaml'), { merge: true }) as { services: Record<string, Service> }
const services = compose.services

t.test('Dockerfile: multi-stage build and run with the commands CI and package.json use', async (t) => {
  const text = read('docker/Dockerfile')
  const stages = dockerStages(text)
  t.equal(stages.length, 2, 'two stages: build and runtime')
  const [build = [], runtime = []] = stages
  const runs = (stage: Instruction[]): string[] => stage.filter((i) => i.keyword === 'RUN').map((i) => i.args)

  const nodeImage = /^ARG NODE_IMAGE=(\S+)$/m.exec(text)?.[1]
  t.match(nodeImage, /^node:22-[a-z]+-slim$/, 'Node 22 LTS, slim')
  t.match(build[0]?.args, /^\$\{NODE_IMAGE\} AS build$/)
  t.match(runtime[0]?.args, /^\$\{NODE_IMAGE\} AS runtime$/)

  t.ok(runs(build).some((r) => /^npm ci( |$)/.test(r) && !r.includes('--omit')), 'build stage: npm ci with dev dependencies')
  t.ok(runs(build).includes('npm run build'), 'build stage: npm run build')
  t.equal(pkg.scripts.build, 'tsc -p tsconfig.build.json', 'npm run build is the tsc build the deploy test runs')
  t.ok(runs(runtime).some((r) => /^npm ci --omit=dev( |$)/.test(r)), 'runtime stage: production dependencies only')
  t.ok(runtime.some((i) => i.keyword === 'COPY' && i.args === '--from=build /app/dist ./dist'), 'runtime stage: dist/ from the build stage')
  t.ok(runtime.some((i) => i.keyword === 'COPY' && i.args === 'openapi.yaml ./'), 'runtime stage: openapi.yaml at the package root, where plugins/admin.ts looks')
  t.ok(runtime.some((i) => i.keyword === 'COPY' && i.args === 'web ./web'), 'runtime stage: web/ (the admin page) at the package root, where plugins/admin.ts looks')
  t.ok((JSON.parse(read('package.json')) as { files: string[] }).files.includes('web'), 'and the npm package ships it too')

  const user = runtime.filter((i) => i.keyword === 'USER').at(-1)?.args
  t.ok(user !== undefined && !['root', '0'].includes(user), `runs as a non-root user (${user})`)
  t.match(runtime.find((i) => i.keyword === 'HEALTHCHECK')?.args, /\/healthz/, 'HEALTHCHECK probes /healthz')

  const entrypoint = JSON.parse(runtime.find((i) => i.keyword === 'ENTRYPOINT')?.args ?? 'null') as string[]
  const cmd = JSON.parse(runtime.find((i) => i.keyword === 'CMD')?.args ?? 'null') as string[]
  t.same(entrypoint, ['/usr/bin/tini', '--'], 'a tiny init as PID 1 (exec form)')
  t.same(cmd, pkg.scripts.start?.split(' '), `node is its direct child, running what npm start runs (${pkg.scripts.start})`)
  t.notOk(text.includes('npm start'), 'npm never stands between the init and node')

  for (const secret of SECRETS) {
    t.notMatch(text, new RegExp(`^(ENV|ARG)\\b.*\\b${secret}\\b`, 'm'), `${secret} is not baked into the image`)
  }

  const allowed = new Set(read('docker/Dockerfile.dockerignore').split('\n').filter((line) => line.startsWith('!')).map((line) => line.slice(1)))
  for (const copy of stages.flat().filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))) {
    for (const source of copy.args.split(/\s+/).slice(0, -1)) {
      t.ok(allowed.has(source), `${source} is in the build context (Dockerfile.dockerignore)`)
      t.ok(existsSync(join(REPO, source)), `${source} exists`)
    }
  }
})

t.test('compose: the proxies use only variables the code reads, secrets from the environment', async (t) => {
  const known = variablesTheCodeReads()
  for (const name of INTERFACE_VARIABLES) t.ok(known.has(name), `the code reads ${name} (README, Configuration)`)
  const deploy = read('README.md')

  for (const name of ['proxy-1', 'proxy-2']) {
    const environment = services[name]?.environment ?? {}
    for (const variable of Object.keys(environment)) {
      t.ok(known.has(variable), `${name}: ${variable} is a variable the proxy reads`)
      t.match(deploy, new RegExp(`\\| \`${variable}\` \\|`), `${name}: ${variable} is in the README's environment tables`)
    }
    for (const variable of INTERFACE_VARIABLES) t.ok(variable in environment, `${name} passes ${variable} through`)
    for (const secret of SECRETS) {
      t.equal(environment[secret], `\${${secret}:-}`, `${name}: ${secret} comes from the environment, with no value written here`)
    }

    const drainMs = Number(composeDefault(String(environment.DRAIN_TIMEOUT_MS)))
    const grace = /^(\d+)s$/.exec(composeDefault(services[name]?.stop_grace_period ?? ''))
    t.ok(grace !== null && Number(grace[1]) * 1000 >= drainMs + DRAIN_MARGIN_MS,
      `${name}: stop_grace_period (${services[name]?.stop_grace_period}) covers DRAIN_TIMEOUT_MS (${drainMs}) + ${DRAIN_MARGIN_MS / 1000} s`)
  }
})

t.test('compose: nginx renders the template the load-balancer test uses, pointed at the replicas', async (t) => {
  const lb = services.lb ?? {}
  const environment = lb.environment ?? {}
  t.ok(lb.volumes?.includes('./nginx/templates:/etc/nginx/templates:ro'), 'mounts docker/nginx/templates as the image\'s template directory')
  t.equal(NGINX_TEMPLATE, join(DOCKER, 'nginx/templates/default.conf.template'), 'the test renders a file from that directory')
  t.equal(environment.NGINX_ENVSUBST_FILTER, '^LB_', 'only LB_* variables are substituted, as the test does')
  const used = new Set(Array.from(readFileSync(NGINX_TEMPLATE, 'utf8').matchAll(/\$\{([A-Z0-9_]+)\}/g), (m) => m[1] as string))
  t.same([...used].sort(), ['LB_LISTEN', 'LB_UPSTREAM_1', 'LB_UPSTREAM_2'], 'the template\'s variables')
  for (const variable of used) t.ok(variable in environment, `lb sets ${variable}`)
  for (const [variable, service] of [['LB_UPSTREAM_1', 'proxy-1'], ['LB_UPSTREAM_2', 'proxy-2']] as const) {
    t.equal(environment[variable], `${service}:${services[service]?.environment?.PORT}`, `${variable} is ${service} on its PORT`)
  }
  t.ok(lb.ports?.some((port) => port.endsWith(`:${environment.LB_LISTEN}`)), 'the published port is the one nginx listens on')

  const blocked = /location ~ \^\/\(([a-z|]+)\)\(\/\|\$\) \{\s*return 404;/.exec(readFileSync(NGINX_TEMPLATE, 'utf8'))?.[1]?.split('|') ?? []
  const openapi = parse(read('openapi.yaml')) as { paths: Record<string, Record<string, { tags?: string[] }>> }
  const adminPaths = Object.entries(openapi.paths).filter(([, item]) => Object.values(item).some((operation) => operation.tags?.includes('admin'))).map(([path]) => path)
  t.ok(adminPaths.length >= 5)
  for (const path of [...adminPaths, '/metrics']) {
    t.ok(blocked.includes(path.split('/')[1] ?? ''), `the balancer answers 404 for ${path} (admin and per-replica routes stay off it)`)
  }
})

t.test('compose: logs go to an OpenTelemetry Collector, metrics to Prometheus', async (t) => {
  const collector = services['otel-collector'] ?? {}
  t.match(collector.image, /^otel\/opentelemetry-collector-contrib:/, 'the contrib Collector image')
  const collectorMount = collector.volumes?.find((v) => v.startsWith('./'))?.split(':') ?? []
  t.same(collector.command, [`--config=${collectorMount[1]}`], 'the Collector runs the mounted config')
  const collectorConfig = parse(readFileSync(join(DOCKER, collectorMount[0] ?? ''), 'utf8')) as any
  t.equal(collectorConfig.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318', 'OTLP/HTTP on 4318, on every interface')
  const logs = collectorConfig.service.pipelines.logs
  t.ok(logs.receivers.includes('otlp'), 'the logs pipeline receives OTLP')
  t.ok(logs.exporters.some((e: string) => /^(debug|file)(\/|$)/.test(e)), 'and writes with a debug or file exporter')
  for (const name of ['proxy-1', 'proxy-2']) {
    t.equal(services[name]?.environment?.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector:4318', `${name} exports logs to the Collector`)
  }

  const prometheus = services.prometheus ?? {}
  const promMount = prometheus.volumes?.find((v) => v.startsWith('./'))?.split(':') ?? []
  t.equal(promMount[1], '/etc/prometheus/prometheus.yml', 'the config is where the image reads it')
  const promConfig = parse(readFileSync(join(DOCKER, promMount[0] ?? ''), 'utf8')) as any
  const job = promConfig.scrape_configs[0]
  t.equal(job.metrics_path, '/metrics')
  t.same(job.static_configs[0].targets, ['proxy-1', 'proxy-2'].map((s) => `${s}:${services[s]?.environment?.PORT}`), 'scrapes each replica directly')
})

t.test('compose: both replicas share one fleet registry that only they reach', async (t) => {
  const urls = ['proxy-1', 'proxy-2'].map((name) => String(services[name]?.environment?.REDIS_URL ?? ''))
  t.equal(urls[0], urls[1], 'the same REDIS_URL on both replicas')
  const url = new URL(urls[0] ?? '')
  t.equal(url.protocol, 'redis:')
  const registry = services[url.hostname]
  t.ok(registry !== undefined, `REDIS_URL names a service of the stack (${url.hostname})`)
  t.match(registry?.image, /^(valkey\/valkey|redis):/, 'Valkey or Redis')
  const command = registry?.command ?? []
  t.equal(url.port, '6379', 'on the server\'s default port')
  t.notOk(command.includes('--port'), 'which the command keeps')
  t.same(command.slice(command.indexOf('--save'), command.indexOf('--save') + 2), ['--save', ''], 'nothing persisted: every replica rewrites its entries each second')
  t.same(command.slice(command.indexOf('--appendonly'), command.indexOf('--appendonly') + 2), ['--appendonly', 'no'])
  t.equal(registry?.ports, undefined, 'not published: whoever writes to it can close sessions')
  t.match(registry?.healthcheck?.test.join(' '), /-cli ping$/)
  for (const name of ['proxy-1', 'proxy-2']) {
    t.equal(services[name]?.depends_on?.[url.hostname]?.condition, 'service_started', `${name} starts after it but does not wait for it (it serves without it)`)
  }
})
