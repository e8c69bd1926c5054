import t from 'tap'
import fc from 'fast-check'
import { WorkQueue, backoffDelay, MAX_TIMER_MS, type ReconcileResult } from '../../src/reconcile/queue.js'
import { FakeClock } from '../helpers/fake-clock.js'

const tick = () => new Promise<void>((r) => setImmediate(r))

/** A clock whose timers fire only when the test advances it. */
interface Deferred<T> {
  promise: Promise<T>
  resolve: (v: T) => void
  reject: (e: unknown) => void
}

/** A promise the test resolves or rejects by hand. */
function deferred<T = ReconcileResult>(): Deferred<T> {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

t.test('rejects a bad worker count', async (t) => {
  t.throws(() => new WorkQueue({ workers: 0, reconcile: async () => {} }), RangeError)
})

t.test('a burst of 1000 adds of one key runs once', async (t) => {
  const runs: string[] = []
  const q = new WorkQueue({ workers: 4, reconcile: async (k) => void runs.push(k), clock: new FakeClock() })
  q.start()
  for (let i = 0; i < 1000; i++) q.add('vol-1')
  t.equal(q.length, 1)
  await q.idle()
  t.same(runs, ['vol-1'])
  await q.shutdown()
})

t.test('keys added before start wait for it', async (t) => {
  const runs: string[] = []
  const q = new WorkQueue({ workers: 1, reconcile: async (k) => void runs.push(k), clock: new FakeClock() })
  q.add('a')
  q.add('b')
  await tick()
  t.same(runs, [])
  q.start()
  await q.idle()
  t.same(runs, ['a', 'b'], 'first in, first out')
  await q.shutdown()
})

t.test('one key never runs twice at once; an add while running re-runs it once after', async (t) => {
  let active = 0
  let peak = 0
  const gates: Array<Deferred<ReconcileResult>> = []
  const q = new WorkQueue({
    workers: 4,
    clock: new FakeClock(),
    reconcile: async () => {
      active++
      peak = Math.max(peak, active)
      const d = deferred()
      gates.push(d)
      await d.promise
      active--
    },
  })
  q.start()
  q.add('k')
  await tick()
  t.equal(gates.length, 1)
  for (let i = 0; i < 50; i++) q.add('k') // dirty while running
  await tick()
  t.equal(gates.length, 1, 'not started a second time while running')
  t.equal(q.length, 0, 'a running key is marked dirty, not queued')
  gates[0]!.resolve()
  await tick()
  t.equal(gates.length, 2, 'runs once more after the current run')
  gates[1]!.resolve()
  await q.idle()
  t.equal(gates.length, 2, 'and only once')
  t.equal(peak, 1)
  await q.shutdown()
})

t.test('the worker cap is honoured and every key runs', async (t) => {
  let active = 0
  let peak = 0
  const done: string[] = []
  const q = new WorkQueue({
    workers: 3,
    clock: new FakeClock(),
    reconcile: async (k) => {
      active++
      peak = Math.max(peak, active)
      await tick()
      await tick()
      active--
      done.push(k)
    },
  })
  q.start()
  for (let i = 0; i < 20; i++) q.add(`k${i}`)
  await q.idle()
  t.equal(peak, 3)
  t.equal(done.length, 20)
  t.equal(new Set(done).size, 20)
  await q.shutdown()
})

t.test('errors back off exponentially per key, are reported, and success resets', async (t) => {
  const clock = new FakeClock()
  let fail = true
  let runs = 0
  const reported: Array<[string, number]> = []
  const q = new WorkQueue({
    workers: 1,
    clock,
    random: () => 0.5, // no jitter
    backoff: { baseMs: 100, maxMs: 1000, jitter: 0.2 },
    reconcile: async () => {
      runs++
      if (fail) throw new Error('issuer down')
    },
    onError: (k, err, retry) => reported.push([`${k}:${(err as Error).message}`, retry]),
  })
  q.start()
  q.add('k')
  await q.idle()
  t.equal(runs, 1)
  t.equal(q.failures('k'), 1)
  const expected = [100, 200, 400, 800, 1000, 1000]
  for (const [i, delay] of expected.entries()) {
    t.equal(reported[i]?.[1], delay, `failure ${i + 1} waits ${delay} ms`)
    await clock.advance(delay - 1)
    t.equal(runs, i + 1, 'not before the backoff')
    await clock.advance(1)
    t.equal(runs, i + 2, 'retried when due')
  }
  t.equal(reported[0]?.[0], 'k:issuer down')
  t.equal(q.failures('k'), expected.length + 1)
  fail = false
  await clock.advance(1000)
  t.equal(q.failures('k'), 0, 'success resets the count')
  t.equal(q.delayedLength, 0, 'nothing requeued after success')
  await q.shutdown()
})

t.test('forget resets the backoff', async (t) => {
  const clock = new FakeClock()
  const delays: number[] = []
  const q = new WorkQueue({
    workers: 1,
    clock,
    random: () => 0.5,
    backoff: { baseMs: 10, maxMs: 10_000, jitter: 0 },
    reconcile: async () => {
      throw new Error('no')
    },
    onError: (_k, _e, ms) => delays.push(ms),
  })
  q.start()
  q.add('k')
  await q.idle()
  await clock.advance(10)
  t.same(delays, [10, 20])
  q.forget('k')
  t.equal(q.failures('k'), 0)
  await clock.advance(20)
  t.same(delays, [10, 20, 10])
  await q.shutdown()
})

t.test('a throwing onError does not stop the retry', async (t) => {
  const clock = new FakeClock()
  let runs = 0
  const q = new WorkQueue({
    workers: 1,
    clock,
    backoff: { baseMs: 10, maxMs: 10, jitter: 0 },
    reconcile: () => {
      runs++
      throw new Error('sync throw')
    },
    onError: () => {
      throw new Error('reporter broken')
    },
  })
  q.start()
  q.add('k')
  await q.idle()
  await clock.advance(10)
  t.equal(runs, 2)
  await q.shutdown()
})

t.test('backoff jitter stays within bounds', async (t) => {
  const b = { baseMs: 500, maxMs: 300_000, jitter: 0.2 }
  t.equal(backoffDelay(1, b, () => 0), 400)
  t.equal(backoffDelay(1, b, () => 0.5), 500)
  t.equal(backoffDelay(3, b, () => 0.5), 2000)
  t.equal(backoffDelay(30, b, () => 0.5), 300_000, 'capped')
  t.equal(backoffDelay(1000, b, () => 0.5), 300_000, 'no overflow at huge counts')
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (n, r, jitter) => {
        const exp = Math.min(b.maxMs, b.baseMs * 2 ** (n - 1))
        const d = backoffDelay(n, { ...b, jitter }, () => r)
        return d >= Math.floor(exp * (1 - jitter)) && d <= Math.ceil(exp * (1 + jitter))
      },
    ),
  )
  // The queue uses the injected random: two keys failing together retry apart.
  const clock = new FakeClock()
  const seq = [0, 0.999]
  const delays: number[] = []
  const q = new WorkQueue({
    workers: 2,
    clock,
    random: () => seq.shift() ?? 0.5,
    reconcile: async () => {
      throw new Error('x')
    },
    onError: (_k, _e, ms) => delays.push(ms),
  })
  q.start()
  q.add('a')
  q.add('b')
  await q.idle()
  t.same(delays, [400, 600], 'default backoff 500 ms ± 20 %')
  await q.shutdown()
})

