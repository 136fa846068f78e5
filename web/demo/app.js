// The talk-to-the-agent page. Deepgram's <deepgram-agent> element owns the
// microphone, the WebSocket and the playback (it stops the agent's audio itself on
// UserStartedSpeaking); this script configures it, shows what the server says and
// answers the sample function. Everything it sends and receives is a plain Deepgram
// Voice Agent v1 message.

import './vendor/browser-agent/index.mjs'
import { LOCAL_TIME, answerLocalTime } from './local-time.js'
import { TurnLedger } from './transcript.js'

// OpenAI Realtime voices; the server maps a speak provider naming one of them to it.
const VOICES = ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar']
const DEFAULT_PROMPT = 'You are a friendly voice assistant on a demo page. Keep every answer to one or two short sentences. When someone asks for the time in a city, call local_time.'
const GREETING = 'Hello! Ask me anything, or ask for the local time in a city.'
// Must equal the element's output-sample-rate attribute: it plays what it gets at that rate.
const OUTPUT_SAMPLE_RATE = 24000
const MAX_TRANSCRIPT_ENTRIES = 300
const MAX_LOG_ENTRIES = 200
const LOG_PREVIEW_CHARS = 300

const STATES = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  listening: 'Listening',
  user: 'You are speaking',
  thinking: 'Thinking…',
  agent: 'Agent speaking'
}

const SUGGESTIONS = {
  simulator: ['Hello there!', "What's the local time? City: Tokyo"],
  openai: ['What can you do?', 'What time is it in Tokyo?']
}

const $ = (id) => document.getElementById(id)
const agent = $('agent')

let config = null
let followingTranscript = true
/** Per conversation: reset at each start. */
let conversation = null

function newConversation () {
  return {
    opened: false,
    configured: false,
    ledger: new TurnLedger(),
    /** Call id → its transcript entry. Bounded with the transcript. */
    calls: new Map(),
    pendingPrompts: [],
    pendingVoices: []
  }
}

async function main () {
  fillVoices()
  $('prompt').value = DEFAULT_PROMPT
  wireElement()
  wireForms()
  $('transcript').addEventListener('scroll', () => {
    const list = $('transcript')
    followingTranscript = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  })
  try {
    const response = await fetch('demo/config.json')
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    config = await response.json()
  } catch (error) {
    showStatus(`Could not load this server's settings (${error.message}); reload the page.`, 'error')
    $('start').disabled = true
    return
  }
  const endpoint = new URL(config.conversePath, window.location.href)
  endpoint.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:'
  agent.setAttribute('url', endpoint.href)
  $('endpoint').textContent = endpoint.href
  $('upstream').textContent = config.simulator ? 'the built-in simulator' : `OpenAI Realtime (${config.model})`
  $('simulator-note').hidden = !config.simulator
  $('token-field').hidden = !config.authRequired
  $('token').required = config.authRequired
  fillSuggestions(config.simulator ? SUGGESTIONS.simulator : SUGGESTIONS.openai)
  document.body.dataset.ready = 'true'
}

function fillVoices () {
  for (const voice of VOICES) $('voice').append(new window.Option(voice, voice))
}

function fillSuggestions (texts) {
  for (const text of texts) {
    const chip = document.createElement('button')
    chip.type = 'button'
    chip.className = 'chip'
    chip.textContent = text
    chip.addEventListener('click', () => {
      if (conversation?.configured) send({ type: 'InjectUserMessage', content: text })
      else $('message').value = text
    })
    $('suggestions').append(chip)
  }
}

function wireForms () {
  $('connect').addEventListener('submit', (event) => {
    event.preventDefault()
    start().catch((error) => {
      showStatus(`Could not start: ${error.message}`, 'error')
      hungUp()
    })
  })
  $('stop').addEventListener('click', () => agent.removeAttribute('config'))

  $('say').addEventListener('submit', (event) => {
    event.preventDefault()
    const content = $('message').value.trim()
    if (content === '' || !conversation?.configured) return
    send({ type: 'InjectUserMessage', content })
    $('message').value = ''
  })

  $('prompt-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const prompt = $('prompt-addition').value.trim()
    if (prompt === '' || !conversation?.configured) return
    conversation.pendingPrompts.push(prompt)
    send({ type: 'UpdatePrompt', prompt })
    $('prompt-addition').value = ''
  })

  $('voice-form').addEventListener('submit', (event) => {
    event.preventDefault()
    if (!conversation?.configured) return
    const voice = $('voice').value
    conversation.pendingVoices.push(voice)
    send({ type: 'UpdateSpeak', speak: speakSettings(voice) })
  })
}

