// A Map and a Set that allocate their hash table on the first insertion. An empty `Map`
// is 184 bytes and an empty `Set` 152 (the object and its initial table); these are 32
// until something is put in them. A session keeps a dozen collections that most idle
// sessions never fill (function calls, responses on their way, replayed items), so
// this is about 1.5 KB of heap per idle session. Iteration order and semantics are the
// native ones: everything goes through one native collection once it exists.

const NO_ENTRIES: ReadonlyMap<unknown, unknown> = new Map()

export class LazyMap<K, V> implements Iterable<[K, V]> {
  #map: Map<K, V> | undefined

  get size (): number { return this.#map === undefined ? 0 : this.#map.size }
  get (key: K): V | undefined { return this.#map?.get(key) }
  has (key: K): boolean { return this.#map !== undefined && this.#map.has(key) }
  set (key: K, value: V): this {
    (this.#map ??= new Map()).set(key, value)
    return this
  }

  delete (key: K): boolean { return this.#map !== undefined && this.#map.delete(key) }
  /** Clearing a native Map allocates a new table even when it is empty: an empty one is left as it is. */
  clear (): void { if (this.size > 0) this.#map?.clear() }
  keys (): IterableIterator<K> { return (this.#map ?? NO_ENTRIES as ReadonlyMap<K, V>).keys() }
  values (): IterableIterator<V> { return (this.#map ?? NO_ENTRIES as ReadonlyMap<K, V>).values() }
  entries (): IterableIterator<[K, V]> { return (this.#map ?? NO_ENTRIES as ReadonlyMap<K, V>).entries() }
  [Symbol.iterator] (): IterableIterator<[K, V]> { return this.entries() }
}

const NO_MEMBERS: ReadonlySet<unknown> = new Set()

export class LazySet<T> implements Iterable<T> {
  #set: Set<T> | undefined

  constructor (members?: Iterable<T>) {
    if (members !== undefined) for (const member of members) this.add(member)
  }

  get size (): number { return this.#set === undefined ? 0 : this.#set.size }
  has (member: T): boolean { return this.#set !== undefined && this.#set.has(member) }
  add (member: T): this {
    (this.#set ??= new Set()).add(member)
    return this
  }

  delete (member: T): boolean { return this.#set !== undefined && this.#set.delete(member) }
  clear (): void { if (this.size > 0) this.#set?.clear() }
  values (): IterableIterator<T> { return (this.#set ?? NO_MEMBERS as ReadonlySet<T>).values() }
  [Symbol.iterator] (): IterableIterator<T> { return this.values() }
}
