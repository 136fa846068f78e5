// Drives the turn engine the way the session does, for example-based tests: one input
// at a time with time moving on, upstream events shaped like OpenAI Realtime GA server
// events, and readers for the commands it returns.

import { TurnEngine, engineOptions, type EngineOptions, type EngineState } from '../../lib/engine/engine.js'
import { timerKey, type Command, type EngineInput, type Timer } from '../../lib/engine/io.js'
import type { ServerMessage } from '../../lib/protocol/deepgram.js'
import type { ConversationItem, SessionFields } from '../../lib/protocol/openai.js'

export type Input = EngineInput extends infer I ? I extends EngineInput ? Omit<I, 'at'> : never : never
export type UpEvent = Extract<Command, { kind: 'upstream' }>['event']

export const CONFLICT = 'conversation_already_has_active_response'

export function upstream (cmds: Command[], type?: string): UpEvent[] {
  return cmds.flatMap((c) => c.kind === 'upstream' && (type === undefined || c.event.type === type) ? [c.event] : [])
}

export function client (cmds: Command[], type?: string): ServerMessage[] {
  return cmds.flatMap((c) => c.kind === 'client' && (type === undefined || c.message.type === type) ? [c.message] : [])
}

/** The keys (`kind:id`) of the timers set by these commands. */
export function timersSet (cmds: Command[]): string[] {
  return cmds.flatMap((c) => c.kind === 'setTimer' ? [timerKey(c.timer)] : [])
}

/** The timer whose key is `kind:id`. */
export function timerFromKey (key: string): Timer {
  const at = key.indexOf(':')
  const kind = key.slice(0, at)
  const id = key.slice(at + 1)
  switch (kind) {
    case 'createAck':
    case 'updateAck': return { kind, eventId: id }
    case 'responseDeadline':
    case 'cancelGrace': return { kind, responseKey: id }
    case 'itemAck': return { kind, itemId: id }
  }
  throw new Error(`no timer kind ${kind}`)
}

export function warnings (cmds: Command[], code: string): ServerMessage[] {
  return client(cmds, 'Warning').filter((m) => m.type === 'Warning' && m.code === code)
}

export function responseOf (event: UpEvent): Record<string, unknown> {
  return event.response as Record<string, unknown>
}

/** Drives the engine like the session does: one input at a time, time moving on. */
export class Driver {
  readonly engine: TurnEngine
  at = 0
  readonly all: Command[] = []
  private serverSeq = 0

  constructor (options: Partial<EngineOptions> = {}) {
    this.engine = new TurnEngine('t_', engineOptions(options))
  }

  feed (input: Input): Command[] {
    this.at += 10
    const cmds = this.engine.step({ ...input, at: this.at } as EngineInput)
    this.all.push(...cmds)
    return cmds
  }

  up (event: { type: string, [field: string]: unknown }): Command[] {
    this.serverSeq += 1
    return this.feed({ type: 'upstream', event: { event_id: `event_${this.serverSeq}`, ...event } })
  }

  /** The event id of the last response.create the engine sent. */
  lastCreate (): string {
    const creates = upstream(this.all, 'response.create')
    const last = creates[creates.length - 1]
    if (last === undefined) throw new Error('no response.create sent yet')
    return last.event_id
  }

  /** response.created echoing the metadata of a create (ours), or `null` (server VAD). */
  created (id: string, createEventId: string | null = this.lastCreate()): Command[] {
    const metadata = createEventId === null ? null : { proxy_event_id: createEventId }
    return this.up({ type: 'response.created', response: { object: 'realtime.response', id, status: 'in_progress', conversation_id: 'conv_1', metadata, output: [] } })
  }

  done (id: string, status = 'completed', extra: Record<string, unknown> = {}): Command[] {
    return this.up({ type: 'response.done', response: { object: 'realtime.response', id, status, conversation_id: 'conv_1', output: [], ...extra } })
  }

  error (code: string, eventId: string | null): Command[] {
    return this.up({ type: 'error', error: { type: 'invalid_request_error', code, message: `message text for ${code}`, param: null, event_id: eventId } })
  }

  itemAdded (itemId: string, type = 'conversation.item.added'): Command[] {
    return this.up({ type, previous_item_id: null, item: { id: itemId, type: 'message', role: 'user', status: 'completed', content: [] } })
  }

  args (callId: string, responseId: string, name = 'get_weather', args = '{"city":"Paris"}'): Command[] {
    return this.up({ type: 'response.function_call_arguments.done', response_id: responseId, item_id: `item_${callId}`, output_index: 0, call_id: callId, name, arguments: args })
  }

  content (responseId: string, type: string): Command[] {
    return this.up({ type, response_id: responseId, item_id: `item_${responseId}`, output_index: 0, content_index: 0 })
  }

  /** Fires the timer whose key is `kind:id`. */
  timer (key: string): Command[] {
    return this.feed({ type: 'timer', timer: timerFromKey(key) })
  }

  get state (): Readonly<EngineState> {
    return this.engine.state
  }

  get busy (): boolean {
    return this.engine.responseInProgress
  }
}

/** The item id the engine gave the last InjectUserMessage. */
export function injectedItemId (cmds: Command[]): string {
  const create = upstream(cmds, 'conversation.item.create')[0]
  const id = (create?.item as { id?: string } | undefined)?.id
  if (id === undefined) throw new Error('no injected item')
  return id
}

export interface ReadyOptions {
  fields?: SessionFields
  context?: ConversationItem[]
  greeting?: string
  options?: Partial<EngineOptions>
}

/** An engine past Settings and its session.updated. */
export function ready (opts: ReadyOptions = {}): Driver {
  const d = new Driver(opts.options)
  const settings: Input = { type: 'settings', fields: opts.fields ?? { instructions: 'Be brief.', voice: 'alloy' }, context: opts.context ?? [] }
  if (opts.greeting !== undefined) settings.greeting = opts.greeting
  d.feed(settings)
  d.up({ type: 'session.updated', session: { type: 'realtime' } })
  return d
}

/** Ready, with our response `id` running (created by an InjectAgentMessage). */
export function responding (id = 'resp_1', opts: ReadyOptions = {}): Driver {
  const d = ready(opts)
  d.feed({ type: 'injectAgent', message: 'One moment.', behavior: 'queue' })
  d.created(id)
  return d
}
