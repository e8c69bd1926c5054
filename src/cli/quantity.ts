// Kubernetes-style byte quantities for flags: "64Mi", "1Gi", "500M", "1048576".

const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
}

/** Bytes for a whole-number quantity with an optional suffix; undefined if it is not one. */
export function parseByteQuantity(value: string): number | undefined {
  const m = /^(\d{1,15})(k|M|G|Ki|Mi|Gi)?$/.exec(value.trim())
  if (m === null) return undefined
  const bytes = Number(m[1]) * UNITS[m[2] ?? '']!
  return Number.isSafeInteger(bytes) ? bytes : undefined
}
