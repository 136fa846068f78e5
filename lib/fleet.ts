// The fleet registry (REDIS_URL): one view of every instance and session, on Redis.
//
// Each instance, on a timer and from its in-memory state only, writes its own record
// and its sessions' summaries to keys that expire, so an instance that dies stops
// being listed within FLEET_ENTRY_TTL_MS without anyone cleaning up after it. Reading
// one session's timeline, or closing it, is a request to the instance that holds it,
// over pub/sub. Sessions never wait on Redis: nothing here runs on their path. When
// Redis is unreachable the instance serves on, every fleet answer says "degraded",
// and the client reconnects by itself; the first write after that rewrites everything.
//
// Keys (all under `dgproxy:fleet:`):
//   instances            sorted set of instance ids (the index readers walk; no SCAN)
//   instance:<id>        that instance's record (JSON), expires
//   sessions:<id>        hash: session id → summary (JSON), expires with the record
//   inbox:<id>           pub/sub channel: requests to that instance and its replies

import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { publicSummary } from './registry.js'
import type { ConnectionDetail, ConnectionSummary, SessionRegistry } from './registry.js'

/** How often an instance writes its record and its sessions' summaries. */
const FLEET_PUBLISH_INTERVAL_MS = 1000
/** Every entry expires this long after its last write: the bound on how long a dead instance stays listed. */
const FLEET_ENTRY_TTL_MS = 5000
/** Instances a reader looks at; more are not listed. */
const FLEET_MAX_INSTANCES = 64
/** Summaries an instance publishes; beyond it the rest are not listed (its record still counts them). */
const FLEET_MAX_PUBLISHED_SESSIONS = 2000
/** Summaries per HSET, so no single Redis command grows with the session count. */
const SUMMARIES_PER_COMMAND = 100
/** Everything is rewritten this often anyway, in case Redis lost keys without the connection noticing. */
const FULL_SYNC_INTERVAL_MS = 30_000
/** Index entries this far past their expiry (by the writer's clock) are pruned: allows for clock skew between instances. */
const INDEX_PRUNE_GRACE_MS = 60_000
/** How long a request to another instance may take. */
const REQUEST_TIMEOUT_MS = 2000
const MAX_PENDING_REQUESTS = 64
/** Largest pub/sub message sent or accepted (a reply carries a session's whole timeline). */
const MAX_MESSAGE_CHARS = 1024 * 1024
/** Fleet reads are shared by concurrent callers (admin pages) for this long. */
const READ_CACHE_MS = 500
/** The documented bound: an instance that dies unannounced is gone from every fleet answer this long after it died. */
export const FLEET_LEAVE_BOUND_MS = FLEET_ENTRY_TTL_MS + READ_CACHE_MS
/** A Redis that hangs fails commands after this instead of holding them. */
const REDIS_COMMAND_TIMEOUT_MS = 2000

const PREFIX = 'dgproxy:fleet:'
const INDEX_KEY = `${PREFIX}instances`
const instanceKey = (id: string): string => `${PREFIX}instance:${id}`
const sessionsKey = (id: string): string => `${PREFIX}sessions:${id}`
const inboxChannel = (id: string): string => `${PREFIX}inbox:${id}`

/** `standalone`: no REDIS_URL; `ok`: Redis reachable; `degraded`: Redis unreachable, this instance only. */
export type FleetState = 'standalone' | 'ok' | 'degraded'

/** How complete a fleet answer is; part of every fleet-wide response. */
export interface FleetStatus {
  status: FleetState
  /** When degraded: since when, a stable code and what it means. */
  since?: string
  code?: string
  message?: string
}

export const STANDALONE: FleetStatus = Object.freeze({ status: 'standalone' })

const DEGRADED_CODE = 'REDIS_UNAVAILABLE'
const DEGRADED_MESSAGE = 'The fleet registry (REDIS_URL) is unreachable: only this instance is shown. Sessions are not affected; it reconnects by itself.'

export interface InstanceInfo {
  instance: string
  startedAt: string
  sessions: number
  ready: boolean
  /** When the instance last wrote its record (its own clock). */
  lastSeen: string
}

/** What an instance knows about itself. */
export interface LocalInstance {
  instance: string
  startedAt: Date
  sessions: SessionRegistry
  isReady: () => boolean
}

