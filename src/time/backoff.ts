// Time as the queue, the reflector and the janitor see it: an injectable
// clock (tests advance a fake one) and the one backoff formula they share.

export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(h: unknown): void
}

export interface Backoff {
  baseMs: number
  maxMs: number
  /** Fraction of the delay added or removed at random: 0.2 → ±20 %. */
  jitter: number
}

/**
 * The delay before retry number `failures` (1 for the first failure):
 * base·2^(failures-1), capped at max, then spread by ±jitter so that volumes
 * failing together (an issuer down) do not retry together. The cap applies
 * before the jitter for the same reason: keys stuck at the cap stay spread.
 */
export function backoffDelay(failures: number, b: Backoff, random: () => number): number {
  const exp = Math.min(b.maxMs, b.baseMs * 2 ** Math.max(0, failures - 1))
  const spread = 1 + b.jitter * (2 * random() - 1)
  return Math.max(0, Math.round(exp * spread))
}
