// What a simulated connection does, beyond the protocol itself: timings and the
// scripted misbehaviours tests use to drive the proxy into its edge cases.
// Every knob can be changed on a live connection (`connection.script.x = …`);
// it is read at the moment it matters.

export interface SimScript {
  /** Delay before `session.updated` answers a `session.update`. */
  sessionUpdatedDelayMs: number
  /** Delay of `conversation.item.added`/`.done` after `conversation.item.create`. */
  itemAckDelayMs: number
  /** Delay between accepting a `response.create` (the slot is taken at once) and `response.created`. */
  responseCreatedDelayMs: number
  /** `response.output_audio.delta` events per spoken response (0 = none, only the done events). */
  audioChunks: number
  /** Delay between content events of a response. */
  chunkIntervalMs: number
  /** Extra delay between the last content event and `response.done`. */
  responseDoneDelayMs: number
  /** Emit `response.output_audio.done` before `response.output_audio_transcript.done` (both orders are legal). */
  audioDoneBeforeTextDone: boolean
  /** Responses emit their content, then hold `response.done` until `finishResponse()` or a cancel. */
  neverComplete: boolean
  /** `response.create` is swallowed: no `response.created`, no error, the slot stays free. */
  neverCreate: boolean
  /** Function calls emitted by a response that calls a tool. */
  parallelCalls: number
  /** The next client event of `type` is answered with this error and not processed (one entry per event). */
  rejectNext: Array<{ type: string, code: string, message?: string }>
  /** Close the socket after the first client event of `type` was processed. Codes a socket cannot send (1005, 1006) drop it abruptly. */
  closeAfter: { type: string, code: number, reason?: string } | null
  /** Streaming/benchmark mode: each append is echoed as one audio delta of a single never-ending response. */
  echoAudio: boolean
  /** Informational: output audio follows the session's `audio.output.format`. */
  outputSampleRate: number
}

export const defaultScript: SimScript = Object.freeze({
  sessionUpdatedDelayMs: 0,
  itemAckDelayMs: 0,
  responseCreatedDelayMs: 0,
  audioChunks: 3,
  chunkIntervalMs: 0,
  responseDoneDelayMs: 0,
  audioDoneBeforeTextDone: false,
  neverComplete: false,
  neverCreate: false,
  parallelCalls: 1,
  rejectNext: Object.freeze([]) as unknown as SimScript['rejectNext'],
  closeAfter: null,
  echoAudio: false,
  outputSampleRate: 24000
})

/** A connection's own script: defaults, then the simulator's script, with fresh arrays it may consume. */
export function resolveScript (overrides: Partial<SimScript>): SimScript {
  return {
    ...defaultScript,
    ...overrides,
    rejectNext: (overrides.rejectNext ?? []).map((rejection) => ({ ...rejection })),
    closeAfter: overrides.closeAfter ? { ...overrides.closeAfter } : null
  }
}

/** Client mistakes the simulator counts instead of (or as well as) answering with an error. */
export interface Violations {
  /** In-band `response.create` received while a response was active. */
  activeResponseConflicts: number
  /** `session.update` received while an in-band response was active (still applied, like the real API). */
  sessionUpdateDuringResponse: number
  /** `input_audio_buffer.append`, `conversation.item.create` or `response.create` before the first `session.updated`. */
  beforeSessionUpdated: number
  /** Client event without an `event_id`. */
  missingEventId: number
  /** Client event type that is not a GA client event. */
  unknownEventType: number
  /** Unparsable or malformed event: bad JSON, binary frame, bad base64, missing or invalid fields, unknown parameters. */
  invalidEvent: number
}

export type ViolationKind = keyof Violations

export function emptyViolations (): Violations {
  return {
    activeResponseConflicts: 0,
    sessionUpdateDuringResponse: 0,
    beforeSessionUpdated: 0,
    missingEventId: 0,
    unknownEventType: 0,
    invalidEvent: 0
  }
}
