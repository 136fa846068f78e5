// Liveness of a WebSocket peer by ping/pong: a peer that has not answered the previous
// ping when the next is due is presumed dead (a dead network path, a hung or vanished peer).
// Every watch shares one pong listener and one timer callback: an idle session holds a
// small record per socket, not closures.

import type WebSocket from 'ws'

const WATCH = Symbol('liveness')

interface Watch<Owner> {
  readonly socket: WebSocket
  readonly onDead: (owner: Owner) => void
  readonly owner: Owner
  awaitingPong: boolean
}

type WatchedSocket = WebSocket & { [WATCH]?: Watch<unknown> }

function onPong (this: WebSocket): void {
  const watch = (this as WatchedSocket)[WATCH]
  if (watch !== undefined) watch.awaitingPong = false
}

function check (watch: Watch<unknown>): void {
  if (watch.awaitingPong) {
    watch.onDead(watch.owner)
    return
  }
  watch.awaitingPong = true
  watch.socket.ping()
}

/** Pings `socket` every `everyMs` (0 = off); calls `onDead(owner)` once a ping went unanswered for a whole interval. */
export function watchLiveness<Owner> (socket: WebSocket, everyMs: number, onDead: (owner: Owner) => void, owner: Owner): NodeJS.Timeout | undefined {
  if (everyMs <= 0) return undefined
  const watch: Watch<unknown> = { socket, onDead: onDead as (owner: unknown) => void, owner, awaitingPong: false }
  ;(socket as WatchedSocket)[WATCH] = watch
  socket.on('pong', onPong)
  const timer = setInterval(check, everyMs, watch)
  timer.unref()
  return timer
}
