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
  /** `response.output_audio.delta` events (40 ms of audio each) per spoken response (0 = none, only the done events). */
  audioChunks: number
  /** Delay between content events of a response: set it to cut a response mid-way (40 = audio at real-time pace). */
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
  /** The next responses (one entry each) end right after `response.created` with `response.done {status:"failed"}` and this error. */
  failResponses: Array<{ code: string, message?: string, type?: string }>
  /** Close the socket after the first client event of `type` was processed. Codes a socket cannot send (1005, 1006) drop it abruptly. */
  closeAfter: { type: string, code: number, reason?: string } | null
  /**
   * The server closes the socket this long after it opened, with 1001 and OpenAI's reason
   * "Your session hit the maximum duration of 60 minutes." (whatever the value). Read when the
   * connection opens; 0 = never.
   */
  maxSessionMs: number
  /**
   * When input transcription (`session.audio.input.transcription`) is on, the moment its
   * `conversation.item.input_audio_transcription.completed` (or `.failed`) is due: at the commit
   * of the user audio, or at the next in-band `response.created` / `response.done` (the real
   * transcription is asynchronous and often lands after the answer has started).
   */
  transcriptionAfter: 'committed' | 'response.created' | 'response.done'
  /** Further delay of the transcription event after that moment. */
  transcriptionDelayMs: number
  /** The next transcriptions (this many) end with `conversation.item.input_audio_transcription.failed`. */
  failTranscriptions: number
  /** What user audio says when no test scripted it (`vadTurn(text)` does): client commits and energy-VAD turns. */
  spokenTranscript: string
  /**
   * Server VAD driven by the appended audio itself (RMS energy), for real microphones: speech
   * starts after 100 ms above `energyVadThreshold` and stops after `turn_detection.silence_duration_ms`
   * below it, then the turn is committed like the real server does. `speechStarted()`/`vadTurn()` still work.
   */
  energyVad: boolean
  /** RMS level, as a fraction of full scale (0.02 ≈ -34 dBFS), above which appended audio counts as speech. */
  energyVadThreshold: number
  /** Streaming/benchmark mode: each append is echoed as one audio delta of a single never-ending response. */
  echoAudio: boolean
  /** Informational: output audio follows the session's `audio.output.format`. */
  outputSampleRate: number
}

export const SIXTY_MINUTES_MS = 60 * 60 * 1000

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
  failResponses: Object.freeze([]) as unknown as SimScript['failResponses'],
  closeAfter: null,
  maxSessionMs: SIXTY_MINUTES_MS,
  transcriptionAfter: 'committed',
  transcriptionDelayMs: 0,
  failTranscriptions: 0,
  spokenTranscript: '(spoken audio)',
  energyVad: false,
  energyVadThreshold: 0.02,
  echoAudio: false,
  outputSampleRate: 24000
})

/** A connection's own script: defaults, then the simulator's script, with fresh arrays it may consume. */
export function resolveScript (overrides: Partial<SimScript>): SimScript {
  return {
    ...defaultScript,
    ...overrides,
    rejectNext: (overrides.rejectNext ?? []).map((rejection) => ({ ...rejection })),
    failResponses: (overrides.failResponses ?? []).map((failure) => ({ ...failure })),
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
  /** `conversation.item.truncate` refused: unknown item, no model audio there, `audio_end_ms` 0 or past the audio produced. */
  refusedTruncates: number
}

export type ViolationKind = keyof Violations

export function emptyViolations (): Violations {
  return {
    activeResponseConflicts: 0,
    sessionUpdateDuringResponse: 0,
    beforeSessionUpdated: 0,
    missingEventId: 0,
    unknownEventType: 0,
    invalidEvent: 0,
    refusedTruncates: 0
  }
}
