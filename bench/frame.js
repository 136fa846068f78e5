// The benchmark's audio frame and clock, shared by the load generator and the
// simulator wrapper (they run in different processes).
//
// Every mic frame is 20 ms of PCM16 LE mono at 24 kHz (960 bytes, the format the
// proxy passes through without resampling) and starts with a 24-byte header:
//
//   bytes  0..7   client send time (float64 LE, ms on the shared monotonic clock)
//   bytes  8..11  sequence number within the session (uint32 LE)
//   bytes 12..19  simulator time at which it echoed the frame (float64 LE)
//   bytes 20..23  STAMP_MARK once the simulator stamped it
//
// The rest is a quiet 400 Hz tone, identical in every frame, so the client can check
// that the echo came back byte for byte. 960 and 12 are multiples of 3, so in base64
// each frame is 1280 characters and bytes 12..23 are characters 16..31 of it: the
// simulator stamps a frame by replacing those 16 characters, without decoding anything.

export const SAMPLE_RATE = 24000
export const FRAME_MS = 20
export const FRAME_BYTES = SAMPLE_RATE * 2 * FRAME_MS / 1000
export const FRAME_BASE64_CHARS = FRAME_BYTES / 3 * 4
export const HEADER_BYTES = 24
export const SENT_AT = 0
export const SEQ_AT = 8
export const STAMP_AT = 12
export const MARK_AT = 20
export const STAMP_MARK = 0x21534d42 // "BMS!"
/** Where the 12 stamped bytes (STAMP_AT..HEADER_BYTES) sit in a frame's base64. */
export const STAMP_CHARS_AT = STAMP_AT / 3 * 4
export const STAMP_CHARS = (HEADER_BYTES - STAMP_AT) / 3 * 4

/**
 * Milliseconds on CLOCK_MONOTONIC (`process.hrtime`), which every process on a Linux
 * host shares: a time stamped in one process can be subtracted from one read in another.
 */
export function nowMs () {
  return Number(process.hrtime.bigint() / 1000n) / 1000
}

/** A frame template: the tone, with an empty header. */
export function frameTemplate () {
  const frame = Buffer.alloc(FRAME_BYTES)
  for (let i = HEADER_BYTES / 2; i < FRAME_BYTES / 2; i++) {
    frame.writeInt16LE(Math.round(0.1 * 32767 * Math.sin(2 * Math.PI * 400 * i / SAMPLE_RATE)), i * 2)
  }
  return frame
}
