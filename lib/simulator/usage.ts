// The `usage` of every `response.done`, by fixed rules, so a test can recompute
// (or simply sum) what the simulator billed:
//
//   text        ⌈characters / 4⌉ tokens
//   user audio  ⌈ms / 100⌉ tokens (OpenAI bills input speech at 10 tokens a second)
//   model audio ⌈ms / 50⌉ tokens, as output and when read back as input
//
// Input is what the response reads: 8 tokens of framing, the instructions, the
// tools (as JSON), then every conversation item (4 tokens of framing each, plus
// its text and audio; an assistant audio item adds its transcript until a
// truncate removes it). Output is what the response produced before it ended
// (a cancelled response is billed for its part). Like the real prompt cache,
// the longest prefix of segments shared with the previous response's input is
// cached, rounded down to whole 64-token blocks, attributed to the segments in
// order.

export const CACHE_BLOCK_TOKENS = 64
const PROMPT_FRAMING_TOKENS = 8
export const ITEM_FRAMING_TOKENS = 4
const CHARS_PER_TOKEN = 4
const USER_AUDIO_MS_PER_TOKEN = 100
const MODEL_AUDIO_MS_PER_TOKEN = 50

/** One piece of a response's input; equal keys mean the same tokens (a cache hit). */
export interface Segment {
  key: string
  text: number
  audio: number
}

export interface Usage {
  total_tokens: number
  input_tokens: number
  output_tokens: number
  input_token_details: {
    text_tokens: number
    audio_tokens: number
    image_tokens: number
    cached_tokens: number
    cached_tokens_details: { text_tokens: number, audio_tokens: number, image_tokens: number }
  }
  output_token_details: { text_tokens: number, audio_tokens: number }
}

export function textTokens (text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN)
}

export function userAudioTokens (ms: number): number {
  return Math.ceil(ms / USER_AUDIO_MS_PER_TOKEN)
}

export function modelAudioTokens (ms: number): number {
  return Math.ceil(ms / MODEL_AUDIO_MS_PER_TOKEN)
}

/** The segment of the response's own instructions and tools, read before the conversation. */
export function promptSegment (instructions: unknown, tools: unknown): Segment {
  const text = typeof instructions === 'string' ? instructions : ''
  const toolsJson = JSON.stringify(tools ?? [])
  return { key: `prompt:${text.length}:${text}\n${toolsJson}`, text: PROMPT_FRAMING_TOKENS + textTokens(text) + textTokens(toolsJson), audio: 0 }
}

/** The usage of a response that read `input` (after a response that read `previous`) and produced `output`. */
export function usage (input: readonly Segment[], previous: readonly Segment[], output: { text: number, audio: number }): Usage {
  let text = 0
  let audio = 0
  for (const segment of input) {
    text += segment.text
    audio += segment.audio
  }
  let shared = 0
  for (let i = 0; i < input.length && i < previous.length && input[i]?.key === previous[i]?.key; i++) {
    shared += (input[i] as Segment).text + (input[i] as Segment).audio
  }
  const cached = Math.floor(shared / CACHE_BLOCK_TOKENS) * CACHE_BLOCK_TOKENS
  let cachedText = 0
  let cachedAudio = 0
  let left = cached
  for (const segment of input) {
    if (left === 0) break
    const fromText = Math.min(left, segment.text)
    const fromAudio = Math.min(left - fromText, segment.audio)
    cachedText += fromText
    cachedAudio += fromAudio
    left -= fromText + fromAudio
  }
  const inputTokens = text + audio
  const outputTokens = output.text + output.audio
  return {
    total_tokens: inputTokens + outputTokens,
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    input_token_details: {
      text_tokens: text,
      audio_tokens: audio,
      image_tokens: 0,
      cached_tokens: cached,
      cached_tokens_details: { text_tokens: cachedText, audio_tokens: cachedAudio, image_tokens: 0 }
    },
    output_token_details: { text_tokens: output.text, audio_tokens: output.audio }
  }
}
