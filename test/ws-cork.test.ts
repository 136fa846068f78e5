// lib/ws-cork.ts reaches into `ws` for the TCP socket behind a WebSocket (`_socket`).
// Nothing else would notice if a `ws` upgrade renamed or hid it: corking would just
// stop, and the hop would make one write syscall per frame again under load. So this
// runs a real WebSocket pair and checks the socket is found and really corked.

import { once } from 'node:events'
import { Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import type { Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { cork, socketOf } from '../lib/ws-cork.js'

const nextTick = async (): Promise<void> => await new Promise((resolve) => process.nextTick(resolve))

/** A connected pair: `client` and the server's side of it, `server`. */
async function pair (t: Test): Promise<{ client: WebSocket, server: WebSocket }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await once(wss, 'listening')
  const { port } = wss.address() as AddressInfo
  const connected = once(wss, 'connection') as Promise<[WebSocket]>
  const client = new WebSocket(`ws://127.0.0.1:${port}`)
  await once(client, 'open')
  const [server] = await connected
  t.teardown(async () => {
    client.terminate()
    server.terminate()
    wss.close()
    await once(wss, 'close')
  })
  return { client, server }
}

t.test('socketOf finds the TCP socket behind a WebSocket, on both ends', async (t) => {
  const { client, server } = await pair(t)
  for (const ws of [client, server]) {
    const socket = socketOf(ws)
    t.ok(socket instanceof Socket, 'a net.Socket (if this fails, `ws` no longer exposes `_socket`: update lib/ws-cork.ts)')
    t.equal((socket as Socket).remotePort === undefined, false, 'a connected one')
  }
  t.equal(socketOf(undefined), undefined)
})

t.test('cork() corks the socket for the current tick only', async (t) => {
  const { client } = await pair(t)
  const socket = socketOf(client) as Socket
  t.equal(socket.writableCorked, 0)
  cork(client)
  t.ok(socket.writableCorked > 0, 'corked')
  await nextTick()
  t.equal(socket.writableCorked, 0, 'uncorked on the next tick')
})

t.test('corking again in the same tick does not stack (one uncork undoes it)', async (t) => {
  const { server } = await pair(t)
  const socket = socketOf(server) as Socket
  cork(server)
  cork(server)
  cork(server)
  t.equal(socket.writableCorked, 1)
  await nextTick()
  t.equal(socket.writableCorked, 0, 'not left corked')
  cork(server)
  t.equal(socket.writableCorked, 1, 'and corks again in a later tick')
  await nextTick()
  t.equal(socket.writableCorked, 0)
})

t.test('frames sent while corked wait in the socket and leave together, in order', async (t) => {
  const { client, server } = await pair(t)
  const socket = socketOf(server) as Socket
  const received: string[] = []
  const all = new Promise<void>((resolve) => client.on('message', (data) => {
    received.push(data.toString())
    if (received.length === 3) resolve()
  }))
  cork(server)
  server.send('one')
  server.send('two')
  server.send('three')
  t.ok(socket.writableLength > 0, 'held in the socket while corked')
  await nextTick()
  await all
  t.same(received, ['one', 'two', 'three'])
})

t.test('a closed WebSocket or none at all: cork() does nothing and does not throw', async (t) => {
  const { client } = await pair(t)
  cork(undefined)
  client.terminate()
  await once(client, 'close')
  t.doesNotThrow(() => cork(client))
})
