// The last `limit` entries of an append-only log, O(1) per push: a benchmark
// connection appends to its logs for every audio frame.
export class BoundedLog<T> {
  #entries: T[] = []
  #oldest = 0
  #limit: number

  constructor (limit: number) {
    this.#limit = limit
  }

  push (entry: T): void {
    if (this.#entries.length < this.#limit) {
      this.#entries.push(entry)
      return
    }
    this.#entries[this.#oldest] = entry
    this.#oldest = (this.#oldest + 1) % this.#limit
  }

  /** A copy, oldest first. */
  toArray (): T[] {
    return this.#entries.slice(this.#oldest).concat(this.#entries.slice(0, this.#oldest))
  }
}
