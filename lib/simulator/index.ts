// A built-in OpenAI Realtime (GA) simulator: a WebSocket server that speaks the
// protocol of wss://api.openai.com/v1/realtime strictly (one in-band response at
// a time, GA event names, event ids, real error codes) and deterministically, with
// a script of timings and misbehaviours for tests, the benchmark and `npm start`
// without an OpenAI key.

export { startSimulator, REALTIME_PATH, AZURE_REALTIME_PATH } from './server.js'
export type { Simulator, SimulatorOptions } from './server.js'
export type { SimConnection } from './connection.js'
export { defaultScript } from './script.js'
export type { SimScript, Violations } from './script.js'
