// Every timer a connection starts goes through its Timers, so closing the
// connection clears them all: nothing fires after a close and the process can
// exit. Timeouts are unref()ed: the socket, not the simulator's clock, keeps a
// process alive. Immediates are not: an unref()ed immediate lets the event loop
// block in poll, so the next step would wait for unrelated I/O or a timer.

export type Cancel = () => void

export const noop: Cancel = () => {}

export class Timers {
  #pending = new Set<Cancel>()
  #stopped = false

  /** Runs `fn` after `ms`; 0 means on the next turn of the event loop, after I/O already received. */
  after (ms: number, fn: () => void): Cancel {
    if (this.#stopped) return noop
    const run = (): void => {
      this.#pending.delete(cancel)
      fn()
    }
    let cancel: Cancel
    if (ms > 0) {
      const timeout = setTimeout(run, ms).unref()
      cancel = () => {
        clearTimeout(timeout)
        this.#pending.delete(cancel)
      }
    } else {
      const immediate = setImmediate(run)
      cancel = () => {
        clearImmediate(immediate)
        this.#pending.delete(cancel)
      }
    }
    this.#pending.add(cancel)
    return cancel
  }

  /** Runs `fn` now when `ms` is 0 (acknowledgements keep the order of the requests), else after `ms`. */
  soon (ms: number, fn: () => void): void {
    if (ms > 0) this.after(ms, fn)
    else if (!this.#stopped) fn()
  }

  stop (): void {
    this.#stopped = true
    for (const cancel of [...this.#pending]) cancel()
  }
}
