// A keyed work queue in the style of controller-runtime: the queue carries
// volume ids, not events. Every trigger (CSI call, informer, file watcher,
// timer) only adds a key; a burst of triggers for one key collapses into one
// reconcile, and one key is never reconciled by two workers at once.
//
// Two priorities, as in controller-runtime's priority queue: the pass over
// every volume at start-up is low priority, so it runs on a few workers and
// only while no normal key waits. A CSI call's volume never queues behind it,
// and while a CSI call is in flight (hold) the low lane gives it the CPU too.

import { DelayHeap } from './delay-heap.js'
import { backoffDelay, type Backoff, type Clock } from '../time/backoff.js'

// Shared with the reflector and the janitor; re-exported for this module's users.
export { backoffDelay, type Backoff, type Clock }


/**
 * What a reconcile answers, as in controller-runtime: nothing (done until
 * something adds the key again), `requeueAfterMs` (run again then: a
 * renewal's time, a recheck), or a thrown error (run again after the key's
 * backoff; the error carries its cause).
 */
export type ReconcileResult = { requeueAfterMs?: number } | void


/** `low`: work nobody waits for (the start-up pass); it yields to `normal`. */
export type Priority = 'normal' | 'low'

export interface WorkQueueOptions {
  /** Max keys reconciled concurrently. */
  workers: number
  /** Max low-priority keys among them; default an eighth of `workers`, at least 1. */
  lowPriorityWorkers?: number
  /** `signal` aborts at shutdown: a long reconcile stops at its next step. */
  reconcile: (key: string, signal: AbortSignal) => Promise<ReconcileResult>
  /** Per-key exponential backoff on thrown errors. */
  backoff?: Backoff
  clock?: Clock
  /** Uniform in [0, 1), like Math.random. */
  random?: () => number
  onError?: (key: string, err: unknown, retryInMs: number) => void
}

/** While held, the low lane still starts one key this often, so it never starves. */
export const LOW_PRIORITY_MAX_HOLD_MS = 1000

export const DEFAULT_BACKOFF: Readonly<Backoff> = { baseMs: 500, maxMs: 5 * 60_000, jitter: 0.2 }

