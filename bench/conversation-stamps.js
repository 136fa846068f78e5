// The simulator's side of the conversational benchmark (bench/conversation.js): when
// the protocol messages of turns reached the simulator and when the events the hop
// answers to left it, on the monotonic clock every process shares (frame.js), so the
// load generator can split a message's trip at the upstream end, as the audio
// benchmark does with its stamped frames.
//
// Every message the load generator sends carries a token `q<session>x<seq>` (in the
// injected text, the function's output, the appended prompt, the Settings prompt),
// and the hop carries it into the upstream event. So, keyed by what both ends know:
//
//   up    token               the first client event carrying it arrived (replays
//                             and renewals repeat tokens: only the first counts)
//   down  fc:<token>          response.function_call_arguments.done left (the token is
//                             the call's argument)
//         prompt:<token>      session.updated left, answering the session.update that
//                             brought the token
//         barge:<session>:<k> the session's k-th input_audio_buffer.speech_started left
//
// and every upstream connection (link) of a session: when it opened (session.created
// left), when it closed (the simulator's close, or the hop's arriving) and how, and
// when its first audio delta left.

import { nowMs } from './frame.js'

const TOKEN = /q(\d+)x(\d+)/g
const APPEND = '{"type":"input_audio_buffer.append"'
const DELTA = '{"type":"response.output_audio.delta"'
const SPEECH_STARTED = '{"type":"input_audio_buffer.speech_started"'
const CALL_DONE = '{"type":"response.function_call_arguments.done"'
const SESSION_UPDATED = '{"type":"session.updated"'
const SESSION_UPDATE = '"type":"session.update"'

export class ConversationStamps {
  up = new Map()
  down = new Map()
  links = []
  #sockets = new WeakMap()
  #barges = new Map()

  #link (ws) {
    let link = this.#sockets.get(ws)
    if (link === undefined) {
      link = { session: null, openAt: nowMs(), closeAt: null, code: null, reason: null, firstDeltaAt: null, prompt: null }
      this.#sockets.set(ws, link)
      this.links.push(link)
    }
    return link
  }

  /** A client event arrived on `ws`. */
  received (ws, data) {
    const at = nowMs()
    const text = data.toString()
    if (text.startsWith(APPEND)) return
    const link = this.#link(ws)
    let newest = null
    for (const [token, session] of text.matchAll(TOKEN)) {
      link.session ??= Number(session)
      if (this.up.has(token)) continue
      this.up.set(token, at)
      newest = token
    }
    if (newest !== null && text.includes(SESSION_UPDATE)) link.prompt = newest
  }

  /** A server event leaves on `ws`. */
  sent (ws, data) {
    const link = this.#link(ws)
    if (data.startsWith(DELTA)) {
      link.firstDeltaAt ??= nowMs()
      return
    }
    if (data.startsWith(SPEECH_STARTED) && link.session !== null) {
      const k = (this.#barges.get(link.session) ?? 0) + 1
      this.#barges.set(link.session, k)
      this.down.set(`barge:${link.session}:${k}`, nowMs())
    } else if (data.startsWith(CALL_DONE)) {
      for (const [token] of data.matchAll(TOKEN)) this.down.set(`fc:${token}`, nowMs())
    } else if (data.startsWith(SESSION_UPDATED) && link.prompt !== null) {
      this.down.set(`prompt:${link.prompt}`, nowMs())
      link.prompt = null
    }
  }

  /** The simulator closes `ws` (its maximum duration): the upstream is gone from now on. */
  closing (ws) {
    this.#link(ws).closeAt ??= nowMs()
  }

  closed (ws, code, reason) {
    const link = this.#link(ws)
    link.closeAt ??= nowMs()
    link.code = code
    link.reason = reason?.toString() ?? ''
  }

  /** Everything so far, for the IPC answer. */
  take () {
    return {
      up: Object.fromEntries(this.up),
      down: Object.fromEntries(this.down),
      links: this.links.map(({ prompt, ...link }) => link)
    }
  }
}
