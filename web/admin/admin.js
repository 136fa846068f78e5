// The live admin page. Two server-sent event streams from /admin/events, read with
// fetch so the admin token travels in the Authorization header (EventSource cannot set
// headers, and a token in a URL ends up in logs and history): one for the session list
// and the instances, one for the open session's timeline. No framework, no build step;
// everything that comes from the server is written with textContent, never as HTML.

const TOKEN_KEY = 'dgproxy.adminToken'
/** An open response slot this old is drawn as stuck. */
const STUCK_MS = 15_000
const CONFLICT_CODE = 'conversation_already_has_active_response'
const ARM_MS = 3000
const SVG = 'http://www.w3.org/2000/svg'

const $ = (selector) => document.querySelector(selector)

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) ?? '',
  fleetScope: true,
  tag: '',
  rows: [],
  selected: null,
  openId: null,
  detail: null,
  gone: false,
  armedUntil: 0
}

// ── server-sent events over fetch ───────────────────────────────────────────

class HttpError extends Error {
  constructor (status, body) {
    super(body?.message ?? `HTTP ${status}`)
    this.status = status
    this.body = body
  }
}

function headers () {
  return state.token === '' ? {} : { authorization: `Bearer ${state.token}` }
}

async function readEvents (url, onEvent, signal) {
  const response = await fetch(url, { headers: { ...headers(), accept: 'text/event-stream' }, cache: 'no-store', signal })
  if (!response.ok) throw new HttpError(response.status, await response.json().catch(() => null))
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      let event = 'message'
      let data = ''
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7)
        else if (line.startsWith('data: ')) data += line.slice(6)
      }
      if (data !== '') onEvent(event, JSON.parse(data))
    }
  }
}

/** A stream that reconnects by itself (backoff up to 5 s) until stopped, or until access is refused. */
function supervise (url, onEvent) {
  const controller = new AbortController()
  ;(async () => {
    for (let attempt = 0; !controller.signal.aborted; attempt++) {
      try {
        await readEvents(url, (event, data) => {
          attempt = 0
          showStreamState('live')
          onEvent(event, data)
        }, controller.signal)
      } catch (error) {
        if (controller.signal.aborted) return
        if (error instanceof HttpError && (error.status === 401 || error.status === 403)) return refused(error)
        showStreamState('offline', error.message)
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 5000)))
    }
  })()
  return () => controller.abort()
}

let stopList = () => {}
let stopDetail = () => {}

function startList () {
  stopList()
  const query = new URLSearchParams({ scope: state.fleetScope ? 'fleet' : 'local' })
  if (state.tag !== '') query.set('tag', state.tag)
  stopList = supervise(`/admin/events?${query}`, (event, data) => {
    if (event === 'connections') renderList(data)
    else if (event === 'instances') renderInstances(data)
  })
}

function startDetail (id) {
  stopDetail()
  stopDetail = supervise(`/admin/events?${new URLSearchParams({ session: id })}`, (event, data) => {
    if (id !== state.openId) return
    if (event === 'session') {
      state.detail = data
      state.gone = false
    } else if (event === 'gone') {
      state.gone = true
    } else if (event === 'problem') {
      showStreamState('offline', data.message)
    }
    renderDetail()
  })
}

// ── access ──────────────────────────────────────────────────────────────────

function refused (error) {
  stopList()
  stopDetail()
  state.rows = []
  closeDetail()
  $('#list').hidden = true
  $('#sessions tbody').replaceChildren()
  $('#instances').replaceChildren()
  if (error.status === 401) {
    $('#notice').hidden = true
    $('#login').hidden = false
    $('#login-error').textContent = state.token === '' ? '' : 'That token was refused.'
    $('#forget-token').hidden = true
    $('#token').focus()
  } else {
    $('#login').hidden = true
    $('#notice').hidden = false
    $('#notice').textContent = 'Admin routes answer loopback clients only while ADMIN_TOKEN is unset: open this page from the instance itself, or set ADMIN_TOKEN.'
  }
  showStreamState('offline', error.message)
}

