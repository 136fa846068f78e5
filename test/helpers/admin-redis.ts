// A real redis-server (Debian `redis-server`) for fleet tests: on a free loopback port,
// nothing persisted, stoppable and restartable on the same port mid-test.

import { spawn, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import { freePort, tempDir } from '../fixtures/deploy-stack.js'
import { REDIS_SERVER, requireProgram } from './system.js'

export interface RedisServer {
  /** redis://127.0.0.1:PORT */
  url: string
  port: number
  /** SIGTERM, and wait until it exited. */
  stop (): Promise<void>
  /** Starts it again on the same port, empty. */
  start (): Promise<void>
  /** A plain client for the test's own reads and writes, closed at teardown. */
  client (): Redis
}

/** Starts redis-server, or skips/fails the test when it is not installed (see system.ts). */
export async function startRedis (t: Pick<Test, 'skip' | 'fail' | 'teardown'>): Promise<RedisServer | undefined> {
  const bin = requireProgram(t, REDIS_SERVER)
  if (bin === undefined) return undefined
  const port = await freePort()
  const dir = await tempDir(t, 'redis-')
  let running: { child: ChildProcess, exited: Promise<void> } | undefined

  async function start (): Promise<void> {
    const child = spawn(bin as string, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    running = { child, exited }
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s:\n${output}`)), 10_000)
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited (${String(code)}) before it was ready:\n${output}`))
      })
    })
  }

  async function stop (): Promise<void> {
    if (running === undefined) return
    const { child, exited } = running
    running = undefined
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }

  const clients: Redis[] = []
  t.teardown(async () => {
    for (const client of clients) client.disconnect()
    await stop()
  })
  await start()
  const url = `redis://127.0.0.1:${port}`
  return {
    url,
    port,
    start,
    stop,
    client () {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      clients.push(client)
      return client
    }
  }
}
