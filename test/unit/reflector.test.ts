// The reflector against a fake ListWatch and a fake clock: every rule of
// LIST/WATCH/re-list/backoff, in milliseconds.
import t from 'tap'
import fc from 'fast-check'
import type { Logger } from 'pino'
import { Reflector, DEFAULT_BACKOFF, type ListResult, type ListWatch, type WatchEventType, type WatchRequest } from '../../src/kube/reflector.js'
import { FakeClock } from '../helpers/fake-clock.js'

const tick = (): Promise<void> => new Promise<void>(r => setImmediate(r))
const ticks = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await tick()
}

interface Obj { metadata: { name: string; namespace: string; resourceVersion: string } }
const obj = (name: string, rv: string): Obj => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } })

/** One watch the reflector opened; the test plays the server on it. */
class FakeWatch {
  readonly promise: Promise<void>
  #resolve!: () => void
  #reject!: (e: unknown) => void
  done = false
  constructor(readonly req: WatchRequest) {
    this.promise = new Promise<void>((res, rej) => ((this.#resolve = res), (this.#reject = rej)))
    // Like the real adapter: our own abort ends the watch quietly.
    req.signal.addEventListener('abort', () => this.close())
  }
  get aborted(): boolean {
    return this.req.signal.aborted
  }
  emit(type: WatchEventType, o: unknown): void {
    this.req.onEvent(type, o)
  }
  close(): void {
    if (this.done) return
    this.done = true
    this.#resolve()
  }
  fail(err: unknown): void {
    if (this.done) return
    this.done = true
    this.#reject(err)
  }
}

/** The server: a set of objects the LIST answers with, and the watches it serves. */
class FakeListWatch implements ListWatch<Obj> {
  objects = new Map<string, Obj>()
  rv = 100
  lists = 0
  watches: FakeWatch[] = []
  /** When set, the next LISTs fail with these errors, in order. */
  listFailures: unknown[] = []
  /** When set, LIST waits for this. */
  listGate?: Promise<void>
  autoOpen = true

  put(o: Obj): void {
    this.objects.set(o.metadata.name, o)
  }
  async list(signal: AbortSignal): Promise<ListResult<Obj>> {
    this.lists++
    if (this.listGate) await this.listGate
    if (signal.aborted) throw new Error('aborted')
    const failure = this.listFailures.shift()
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- whatever the test queued
    if (failure !== undefined) throw failure
    return { items: [...this.objects.values()], resourceVersion: String(this.rv) }
  }
  watch(req: WatchRequest): Promise<void> {
    const w = new FakeWatch(req)
    this.watches.push(w)
    if (this.autoOpen) req.onOpen()
    return w.promise
  }
  get current(): FakeWatch {
    return this.watches[this.watches.length - 1]!
  }
}

interface LogEntry { level: string; obj: Record<string, unknown>; msg: string }
function recorder(): { logger: Pick<Logger, 'debug' | 'info' | 'warn'>; logs: LogEntry[] } {
  const logs: LogEntry[] = []
  const rec = (level: string) => (obj: Record<string, unknown>, msg: string) => void logs.push({ level, obj, msg })
  return { logs, logger: { debug: rec('debug'), info: rec('info'), warn: rec('warn') } as unknown as Pick<Logger, 'debug' | 'info' | 'warn'> }
}

function setup(opts: { relistPeriodMs?: number; random?: () => number; onRecovered?: () => void } = {}) {
  const clock = new FakeClock()
  const lw = new FakeListWatch()
  const { logger, logs } = recorder()
  const events: string[] = []
  const reflector = new Reflector<Obj>({
    listWatch: lw,
    what: 'Thing',
    logger,
    clock,
    random: opts.random ?? (() => 0.5),
    relistPeriodMs: opts.relistPeriodMs ?? 60_000,
    ...(opts.onRecovered ? { onRecovered: opts.onRecovered } : {}),
    handlers: {
      add: o => events.push(`add ${o.metadata.name}@${o.metadata.resourceVersion}`),
      update: (o, old) => events.push(`update ${o.metadata.name}@${old.metadata.resourceVersion}->${o.metadata.resourceVersion}`),
      delete: o => events.push(`delete ${o.metadata.name}`),
    },
  })
  const warnings = (): LogEntry[] => logs.filter(l => l.level === 'warn')
  return { clock, lw, logs, warnings, events, reflector }
}

const gone = { kind: 'Status', status: 'Failure', code: 410, reason: 'Expired', message: 'too old resource version: 100 (200)' }

t.test('LIST first, then WATCH from its resourceVersion with a randomised server-side timeout', async t => {
  const { lw, reflector, events } = setup({ random: () => 0.25 })
  lw.put(obj('a', '5'))
  lw.rv = 120
  let gate!: () => void
  lw.listGate = new Promise<void>(r => (gate = r))
  let started = false
  const start = reflector.start().then(() => (started = true))
  await ticks()
  t.equal(reflector.synced, false, 'not synced while the LIST is in flight')
  t.equal(started, false, 'start() waits for the LIST')
  t.equal(lw.watches.length, 0, 'no watch before the LIST')
  gate()
  await start
  await ticks()
  t.equal(reflector.synced, true)
  t.same(events, ['add a@5'])
  t.equal(lw.watches.length, 1)
  t.equal(lw.current.req.resourceVersion, '120', 'watch from the LIST resourceVersion')
  t.equal(lw.current.req.timeoutSeconds, 375, '5 min × (1 + random)')
  await reflector.stop()
})

t.test('the watch timeout spans 5 to 10 minutes', async t => {
  for (const [random, want] of [[0, 300], [0.999, 599]] as const) {
    const { lw, reflector } = setup({ random: () => random })
    await reflector.start()
    await ticks()
    t.equal(lw.current.req.timeoutSeconds, want, `random ${random}`)
    await reflector.stop()
  }
})

t.test('a normal close re-opens the watch from the last resourceVersion without a LIST; bookmarks move it', async t => {
  const { clock, lw, reflector, events } = setup()
  await reflector.start()
  await ticks()
  lw.current.emit('ADDED', obj('a', '101'))
  lw.current.emit('MODIFIED', obj('a', '102'))
  lw.current.emit('BOOKMARK', { metadata: { resourceVersion: '150' } })
  await clock.advance(2_000)
  lw.current.close()
  await ticks()
  t.equal(lw.lists, 1, 'no second LIST')
  t.equal(lw.watches.length, 2, 'a new watch')
  t.equal(lw.current.req.resourceVersion, '150', 'from the bookmark')
  lw.current.emit('ADDED', obj('b', '151'))
  lw.current.emit('DELETED', obj('a', '152'))
  await clock.advance(2_000)
  lw.current.close()
  await ticks()
  t.equal(lw.lists, 1)
  t.equal(lw.current.req.resourceVersion, '152')
  t.same(events, ['add a@101', 'update a@101->102', 'add b@151', 'delete a'])
  t.equal(reflector.get('ns/b')?.metadata.resourceVersion, '151')
  t.equal(reflector.get('ns/a'), undefined)
  await reflector.stop()
})

t.test('an unchanged resourceVersion is not an update', async t => {
  const { lw, reflector, events } = setup()
  lw.put(obj('a', '5'))
  await reflector.start()
  await ticks()
  lw.current.emit('MODIFIED', obj('a', '5'))
  t.same(events, ['add a@5'])
  await reflector.stop()
})

t.test('410 as an ERROR event: one LIST, deletes for what vanished, a watch from the new resourceVersion', async t => {
  const { lw, reflector, events, warnings } = setup()
  lw.put(obj('a', '5'))
  lw.put(obj('b', '6'))
  lw.put(obj('c', '7'))
  await reflector.start()
  await ticks()
  // While we were not looking: b deleted, c changed, d created.
  lw.objects.delete('b')
  lw.put(obj('c', '8'))
  lw.put(obj('d', '9'))
  lw.rv = 200
  lw.current.emit('ERROR', gone)
  await ticks()
  t.ok(lw.watches[0]!.aborted, 'the expired watch is closed')
  t.equal(lw.lists, 2, 'exactly one more LIST')
  t.same(events.slice(3), ['delete b', 'update c@7->8', 'add d@9'], 'the diff')
  t.equal(lw.watches.length, 2)
  t.equal(lw.current.req.resourceVersion, '200')
  t.same(warnings(), [], '410 is routine, not a failure')
  t.equal(reflector.consecutiveFailures, 0)
  await reflector.stop()
})

t.test('410 as an HTTP status: the same', async t => {
  const { lw, reflector, events } = setup()
  lw.put(obj('a', '5'))
  await reflector.start()
  await ticks()
  lw.objects.clear()
  lw.current.fail(Object.assign(new Error('Gone'), { statusCode: 410 }))
  await ticks()
  t.equal(lw.lists, 2)
  t.same(events, ['add a@5', 'delete a'])
  t.equal(reflector.consecutiveFailures, 0)
  await reflector.stop()
})

t.test('failures back off 1 s, 2 s, 4 s…; failed LISTs do not reset it; capped at 5 min', async t => {
  const { clock, lw, reflector, warnings } = setup()
  lw.listFailures = Array.from({ length: 12 }, (_, i) => new Error(`connect ECONNREFUSED #${i}`))
  void reflector.start()
  await ticks()
  const waits: number[] = []
  for (let i = 0; i < 12; i++) {
    t.equal(clock.pending, 1, `one timer while backing off (#${i})`)
    const wait = clock.dueIn[0]!
    waits.push(wait)
    await clock.advance(wait)
  }
  t.same(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000])
  t.equal(lw.lists, 13, 'one LIST per wait, not one per second')
  t.equal(reflector.synced, true, 'the 13th LIST succeeded')
  const w = warnings()
  t.equal(w.length, 12, 'each failure logged once')
  t.type(w[0]!.obj.err, Error, 'the error as an object')
  t.match(w[0]!.obj, { op: 'list', failures: 1, retryInMs: 1_000 })
  await reflector.stop()
})

t.test('retryNow ends a backoff wait at once (another call reached the apiserver), at most once a second', async t => {
  let recovered = 0
  const { clock, lw, reflector } = setup({ onRecovered: () => recovered++ })
  lw.listFailures = Array.from({ length: 6 }, () => new Error('connect ECONNREFUSED'))
  void reflector.start()
  await ticks()
  for (let i = 0; i < 6; i++) await clock.advance(clock.dueIn[0]!)
  t.equal(lw.lists, 7, 'six failed LISTs and a good one')
  lw.current.fail(new Error('socket hang up'))
  lw.listFailures = [new Error('still down')]
  await ticks()
  t.equal(clock.dueIn[0], 64_000, 'the backoff grown during the outage')
  reflector.retryNow()
  await ticks()
  t.equal(lw.lists, 8, 'listed at once, not after 64 s')
  t.equal(clock.dueIn[0], 128_000, 'that LIST failed: waiting again')
  reflector.retryNow()
  await ticks()
  t.equal(lw.lists, 8, 'a second nudge within a second is ignored')
  await clock.advance(1000)
  reflector.retryNow()
  await ticks()
  t.equal(lw.lists, 9, 'a nudge a second later lists again')
  t.ok(reflector.synced)
  t.equal(recovered, 2, 'onRecovered after each recovery')
  reflector.retryNow()
  await ticks()
  t.equal(lw.lists, 9, 'no effect while healthy')
  await reflector.stop()
})

t.test('a failing watch after a good LIST keeps growing the backoff', async t => {
  const { clock, lw, reflector } = setup()
  await reflector.start()
  await ticks()
  const waits: number[] = []
  for (let i = 0; i < 4; i++) {
    lw.current.fail(new Error('socket hang up'))
    await ticks()
    waits.push(clock.dueIn[0]!)
    await clock.advance(clock.dueIn[0]!)
  }
  t.same(waits, [1_000, 2_000, 4_000, 8_000], 'the LIST between each did not reset it')
  t.equal(lw.lists, 5, 'each failure is followed by a LIST')
  await reflector.stop()
})

t.test('jitter stays within ±20 % of the doubling, under the 5 min cap', async t => {
  await fc.assert(
    fc.asyncProperty(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.integer({ min: 1, max: 12 }), async (r, n) => {
      const { clock, lw, reflector } = setup({ random: () => r })
      lw.listFailures = Array.from({ length: n }, () => new Error('down'))
      void reflector.start()
      await ticks(2)
      const waits: number[] = []
      for (let i = 0; i < n; i++) {
        waits.push(clock.dueIn[0]!)
        await clock.advance(clock.dueIn[0]!)
      }
      await reflector.stop()
      return waits.every((w, i) => {
        const base = Math.min(DEFAULT_BACKOFF.maxMs, 1_000 * 2 ** i)
        return w >= base * 0.8 - 0.5 && w <= base * 1.2 + 0.5 && w <= DEFAULT_BACKOFF.maxMs * 1.2 + 0.5
      })
    }),
    { numRuns: 25 },
  )
  for (const [r, want] of [[0, 800], [0.999999, 1_200]] as const) {
    const { clock, lw, reflector } = setup({ random: () => r })
    lw.listFailures = [new Error('down')]
    void reflector.start()
    await ticks()
    t.equal(clock.dueIn[0], want, `random ${r}`)
    await reflector.stop()
  }
})

t.test('the backoff resets once a watch has stayed open 30 s, not before', async t => {
  const { clock, lw, reflector, logs } = setup()
  lw.listFailures = [new Error('a'), new Error('b'), new Error('c')]
  void reflector.start()
  await ticks()
  await clock.advance(1_000)
  await clock.advance(2_000)
  await clock.advance(4_000)
  t.equal(reflector.synced, true)
  t.equal(reflector.consecutiveFailures, 3, 'a good LIST alone does not reset')
  await clock.advance(29_000)
  t.equal(reflector.consecutiveFailures, 3, 'a watch open 29 s is not proven yet')
  lw.current.fail(new Error('reset by peer'))
  await ticks()
  t.equal(clock.dueIn[0], 8_000, 'so the next wait is 8 s')
  await clock.advance(8_000)
  await clock.advance(30_000)
  t.equal(reflector.consecutiveFailures, 0, 'reset after 30 s open')
  t.ok(logs.some(l => l.level === 'info' && /backoff reset/.test(l.msg)))
  lw.current.fail(new Error('reset by peer'))
  await ticks()
  t.equal(clock.dueIn[0], 1_000, 'back to 1 s')
  await reflector.stop()
})

t.test('a watch that closes at once without an event is a failure, not a loop', async t => {
  const { clock, lw, reflector, warnings } = setup()
  await reflector.start()
  await ticks()
  lw.current.close()
  await ticks()
  t.equal(lw.watches.length, 1, 'not re-opened at once')
  t.equal(clock.dueIn[0], 1_000, 'backed off')
  t.match(warnings()[0]!.obj, { op: 'watch' })
  await reflector.stop()
})

t.test('an ERROR event other than 410 is a failure', async t => {
  const { clock, lw, reflector, warnings } = setup()
  await reflector.start()
  await ticks()
  lw.current.emit('ERROR', { kind: 'Status', code: 500, message: 'internal error' })
  await ticks()
  t.ok(lw.watches[0]!.aborted)
  t.match(String(warnings()[0]!.obj.err), /internal error/)
  await clock.advance(1_000)
  t.equal(lw.lists, 2, 'LIST again after the backoff')
  await reflector.stop()
})

t.test('a silent watch past its timeout plus 30 s is stalled: aborted and re-listed', async t => {
  const { clock, lw, reflector, warnings } = setup({ random: () => 0, relistPeriodMs: 24 * 3_600_000 })
  await reflector.start()
  await ticks()
  await clock.advance(300_000 + 29_999)
  t.notOk(lw.current.aborted)
  await clock.advance(1)
  t.ok(lw.watches[0]!.aborted, 'aborted by the guard')
  t.match(String(warnings()[0]!.obj.err), /stalled/)
  await clock.advance(1_000)
  t.equal(lw.lists, 2)
  t.equal(lw.watches.length, 2)
  await reflector.stop()
})

t.test('periodic re-list: exactly one LIST per period when idle, and it diffs', async t => {
  const { clock, lw, reflector, events, warnings } = setup({ relistPeriodMs: 60_000 })
  lw.put(obj('a', '5'))
  lw.put(obj('b', '6'))
  await reflector.start()
  await ticks()
  await clock.advance(59_999)
  t.equal(lw.lists, 1)
  await clock.advance(1)
  t.equal(lw.lists, 2, 'one LIST at the period')
  t.equal(lw.watches.length, 2, 'the watch re-opened once')
  t.ok(lw.watches[0]!.aborted)
  // An event the watch missed: the next re-list finds it.
  lw.objects.delete('a')
  lw.rv = 300
  await clock.advance(60_000)
  t.same(events, ['add a@5', 'add b@6', 'delete a'])
  t.equal(lw.current.req.resourceVersion, '300', 'the watch resumes from the re-list')
  await clock.advance(10 * 60_000)
  t.equal(lw.lists, 13, 'one per period over 12 periods')
  t.equal(lw.watches.length, 13)
  t.same(warnings(), [], 'our own re-list is no failure')
  t.equal(reflector.consecutiveFailures, 0)
  await reflector.stop()
})

t.test('a 410 re-list restarts the period', async t => {
  const { clock, lw, reflector } = setup({ relistPeriodMs: 60_000 })
  await reflector.start()
  await ticks()
  await clock.advance(40_000)
  lw.current.emit('ERROR', gone)
  await ticks()
  t.equal(lw.lists, 2)
  await clock.advance(59_999)
  t.equal(lw.lists, 2, 'no LIST 60 s after the first one')
  await clock.advance(1)
  t.equal(lw.lists, 3)
  await reflector.stop()
})

t.test('synced stays false until a LIST succeeds; start() resolves then', async t => {
  const { clock, lw, reflector } = setup()
  lw.listFailures = [new Error('x'), new Error('y')]
  let started = false
  const start = reflector.start().then(() => (started = true))
  await ticks()
  t.equal(reflector.synced, false)
  await clock.advance(1_000)
  t.equal(reflector.synced, false)
  t.equal(started, false, 'start() neither rejects nor resolves on a failed LIST')
  await clock.advance(2_000)
  await start
  t.equal(reflector.synced, true)
  await reflector.stop()
})

t.test('onRecovered fires once, at the first good LIST after failures', async t => {
  let recovered = 0
  const { clock, lw, reflector } = setup({ onRecovered: () => recovered++ })
  await reflector.start()
  await ticks()
  t.equal(recovered, 0, 'not for the first sync')
  lw.current.fail(new Error('gone away'))
  lw.listFailures = [new Error('refused'), new Error('refused')]
  await ticks()
  await clock.advance(1_000)
  await clock.advance(2_000)
  t.equal(recovered, 0, 'not while LISTs fail')
  await clock.advance(4_000)
  t.equal(recovered, 1, 'once the LIST succeeds')
  await clock.advance(5 * 60_000)
  t.equal(recovered, 1, 'not again for the periodic re-lists')
  await reflector.stop()
})

t.test('our own stop: no error, no log of a failure, nothing scheduled, no more calls', async t => {
  const { clock, lw, reflector, warnings } = setup()
  await reflector.start()
  await ticks()
  await reflector.stop()
  t.ok(lw.current.aborted, 'the watch is aborted')
  t.equal(clock.pending, 0, 'no timer left')
  await clock.advance(24 * 3_600_000)
  t.equal(lw.lists, 1)
  t.equal(lw.watches.length, 1)
  t.same(warnings(), [])
})

t.test('stop while backing off, and while a LIST is in flight', async t => {
  {
    const { clock, lw, reflector, warnings } = setup()
    lw.listFailures = [new Error('refused')]
    void reflector.start()
    await ticks()
    t.equal(clock.pending, 1)
    await reflector.stop()
    t.equal(clock.pending, 0, 'the backoff timer is cleared')
    t.equal(warnings().length, 1, 'only the real failure')
  }
  {
    const { clock, lw, reflector, warnings } = setup()
    lw.listGate = new Promise<void>(r => setTimeout(r, 5))
    const start = reflector.start()
    await ticks(1)
    const stopped = reflector.stop()
    await start
    await stopped
    t.equal(reflector.synced, false, 'start() resolved unsynced')
    t.equal(lw.watches.length, 0, 'no watch after the stop')
    t.equal(clock.pending, 0)
    t.same(warnings(), [], 'the aborted LIST is not a failure')
  }
})

t.test('a handler that throws does not stop the loop', async t => {
  const clock = new FakeClock()
  const lw = new FakeListWatch()
  const { logger, logs } = recorder()
  const seen: string[] = []
  const reflector = new Reflector<Obj>({
    listWatch: lw, what: 'Thing', logger, clock, random: () => 0.5,
    handlers: { add: o => { seen.push(o.metadata.name); throw new Error('bug') }, update: () => {}, delete: () => {} },
  })
  await reflector.start()
  await ticks()
  lw.current.emit('ADDED', obj('a', '1'))
  lw.current.emit('ADDED', obj('b', '2'))
  t.same(seen, ['a', 'b'])
  t.equal(logs.filter(l => /handler threw/.test(l.msg)).length, 2)
  t.equal(lw.watches.length, 1, 'the watch goes on')
  await reflector.stop()
})
