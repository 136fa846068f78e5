// Azure OpenAI: its Realtime endpoint (`/openai/v1/realtime?model=<deployment>`) takes the
// key as `api-key: <key>`, not `Authorization: Bearer`. The built-in simulator serves
// Azure's path and checks either header against its key, so the leg is tested for real:
// the header that went, and that a key in the wrong place is refused.

import t, { type Test } from 'tap'
import { AZURE_REALTIME_PATH, startSimulator } from '../lib/simulator/index.js'
import type { Simulator } from '../lib/simulator/index.js'
import { UpstreamLeg, apiKeyHeaderFor } from '../lib/upstream.js'
import type { ApiKeyHeader, UpstreamFailure } from '../lib/upstream.js'
import { BASIC_SETTINGS, TestClient, startProxy } from './helpers/proxy.js'

const KEY = 'azure-key-3f9a1c'

async function azureSimulator (t: Test): Promise<Simulator> {
  const sim = await startSimulator({ port: 0, apiKey: KEY })
  t.teardown(async () => await sim.close())
  return sim
}

function azureUrl (sim: Simulator, deployment = 'my-deployment'): string {
  const url = new URL(sim.url)
  url.pathname = AZURE_REALTIME_PATH
  url.searchParams.set('model', deployment)
  return url.toString()
}

/** Opens one leg and reports whether it opened or how it failed. */
async function open (url: string, apiKey: string, apiKeyHeader?: ApiKeyHeader): Promise<{ opened: boolean, failure?: UpstreamFailure }> {
  return await new Promise((resolve) => {
    const owner = { resolve }
    // eslint-disable-next-line no-new
    new UpstreamLeg<typeof owner>({
      url,
      apiKey,
      ...(apiKeyHeader === undefined ? {} : { apiKeyHeader }),
      maxFrameBytes: 1024 * 1024,
      connectTimeoutMs: 5000,
      pingIntervalMs: 0,
      owner,
      events: {
        opened: (owner, leg) => {
          owner.resolve({ opened: true })
          leg.close(1000, 'done')
        },
        frame: () => {},
        failed: (owner, _leg, failure) => owner.resolve({ opened: false, failure }),
        socketError: () => {},
        closed: () => {}
      }
    })
  })
}

t.test('apiKeyHeaderFor: api-key for *.openai.azure.com hosts, authorization for any other', async (t) => {
  t.equal(apiKeyHeaderFor('wss://my-resource.openai.azure.com/openai/v1/realtime?model=gpt-realtime'), 'api-key')
  t.equal(apiKeyHeaderFor('wss://api.openai.com/v1/realtime?model=gpt-realtime'), 'authorization')
  t.equal(apiKeyHeaderFor('wss://openai.azure.com.evil.io/openai/v1/realtime'), 'authorization')
  t.equal(apiKeyHeaderFor('wss://x.example/?host=a.openai.azure.com'), 'authorization')
})

t.test('the upstream leg sends the key as `api-key` to Azure\'s path, and only there', async (t) => {
  const sim = await azureSimulator(t)
  t.same(await open(azureUrl(sim), KEY, 'api-key'), { opened: true })
  const conn = sim.connections.at(-1)
  t.equal(conn?.headers['api-key'], KEY, 'api-key: <key>')
  t.equal(conn?.headers.authorization, undefined, 'no Authorization header')
  t.equal(conn?.model, 'my-deployment', 'the deployment, as ?model=')

  t.same(await open(azureUrl(sim), KEY), { opened: true }, 'by default: Authorization: Bearer (not an Azure host)')
  t.equal(sim.connections.at(-1)?.headers.authorization, `Bearer ${KEY}`)
  t.equal(sim.connections.at(-1)?.headers['api-key'], undefined)

  const wrong = await open(azureUrl(sim), `${KEY}-wrong`, 'api-key')
  t.match(wrong, { opened: false, failure: { code: 'UPSTREAM_UNAUTHORIZED' } }, 'a wrong key is refused (HTTP 401)')
})

t.test('a whole session through the proxy with OPENAI_AUTH_HEADER=api-key and Azure\'s URL', async (t) => {
  const sim = await azureSimulator(t)
  const proxied = await startProxy(t, { env: { OPENAI_REALTIME_URL: azureUrl(sim), OPENAI_API_KEY: KEY, OPENAI_AUTH_HEADER: 'api-key' } })
  const client = await TestClient.connect(proxied.url)
  t.teardown(async () => await client.close())
  client.send(BASIC_SETTINGS)
  await client.next('SettingsApplied')
  client.send({ type: 'InjectUserMessage', content: 'Hello Azure' })
  await client.next('AgentAudioDone')
  t.equal(sim.connections.at(-1)?.headers['api-key'], KEY)
  t.equal(sim.connections.at(-1)?.headers.authorization, undefined)
})