t.test('requeueAfterMs schedules the next run; 0 runs again at once', async (t) => {
  const clock = new FakeClock()
  const results: ReconcileResult[] = [{ requeueAfterMs: 0 }, { requeueAfterMs: 1000 }, {}]
  let runs = 0
  const q = new WorkQueue({
    workers: 1,
    clock,
    reconcile: async () => {
      runs++
      return results.shift()
    },
  })
  q.start()
  q.add('k')
  await q.idle()
  t.equal(runs, 2, 'requeueAfterMs 0 means now')
  t.equal(q.delayedLength, 1)
  await clock.advance(999)
  t.equal(runs, 2)
  await clock.advance(1)
  t.equal(runs, 3)
  await clock.advance(10_000)
  t.equal(runs, 3, 'done means done')
  await q.shutdown()
})

t.test('the earliest delayed add wins, and a key fires once', async (t) => {
  const clock = new FakeClock()
  const runs: Array<[string, number]> = []
  const q = new WorkQueue({ workers: 1, clock, reconcile: async (k) => void runs.push([k, clock.now()]) })
  q.start()
  q.addAfter('late-then-early', 5000)
  q.addAfter('late-then-early', 1000)
  q.addAfter('early-then-late', 1000)
  q.addAfter('early-then-late', 5000)
  t.equal(q.delayedLength, 2)
  await clock.advance(10_000)
  t.same(runs, [
    ['late-then-early', 1000],
    ['early-then-late', 1000],
  ])
  await q.shutdown()
})

t.test('one timer for the whole queue, not one per key', async (t) => {
  const clock = new FakeClock()
  let runs = 0
  const q = new WorkQueue({ workers: 2, clock, reconcile: async () => void runs++ })
  q.start()
  let maxPending = 0
  for (let i = 0; i < 500; i++) {
    q.addAfter(`k${i}`, 1000 + ((i * 7919) % 5000))
    maxPending = Math.max(maxPending, clock.pending)
  }
  t.equal(maxPending, 1, 'never more than one timer pending')
  t.equal(clock.pending, 1)
  t.ok(clock.delays.length < 50, `timer re-armed only when the earliest changes (${clock.delays.length})`)
  await clock.advance(6000)
  await q.idle()
  t.equal(runs, 500)
  t.equal(clock.pending, 0, 'no timer left once nothing is delayed')
  await q.shutdown()
})

