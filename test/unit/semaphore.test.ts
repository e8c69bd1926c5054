import t from 'tap'
import { Semaphore } from '../../src/reconcile/semaphore.js'

const tick = () => new Promise<void>((r) => setImmediate(r))

t.test('rejects a bad limit', async (t) => {
  t.throws(() => new Semaphore(0), RangeError)
  t.throws(() => new Semaphore(1.5), RangeError)
})

t.test('caps holders and serves waiters in order', async (t) => {
  const s = new Semaphore(2)
  const r1 = await s.acquire()
  const r2 = await s.acquire()
  t.equal(s.inUse, 2)
  const order: number[] = []
  const w3 = s.acquire().then((r) => (order.push(3), r))
  const w4 = s.acquire().then((r) => (order.push(4), r))
  await tick()
  t.equal(s.waiting, 2)
  t.same(order, [])
  r1()
  const r3 = await w3
  t.same(order, [3])
  t.equal(s.inUse, 2)
  t.equal(s.waiting, 1)
  r1() // a second release of the same slot is ignored
  await tick()
  t.same(order, [3], 'double release does not free a second slot')
  r2()
  const r4 = await w4
  t.same(order, [3, 4])
  r3()
  r4()
  t.equal(s.inUse, 0)
  t.equal(s.waiting, 0)
})

t.test('run releases on success and on failure, and never exceeds the limit', async (t) => {
  const s = new Semaphore(3)
  let active = 0
  let peak = 0
  const jobs = Array.from({ length: 20 }, (_, i) =>
    s.run(async () => {
      active++
      peak = Math.max(peak, active)
      await tick()
      active--
      if (i % 5 === 0) throw new Error(`job ${i}`)
      return i
    }),
  )
  const results = await Promise.allSettled(jobs)
  t.equal(peak, 3)
  t.equal(results.filter((r) => r.status === 'rejected').length, 4)
  t.equal(s.inUse, 0)
  t.equal(await s.run(() => 'sync'), 'sync')
})
