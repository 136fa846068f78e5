// The benchmark's upstream: the product's own OpenAI Realtime simulator in echo mode
// (every input_audio_buffer.append answered at once by one response.output_audio.delta
// carrying the same audio, inside one long-lived response), in a process of its own.
//
// The one addition: as an echo leaves, every frame in it gets this process's clock
// stamped into its header (see frame.js). That instant splits a frame's trip in two:
// client → hop → simulator (upstream) and simulator → hop → client (downstream), both
// measured on the monotonic clock the processes share, no round-trip halving.
//
// With BENCH_CONVERSATION=1 (bench/conversation.js) it also keeps, per session, when
// the protocol messages of turns arrived and left (see conversation-stamps.js), and
// BENCH_SIM_SCRIPT (JSON) replaces the echo script.

import WebSocket from 'ws'
import { serveParent } from './child.js'
import { FRAME_BASE64_CHARS, MARK_AT, STAMP_AT, STAMP_CHARS, STAMP_CHARS_AT, STAMP_MARK, nowMs } from './frame.js'
import { importProduct } from './product.js'
import { ConversationStamps } from './conversation-stamps.js'

const DELTA_EVENT = '{"type":"response.output_audio.delta"'
const DELTA_FIELD = '"delta":"'

const { startSimulator } = await importProduct('lib/simulator/index')

// The simulator's sockets are `ws` WebSockets and it sends every event as one JSON
// string: wrapping `send` is the only place that sees an echo leave, and it keeps the
// simulator's own code untouched.
const send = WebSocket.prototype.send
const conversation = process.env.BENCH_CONVERSATION === '1' ? new ConversationStamps() : null
if (conversation === null) {
  WebSocket.prototype.send = function stampedSend (data, ...rest) {
    return send.call(this, typeof data === 'string' && data.startsWith(DELTA_EVENT) ? stamp(data) : data, ...rest)
  }
} else {
  // Conversation mode: no echo to stamp; what leaves and arrives is timed instead, and
  // when each socket opens and closes. The process has no other sockets than the simulator's.
  WebSocket.prototype.send = function timedSend (data, ...rest) {
    if (typeof data === 'string') conversation.sent(this, data)
    return send.call(this, data, ...rest)
  }
  const emit = WebSocket.prototype.emit
  WebSocket.prototype.emit = function timedEmit (event, data, isBinary) {
    if (event === 'message' && isBinary === false) conversation.received(this, data)
    else if (event === 'close') conversation.closed(this, data, isBinary)
    return emit.apply(this, arguments)
  }
  const close = WebSocket.prototype.close
  WebSocket.prototype.close = function timedClose (...args) {
    conversation.closing(this)
    return close.apply(this, args)
  }
}

const stampBytes = Buffer.alloc(STAMP_CHARS / 4 * 3)
stampBytes.writeUInt32LE(STAMP_MARK, MARK_AT - STAMP_AT)

/** Writes the current time into the header of every frame of the delta, in base64. */
function stamp (event) {
  const start = event.indexOf(DELTA_FIELD) + DELTA_FIELD.length
  const end = event.indexOf('"', start)
  if (start < DELTA_FIELD.length || end < 0) return event
  stampBytes.writeDoubleLE(nowMs(), 0)
  const stampChars = stampBytes.toString('base64')
  const pieces = []
  let from = 0
  for (let frame = start; frame + STAMP_CHARS_AT + STAMP_CHARS <= end; frame += FRAME_BASE64_CHARS) {
    pieces.push(event.slice(from, frame + STAMP_CHARS_AT), stampChars)
    from = frame + STAMP_CHARS_AT + STAMP_CHARS
  }
  pieces.push(event.slice(from))
  return pieces.join('')
}

const script = process.env.BENCH_SIM_SCRIPT === undefined ? { echoAudio: true } : JSON.parse(process.env.BENCH_SIM_SCRIPT)
const simulator = await startSimulator({ port: 0, host: '127.0.0.1', script })

serveParent({
  ready: { url: simulator.url },
  close: () => simulator.close(),
  extra: (message) => message.cmd === 'conversation'
    ? conversation?.take() ?? null
    : { violations: simulator.violations(), connections: simulator.connections.length }
})