t.test('delays beyond the setTimeout limit are clamped and re-armed', async (t) => {
  const clock = new FakeClock()
  let runs = 0
  const q = new WorkQueue({ workers: 1, clock, reconcile: async () => void runs++ })
  q.start()
  const year = 365 * 24 * 3600_000
  q.addAfter('renew', year)
  t.same(clock.delays, [MAX_TIMER_MS], 'first wait clamped to 2^31-1 ms')
  await clock.advance(MAX_TIMER_MS)
  t.equal(runs, 0, 'the clamp firing early does not run the key')
  t.equal(clock.pending, 1, 're-armed')
  let left = year - MAX_TIMER_MS
  while (left > MAX_TIMER_MS) {
    await clock.advance(MAX_TIMER_MS)
    left -= MAX_TIMER_MS
  }
  t.equal(runs, 0)
  await clock.advance(left - 1)
  t.equal(runs, 0, 'not a millisecond early')
  await clock.advance(1)
  t.equal(runs, 1, 'runs when the year is up')
  t.ok(clock.delays.every((d) => d >= 0 && d <= MAX_TIMER_MS))
  await q.shutdown()
})

t.test('the default clock uses real timers', async (t) => {
  let runs = 0
  const q = new WorkQueue({ workers: 1, reconcile: async () => void runs++ })
  q.start()
  q.addAfter('k', 20)
  await new Promise((r) => setTimeout(r, 60))
  await q.idle()
  t.equal(runs, 1)
  await q.shutdown()
})

t.test('shutdown waits for in-flight work and then takes none', async (t) => {
  const clock = new FakeClock()
  const gate = deferred()
  const started: string[] = []
  const q = new WorkQueue({
    workers: 1,
    clock,
    reconcile: async (k) => {
      started.push(k)
      if (k === 'slow') await gate.promise
      return { requeueAfterMs: 10 }
    },
  })
  q.start()
  q.add('slow')
  q.add('queued')
  q.addAfter('delayed', 100)
  await tick()
  t.same(started, ['slow'])
  let stopped = false
  const done = q.shutdown().then(() => (stopped = true))
  await tick()
  t.equal(stopped, false, 'still waiting for the in-flight run')
  q.add('slow') // dropped: no dirty re-run after shutdown
  gate.resolve()
  await done
  t.equal(stopped, true)
  await clock.advance(1000)
  t.same(started, ['slow'], 'nothing queued, delayed or requeued runs after shutdown')
  t.equal(clock.pending, 0, 'timer cleared')
  await q.idle() // resolves rather than hanging
  await q.shutdown() // twice is fine
})

t.test('retryFailed runs every failed key again within the spread, backoff reset; healthy keys are left alone', async (t) => {
  const clock = new FakeClock()
  let apiUp = false
  const runs: string[] = []
  const q = new WorkQueue({
    workers: 4,
    clock,
    random: () => 0.5,
    backoff: { baseMs: 1000, maxMs: 5 * 60_000, jitter: 0 },
    reconcile: async (k) => {
      runs.push(k)
      if (k.startsWith('api-') && !apiUp) throw new Error('ECONNREFUSED')
      return { requeueAfterMs: 3_600_000 }
    },
  })
  q.start()
  for (const k of ['api-1', 'api-2', 'fine']) q.add(k)
  await q.idle()
  // An outage long enough to grow the backoff to minutes.
  for (let i = 0; i < 9; i++) await clock.advance(2 ** i * 1000)
  t.equal(q.failures('api-1'), 10)
  runs.length = 0
  apiUp = true
  t.equal(q.retryFailed(1000), 2)
  await clock.advance(500)
  await q.idle()
  t.same(runs.sort(), ['api-1', 'api-2'], 'both retried within the spread, not after a 256 s backoff')
  t.equal(q.failures('api-1'), 0)
  await q.shutdown()
})

t.test('shutdown aborts the signal an in-flight reconcile was given', async (t) => {
  const seen: AbortSignal[] = []
  const gate = deferred()
  const q = new WorkQueue({ workers: 1, reconcile: async (_k, signal) => { seen.push(signal); return gate.promise }, clock: new FakeClock() })
  q.start()
  q.add('vol-1')
  await tick()
  t.equal(seen.length, 1)
  t.equal(seen[0]!.aborted, false, 'not aborted while running normally')
  const stopping = q.shutdown()
  t.equal(seen[0]!.aborted, true, 'aborted as shutdown begins, so the reconcile can stop at its next step')
  gate.resolve()
  await stopping
})

