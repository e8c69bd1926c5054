// Go's time.ParseDuration syntax ("720h", "1h30m", "1.5h", "300ms"), because
// that is what cert-manager users write, minus negative durations which no
// attribute of ours can use.

import { quote } from './quote.js'
export type DurationResult = { ok: true; ms: number } | { ok: false; reason: string }

const NS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek mu: Go accepts both
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
}

/** Go durations are int64 nanoseconds; anything longer does not parse in Go either. */
const MAX_NS = (1n << 63n) - 1n
const UNITS = 'ns, us, µs, ms, s, m, h'

/** Parses a Go duration into milliseconds (fractional below 1 ms). Never throws. */
export function parseDuration(text: string): DurationResult {
  const fail = (why: string): DurationResult => ({
    ok: false,
    reason: `${quote(text)} is not a duration: ${why} (use Go syntax such as "720h", "1h30m" or "90s"; units ${UNITS})`,
  })
  let rest = text
  if (rest.startsWith('-')) return fail('negative durations are not allowed')
  if (rest.startsWith('+')) rest = rest.slice(1)
  if (rest === '') return fail('it is empty')
  // Go's one unit-less form; callers reject it as too short where that matters.
  if (rest === '0') return { ok: true, ms: 0 }

  let total = 0n
  while (rest !== '') {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(rest)
    const whole = m?.[1] ?? ''
    const frac = m?.[2] ?? ''
    if (whole === '' && frac === '') return fail('expected a number')
    rest = rest.slice(m?.[0].length ?? 0)
    const unitMatch = /^[^0-9.]+/.exec(rest)
    if (!unitMatch) return fail('a number is missing its unit')
    const unit = NS_PER_UNIT[unitMatch[0]]
    if (unit === undefined) return fail(`unknown unit ${quote(unitMatch[0], 20)}`)
    rest = rest.slice(unitMatch[0].length)
    // Exact integer arithmetic: "2h45m30.5s" must not pick up float error.
    total += BigInt(whole === '' ? '0' : whole) * unit
    if (frac !== '') total += (BigInt(frac) * unit) / 10n ** BigInt(frac.length)
    if (total > MAX_NS) return fail('it is too long (the maximum is about 2562047h)')
  }
  // Split before converting: Number(ns) alone loses whole milliseconds past 2^53 ns (~104 days).
  return { ok: true, ms: Number(total / 1_000_000n) + Number(total % 1_000_000n) / 1e6 }
}

/**
 * Formats milliseconds in the same syntax, compactly ("1h30m", "90s" →
 * "1m30s", "300ms"), so messages can quote limits the way users write them.
 * parseDuration(formatDuration(x)) gives x back for whole nanoseconds.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms)
  const sign = ms < 0 ? '-' : ''
  const abs = Math.abs(ms)
  // Whole and fractional parts apart, for the same 2^53 reason as in parseDuration.
  let ns = BigInt(Math.trunc(abs)) * 1_000_000n + BigInt(Math.round((abs - Math.trunc(abs)) * 1e6))
  if (ns === 0n) return '0s'
  if (ns < 1_000_000_000n) {
    for (const [unit, size] of [['ms', 1_000_000n], ['µs', 1_000n]] as const) {
      if (ns >= size) return sign + decimal(ns, size) + unit
    }
    return `${sign}${ns}ns`
  }
  const h = ns / NS_PER_UNIT.h!
  ns -= h * NS_PER_UNIT.h!
  const m = ns / NS_PER_UNIT.m!
  ns -= m * NS_PER_UNIT.m!
  let out = sign
  if (h > 0n) out += `${h}h`
  if (m > 0n) out += `${m}m`
  if (ns > 0n) out += decimal(ns, NS_PER_UNIT.s!) + 's'
  return out
}

/** value/size as a decimal without trailing zeros: (1500, 1000) → "1.5". */
function decimal(value: bigint, size: bigint): string {
  const whole = value / size
  const frac = value % size
  if (frac === 0n) return String(whole)
  const digits = String(size).length - 1
  return `${whole}.${String(frac).padStart(digits, '0').replace(/0+$/, '')}`
}
