// Liveness of a WebSocket peer by ping/pong: a peer that has not answered the previous
// ping when the next is due is presumed dead (a dead network path, a hung or vanished peer).

import type WebSocket from 'ws'

/** Pings `socket` every `everyMs` (0 = off); calls `onDead` once a ping went unanswered for a whole interval. */
export function watchLiveness (socket: WebSocket, everyMs: number, onDead: () => void): NodeJS.Timeout | undefined {
  if (everyMs <= 0) return undefined
  let awaitingPong = false
  socket.on('pong', () => { awaitingPong = false })
  const timer = setInterval(() => {
    if (awaitingPong) {
      onDead()
      return
    }
    awaitingPong = true
    socket.ping()
  }, everyMs)
  timer.unref()
  return timer
}
