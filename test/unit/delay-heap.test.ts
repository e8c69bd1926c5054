import t from 'tap'
import fc from 'fast-check'
import { DelayHeap } from '../../src/reconcile/delay-heap.js'

t.test('pops in due order, ties first-in first-out', async (t) => {
  const h = new DelayHeap()
  h.push('c', 30)
  h.push('a', 10)
  h.push('b', 20)
  h.push('a2', 10)
  t.equal(h.size, 4)
  t.same(h.peek(), { key: 'a', due: 10 })
  t.same([h.pop(), h.pop(), h.pop(), h.pop(), h.pop()], [
    { key: 'a', due: 10 },
    { key: 'a2', due: 10 },
    { key: 'b', due: 20 },
    { key: 'c', due: 30 },
    undefined,
  ])
})

t.test('one entry per key; the earliest due time wins', async (t) => {
  const h = new DelayHeap()
  t.equal(h.push('k', 100), true)
  t.equal(h.push('k', 200), false, 'a later time does not postpone')
  t.equal(h.dueOf('k'), 100)
  t.equal(h.push('k', 50), true, 'an earlier time moves it up')
  t.equal(h.dueOf('k'), 50)
  t.equal(h.size, 1)
  t.equal(h.dueOf('missing'), undefined)
})

t.test('popDue returns only what is due', async (t) => {
  const h = new DelayHeap()
  for (const [k, d] of [['x', 5], ['y', 1], ['z', 9]] as const) h.push(k, d)
  t.same(h.popDue(5), ['y', 'x'])
  t.same(h.popDue(5), [])
  t.equal(h.has('z'), true)
  t.same(h.popDue(100), ['z'])
  t.equal(h.size, 0)
})

t.test('delete removes any entry and keeps order', async (t) => {
  const h = new DelayHeap()
  for (let i = 0; i < 10; i++) h.push(`k${i}`, 10 - i)
  t.equal(h.delete('k3'), true)
  t.equal(h.delete('k3'), false)
  const out: string[] = []
  for (let e = h.pop(); e; e = h.pop()) out.push(e.key)
  t.same(out, ['k9', 'k8', 'k7', 'k6', 'k5', 'k4', 'k2', 'k1', 'k0'])
})

t.test('property: pops come out sorted and each key once at its earliest time', async (t) => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('push' as const), key: fc.integer({ min: 0, max: 20 }), due: fc.integer({ min: -1000, max: 1000 }) }),
    fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 20 }) }),
  )
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const h = new DelayHeap<number>()
      const model = new Map<number, number>()
      for (const o of ops) {
        if (o.kind === 'push') {
          h.push(o.key, o.due)
          const prev = model.get(o.key)
          if (prev === undefined || o.due < prev) model.set(o.key, o.due)
        } else {
          h.delete(o.key)
          model.delete(o.key)
        }
      }
      if (h.size !== model.size) return false
      const popped: Array<{ key: number; due: number }> = []
      for (let e = h.pop(); e; e = h.pop()) popped.push(e)
      for (let i = 1; i < popped.length; i++) if (popped[i - 1]!.due > popped[i]!.due) return false
      return popped.length === model.size && popped.every((e) => model.get(e.key) === e.due)
    }),
    { numRuns: 500 },
  )
  t.pass('heap order and earliest-wins hold')
})