export function describeInstance (local: LocalInstance): InstanceInfo {
  return {
    instance: local.instance,
    startedAt: local.startedAt.toISOString(),
    sessions: local.sessions.size,
    ready: local.isReady(),
    lastSeen: new Date().toISOString()
  }
}

/** What this instance does when another one asks about one of its sessions. */
export interface FleetHandlers {
  /** This instance's session with its timeline, or undefined. */
  detail (id: string): ConnectionDetail | undefined
  /** Closes this instance's session; false when it has none with this id. */
  close (id: string): boolean
}

/** A fleet-wide request that could not be answered; `statusCode` is what the admin API answers. */
export class FleetError extends Error {
  constructor (readonly code: 'FLEET_UNAVAILABLE' | 'FLEET_INSTANCE_UNREACHABLE', readonly statusCode: 503 | 504, message: string) {
    super(message)
    this.name = 'FleetError'
  }
}

export interface FleetOptions extends LocalInstance {
  redisUrl: string
  logger: Pick<Logger, 'info' | 'warn' | 'error'>
  /** Tests shorten these; the defaults are the documented bounds. */
  publishIntervalMs?: number
  entryTtlMs?: number
}

type Request = { rpc: string, op: 'detail' | 'close', id: string, from: string }
type Reply = { rpc: string, op: 'reply', found: boolean, detail?: ConnectionDetail, failed?: true }

interface Pending {
  resolve: (reply: Reply) => void
  timer: NodeJS.Timeout
}

export class Fleet {
  readonly instance: string
  readonly #local: LocalInstance
  readonly #log: FleetOptions['logger']
  /** Commands; the subscriber is a second connection (a subscribed connection takes no commands). */
  readonly #redis: Redis
  readonly #subscriber: Redis
  readonly #publishIntervalMs: number
  readonly #entryTtlMs: number
  #handlers: FleetHandlers | undefined
  #timer: NodeJS.Timeout | undefined
  /** What the last successful write left in Redis: session id → summary JSON. */
  #published = new Map<string, string>()
  #fullSyncDue = true
  #lastFullSync = 0
  #publishing: Promise<void> | undefined
  /** Degraded from start until the first write succeeds. */
  #degradedSince: Date | undefined = new Date()
  /** One warning per outage (a reconnect attempt fails every second). */
  #outageLogged = false
  readonly #pending = new Map<string, Pending>()
  readonly #reads = new Map<string, { at: number, value: Promise<unknown> }>()
  #stopped = false

