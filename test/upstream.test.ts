// lib/upstream.ts's failure table: every way the upstream leg fails → the client's
// Error code and the close code and reason its session ends with (the README's
// "Upstream faults" table). Pure, except where the table reads what `ws` itself
// reports (a handshake timeout, a refused connection): those errors come from real
// sockets on loopback, so a `ws` upgrade that rewords them fails here.

import { once } from 'node:events'
import { createServer } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import t, { type Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { CloseCode, truncateReason } from '../lib/protocol/codes.js'
import { ErrorCode } from '../lib/protocol/deepgram.js'
import { closedFailure, connectFailure, protocolFailure, refusedFailure, unresponsiveFailure } from '../lib/upstream.js'
import type { UpstreamFailure } from '../lib/upstream.js'

/** The close reason must fit a close frame: ws throws on more than 123 bytes. */
function fitsCloseFrame (t: Test, failure: UpstreamFailure): void {
  t.ok(Buffer.byteLength(failure.reason) <= 123, `reason "${failure.reason}" fits a close frame`)
}

t.test('HTTP refusal at the upgrade: code and close code by status class', async (t) => {
  const cases: Array<[number, string, number]> = [
    [401, ErrorCode.upstreamUnauthorized, CloseCode.internal],
    [403, ErrorCode.upstreamUnauthorized, CloseCode.internal],
    [429, ErrorCode.upstreamRateLimited, CloseCode.tryAgainLater],
    [500, ErrorCode.upstreamUnavailable, CloseCode.tryAgainLater],
    [502, ErrorCode.upstreamUnavailable, CloseCode.tryAgainLater],
    [503, ErrorCode.upstreamUnavailable, CloseCode.tryAgainLater],
    [599, ErrorCode.upstreamUnavailable, CloseCode.tryAgainLater],
    // Below 500, a refusal other than auth and rate limiting will not go away by retrying.
    [499, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [400, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [402, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [404, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [428, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [430, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [200, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [301, ErrorCode.upstreamUnavailable, CloseCode.internal],
    [0, ErrorCode.upstreamUnavailable, CloseCode.internal]
  ]
  for (const [status, code, closeCode] of cases) {
    const failure = refusedFailure(status)
    t.same(failure, {
      code,
      description: `The upstream refused the connection (HTTP ${status}).`,
      closeCode,
      reason: `upstream refused (HTTP ${status})`
    }, `HTTP ${status}`)
    fitsCloseFrame(t, failure)
  }
  t.equal(CloseCode.internal, 1011)
  t.equal(CloseCode.tryAgainLater, 1013)
})

t.test('a connection that never opened: timed out → UPSTREAM_TIMEOUT, anything else → unreachable; both 1013', async (t) => {
  t.same(connectFailure(new Error('Opening handshake has timed out')), {
    code: ErrorCode.upstreamTimeout,
    description: 'The upstream did not answer the connection in time.',
    closeCode: 1013,
    reason: 'upstream connect timeout'
  })
  const unreachable = { code: ErrorCode.upstreamUnavailable, description: 'The upstream could not be reached.', closeCode: 1013, reason: 'upstream unreachable' }
  for (const message of ['connect ECONNREFUSED 127.0.0.1:1', 'getaddrinfo ENOTFOUND api.example', 'socket hang up', '']) {
    t.same(connectFailure(new Error(message)), unreachable, message)
  }
})

t.test('ws\'s own handshake timeout error is read as a timeout', async (t) => {
  // A TCP server that accepts and never answers the upgrade.
  const sockets: Socket[] = []
  const server = createServer((socket) => sockets.push(socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  const { port } = server.address() as AddressInfo
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { handshakeTimeout: 50 })
  const [error] = await once(ws, 'error') as [Error]
  t.equal(connectFailure(error).code, ErrorCode.upstreamTimeout, `"${error.message}"`)
})

t.test('ws\'s error for a refused TCP connection is read as unreachable', async (t) => {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  const ws = new WebSocket(`ws://127.0.0.1:${port}`)
  const [error] = await once(ws, 'error') as [Error]
  t.equal(connectFailure(error).code, ErrorCode.upstreamUnavailable, `"${error.message}"`)
})

t.test('an invalid or oversized upstream frame: UPSTREAM_PROTOCOL_ERROR, 1011', async (t) => {
  t.same(protocolFailure('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 'Max payload size exceeded', 1_048_576), {
    code: ErrorCode.upstreamProtocolError,
    description: 'The upstream sent a frame larger than 1048576 bytes (MAX_UPSTREAM_FRAME_BYTES).',
    closeCode: 1011,
    reason: 'upstream protocol error'
  })
  for (const [wsCode, message] of [
    ['WS_ERR_INVALID_OPCODE', 'Invalid WebSocket frame: invalid opcode 5'],
    ['WS_ERR_INVALID_UTF8', 'Invalid WebSocket frame: invalid UTF-8 sequence'],
    ['WS_ERR_EXPECTED_MASK', 'Invalid WebSocket frame: MASK must be clear'],
    ['WS_ERR_INVALID_CLOSE_CODE', 'Invalid WebSocket frame: invalid status code 1005']
  ] as const) {
    t.same(protocolFailure(wsCode, message, 1_048_576), {
      code: ErrorCode.upstreamProtocolError,
      description: `The upstream sent an invalid WebSocket frame (${message}).`,
      closeCode: 1011,
      reason: 'upstream protocol error'
    }, wsCode)
  }
})

t.test('no pong: UPSTREAM_UNRESPONSIVE, 1011, naming the interval', async (t) => {
  t.same(unresponsiveFailure(15000), {
    code: ErrorCode.upstreamUnresponsive,
    description: 'The upstream did not answer a ping within 15000 ms; the connection is presumed dead.',
    closeCode: 1011,
    reason: 'upstream unresponsive'
  })
})

t.test('the upstream closed: 1000, 1001, 1011 and 1013 passed on; every other code → 1011', async (t) => {
  for (const code of [1000, 1001, 1011, 1013]) {
    const failure = closedFailure(code)
    t.equal(failure.closeCode, code, `${code} passed on`)
    t.equal(failure.code, ErrorCode.upstreamClosed)
    t.equal(failure.reason, `upstream closed (${code})`)
  }
  // 1005/1006 have no meaning on the wire (ws refuses to send them); 1008/1009/1012 and
  // application codes describe the upstream's leg, not the client's.
  for (const code of [1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1012, 1014, 1015, 3000, 4000, 4999, 0]) {
    const failure = closedFailure(code)
    t.equal(failure.closeCode, 1011, `${code} → 1011`)
    t.equal(failure.reason, `upstream closed (${code})`)
    fitsCloseFrame(t, failure)
  }
})

t.test('the upstream closed: the description says why in our words, never the upstream\'s', async (t) => {
  t.equal(closedFailure(1001).description, 'The upstream ended the session (its maximum duration was reached or it is going away).')
  t.equal(closedFailure(1011).description, 'The upstream closed the session after an internal error.')
  t.equal(closedFailure(1000).description, 'The upstream ended the session normally.')
  t.equal(closedFailure(4000).description, 'The upstream closed the connection (code 4000).')
})

t.test('close reasons are cut to fit a close frame (123 bytes), at a character boundary', async (t) => {
  const fits = 'x'.repeat(123)
  t.equal(truncateReason(fits), fits, '123 bytes: unchanged')
  t.equal(truncateReason(''), '')
  const long = 'y'.repeat(124)
  t.equal(truncateReason(long), 'y'.repeat(120) + '...', '124 bytes: cut to 120 and marked')
  t.equal(Buffer.byteLength(truncateReason(long)), 123)
  // Multi-byte characters count by their bytes, and are never cut in half (a half
  // character would decode as U+FFFD, three bytes, and overflow the frame).
  for (const char of ['é', '€', '😀']) {
    for (let pad = 0; pad < 4; pad++) {
      const reason = 'z'.repeat(pad) + char.repeat(80)
      const cut = truncateReason(reason)
      t.ok(Buffer.byteLength(cut) <= 123, `${pad} + ${char}×80: ${Buffer.byteLength(cut)} bytes`)
      t.notOk(cut.includes('\uFFFD'), 'no replacement character')
      t.ok(cut.endsWith('...'))
      t.ok(reason.startsWith(cut.slice(0, -3)), 'a prefix of the reason')
    }
  }
  t.equal(truncateReason('é'.repeat(61) + 'x'), 'é'.repeat(61) + 'x', '123 bytes of mixed width: unchanged')
})

t.test('a real close with the longest cut reason is accepted by ws', async (t) => {
  const reason = truncateReason('settings refused upstream: ' + 'ü'.repeat(100))
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await once(server, 'listening')
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  server.on('connection', (socket) => socket.close(1008, reason))
  const client = new WebSocket(`ws://127.0.0.1:${port}`)
  const [code, received] = await once(client, 'close') as [number, Buffer]
  t.equal(code, 1008)
  t.equal(received.toString(), reason)
})
