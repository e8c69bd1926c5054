// When to renew a certificate. Pure arithmetic.

export interface Lifetime {
  notBefore: number
  notAfter: number
}

/** Fraction of the renew-before window by which renewals are spread earlier. */
export const RENEWAL_JITTER = 0.1

/**
 * notAfter minus renew-before (default a third of the actual lifetime), moved
 * earlier by up to 10% of that window so pods started together do not renew
 * together. Never later than the default point, never before notBefore.
 */
export function renewalTime(life: Lifetime, renewBeforeMs: number | undefined, random: () => number): number {
  const lifetime = Math.max(0, life.notAfter - life.notBefore)
  // A certificate shorter than asked for can make renew-before exceed it.
  const window = renewBeforeMs !== undefined && renewBeforeMs < lifetime ? renewBeforeMs : lifetime / 3
  const jitter = window * RENEWAL_JITTER * random()
  return Math.max(life.notBefore, Math.round(life.notAfter - window - jitter))
}
