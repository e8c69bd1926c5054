// A seeded random source for the fault tier. Every choice a case makes
// (which key type, when to kill, how long to wait) comes from here, so a
// failure replays with the seed it printed. Timing on a shared machine is not
// replayable, the schedule of faults is.
import { createHash } from 'node:crypto'

/** mulberry32: tiny, fast, good enough to spread faults; not for cryptography. */
export class Rng {
  #state: number

  constructor(readonly seed: number) {
    this.#state = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list')
    return items[Math.floor(this.next() * items.length)]!
  }

  /** A stream of its own for one part of a case: adding draws elsewhere does not shift it. */
  fork(label: string): Rng {
    return new Rng(deriveSeed(this.seed, label))
  }
}

/** One seed per case from the run's seed, so a single case replays on its own. */
export function deriveSeed(seed: number, label: string): number {
  return createHash('sha256').update(`${seed >>> 0}/${label}`).digest().readUInt32BE(0)
}

/** The run's seed: CSI_FAULT_SEED (run.sh always sets it), else a fresh one. */
export function runSeed(env: NodeJS.ProcessEnv = process.env): { seed: number; given: boolean } {
  const raw = env.CSI_FAULT_SEED
  if (raw !== undefined && raw !== '') {
    const seed = Number(raw)
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`CSI_FAULT_SEED must be a non-negative integer, got ${JSON.stringify(raw)}`)
    return { seed: seed >>> 0, given: true }
  }
  return { seed: Math.floor(Math.random() * 2 ** 32), given: false }
}
