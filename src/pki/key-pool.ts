// A few private keys made ahead of demand, so an RSA publish does not wait
// for a prime search (RSA-2048 takes 50-300 ms of one core; EC keys take
// well under a millisecond and are never pooled).
//
// The keys live in this process's memory only, each is handed out once, and
// the pool holds for a spec about as many as were asked for in the last
// minute (at most `maxPerSpec`, and `maxTotal` over all specs). A spec not
// asked for in `idleMs` loses its keys; an empty pool keeps no timer.
// Refills run one at a time, off the event loop (OpenSSL on libuv's pool),
// so the pool never takes both cores from the publishes it serves.

import type { KeyObject } from 'node:crypto'
import type { KeySpec } from '../volume/types.js'

export interface KeyPoolOptions {
  generate: (spec: KeySpec) => Promise<KeyObject>
  /** Which specs are worth pooling. */
  pooled?: (spec: KeySpec) => boolean
  maxPerSpec?: number
  maxTotal?: number
  /** Demand is the number of takes within this window. */
  demandWindowMs?: number
  idleMs?: number
  now?: () => number
  onRefillError?: (err: unknown, spec: KeySpec) => void
}

export interface KeyPoolStats {
  hits: number
  misses: number
  /** Keys made ahead and dropped unused (idle spec). */
  discarded: number
  size: number
}

interface SpecPool {
  spec: KeySpec
  keys: KeyObject[]
  /** When recent takes happened, oldest first, pruned to the demand window. */
  takes: number[]
  lastTake: number
}

const poolKey = (spec: KeySpec): string => `${spec.algorithm}-${spec.size}`

export class KeyPool {
  readonly #generate: KeyPoolOptions['generate']
  readonly #pooled: (spec: KeySpec) => boolean
  readonly #maxPerSpec: number
  readonly #maxTotal: number
  readonly #demandWindowMs: number
  readonly #idleMs: number
  readonly #now: () => number
  readonly #onRefillError: (err: unknown, spec: KeySpec) => void
  readonly #pools = new Map<string, SpecPool>()
  #refilling: Promise<void> | undefined
  #idleTimer: NodeJS.Timeout | undefined
  #closed = false
  #hits = 0
  #misses = 0
  #discarded = 0

  constructor(o: KeyPoolOptions) {
    this.#generate = o.generate
    this.#pooled = o.pooled ?? (spec => spec.algorithm === 'RSA')
    this.#maxPerSpec = o.maxPerSpec ?? 4
    this.#maxTotal = o.maxTotal ?? 16
    this.#demandWindowMs = o.demandWindowMs ?? 60_000
    this.#idleMs = o.idleMs ?? 10 * 60_000
    this.#now = o.now ?? Date.now
    this.#onRefillError = o.onRefillError ?? (() => {})
  }

  /** A key for the spec: one made ahead when there is one, else one made now. */
  async take(spec: KeySpec): Promise<KeyObject> {
    if (this.#closed || !this.#pooled(spec)) return this.#generate(spec)
    const pool = this.#poolFor(spec)
    const now = this.#now()
    pool.takes.push(now)
    pool.lastTake = now
    const ready = pool.keys.shift()
    if (ready) this.#hits++
    else this.#misses++
    this.#scheduleRefill()
    // On a miss, the caller's own key is made now, alongside at most one refill.
    return ready ?? this.#generate(spec)
  }

  stats(): KeyPoolStats {
    return { hits: this.#hits, misses: this.#misses, discarded: this.#discarded, size: this.#size() }
  }

  /** Resolves when no refill is running (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#refilling) await this.#refilling
  }

  /** Drops every key and stops refilling. */
  close(): void {
    this.#closed = true
    this.#clearIdleTimer()
    for (const pool of this.#pools.values()) this.#discarded += pool.keys.length
    this.#pools.clear()
  }

  #poolFor(spec: KeySpec): SpecPool {
    const k = poolKey(spec)
    let pool = this.#pools.get(k)
    if (!pool) {
      pool = { spec: { ...spec }, keys: [], takes: [], lastTake: 0 }
      this.#pools.set(k, pool)
    }
    return pool
  }

  #size(): number {
    let n = 0
    for (const pool of this.#pools.values()) n += pool.keys.length
    return n
  }

  /** How many keys a spec should have ready: its takes in the demand window, capped. */
  #target(pool: SpecPool, now: number): number {
    while (pool.takes.length > 0 && now - pool.takes[0]! > this.#demandWindowMs) pool.takes.shift()
    return Math.min(this.#maxPerSpec, pool.takes.length)
  }

  /** The pool furthest below its target, if any has room under maxTotal. */
  #nextToFill(now: number): SpecPool | undefined {
    if (this.#size() >= this.#maxTotal) return undefined
    let best: SpecPool | undefined
    let bestGap = 0
    for (const pool of this.#pools.values()) {
      const gap = this.#target(pool, now) - pool.keys.length
      if (gap > bestGap) [best, bestGap] = [pool, gap]
    }
    return best
  }

  #scheduleRefill(): void {
    if (this.#refilling || this.#closed) return
    this.#refilling = this.#refill().finally(() => {
      this.#refilling = undefined
      this.#armIdleTimer()
    })
  }

  async #refill(): Promise<void> {
    for (let pool = this.#nextToFill(this.#now()); pool && !this.#closed; pool = this.#nextToFill(this.#now())) {
      let key: KeyObject
      try {
        key = await this.#generate(pool.spec)
      } catch (err) {
        // The publish path generates its own on a miss: a failed refill costs only speed.
        this.#onRefillError(err, pool.spec)
        return
      }
      if (this.#closed || this.#pools.get(poolKey(pool.spec)) !== pool) {
        this.#discarded++
        continue
      }
      pool.keys.push(key)
    }
  }

  /** One unref'd timer for the earliest idle expiry; none while the pool is empty. */
  #armIdleTimer(): void {
    this.#clearIdleTimer()
    if (this.#closed) return
    let earliest = Infinity
    for (const pool of this.#pools.values()) if (pool.keys.length > 0) earliest = Math.min(earliest, pool.lastTake + this.#idleMs)
    if (earliest === Infinity) return
    this.#idleTimer = setTimeout(() => this.dropIdle(), Math.max(0, earliest - this.#now()))
    this.#idleTimer.unref()
  }

  #clearIdleTimer(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
  }

  /** Forgets specs not asked for in idleMs, with their keys. Public for tests with a fake clock. */
  dropIdle(): void {
    const now = this.#now()
    for (const [k, pool] of this.#pools) {
      if (now - pool.lastTake < this.#idleMs) continue
      this.#discarded += pool.keys.length
      this.#pools.delete(k)
    }
    if (!this.#refilling) this.#armIdleTimer()
  }
}
