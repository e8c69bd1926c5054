// Rate limits Events per object and reason, like client-go's spam filter: a
// volume failing every backoff step, or a pod author's pod failing in a
// loop, cannot flood the apiserver or etcd with Events. A token bucket per
// key (burst, then one per interval); what was held back is counted into the
// next Event let through. Pure: the clock is passed in.

export interface EventLimiterOptions {
  /** Events let through at once per key. Default 5. */
  burst?: number
  /** One more token per this many ms. Default 5 minutes. */
  refillMs?: number
  /** Keys remembered; the oldest is forgotten beyond it. Default 4096. */
  maxKeys?: number
}

interface Bucket {
  tokens: number
  at: number
  suppressed: number
}

export type EventDecision = { send: false } | { send: true; suppressedBefore: number }

export class EventLimiter {
  readonly #burst: number
  readonly #refillMs: number
  readonly #maxKeys: number
  readonly #buckets = new Map<string, Bucket>()

  constructor(opts: EventLimiterOptions = {}) {
    this.#burst = opts.burst ?? 5
    this.#refillMs = opts.refillMs ?? 5 * 60_000
    this.#maxKeys = opts.maxKeys ?? 4096
  }

  get size(): number {
    return this.#buckets.size
  }

  decide(key: string, now: number): EventDecision {
    let b = this.#buckets.get(key)
    if (b === undefined) {
      b = { tokens: this.#burst, at: now, suppressed: 0 }
    } else {
      this.#buckets.delete(key) // re-inserted below: the Map's order is last use
      const earned = Math.floor((now - b.at) / this.#refillMs)
      if (earned > 0) {
        b.tokens = Math.min(this.#burst, b.tokens + earned)
        b.at += earned * this.#refillMs
      }
    }
    this.#buckets.set(key, b)
    if (this.#buckets.size > this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!)
    if (b.tokens === 0) {
      b.suppressed++
      return { send: false }
    }
    if (b.tokens === this.#burst) b.at = now
    b.tokens--
    const suppressedBefore = b.suppressed
    b.suppressed = 0
    return { send: true, suppressedBefore }
  }
}