function start () {
  $('#login').hidden = true
  $('#notice').hidden = true
  $('#list').hidden = false
  $('#forget-token').hidden = state.token === ''
  startList()
}

$('#login-form').addEventListener('submit', (event) => {
  event.preventDefault()
  state.token = $('#token').value.trim()
  $('#token').value = ''
  sessionStorage.setItem(TOKEN_KEY, state.token)
  start()
})

$('#forget-token').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY)
  state.token = ''
  refused(new HttpError(401, null))
  $('#login-error').textContent = ''
})

// ── the session list ────────────────────────────────────────────────────────

function el (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

const short = (id) => (id.length > 12 ? id.slice(0, 8) : id)

function count (n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`
  return String(n)
}

function age (iso) {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000))
  if (seconds < 60) return `${seconds}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, '0')}s`
  return `${Math.floor(seconds / 3600)}h ${String(Math.floor(seconds / 60) % 60).padStart(2, '0')}m`
}

function numberCell (value, { hot = false, wide = false } = {}) {
  return el('td', `num${wide ? ' wide' : ''}${value === 0 ? ' zero' : hot ? ' hot' : ''}`, count(value))
}

function stateClass (summary) {
  if (summary.responseInProgress) return 'busy'
  return summary.phase
}

function renderList ({ connections, fleet }) {
  state.rows = connections.toSorted((a, b) => b.startedAt.localeCompare(a.startedAt) || a.id.localeCompare(b.id))
  if (fleet !== undefined) renderFleet(fleet)
  const body = $('#sessions tbody')
  body.replaceChildren(...state.rows.map(row))
  $('#empty').hidden = state.rows.length > 0
  if (state.selected !== null && !state.rows.some((s) => s.id === state.selected)) state.selected = null
  markSelection()
}

function row (summary) {
  const tr = el('tr')
  tr.dataset.session = summary.id
  tr.dataset.phase = summary.phase
  tr.dataset.response = summary.responseInProgress ? 'active' : 'idle'
  tr.addEventListener('click', () => { select(summary.id); openDetail(summary.id) })

  const dot = el('td', 'dot-col')
  dot.append(el('span', `dot ${stateClass(summary)}`))
  const id = el('td', 'mono', short(summary.id))
  id.title = summary.id
  const instance = el('td', 'mono wide', short(summary.instance))
  instance.title = summary.instance
  const tags = el('td')
  for (const tag of summary.tags ?? []) tags.append(el('span', 'tag', tag))
  const response = summary.responseInProgress
    ? el('td', 'response busy', `● ${summary.activeResponseId ?? 'requested'}`)
    : el('td', 'response idle', 'idle')
  const connects = summary.upstream.connects ?? 1
  const upstream = el('td', `up wide ${summary.upstream.state}`, summary.upstream.state + (connects > 1 ? ` ×${connects}` : ''))
  upstream.title = `${connects} upstream connection${connects === 1 ? '' : 's'}`
  const usage = summary.usage ?? {}
  const tokens = el('td', 'num wide', `${count(usage.inputTokens ?? 0)} / ${count(usage.outputTokens ?? 0)}`)
  tokens.title = `input ${usage.inputTokens ?? 0} (audio ${usage.inputAudioTokens ?? 0}, cached ${usage.cachedInputTokens ?? 0}) · output ${usage.outputTokens ?? 0} (audio ${usage.outputAudioTokens ?? 0})`
  const pending = summary.pending.responseCreate + summary.pending.sessionUpdate + summary.pending.functionCalls
  const started = el('td', 'num', age(summary.startedAt))
  started.dataset.since = summary.startedAt
  started.title = summary.startedAt

  tr.append(
    dot, id, instance, tags,
    el('td', `phase ${summary.phase}`, summary.phase.replace('_', ' ')),
    response, upstream,
    numberCell(summary.upstream.sent['session.update'] ?? 0),
    numberCell(summary.upstream.sent['response.create'] ?? 0),
    numberCell(usage.responses ?? 0, { wide: true }),
    tokens,
    numberCell(pending, { hot: true, wide: true }),
    started
  )
  return tr
}

function renderFleet (fleet) {
  const pill = $('#fleet-status')
  pill.className = `pill ${fleet.status}`
  pill.textContent = fleet.status === 'ok' ? 'fleet ok' : fleet.status === 'degraded' ? 'fleet degraded' : 'this instance only'
  pill.title = fleet.message ?? (fleet.status === 'standalone' ? 'REDIS_URL is not set: this instance alone.' : 'Every live instance is listed.')
}

function renderInstances ({ instances, fleet }) {
  renderFleet(fleet)
  $('#instances').replaceChildren(...instances.map((instance, index) => {
    const chip = el('span', `instance${index === 0 ? ' self' : ''}`)
    chip.dataset.instance = instance.instance
    chip.title = `${instance.instance}${index === 0 ? ' (this instance)' : ''}\nstarted ${instance.startedAt}\nlast seen ${instance.lastSeen}\n${instance.ready ? 'ready' : 'not accepting sessions'}`
    chip.append(el('span', `dot ${instance.ready ? 'ready' : 'closing'}`), `${short(instance.instance)} · ${instance.sessions}`)
    return chip
  }))
}

function select (id) {
  state.selected = id
  markSelection()
}

function markSelection () {
  for (const tr of $('#sessions tbody').children) {
    tr.setAttribute('aria-selected', String(tr.dataset.session === state.selected))
    tr.classList.toggle('open', tr.dataset.session === state.openId)
  }
}

function moveSelection (step) {
  if (state.rows.length === 0) return
  const index = state.rows.findIndex((s) => s.id === state.selected)
  const next = index < 0 ? 0 : Math.min(state.rows.length - 1, Math.max(0, index + step))
  select(state.rows[next].id)
  const selected = [...$('#sessions tbody').children].find((tr) => tr.dataset.session === state.selected)
  selected?.scrollIntoView({ block: 'nearest' })
}

$('#scope-fleet').addEventListener('change', (event) => {
  state.fleetScope = event.target.checked
  startList()
})

let tagTimer
$('#tag-filter').addEventListener('input', (event) => {
  clearTimeout(tagTimer)
  tagTimer = setTimeout(() => {
    state.tag = event.target.value.trim()
    startList()
  }, 200)
})

// ── the open session ────────────────────────────────────────────────────────

function openDetail (id) {
  if (state.openId !== id) {
    state.openId = id
    state.detail = null
    state.gone = false
    disarm()
    startDetail(id)
  }
  $('#detail').hidden = false
  $('#main').classList.add('with-detail')
  $('#detail').dataset.session = id
  renderDetail()
  markSelection()
}

function closeDetail () {
  stopDetail()
  state.openId = null
  state.detail = null
  $('#detail').hidden = true
  $('#main').classList.remove('with-detail')
  markSelection()
}

$('#close-detail').addEventListener('click', closeDetail)

function stat (label, value) {
  const div = el('div')
  div.append(el('dt', '', label), el('dd', '', value))
  return div
}

function renderDetail () {
  const detail = state.detail
  $('#detail-id').textContent = state.openId ?? ''
  const badges = []
  if (state.gone) badges.push(el('span', 'badge gone', 'ended'))
  if (detail !== null) {
    badges.push(el('span', `badge ${detail.phase}`, detail.phase.replace('_', ' ')))
    badges.push(detail.responseInProgress ? el('span', 'badge busy', `response ${detail.activeResponseId ?? 'requested'}`) : el('span', 'badge', 'no response'))
    badges.push(el('span', 'badge mono', `instance ${short(detail.instance)}`))
    for (const tag of detail.tags ?? []) badges.push(el('span', 'tag', tag))
  }
  $('#detail-badges').replaceChildren(...badges)
  $('#close-session').disabled = state.gone || detail === null
  $('#detail').dataset.state = state.gone ? 'gone' : detail === null ? 'loading' : 'live'
  if (detail === null) {
    $('#detail-stats').replaceChildren()
    $('#events tbody').replaceChildren()
    $('#lane').replaceChildren()
    return
  }
  const usage = detail.usage ?? {}
  const sent = detail.upstream.sent
  $('#detail-stats').replaceChildren(
    stat('upstream', `${detail.upstream.state} ×${detail.upstream.connects ?? 1}`),
    stat('session.update', String(sent['session.update'] ?? 0)),
    stat('response.create', String(sent['response.create'] ?? 0)),
    stat('response.done', String(detail.upstream.received['response.done'] ?? 0)),
    stat('tokens in', `${count(usage.inputTokens ?? 0)} (audio ${count(usage.inputAudioTokens ?? 0)})`),
    stat('tokens out', `${count(usage.outputTokens ?? 0)} (audio ${count(usage.outputAudioTokens ?? 0)})`),
    stat('cached in', count(usage.cachedInputTokens ?? 0)),
    stat('queued', `${detail.pending.responseCreate} resp · ${detail.pending.sessionUpdate} upd · ${detail.pending.functionCalls} fn`)
  )
  renderLane(detail.events, state.gone ? undefined : Date.now())
  renderEvents(detail.events)
}

const DIRECTION_LABEL = {
  'client->proxy': 'client → proxy',
  'proxy->upstream': 'proxy → upstream',
  'upstream->proxy': 'upstream → proxy',
  'proxy->client': 'proxy → client'
}

function renderEvents (events) {
  const start = events.length > 0 ? Date.parse(events[0].at) : 0
  $('#events tbody').replaceChildren(...events.toReversed().map((event) => {
    const tr = el('tr', `dir-${event.direction.replace('->', '-')}`)
    tr.dataset.type = event.type
    if (event.code !== undefined || event.type === 'error' || event.type === 'Error') tr.classList.add('bad')
    if (event.bytes !== undefined) tr.classList.add('audio')
    const ids = [event.responseId, event.itemId, event.eventId, event.code].filter((value) => value !== undefined).join(' · ')
    const idsCell = el('td', 'ids', ids)
    idsCell.title = ids
    const bytes = event.bytes === undefined ? '' : `${count(event.bytes)}${event.frames > 1 ? ` / ${event.frames}×` : ''}`
    tr.append(
      el('td', 'num', ((Date.parse(event.at) - start) / 1000).toFixed(3)),
      el('td', 'dir', DIRECTION_LABEL[event.direction] ?? event.direction),
      el('td', 'type', event.type),
      idsCell,
      el('td', 'num', bytes)
    )
    return tr
  }))
}

/**
 * The response slot over time, rebuilt from the timeline: requested (response.create
 * sent) → in progress (response.created) → free (response.done). Two responses at once,
 * or an upstream error, are drawn in red; a slot still open is drawn to "now", outlined
 * in red once it has been open for STUCK_MS.
 */
function responseSlot (events, now) {
  const segments = []
  const marks = []
  const start = events.length > 0 ? Date.parse(events[0].at) : now
  let requested
  const active = new Map()
  for (const event of events) {
    const at = Date.parse(event.at)
    if (event.direction === 'proxy->upstream' && event.type === 'response.create') {
      requested = at
    } else if (event.direction === 'upstream->proxy' && event.type === 'response.created') {
      if (requested !== undefined) segments.push({ kind: 'creating', from: requested, to: at })
      requested = undefined
      if (active.size > 0) marks.push({ at, label: 'two responses at once' })
      active.set(event.responseId ?? at, { from: at, overlap: active.size > 0 })
    } else if (event.direction === 'upstream->proxy' && event.type === 'response.done') {
      const slot = active.get(event.responseId)
      active.delete(event.responseId)
      // A response.created that rolled out of the timeline: the slot was busy since its start.
      segments.push({ kind: slot?.overlap ? 'conflict' : 'active', from: slot?.from ?? start, to: at, id: event.responseId })
    } else if (event.direction === 'upstream->proxy' && event.type === 'error') {
      if (requested !== undefined) segments.push({ kind: 'conflict', from: requested, to: at })
      requested = undefined
      marks.push({ at, label: event.code === CONFLICT_CODE ? 'conflict' : (event.code ?? 'error') })
    }
  }
  if (now !== undefined) {
    if (requested !== undefined) segments.push({ kind: 'creating', from: requested, to: now, open: true })
    for (const [id, slot] of active) segments.push({ kind: slot.overlap ? 'conflict' : 'active', from: slot.from, to: now, open: true, id })
  }
  return { segments, marks }
}

function svg (tag, attributes, text) {
  const node = document.createElementNS(SVG, tag)
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value))
  if (text !== undefined) node.textContent = text
  return node
}

function renderLane (events, now) {
  const lane = $('#lane')
  const width = lane.clientWidth || 600
  const height = 112
  const left = 74
  const start = events.length > 0 ? Date.parse(events[0].at) : (now ?? 0)
  const end = Math.max(now ?? 0, events.length > 0 ? Date.parse(events.at(-1).at) : 0, start + 1000)
  const x = (at) => left + ((at - start) / (end - start)) * (width - left - 8)
  lane.setAttribute('viewBox', `0 0 ${width} ${height}`)

  const hatch = svg('pattern', { id: 'hatch', width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' })
  hatch.append(svg('line', { x1: 0, y1: 0, x2: 0, y2: 4, class: 'hatch-line' }))
  const defs = svg('defs', {})
  defs.append(hatch)
  const nodes = [defs]

  const lanes = [['response', 6, 26], ['upstream', 38, 16], ['client', 60, 16]]
  for (const [label, y, h] of lanes) {
    nodes.push(svg('rect', { class: 'lane-bg', x: left, y, width: width - left - 8, height: h, rx: 3 }))
    nodes.push(svg('text', { class: 'lane-label', x: 0, y: y + h / 2 + 4 }, label))
  }

  const { segments, marks } = responseSlot(events, now)
  // A second response at the same time goes on top, in the lower half of the lane, so both show.
  for (const segment of segments.toSorted((a, b) => (a.kind === 'conflict') - (b.kind === 'conflict'))) {
    const stuck = segment.open === true && segment.to - segment.from >= STUCK_MS
    const classes = ['seg', segment.kind, segment.open ? 'open' : '', stuck ? 'stuck' : ''].filter(Boolean).join(' ')
    const [y, h] = segment.kind === 'conflict' ? [20, 10] : [8, 22]
    const rect = svg('rect', { class: classes, x: x(segment.from), y, width: Math.max(2, x(segment.to) - x(segment.from)), height: h, rx: 2 })
    const seconds = ((segment.to - segment.from) / 1000).toFixed(1)
    rect.append(svg('title', {}, `${segment.kind === 'creating' ? 'requested' : 'response'} ${segment.id ?? ''} ${seconds} s${segment.open ? ' (still open)' : ''}`))
    nodes.push(rect)
    if (stuck) nodes.push(svg('text', { class: 'note', x: Math.max(left + 4, x(segment.to) - 120), y: 23 }, `open ${seconds} s`))
  }
  for (const mark of marks) {
    const line = svg('line', { class: 'tick bad', x1: x(mark.at), x2: x(mark.at), y1: 4, y2: 34 })
    line.append(svg('title', {}, mark.label))
    nodes.push(line)
  }
  for (const event of events) {
    const at = x(Date.parse(event.at))
    const y = event.direction === 'proxy->upstream' || event.direction === 'upstream->proxy' ? 38 : 60
    const kind = event.bytes !== undefined
      ? 'audio'
      : event.type === 'session.update' ? 'update' : event.type === 'response.create' ? 'create' : (event.code !== undefined || event.type === 'error' ? 'bad' : '')
    const tick = svg('line', { class: `tick ${kind}`, x1: at, x2: at, y1: y + 2, y2: y + 14 })
    tick.append(svg('title', {}, `${DIRECTION_LABEL[event.direction] ?? event.direction} ${event.type}`))
    nodes.push(tick)
  }
  if (now !== undefined) nodes.push(svg('line', { class: 'now', x1: x(now), x2: x(now), y1: 4, y2: 78 }))
  nodes.push(svg('text', { class: 'axis', x: left, y: 96 }, new Date(start).toLocaleTimeString()))
  nodes.push(svg('text', { class: 'axis', x: width - 8, y: 96, 'text-anchor': 'end' }, `+${((end - start) / 1000).toFixed(1)} s`))
  lane.replaceChildren(...nodes)
}

// ── closing a session ───────────────────────────────────────────────────────

function disarm () {
  state.armedUntil = 0
  const button = $('#close-session')
  button.classList.remove('armed')
  button.textContent = 'Close session'
}

/** First press arms the button, the second (within ARM_MS) closes: no modal dialog, still two deliberate steps. */
async function closeSession () {
  const id = state.openId ?? state.selected
  if (id === null) return
  if (state.openId === null) openDetail(id)
  const button = $('#close-session')
  if (Date.now() > state.armedUntil) {
    state.armedUntil = Date.now() + ARM_MS
    button.classList.add('armed')
    button.textContent = 'Confirm close'
    setTimeout(() => { if (Date.now() >= state.armedUntil) disarm() }, ARM_MS)
    return
  }
  disarm()
  const response = await fetch(`/connections/${encodeURIComponent(id)}`, { method: 'DELETE', headers: headers() })
  if (response.status === 204 || response.status === 404) {
    state.gone = true
    renderDetail()
    return
  }
  const body = await response.json().catch(() => null)
  if (response.status === 401 || response.status === 403) return refused(new HttpError(response.status, body))
  showStreamState('offline', body?.message ?? `closing failed: HTTP ${response.status}`)
}

$('#close-session').addEventListener('click', closeSession)

// ── keyboard, clock, status ─────────────────────────────────────────────────

document.addEventListener('keydown', (event) => {
  if (event.target.tagName === 'INPUT') {
    if (event.key === 'Escape') event.target.blur()
    return
  }
  if (event.metaKey || event.ctrlKey || event.altKey || !$('#login').hidden) return
  const actions = {
    j: () => moveSelection(1),
    ArrowDown: () => moveSelection(1),
    k: () => moveSelection(-1),
    ArrowUp: () => moveSelection(-1),
    Enter: () => state.selected !== null && openDetail(state.selected),
    o: () => state.selected !== null && openDetail(state.selected),
    Escape: () => (state.armedUntil > Date.now() ? disarm() : closeDetail()),
    x: () => closeSession(),
    '/': () => $('#tag-filter').focus(),
    f: () => $('#scope-fleet').click()
  }
  const action = actions[event.key]
  if (action === undefined) return
  event.preventDefault()
  action()
})

function showStreamState (kind, message = '') {
  const node = $('#stream-state')
  node.className = `stream-state ${kind}`
  node.textContent = kind === 'live' ? '● live' : `○ reconnecting${message ? `: ${message}` : ''}`
}

// Ages tick and an open response slot grows between server events.
setInterval(() => {
  for (const cell of document.querySelectorAll('td[data-since]')) cell.textContent = age(cell.dataset.since)
  if (state.detail !== null && !state.gone && state.detail.responseInProgress) renderLane(state.detail.events, Date.now())
}, 1000)

window.addEventListener('resize', () => { if (state.detail !== null) renderLane(state.detail.events, state.gone ? undefined : Date.now()) })

start()
