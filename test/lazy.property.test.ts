// LazyMap and LazySet behave as the native Map and Set they stand in for, under any
// sequence of operations, including iterating while deleting and adding.

import t from 'tap'
import fc from 'fast-check'
import { LazyMap, LazySet } from '../lib/lazy.js'

type Op =
  | { op: 'set', key: number, value: number }
  | { op: 'delete', key: number }
  | { op: 'clear' }
  | { op: 'sweep', key: number }

const key = fc.integer({ min: 0, max: 7 })
const ops = fc.array(fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), key, value: fc.integer() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
  // Delete every entry while iterating, and add `key` at the first one: the native
  // iterator visits what is added during the loop.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('sweep' as const), key }) }
), { maxLength: 40 })

interface MapOps { size: number, get: (k: number) => number | undefined, has: (k: number) => boolean, set: (k: number, v: number) => unknown, delete: (k: number) => boolean, clear: () => void, entries: () => Iterable<[number, number]> }

function apply (map: MapOps, op: Op): unknown[] {
  switch (op.op) {
    case 'set': map.set(op.key, op.value); return []
    case 'delete': return [map.delete(op.key)]
    case 'clear': map.clear(); return []
    case 'sweep': {
      const seen: unknown[] = []
      let added = false
      for (const [k, v] of map.entries()) {
        seen.push(k, v)
        map.delete(k)
        if (!added) { map.set(op.key + 100, v); added = true }
      }
      return seen
    }
  }
}

t.test('LazyMap: every operation answers as a Map does, in the same order', async (t) => {
  fc.assert(fc.property(ops, (sequence) => {
    const native = new Map<number, number>()
    const lazy = new LazyMap<number, number>()
    for (const op of sequence) {
      if (JSON.stringify(apply(lazy, op)) !== JSON.stringify(apply(native, op))) return false
      if (lazy.size !== native.size) return false
      for (let k = 0; k < 8; k++) if (lazy.get(k) !== native.get(k) || lazy.has(k) !== native.has(k)) return false
      if (JSON.stringify([...lazy]) !== JSON.stringify([...native])) return false
      if (JSON.stringify([...lazy.keys()]) !== JSON.stringify([...native.keys()])) return false
      if (JSON.stringify([...lazy.values()]) !== JSON.stringify([...native.values()])) return false
    }
    return true
  }), { numRuns: 2000 })
  t.pass('2000 random sequences')
})

t.test('LazySet: every operation answers as a Set does, in the same order', async (t) => {
  fc.assert(fc.property(fc.array(key, { maxLength: 5 }), ops, (initial, sequence) => {
    const native = new Set<number>(initial)
    const lazy = new LazySet<number>(initial)
    for (const op of sequence) {
      const answers = (set: LazySet<number> | Set<number>): unknown[] => {
        switch (op.op) {
          case 'set': set.add(op.key); return []
          case 'delete': return [set.delete(op.key)]
          case 'clear': set.clear(); return []
          case 'sweep': {
            const seen: unknown[] = []
            for (const member of set) { seen.push(member); set.delete(member); if (member === op.key) set.add(op.key + 100) }
            return seen
          }
        }
      }
      if (JSON.stringify(answers(lazy)) !== JSON.stringify(answers(native))) return false
      if (lazy.size !== native.size || JSON.stringify([...lazy]) !== JSON.stringify([...native])) return false
      for (let k = 0; k < 8; k++) if (lazy.has(k) !== native.has(k)) return false
    }
    return true
  }), { numRuns: 2000 })
  t.pass('2000 random sequences')
})

t.test('an empty LazyMap or LazySet iterates nothing and answers as empty', async (t) => {
  const map = new LazyMap<string, number>()
  t.same([...map], [])
  t.same([...map.keys()], [])
  t.same([...map.values()], [])
  t.equal(map.size, 0)
  t.equal(map.get('a'), undefined)
  t.equal(map.has('a'), false)
  t.equal(map.delete('a'), false)
  map.clear()
  t.equal(map.set('a', 1), map, 'set returns the map, as Map#set does')
  t.same([...map], [['a', 1]])
  const set = new LazySet<string>()
  t.same([...set], [])
  t.equal(set.has('a'), false)
  t.equal(set.delete('a'), false)
  t.equal(set.add('a'), set, 'add returns the set, as Set#add does')
  t.same([...set], ['a'])
})