  constructor (options: FleetOptions) {
    this.instance = options.instance
    this.#local = options
    this.#log = options.logger
    this.#publishIntervalMs = options.publishIntervalMs ?? FLEET_PUBLISH_INTERVAL_MS
    this.#entryTtlMs = options.entryTtlMs ?? FLEET_ENTRY_TTL_MS
    const redisOptions = {
      lazyConnect: true,
      // A command while disconnected fails at once instead of queueing: nothing waits for Redis.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
      connectTimeout: REDIS_COMMAND_TIMEOUT_MS,
      // Reconnect forever, at most a second apart, so recovery follows Redis closely.
      retryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
      // Subscriptions are renewed on every `ready` below, including the first one that failed.
      autoResubscribe: false,
      connectionName: `dgproxy:${this.instance}`
    }
    this.#redis = new Redis(options.redisUrl, redisOptions)
    this.#subscriber = new Redis(options.redisUrl, redisOptions)
    this.#redis.on('ready', () => {
      this.#fullSyncDue = true
      this.#publishSoon()
    })
    this.#subscriber.on('ready', () => {
      this.#subscriber.subscribe(inboxChannel(this.instance)).then(() => this.#publishSoon(), (error: unknown) => this.#failed(error))
    })
    for (const connection of [this.#redis, this.#subscriber]) {
      connection.on('error', (error: unknown) => this.#failed(error))
      connection.on('close', () => this.#failed(new Error('connection to Redis closed')))
    }
    this.#subscriber.on('message', (channel: string, message: string) => this.#onMessage(channel, message))
  }

  /** Connects (without waiting) and starts publishing. */
  start (): void {
    if (this.#timer !== undefined || this.#stopped) return
    this.#timer = setInterval(() => this.#publishSoon(), this.#publishIntervalMs).unref()
    // Failures reach the 'error' listeners; the client keeps retrying by itself.
    this.#redis.connect().catch(() => {})
    this.#subscriber.connect().catch(() => {})
  }

  /** Answers other instances' requests with these. */
  serve (handlers: FleetHandlers): void {
    this.#handlers = handlers
  }

  status (): FleetStatus {
    if (this.#degradedSince === undefined && this.#subscriber.status === 'ready') return { status: 'ok' }
    return { status: 'degraded', since: (this.#degradedSince ?? new Date()).toISOString(), code: DEGRADED_CODE, message: DEGRADED_MESSAGE }
  }

  /** Leaves the fleet at once (deletes this instance's entries when Redis is reachable) and disconnects. */
  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearInterval(this.#timer)
    for (const [rpc, pending] of this.#pending) {
      clearTimeout(pending.timer)
      this.#pending.delete(rpc)
      pending.resolve({ rpc, op: 'reply', found: false, failed: true })
    }
    await this.#publishing
    if (this.#redis.status === 'ready') {
      await this.#redis.multi().del(instanceKey(this.instance), sessionsKey(this.instance)).zrem(INDEX_KEY, this.instance).exec().catch(() => {})
    }
    this.#redis.disconnect()
    this.#subscriber.disconnect()
  }

  /**
   * Writes this instance's record and what changed in its sessions' summaries since the
   * last successful write (everything after a reconnect or a failure), then renews the
   * expiry of both. One transaction; never two at once.
   */
  async publish (): Promise<void> {
    if (this.#publishing === undefined && !this.#stopped && this.#redis.status === 'ready') {
      // #write handles Redis failing; anything else thrown is a bug, logged, and the next write starts over.
      this.#publishing = this.#write()
        .catch((error: unknown) => {
          this.#fullSyncDue = true
          this.#log.error({ err: error }, 'publishing to the fleet registry failed')
        })
        .finally(() => { this.#publishing = undefined })
    }
    await this.#publishing
  }

  /** Fire and forget: publish() settles its own failures. */
  #publishSoon (): void {
    this.publish().catch(() => {})
  }

  async #write (): Promise<void> {
    const now = Date.now()
    const full = this.#fullSyncDue || now - this.#lastFullSync >= FULL_SYNC_INTERVAL_MS
    const current = new Map<string, string>()
    for (const session of this.#local.sessions) {
      if (current.size >= FLEET_MAX_PUBLISHED_SESSIONS) break
      current.set(session.id, JSON.stringify(publicSummary(session, this.instance)))
    }
    const changed = [...current].filter(([id, json]) => full || this.#published.get(id) !== json)
    const gone = full ? [] : [...this.#published.keys()].filter((id) => !current.has(id))

    const ttl = this.#entryTtlMs
    const sessions = sessionsKey(this.instance)
    const tx = this.#redis.multi()
      .set(instanceKey(this.instance), JSON.stringify(describeInstance(this.#local)), 'PX', ttl)
      .zadd(INDEX_KEY, now + ttl, this.instance)
      .zremrangebyscore(INDEX_KEY, '-inf', now - INDEX_PRUNE_GRACE_MS)
    if (full) tx.del(sessions)
    for (const batch of batches(changed, SUMMARIES_PER_COMMAND)) tx.hset(sessions, ...batch.flat())
    for (const batch of batches(gone, SUMMARIES_PER_COMMAND)) tx.hdel(sessions, ...batch)
    tx.pexpire(sessions, ttl)
    try {
      const results = await tx.exec()
      const failure = results?.find(([error]) => error !== null)?.[0]
      if (results === null || failure !== undefined) throw failure ?? new Error('the transaction was discarded')
    } catch (error) {
      this.#fullSyncDue = true
      this.#failed(error)
      return
    }
    this.#published = current
    this.#fullSyncDue = false
    if (full) this.#lastFullSync = now
    this.#succeeded()
  }

  /** The other live instances' records (this one's is the caller's to describe). */
  async instances (): Promise<{ instances: InstanceInfo[], fleet: FleetStatus }> {
    return await this.#cachedRead('instances', async () => {
      const ids = await this.#otherInstances()
      const records = ids.length === 0 ? [] : await this.#redis.mget(ids.map(instanceKey))
      const gone = ids.filter((_id, index) => records[index] === null)
      // Keep the index small for every reader; failures here change nothing.
      if (gone.length > 0) this.#redis.zrem(INDEX_KEY, ...gone).catch(() => {})
      return records.flatMap((record, index) => {
        const info = record === null ? undefined : parseInstance(record, ids[index] as string)
        return info === undefined ? [] : [info]
      })
    }, [], (instances, fleet) => ({ instances, fleet }))
  }

  /** The sessions of the other live instances, as they last published them. */
  async connections (): Promise<{ connections: ConnectionSummary[], fleet: FleetStatus }> {
    return await this.#cachedRead('connections', async () => {
      const ids = await this.#otherInstances()
      const pipeline = this.#redis.pipeline()
      for (const id of ids) pipeline.hgetall(sessionsKey(id))
      const results = ids.length === 0 ? [] : (await pipeline.exec()) ?? []
      return results.flatMap(([error, hash], index) => {
        if (error !== null) throw error
        const instance = ids[index] as string
        return Object.values(hash as Record<string, string>).flatMap((json) => {
          const summary = parseSummary(json, instance)
          return summary === undefined ? [] : [summary]
        })
      })
    }, [], (connections, fleet) => ({ connections, fleet }))
  }

  /** Another instance's session with its timeline; undefined when no live instance has it. */
  async detail (id: string): Promise<ConnectionDetail | undefined> {
    const answer = await this.#ask('detail', id)
    return answer?.reply.found === true && answer.reply.detail !== undefined ? { ...answer.reply.detail, instance: answer.owner } : undefined
  }

  /** Closes another instance's session; false when no live instance has it. */
  async close (id: string): Promise<boolean> {
    return (await this.#ask('close', id))?.reply.found === true
  }

  // ── requests between instances ──────────────────────────────────────────────

  async #ask (op: Request['op'], id: string): Promise<{ owner: string, reply: Reply } | undefined> {
    if (this.#stopped) throw unavailable()
    let owner: string | undefined
    try {
      owner = await this.#owner(id)
    } catch (error) {
      this.#failed(error)
      throw unavailable()
    }
    if (owner === undefined) return undefined
    if (this.#subscriber.status !== 'ready' || this.#pending.size >= MAX_PENDING_REQUESTS) throw unavailable()

    const rpc = randomUUID()
    const reply = new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rpc)
        resolve({ rpc, op: 'reply', found: false, failed: true })
      }, REQUEST_TIMEOUT_MS)
      this.#pending.set(rpc, { resolve, timer })
    })
    const request: Request = { rpc, op, id, from: this.instance }
    let receivers: number
    try {
      receivers = await this.#redis.publish(inboxChannel(owner), JSON.stringify(request))
    } catch (error) {
      this.#settle({ rpc, op: 'reply', found: false })
      this.#failed(error)
      throw unavailable()
    }
    if (receivers === 0) {
      this.#settle({ rpc, op: 'reply', found: false })
      throw unreachable(owner)
    }
    const answer = await reply
    if (answer.failed === true) throw unreachable(owner)
    return { owner, reply: answer }
  }

  /** Which other live instance lists this session (one round trip over the index). */
  async #owner (id: string): Promise<string | undefined> {
    const ids = await this.#otherInstances()
    if (ids.length === 0) return undefined
    const pipeline = this.#redis.pipeline()
    for (const instance of ids) pipeline.hexists(sessionsKey(instance), id)
    const results = (await pipeline.exec()) ?? []
    const index = results.findIndex(([error, exists]) => {
      if (error !== null) throw error
      return exists === 1
    })
    return ids[index]
  }

  #onMessage (channel: string, message: string): void {
    if (channel !== inboxChannel(this.instance) || message.length > MAX_MESSAGE_CHARS) return
    let parsed: unknown
    try {
      parsed = JSON.parse(message)
    } catch {
      return
    }
    if (!isRecord(parsed) || typeof parsed.rpc !== 'string' || parsed.rpc.length > 64) return
    if (parsed.op === 'reply') {
      if (typeof parsed.found === 'boolean') this.#settle(parsed as Reply)
      return
    }
    if ((parsed.op !== 'detail' && parsed.op !== 'close') || typeof parsed.id !== 'string' || typeof parsed.from !== 'string' || parsed.from.length > 200) return
    const request = parsed as Request
    this.#redis.publish(inboxChannel(request.from), this.#answer(request)).catch((error: unknown) => this.#failed(error))
  }

  #answer (request: Request): string {
    const reply: Reply = { rpc: request.rpc, op: 'reply', found: false }
    try {
      if (request.op === 'close') {
        reply.found = this.#handlers?.close(request.id) ?? false
        return JSON.stringify(reply)
      }
      const detail = this.#handlers?.detail(request.id)
      if (detail === undefined) return JSON.stringify(reply)
      return fitted({ ...reply, found: true, detail })
    } catch (error) {
      this.#log.error({ err: error, sessionId: request.id }, 'answering a fleet request failed')
      return JSON.stringify({ ...reply, failed: true })
    }
  }

  #settle (reply: Reply): void {
    const pending = this.#pending.get(reply.rpc)
    if (pending === undefined) return
    clearTimeout(pending.timer)
    this.#pending.delete(reply.rpc)
    pending.resolve(reply)
  }

  // ── reads, health ───────────────────────────────────────────────────────────

  async #otherInstances (): Promise<string[]> {
    // ioredis' typings take the stop index as a string only.
    const ids = await this.#redis.zrange(INDEX_KEY, 0, String(FLEET_MAX_INSTANCES - 1))
    return ids.filter((id) => id !== this.instance)
  }

  /** One Redis read shared by the callers of the next READ_CACHE_MS; a failed read is an empty, degraded answer. */
  async #cachedRead<T, R> (name: string, read: () => Promise<T>, empty: T, shape: (value: T, fleet: FleetStatus) => R): Promise<R> {
    const cached = this.#reads.get(name)
    if (cached !== undefined && Date.now() - cached.at < READ_CACHE_MS) return await (cached.value as Promise<R>)
    const value = read().then(
      (result) => shape(result, this.status()),
      (error: unknown) => {
        this.#failed(error)
        return shape(empty, this.status())
      })
    this.#reads.set(name, { at: Date.now(), value })
    return await value
  }

  #failed (error: unknown): void {
    if (this.#stopped) return
    this.#reads.clear()
    this.#degradedSince ??= new Date()
    if (this.#outageLogged) return
    this.#outageLogged = true
    const reason = error instanceof Error ? error.message : String(error)
    this.#log.warn({ code: DEGRADED_CODE, reason }, 'fleet registry unreachable: this instance serves on; the fleet view is degraded until it reconnects')
  }

  #succeeded (): void {
    if (this.#degradedSince === undefined || this.#subscriber.status !== 'ready') return
    this.#degradedSince = undefined
    this.#outageLogged = false
    this.#log.info({ instance: this.instance }, 'fleet registry reachable: this instance is listed in the fleet')
  }
}

