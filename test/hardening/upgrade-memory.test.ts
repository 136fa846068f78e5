// A live session does not keep its upgrade's HTTP request and response: once the
// WebSocket is open they are garbage (≈ 3 KB of heap per session otherwise, for the
// session's whole life).

import v8 from 'node:v8'
import vm from 'node:vm'
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { configuredClient, startProxy } from '../helpers/proxy.js'
import { eventually } from '../fixtures/leaks.js'

t.test('the upgrade request and its response are collected while the session lives on', async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const proxied = await startProxy(t)
  const collected = new Set<string>()
  const registry = new FinalizationRegistry<string>((what) => collected.add(what))
  // After @fastify/websocket's own listener, which built the response and assigned it to the socket.
  proxied.proxy.app.server.on('upgrade', (request: IncomingMessage) => {
    registry.register(request, 'request')
    const response = (request.socket as { _httpMessage?: object | null })._httpMessage
    if (response != null) registry.register(response, 'response')
  })
  const client = await configuredClient(proxied.url)
  await eventually(async () => {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
    return collected.size === 2
  }, 'the request and the response to be collected')
  t.same([...collected].sort(), ['request', 'response'])
  client.send({ type: 'InjectUserMessage', content: 'Still there?' })
  await client.next('AgentAudioDone')
  t.pass('the session goes on')
  await client.close()
})
