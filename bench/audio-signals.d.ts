// Types of bench/audio-signals.js for the tests that use its yardsticks.

export const PASSBAND: number
export const STOPBAND: number
export const FLAT: number

export interface Quality {
  snr: number
  delay: number
  rippleDb: number
  flatDb: number
  gains: Array<{ hz: number, db: number }>
  spurDb: number
  aliasDb: number | null
}

export function measureQuality (
  make: () => (frame: Buffer) => Buffer,
  from: number,
  to: number,
  options?: { seconds?: number, toneSeconds?: number, frameMs?: number, tones?: number, maxDelay?: number }
): Quality

export function prng (seed: number): () => number
export function toPcm16 (samples: ArrayLike<number>): Buffer
export function fromPcm16 (pcm: Buffer): Float64Array
export function tone (rate: number, hz: number, seconds: number): Buffer
