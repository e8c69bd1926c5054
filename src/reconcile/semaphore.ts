// A counting semaphore. The reconciler holds one per node to cap how many
// issuances (key generation + CertificateRequest) run at once: after a node
// restart with hundreds of volumes, or while an issuer is down, an uncapped
// loop would flood the API server and pin the CPU generating RSA keys.

export type Release = () => void

export class Semaphore {
  readonly #limit: number
  #inUse = 0
  // First come, first served: a waiter is never overtaken by a later caller.
  readonly #waiters: Array<(release: Release) => void> = []

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`semaphore limit must be a positive integer, got ${limit}`)
    this.#limit = limit
  }

  get limit(): number {
    return this.#limit
  }

  get inUse(): number {
    return this.#inUse
  }

  get waiting(): number {
    return this.#waiters.length
  }

  /** Resolves with a release function once a slot is free. */
  acquire(): Promise<Release> {
    if (this.#inUse < this.#limit) {
      this.#inUse++
      return Promise.resolve(this.#releaser())
    }
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  /** Runs `fn` holding a slot; the slot is released however `fn` ends. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const release = await this.acquire()
    try {
      return await fn()
    } finally {
      release()
    }
  }

  // Each release function works once: a double release in a `finally` plus an
  // error path must not hand out a slot that is still held.
  #releaser(): Release {
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.#waiters.shift()
      // The slot passes straight to the next waiter, so inUse never dips and a
      // caller arriving in between cannot jump the queue.
      if (next !== undefined) next(this.#releaser())
      else this.#inUse--
    }
  }
}
