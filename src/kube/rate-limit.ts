// Client-side rate limiting of the driver's Kubernetes API calls
// (--kube-api-qps, --kube-api-burst): a token bucket, as client-go's
// flowcontrol limiter, so that a node which starts a hundred pods at once, or
// a whole fleet rolling its drivers, spreads its requests rather than
// landing them on the apiserver together. Pure: the caller sleeps.

export interface RateLimit {
  /** Requests per second, sustained. */
  qps: number
  /** Requests allowed at once after a quiet spell; at least 1. */
  burst: number
}

export class TokenBucket {
  readonly #perMs: number
  readonly #burst: number
  #tokens: number
  #at: number

  constructor(limit: RateLimit, now: number) {
    if (!(limit.qps > 0) || !Number.isFinite(limit.qps)) throw new RangeError(`qps must be a positive number, got ${limit.qps}`)
    if (!Number.isInteger(limit.burst) || limit.burst < 1) throw new RangeError(`burst must be a whole number of at least 1, got ${limit.burst}`)
    this.#perMs = limit.qps / 1000
    this.#burst = limit.burst
    this.#tokens = limit.burst
    this.#at = now
  }

  /**
   * Takes a token: 0 when one was there, else how long to wait (ms) for the
   * one now reserved. Reservations queue in call order: the n-th caller past
   * the burst waits n / qps seconds.
   */
  take(now: number): number {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs)
      this.#at = now
    }
    this.#tokens -= 1
    return this.#tokens >= 0 ? 0 : Math.ceil(-this.#tokens / this.#perMs)
  }

  /** Gives back a token taken by a caller that gave up waiting for it. */
  giveBack(): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + 1)
  }
}
