// A clock whose timers fire only when a test advances it: the queue, the
// reflector and the janitor take a Clock, so their timing rules are tested
// in milliseconds.
import type { Clock } from '../../src/reconcile/queue.js'

const tick = (): Promise<void> => new Promise<void>(r => setImmediate(r))

export class FakeClock implements Clock {
  t: number
  /** Every delay asked for, in order. */
  delays: number[] = []
  /** Awaited after each timer fires: by default a few turns of the event loop; a test can wait on real work instead. */
  settle: () => Promise<void> = async () => {
    for (let i = 0; i < 5; i++) await tick()
  }

  #timers = new Map<number, { due: number; fn: () => void }>()
  #next = 1

  constructor(start = 0) {
    this.t = start
  }

  now(): number {
    return this.t
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++
    this.delays.push(ms)
    this.#timers.set(id, { due: this.t + ms, fn })
    return id
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number)
  }
  get pending(): number {
    return this.#timers.size
  }
  /** Due times of pending timers, relative to now, soonest first. */
  get dueIn(): number[] {
    return [...this.#timers.values()].map(x => x.due - this.t).sort((a, b) => a - b)
  }
  /** Moves time forward, firing timers in due order and settling after each. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms
    for (;;) {
      let first: [number, { due: number; fn: () => void }] | undefined
      for (const e of this.#timers) if (e[1].due <= target && (!first || e[1].due < first[1].due)) first = e
      if (!first) break
      this.#timers.delete(first[0])
      this.t = first[1].due
      first[1].fn()
      await this.settle()
    }
    this.t = target
    await this.settle()
  }
}