function unavailable (): FleetError {
  return new FleetError('FLEET_UNAVAILABLE', 503, 'The fleet registry (REDIS_URL) is unreachable, so sessions of other instances cannot be reached now. Retry when /instances reports "ok", or ask the instance that holds the session.')
}

function unreachable (instance: string): FleetError {
  return new FleetError('FLEET_INSTANCE_UNREACHABLE', 504, `Instance "${instance}" lists this session but did not answer; it may have just stopped. Retry in a few seconds.`)
}

/** A reply within MAX_MESSAGE_CHARS: the oldest timeline entries go first. */
function fitted (reply: Reply & { detail: ConnectionDetail }): string {
  let text = JSON.stringify(reply)
  let events = reply.detail.events
  while (text.length > MAX_MESSAGE_CHARS && events.length > 0) {
    events = events.slice(Math.ceil(events.length / 2))
    text = JSON.stringify({ ...reply, detail: { ...reply.detail, events } })
  }
  return text.length > MAX_MESSAGE_CHARS ? JSON.stringify({ ...reply, detail: { ...reply.detail, events: [] } }) : text
}

function batches<T> (items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let start = 0; start < items.length; start += size) out.push(items.slice(start, start + size))
  return out
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function parseJson (json: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(json)
    return isRecord(value) ? value : undefined
  } catch {
    return undefined
  }
}

/** A summary another instance wrote; the hash it came from names its instance. */
function parseSummary (json: string, instance: string): ConnectionSummary | undefined {
  const value = parseJson(json)
  return value !== undefined && typeof value.id === 'string' ? { ...(value as unknown as ConnectionSummary), instance } : undefined
}

function parseInstance (json: string, instance: string): InstanceInfo | undefined {
  const value = parseJson(json)
  if (value === undefined || typeof value.startedAt !== 'string' || typeof value.sessions !== 'number' ||
    typeof value.ready !== 'boolean' || typeof value.lastSeen !== 'string') return undefined
  return { instance, startedAt: value.startedAt, sessions: value.sessions, ready: value.ready, lastSeen: value.lastSeen }
}