t.test('low-priority keys run on their own few workers, and only while no normal key waits', async (t) => {
  const gates = new Map<string, Deferred<ReconcileResult>>()
  const started: string[] = []
  const q = new WorkQueue({
    workers: 3,
    lowPriorityWorkers: 1,
    clock: new FakeClock(),
    reconcile: async (k) => {
      started.push(k)
      const d = deferred()
      gates.set(k, d)
      await d.promise
    },
  })
  t.throws(() => new WorkQueue({ workers: 2, lowPriorityWorkers: 0, reconcile: async () => {} }), /lowPriorityWorkers must be a positive integer/)
  for (const k of ['low-1', 'low-2', 'low-3']) q.add(k, 'low')
  q.start()
  await tick()
  t.same(started, ['low-1'], 'one low worker, though three workers are free')
  q.add('csi-1')
  q.add('csi-2')
  await tick()
  t.same(started, ['low-1', 'csi-1', 'csi-2'], 'normal keys take the free workers at once')
  q.add('csi-3')
  gates.get('low-1')!.resolve()
  await tick()
  t.same(started.slice(3), ['csi-3'], 'a freed worker goes to the waiting normal key, not the next low one')
  gates.get('csi-1')!.resolve()
  await tick()
  t.same(started.slice(4), ['low-2'], 'with no normal key waiting, the low lane goes on')
  t.equal(q.length, 1, 'low-3 still waits')
  for (const d of gates.values()) d.resolve()
  await tick()
  gates.get('low-3')?.resolve()
  await q.idle()
  t.same([...started].sort(), ['csi-1', 'csi-2', 'csi-3', 'low-1', 'low-2', 'low-3'], 'every key ran once')
  await q.shutdown()
})

t.test('adding a low key at normal priority raises it; adding a normal key as low does not lower it', async (t) => {
  const runs: string[] = []
  const q = new WorkQueue({ workers: 1, lowPriorityWorkers: 1, clock: new FakeClock(), reconcile: async (k) => void runs.push(k) })
  q.add('a', 'low')
  q.add('b', 'low')
  q.add('c', 'low')
  q.add('c')
  q.add('d')
  q.add('d', 'low')
  t.equal(q.length, 4, 'each key queued once')
  q.start()
  await q.idle()
  t.same(runs, ['c', 'd', 'a', 'b'], 'raised and normal keys first, then the low lane in order; c runs once')
  await q.shutdown()
})

t.test('a key added while running keeps the higher of its priorities for the re-run', async (t) => {
  const gate = deferred()
  const runs: string[] = []
  const q = new WorkQueue({
    workers: 2,
    lowPriorityWorkers: 1,
    clock: new FakeClock(),
    reconcile: async (k) => {
      runs.push(k)
      if (k === 'slow-low' && runs.length === 1) await gate.promise
    },
  })
  q.start()
  q.add('slow-low', 'low')
  await tick()
  q.add('slow-low', 'low')
  q.add('slow-low')
  q.add('other-low', 'low')
  gate.resolve()
  await q.idle()
  t.same(runs, ['slow-low', 'slow-low', 'other-low'], 'the dirty re-run went at normal priority, ahead of the low lane')
  await q.shutdown()
})

t.test('a hold keeps the low lane to one start per second; normal keys run as ever; release lets it go on', async (t) => {
  const clock = new FakeClock(10_000)
  const started: string[] = []
  const gates = new Map<string, Deferred<ReconcileResult>>()
  const q = new WorkQueue({
    workers: 4,
    lowPriorityWorkers: 2,
    clock,
    reconcile: async (k) => {
      started.push(k)
      const d = deferred()
      gates.set(k, d)
      await d.promise
    },
  })
  q.start()
  const release = q.hold()
  for (const k of ['low-1', 'low-2', 'low-3']) q.add(k, 'low')
  q.add('csi')
  await tick()
  t.same(started, ['csi', 'low-1'], 'held: one low start (none in the last second), the normal key at once')
  const other = q.hold()
  other()
  other() // a second release of one hold is ignored
  await tick()
  t.same(started, ['csi', 'low-1'], 'still held by the first hold: no second low start within the second')
  clock.t += 1000
  gates.get('csi')!.resolve()
  await tick()
  t.same(started, ['csi', 'low-1', 'low-2'], 'a second later the held lane starts one more')
  release()
  gates.get('low-1')!.resolve()
  await tick()
  t.same(started, ['csi', 'low-1', 'low-2', 'low-3'], 'released: the low lane runs on its workers again')
  for (const d of gates.values()) d.resolve()
  await q.idle()
  await q.shutdown()
})