/**
 * Node's setTimeout takes a signed 32-bit delay; anything larger fires after
 * 1 ms (with a TimeoutOverflowWarning). A 1-year certificate's renewal is
 * further away than that, so longer delays are clamped and the timer re-armed
 * when the clamp fires early.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1

// A pending requeue alone must not keep a process alive that is otherwise
// shutting down: the gRPC server is what holds the driver up.
const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
}

export class WorkQueue {
  readonly #opts: WorkQueueOptions
  readonly #clock: Clock
  readonly #random: () => number
  readonly #backoff: Backoff
  readonly #lowWorkers: number

  // Keys ready to run, by priority, with `#queued` saying which lane holds
  // each. A key raised to normal leaves a stale entry in the low lane, which
  // is skipped when reached.
  readonly #lanes: Record<Priority, Fifo> = { normal: new Fifo(), low: new Fifo() }
  readonly #queued = new Map<string, Priority>()
  readonly #running = new Map<string, Priority>()
  #runningLow = 0
  #holds = 0
  #lastLowStart = -Infinity
  // Keys added while running: they run once more when the current run ends,
  // so a change that lands mid-reconcile is never lost.
  readonly #dirty = new Map<string, Priority>()
  readonly #stopped = new AbortController()
  readonly #failures = new Map<string, number>()

  readonly #delayed = new DelayHeap<string>()
  #timer: unknown = undefined
  #timerDue = Infinity

  #started = false
  #stopping = false
  #pumpScheduled = false
  #idleWaiters: Array<() => void> = []
  #drainWaiters: Array<() => void> = []

  constructor(opts: WorkQueueOptions) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) {
      throw new RangeError(`workers must be a positive integer, got ${opts.workers}`)
    }
    this.#opts = opts
    this.#clock = opts.clock ?? systemClock
    this.#random = opts.random ?? Math.random
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF
    this.#lowWorkers = opts.lowPriorityWorkers ?? Math.max(1, Math.floor(opts.workers / 8))
    if (!Number.isInteger(this.#lowWorkers) || this.#lowWorkers < 1) {
      throw new RangeError(`lowPriorityWorkers must be a positive integer, got ${opts.lowPriorityWorkers}`)
    }
  }

  /** Keys waiting to run (not running, not delayed). */
  get length(): number {
    return this.#queued.size
  }

  /** Keys waiting on a timer. */
  get delayedLength(): number {
    return this.#delayed.size
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0
  }

  /** Queues the key once; adding it again at normal priority raises a low one. */
  add(key: string, priority: Priority = 'normal'): void {
    if (this.#stopping) return
    if (this.#running.has(key)) {
      this.#dirty.set(key, higher(this.#dirty.get(key), priority))
      return
    }
    const queued = this.#queued.get(key)
    if (queued === 'normal' || queued === priority) return
    this.#queued.set(key, priority)
    this.#lanes[priority].push(key)
    this.#schedulePump()
  }

  addAfter(key: string, ms: number): void {
    if (this.#stopping) return
    if (!(ms > 0)) {
      this.add(key)
      return
    }
    if (this.#delayed.push(key, this.#clock.now() + ms)) this.#arm()
  }

  /**
   * Holds the low lane: until the returned release is called, it starts at
   * most one key per LOW_PRIORITY_MAX_HOLD_MS. For a CSI call in flight, which
   * the start-up pass would otherwise slow down on a busy event loop.
   */
  hold(): () => void {
    this.#holds++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#holds--
      this.#schedulePump()
    }
  }

  /** Resets the key's backoff: its next failure waits the base delay again. */
  forget(key: string): void {
    this.#failures.delete(key)
  }

  /**
   * Every key whose last reconcile failed runs again within `spreadMs`, its
   * backoff reset: what it failed on (the API) is back, and waiting out a
   * backoff grown during an outage would only delay renewals. Returns how many.
   */
  retryFailed(spreadMs: number): number {
    const keys = [...this.#failures.keys()]
    for (const key of keys) {
      this.#failures.delete(key)
      this.addAfter(key, Math.round(this.#random() * spreadMs))
    }
    return keys.length
  }

  start(): void {
    if (this.#started) return
    this.#started = true
    this.#schedulePump()
  }

  /**
   * Stops taking work (adds are dropped, delayed keys discarded) and resolves
   * once every in-flight reconcile has finished.
   */
  async shutdown(): Promise<void> {
    this.#stopping = true
    this.#stopped.abort()
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerDue = Infinity
    if (this.#running.size > 0) await new Promise<void>((resolve) => this.#drainWaiters.push(resolve))
    // Nothing will run any more: waiting for idle would wait forever.
    this.#settleIdle(true)
  }

  /**
   * Resolves when nothing is queued or running. Delayed keys do not count:
   * a renewal a month away would otherwise keep a test waiting for a month.
   */
  idle(): Promise<void> {
    if (this.#isIdle() || this.#stopping) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  #isIdle(): boolean {
    return this.#queued.size === 0 && this.#running.size === 0
  }

  // Runs on a microtask rather than inside add(): a synchronous burst of adds
  // then lands in the queue before the first run starts and collapses into it.
  #schedulePump(): void {
    if (this.#pumpScheduled || !this.#started) return
    this.#pumpScheduled = true
    queueMicrotask(() => {
      this.#pumpScheduled = false
      this.#pump()
    })
  }

  #pump(): void {
    while (!this.#stopping && this.#running.size < this.#opts.workers) {
      const next = this.#next()
      if (!next) break
      this.#queued.delete(next.key)
      this.#running.set(next.key, next.priority)
      if (next.priority === 'low') this.#runningLow++
      void this.#run(next.key)
    }
    this.#settleIdle(false)
  }

  #next(): { key: string; priority: Priority } | undefined {
    const normal = this.#pop('normal')
    if (normal !== undefined) return { key: normal, priority: 'normal' }
    if (this.#runningLow >= this.#lowWorkers) return undefined
    if (this.#holds > 0 && this.#clock.now() - this.#lastLowStart < LOW_PRIORITY_MAX_HOLD_MS) return undefined
    const low = this.#pop('low')
    if (low === undefined) return undefined
    this.#lastLowStart = this.#clock.now()
    return { key: low, priority: 'low' }
  }

  #pop(priority: Priority): string | undefined {
    const lane = this.#lanes[priority]
    for (let key = lane.shift(); key !== undefined; key = lane.shift()) {
      if (this.#queued.get(key) === priority) return key
    }
    return undefined
  }

  async #run(key: string): Promise<void> {
    try {
      const result = await this.#opts.reconcile(key, this.#stopped.signal)
      this.#failures.delete(key)
      const after = result?.requeueAfterMs
      if (after !== undefined) this.addAfter(key, after)
    } catch (err) {
      const n = this.failures(key) + 1
      this.#failures.set(key, n)
      const delay = backoffDelay(n, this.#backoff, this.#random)
      try {
        this.#opts.onError?.(key, err, delay)
      } catch {
        // A broken error reporter must not stop the retry.
      }
      this.addAfter(key, delay)
    } finally {
      if (this.#running.get(key) === 'low') this.#runningLow--
      this.#running.delete(key)
      const dirty = this.#dirty.get(key)
      if (dirty) {
        this.#dirty.delete(key)
        this.add(key, dirty)
      }
      if (this.#stopping && this.#running.size === 0) {
        for (const resolve of this.#drainWaiters.splice(0)) resolve()
      }
      this.#pump()
    }
  }

  #settleIdle(force: boolean): void {
    if (this.#idleWaiters.length === 0 || (!force && !this.#isIdle())) return
    for (const resolve of this.#idleWaiters.splice(0)) resolve()
  }

  // One timer for the whole queue, armed for the earliest due key.
  #arm(): void {
    if (this.#stopping) return
    const top = this.#delayed.peek()
    if (top === undefined) {
      if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
      this.#timer = undefined
      this.#timerDue = Infinity
      return
    }
    if (this.#timer !== undefined && this.#timerDue <= top.due) return
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, top.due - this.#clock.now()))
    this.#timerDue = top.due
    this.#timer = this.#clock.setTimeout(() => this.#fire(), wait)
  }

  #fire(): void {
    this.#timer = undefined
    this.#timerDue = Infinity
    // After a clamped wait nothing may be due yet: popDue returns nothing and
    // #arm waits again for what remains.
    for (const key of this.#delayed.popDue(this.#clock.now())) this.add(key)
    this.#arm()
  }
}

const higher = (a: Priority | undefined, b: Priority): Priority => (a === 'normal' || b === 'normal' ? 'normal' : 'low')

/** A FIFO of keys: an array with a moving head, since shift() would be O(n) per pop. */
class Fifo {
  #items: string[] = []
  #head = 0

  push(key: string): void {
    this.#items.push(key)
  }

  shift(): string | undefined {
    if (this.#head >= this.#items.length) return undefined
    const key = this.#items[this.#head++]
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return key
  }
}