async function start () {
  if (config.authRequired) {
    const token = $('token').value.trim()
    if (token === '') throw new Error('enter the client token first.')
    agent.token = token
  }
  conversation = newConversation()
  addDivider()
  showStatus('')
  setState('connecting')
  setRunning(true)
  await checkMicrophone()
  const settings = {
    type: 'Settings',
    audio: {
      input: { encoding: 'linear16', sample_rate: await microphoneSampleRate() },
      output: { encoding: 'linear16', sample_rate: OUTPUT_SAMPLE_RATE, container: 'none' }
    },
    agent: {
      language: 'en',
      listen: { provider: { type: 'deepgram', model: 'nova-3' } },
      think: { provider: { type: 'open_ai', model: config.model }, prompt: $('prompt').value, functions: [LOCAL_TIME] },
      speak: speakSettings($('voice').value),
      greeting: GREETING
    }
  }
  // Setting `config` makes the element open the microphone and the socket, then send it as Settings.
  agent.setAttribute('config', JSON.stringify(settings))
}

/**
 * Asks for the microphone before the element does: when the element's own request
 * fails it has already opened its socket and leaves it open (a session on the server
 * until the page closes), and without a secure context it only hangs.
 */
async function checkMicrophone () {
  if (!window.isSecureContext || navigator.mediaDevices === undefined) {
    throw new Error('browsers allow the microphone only on https:// or http://localhost; open the page there.')
  }
  let stream
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } })
  } catch {
    throw new Error('the microphone is blocked or missing; allow it for this page, then start again.')
  }
  for (const track of stream.getTracks()) track.stop()
}

/**
 * The element streams its microphone at its AudioContext's own rate (browsers ignore
 * the sampleRate it asks getUserMedia for), and a default AudioContext on this device
 * runs at that same rate: Settings must say it, or the server hears the wrong pitch.
 */
async function microphoneSampleRate () {
  const probe = new window.AudioContext()
  const rate = probe.sampleRate
  await probe.close()
  return rate
}

function speakSettings (voice) {
  return { provider: { type: 'open_ai', model: 'tts-1', voice } }
}

function wireElement () {
  agent.addEventListener('socket open', () => {
    conversation.opened = true
    $('state-detail').textContent = 'Connected; configuring the session…'
  })
  agent.addEventListener('structured message', (event) => onServerMessage(event.detail))
  agent.addEventListener('client message', (event) => log('out', event.detail))
  agent.addEventListener('socket close', (event) => {
    const { code, reason } = event.detail ?? {}
    if (!conversation?.opened) {
      showStatus(config.authRequired ? 'Could not connect: check the token.' : 'Could not connect to the server.', 'error')
    } else if (reason === 'idle timeout') {
      showStatus('Hung up after five minutes without a word.')
    } else if (code !== 1000) {
      showStatus(`The connection closed (${code}${reason ? `: ${reason}` : ''}).`, 'error')
    }
    hungUp()
  })
  const failures = {
    'failed to connect user media': 'The microphone is blocked: allow it for this page, then start again.',
    'invalid auth': 'This token has characters a browser cannot send in a WebSocket subprotocol.',
    'connection timeout': 'The server did not answer within 10 seconds.',
    'failed setup': 'This browser lacks the Web Audio support the agent needs.'
  }
  for (const [name, message] of Object.entries(failures)) {
    agent.addEventListener(name, () => {
      showStatus(message, 'error')
      hungUp()
    })
  }
}

/** Back to "not connected"; the element reconnects only when `config` is set anew. */
function hungUp () {
  if (agent.hasAttribute('config')) agent.removeAttribute('config')
  if (conversation !== null) conversation.configured = false
  setState('idle')
  setRunning(false)
}

function onServerMessage (message) {
  log('in', message)
  switch (message.type) {
    case 'Welcome':
      $('session-id').textContent = message.request_id ?? '–'
      break
    case 'SettingsApplied':
      conversation.configured = true
      setRunning(true)
      setState('listening')
      break
    case 'ConversationText':
    case 'History':
      if (Array.isArray(message.function_calls)) for (const call of message.function_calls) recordCall(call)
      else if (conversation.ledger.report(message.type, message.role, message.content)) addTurn(message.role, message.content)
      break
    case 'UserStartedSpeaking':
      setState('user')
      break
    case 'AgentThinking':
      setState('thinking')
      break
    case 'AgentStartedSpeaking':
      setState('agent', typeof message.total_latency === 'number' ? `First audio ${message.total_latency.toFixed(2)} s after the turn ended` : '')
      break
    case 'AgentAudioDone':
      setState('listening')
      break
    case 'FunctionCallRequest':
      for (const call of message.functions ?? []) {
        if (call.client_side === false) recordCall(call)
        else answerCall(call)
      }
      break
    case 'FunctionCallResponse':
      recordCall(message)
      break
    case 'PromptUpdated': {
      const added = conversation.pendingPrompts.shift()
      if (added !== undefined) $('prompt').value += `\n${added}`
      addNote('Prompt updated.')
      break
    }
    case 'SpeakUpdated': {
      const voice = conversation.pendingVoices.shift()
      addNote(voice === undefined ? 'Voice updated.' : `Voice changed to ${voice}.`)
      break
    }
    case 'InjectionRefused':
      addNote(`Refused: ${message.message}`, 'warning')
      break
    case 'Warning':
      if (message.code === 'VOICE_CHANGE_NOT_ALLOWED') conversation.pendingVoices.shift()
      addNote(`${message.code}: ${message.description}`, 'warning')
      break
    case 'Error':
      addNote(`${message.code}: ${message.description}`, 'error')
      break
  }
}

