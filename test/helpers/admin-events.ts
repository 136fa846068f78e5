// Reads the admin page's server-sent events (`GET /admin/events`) the way the page does:
// fetch with headers, the body parsed as it streams.

export interface AdminEvent { event: string, data: any }

export interface EventReader {
  status: number
  contentType: string
  /** The next event (of `event`, matching `predicate`) not yet returned, within `timeoutMs`. */
  next (event?: string, predicate?: (data: any) => boolean, timeoutMs?: number): Promise<AdminEvent>
  /** Every event received so far. */
  readonly received: AdminEvent[]
  close (): void
}

export async function readAdminEvents (url: string, headers: Record<string, string> = {}): Promise<EventReader> {
  const controller = new AbortController()
  const response = await fetch(url, { headers, signal: controller.signal })
  const received: AdminEvent[] = []
  let claimed = 0
  let wake = (): void => {}
  let ended = false
  if (response.ok && response.body !== null) {
    (async () => {
      const decoder = new TextDecoder()
      let buffer = ''
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const event = /^event: (.*)$/m.exec(block)?.[1]
          const data = /^data: (.*)$/m.exec(block)?.[1]
          if (event !== undefined && data !== undefined) received.push({ event, data: JSON.parse(data) })
        }
        wake()
      }
    })().catch(() => {}).finally(() => {
      ended = true
      wake()
    })
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type') ?? '',
    received,
    async next (event, predicate = () => true, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const index = received.findIndex((e, i) => i >= claimed && (event === undefined || e.event === event) && predicate(e.data))
        if (index >= 0) {
          claimed = index + 1
          return received[index] as AdminEvent
        }
        if (ended) throw new Error(`the stream ended while waiting for ${event ?? 'an event'}; got ${received.map((e) => e.event).join(', ')}`)
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`timed out waiting for ${event ?? 'an event'}; got ${received.map((e) => e.event).join(', ')}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          wake = () => { clearTimeout(timer); resolve() }
        })
      }
    },
    close () {
      controller.abort()
    }
  }
}
