// A full data root fails every write; each volume that failed then waits out
// its own backoff, grown while the space was gone (doubling from 500 ms, a
// minute of fullness leaves a key a minute from its next try). Nothing else
// says when room is back, so once a write has failed for want of space this
// polls the filesystem, and the moment there is room again it says so, once.
import { statfs } from 'node:fs/promises'

export interface SpaceWatchOptions {
  path: string
  /** Called once per full-then-room episode. */
  onRoom: (freeBytes: number) => void
  pollMs?: number
  statfs?: (path: string) => Promise<{ bavail: number; bsize: number; blocks: number }>
  setTimeout?: (fn: () => void, ms: number) => unknown
  clearTimeout?: (h: unknown) => void
  onError?: (err: unknown) => void
}

/**
 * Room enough to be worth retrying: a sixteenth of the filesystem or 1 MiB,
 * whichever is less. A few freed blocks (an old file version going) are not
 * room: retrying on them would fail again and only reset every backoff.
 */
export function hasRoom(s: { bavail: number; bsize: number; blocks: number }): boolean {
  const free = s.bavail * s.bsize
  return free >= Math.min(1 << 20, (s.blocks * s.bsize) / 16)
}

export class SpaceWatch {
  readonly #o: Required<Omit<SpaceWatchOptions, 'onError'>> & Pick<SpaceWatchOptions, 'onError'>
  #timer: unknown
  #stopped = false

  constructor(o: SpaceWatchOptions) {
    this.#o = {
      pollMs: 2_000,
      statfs: p => statfs(p),
      setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
      clearTimeout: h => clearTimeout(h as NodeJS.Timeout),
      ...o,
    }
  }

  get armed(): boolean {
    return this.#timer !== undefined
  }

  /** A write failed for want of space: watch until there is room. Idempotent. */
  noteFull(): void {
    if (this.#stopped || this.#timer !== undefined) return
    this.#schedule()
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer !== undefined) this.#o.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #schedule(): void {
    this.#timer = this.#o.setTimeout(() => void this.#poll(), this.#o.pollMs)
  }

  async #poll(): Promise<void> {
    try {
      const s = await this.#o.statfs(this.#o.path)
      if (this.#stopped) return
      if (hasRoom(s)) {
        this.#timer = undefined
        this.#o.onRoom(s.bavail * s.bsize)
        return
      }
    } catch (err) {
      this.#o.onError?.(err)
    }
    if (!this.#stopped) this.#schedule()
  }
}