/** A client-side call: shown, answered by the page, and the answer shown. */
function answerCall (call) {
  const content = call.name === LOCAL_TIME.name
    ? answerLocalTime(call.arguments)
    : `Error: this page has no function named ${call.name}.`
  recordCall(call)
  send({ type: 'FunctionCallResponse', id: call.id, name: call.name, content })
  recordCall({ id: call.id, name: call.name, content })
}

/**
 * Shows a function call, or completes its entry: requests carry `arguments`, answers
 * `content` (History entries `response`). One entry per call id, whoever reports it.
 */
function recordCall (call) {
  let entry = conversation.calls.get(call.id)
  if (entry === undefined) {
    entry = transcriptEntry('call', span('who', call.client_side === false ? 'Server function' : 'Function call'), span('request', ''), span('response', '…'))
    entry.dataset.callId = call.id
    entry.dataset.status = 'requested'
    conversation.calls.set(call.id, entry)
  }
  if (typeof call.arguments === 'string') entry.querySelector('.request').textContent = `${call.name}(${call.arguments})`
  const answer = call.content ?? call.response
  if (typeof answer === 'string') {
    entry.querySelector('.response').textContent = `→ ${answer}`
    entry.dataset.status = 'answered'
  }
  followTranscript()
}

function addTurn (role, content) {
  transcriptEntry(`turn ${role === 'user' ? 'user' : 'assistant'}`, span('who', role === 'user' ? 'You' : 'Agent'), span('text', content))
}

function addNote (text, level = 'info') {
  transcriptEntry(`note ${level}`, span('text', text))
}

function addDivider () {
  if ($('transcript').childElementCount > 0) transcriptEntry('divider', span('text', 'New conversation'))
}

function transcriptEntry (className, ...children) {
  const list = $('transcript')
  const entry = document.createElement('li')
  entry.className = className
  entry.append(...children)
  list.append(entry)
  while (list.childElementCount > MAX_TRANSCRIPT_ENTRIES) {
    const oldest = list.firstElementChild
    if (oldest.dataset.callId !== undefined) conversation?.calls.delete(oldest.dataset.callId)
    oldest.remove()
  }
  followTranscript()
  return entry
}

/** Keeps the newest entry in view, unless the reader scrolled up to read. */
function followTranscript () {
  const list = $('transcript')
  if (followingTranscript) list.scrollTop = list.scrollHeight
}

function span (className, text) {
  const element = document.createElement('span')
  element.className = className
  element.textContent = text
  return element
}

function setState (state, detail = '') {
  $('state').dataset.state = state
  $('state-text').textContent = STATES[state]
  $('state-detail').textContent = detail
}

function setRunning (running) {
  const configured = running && conversation?.configured === true
  $('start').hidden = running
  $('stop').hidden = !running
  $('token').disabled = running
  $('prompt').readOnly = running
  for (const id of ['message', 'send', 'prompt-addition', 'prompt-send', 'voice-send']) $(id).disabled = !configured
  if (configured) $('message').focus()
}

function send (message) {
  agent.sendClientMessage(JSON.stringify(message))
}

function showStatus (text, level = 'info') {
  $('status').textContent = text
  $('status').dataset.level = level
}

function log (direction, message) {
  const list = $('log')
  const entry = document.createElement('li')
  entry.className = direction
  const json = JSON.stringify(message)
  entry.append(span('arrow', direction === 'out' ? '→' : '←'), span('type', message.type ?? '?'), span('json', json.length > LOG_PREVIEW_CHARS ? `${json.slice(0, LOG_PREVIEW_CHARS)}…` : json))
  list.append(entry)
  while (list.childElementCount > MAX_LOG_ENTRIES) list.firstElementChild.remove()
}

main()
