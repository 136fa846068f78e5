// The part of @echogarden/speex-resampler-wasm (SpeexDSP's resampler, Emscripten-built
// WebAssembly; the package ships no types) that lib/audio.ts uses. Pointers and
// lengths are byte offsets into the module's memory; see SpeexDSP's speex_resampler.h.

declare module '@echogarden/speex-resampler-wasm/simd' {
  export interface SpeexResamplerModule {
    /** The module's memory; replaced by a new view whenever the memory grows. */
    readonly HEAPU8: Uint8Array
    readonly HEAP32: Int32Array
    readonly HEAPU32: Uint32Array
    _malloc (bytes: number): number
    _free (pointer: number): void
    /** Returns the state, or 0 with the error code at `error`. */
    _speex_resampler_init (channels: number, inRate: number, outRate: number, quality: number, error: number): number
    /** `inLength` / `outLength` point to uint32 sample counts: room in, consumed / produced out. */
    _speex_resampler_process_int (state: number, channel: number, input: number, inLength: number, output: number, outLength: number): number
    _speex_resampler_reset_mem (state: number): number
    _speex_resampler_destroy (state: number): void
  }
  export default function createSpeexResamplerModule (): Promise<SpeexResamplerModule>
}
