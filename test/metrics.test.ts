import t from 'tap'
import { register as globalRegistry } from 'prom-client'
import { createMetrics } from '../lib/metrics.js'
import { SessionRegistry } from '../lib/registry.js'
import { FakeSession } from './helpers/admin-fakes.js'
import { parseExposition } from './helpers/admin-prom.js'

const PROXY_METRICS = {
  dgproxy_sessions_active: 'gauge',
  dgproxy_sessions_total: 'counter',
  dgproxy_sessions_rejected_total: 'counter',
  dgproxy_upstream_events_total: 'counter',
  dgproxy_client_messages_total: 'counter',
  dgproxy_responses_total: 'counter',
  dgproxy_active_response_conflicts_total: 'counter',
  dgproxy_response_queue_wait_seconds: 'histogram',
  dgproxy_time_to_first_audio_seconds: 'histogram',
  dgproxy_client_errors_total: 'counter',
  dgproxy_dropped_frames_total: 'counter'
}

async function scrape (metrics: ReturnType<typeof createMetrics>) {
  return parseExposition(await metrics.registry.metrics())
}

t.test('a private registry exposing every proxy metric plus process defaults', async (t) => {
  const metrics = createMetrics(new SessionRegistry())
  t.not(metrics.registry, globalRegistry)
  t.equal((await globalRegistry.metrics()).trim(), '', 'nothing on the global registry')
  const exposition = await scrape(metrics)
  for (const [name, type] of Object.entries(PROXY_METRICS)) t.equal(exposition.types.get(name), type, `${name} is a ${type}`)
  t.ok(exposition.types.has('process_cpu_user_seconds_total'), 'default metrics collected')
  t.ok(exposition.types.has('nodejs_eventloop_lag_seconds'))
  t.equal(exposition.value('dgproxy_sessions_active'), 0)
})

t.test('event and message totals: live sessions plus retired ones', async (t) => {
  const sessions = new SessionRegistry()
  const metrics = createMetrics(sessions)
  const a = new FakeSession('a')
  const b = new FakeSession('b', { upstreamSent: { 'session.update': 3, 'input_audio_buffer.append': 50 }, clientReceived: { binary: 50, KeepAlive: 2 } })
  sessions.add(a)
  sessions.add(b)

  let exposition = await scrape(metrics)
  t.equal(exposition.value('dgproxy_sessions_active'), 2)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'session.update' }), 4)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'response.create' }), 2)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'input_audio_buffer.append' }), 50)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'received', type: 'response.done' }), 4)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'received', type: 'binary' }), 170)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'received', type: 'KeepAlive' }), 2)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'sent', type: 'binary' }), 80)

  // Counts grow while the session lives, without any metrics call.
  a.counts.clientReceived.binary = 1000
  exposition = await scrape(metrics)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'received', type: 'binary' }), 1050)

  // Ending a session moves its counts to the retired totals: nothing is lost or doubled.
  sessions.delete('a')
  metrics.sessionEnded(a.summary())
  exposition = await scrape(metrics)
  t.equal(exposition.value('dgproxy_sessions_active'), 1)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'received', type: 'binary' }), 1050)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'session.update' }), 4)

  sessions.delete('b')
  metrics.sessionEnded(b.summary())
  exposition = await scrape(metrics)
  t.equal(exposition.value('dgproxy_sessions_active'), 0)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'session.update' }), 4)
  t.equal(exposition.value('dgproxy_upstream_events_total', { direction: 'sent', type: 'input_audio_buffer.append' }), 50)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'received', type: 'binary' }), 1050)
  t.equal(exposition.value('dgproxy_client_messages_total'), (1000 + 1) + (50 + 2) + (1 + 1 + 40) * 2, 'every count once')
})

t.test('message types from peers are capped', async (t) => {
  const sessions = new SessionRegistry()
  const metrics = createMetrics(sessions)
  const noisy: Record<string, number> = {}
  for (let i = 0; i < 500; i++) noisy[`junk_${i}`] = 1
  noisy['weird "type"\\\n'] = 1
  sessions.add(new FakeSession('noisy', { clientReceived: noisy }))
  const exposition = await scrape(metrics)
  const received = exposition.series('dgproxy_client_messages_total').filter((sample) => sample.labels.direction === 'received')
  t.ok(received.length <= 201, `${received.length} series`)
  t.equal(exposition.value('dgproxy_client_messages_total', { direction: 'received' }), 501, 'nothing dropped')
  t.ok(exposition.value('dgproxy_client_messages_total', { direction: 'received', type: 'other' }) > 0)
})

t.test('event-driven counters and histograms', async (t) => {
  const metrics = createMetrics(new SessionRegistry())
  metrics.sessionStarted()
  metrics.sessionStarted()
  metrics.sessionRejected('max_sessions')
  metrics.sessionRejected('auth')
  metrics.sessionRejected('auth')
  metrics.responseDone('completed')
  metrics.responseDone('cancelled')
  metrics.responseDone('completed')
  metrics.activeResponseConflict()
  metrics.queueWait(0.2)
  metrics.queueWait(3)
  metrics.timeToFirstAudio(0.45)
  metrics.clientError('UNPARSABLE_CLIENT_MESSAGE')
  metrics.droppedFrames('before_settings', 3)
  metrics.droppedFrames('backpressure')

  const exposition = await scrape(metrics)
  t.equal(exposition.value('dgproxy_sessions_total'), 2)
  t.equal(exposition.value('dgproxy_sessions_rejected_total', { reason: 'auth' }), 2)
  t.equal(exposition.value('dgproxy_sessions_rejected_total', { reason: 'max_sessions' }), 1)
  t.equal(exposition.value('dgproxy_responses_total', { status: 'completed' }), 2)
  t.equal(exposition.value('dgproxy_responses_total', { status: 'cancelled' }), 1)
  t.equal(exposition.value('dgproxy_active_response_conflicts_total'), 1)
  t.equal(exposition.value('dgproxy_response_queue_wait_seconds_count'), 2)
  t.equal(exposition.value('dgproxy_response_queue_wait_seconds_sum'), 3.2)
  t.equal(exposition.value('dgproxy_response_queue_wait_seconds_bucket', { le: '0.25' }), 1)
  t.equal(exposition.value('dgproxy_response_queue_wait_seconds_bucket', { le: '+Inf' }), 2)
  t.equal(exposition.value('dgproxy_time_to_first_audio_seconds_bucket', { le: '0.5' }), 1)
  t.equal(exposition.value('dgproxy_time_to_first_audio_seconds_bucket', { le: '0.3' }), 0)
  t.equal(exposition.value('dgproxy_client_errors_total', { code: 'UNPARSABLE_CLIENT_MESSAGE' }), 1)
  t.equal(exposition.value('dgproxy_dropped_frames_total', { reason: 'before_settings' }), 3)
  t.equal(exposition.value('dgproxy_dropped_frames_total', { reason: 'backpressure' }), 1)
})

t.test('the exposition parser rejects malformed text', async (t) => {
  t.throws(() => parseExposition('not a metric line at all'), /not a sample/)
  t.throws(() => parseExposition('m{a="1",b} 1'), /bad labels/)
  t.throws(() => parseExposition('m 1x'), /bad value/)
  t.throws(() => parseExposition('# TYPE m nonsense'), /unknown TYPE/)
  t.same(parseExposition('m{a="x\\"y",b="2"} 3 1700000000').samples, [{ name: 'm', labels: { a: 'x"y', b: '2' }, value: 3 }])
  t.same(parseExposition('m Nan\nn +Inf\no -Inf').samples.map((sample) => sample.value), [NaN, Infinity, -Infinity])
})
