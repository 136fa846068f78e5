// The one place that reaches into `ws` internals: the TCP socket behind a WebSocket
// (`_socket`), to cork it. test/ws-cork.test.ts fails if a `ws` upgrade renames or
// hides it, rather than letting corking silently stop.

import type { Duplex } from 'node:stream'
import type WebSocket from 'ws'

/**
 * Corks a leg's socket until the end of this tick: the frames written to it meanwhile
 * (a burst read from the other leg in one go) leave in one writev, not one syscall each.
 */
export function cork (ws: WebSocket | undefined): void {
  const socket = socketOf(ws)
  if (socket == null || socket.writableCorked > 0) return
  socket.cork()
  process.nextTick(uncork, socket)
}

/** The TCP socket of a WebSocket (null once closed), or undefined if `ws` no longer exposes it. */
export function socketOf (ws: WebSocket | undefined): Duplex | null | undefined {
  return (ws as unknown as { _socket?: Duplex | null } | undefined)?._socket
}

function uncork (socket: Duplex): void {
  socket.uncork()
}
