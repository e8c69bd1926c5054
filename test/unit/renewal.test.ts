import t from 'tap'
import fc from 'fast-check'
import { RENEWAL_JITTER, renewalTime, type Lifetime } from '../../src/reconcile/renewal.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.parse('2025-06-01T00:00:00.000Z')
const life = (lifetimeMs: number, notBefore = T0): Lifetime => ({ notBefore, notAfter: notBefore + lifetimeMs })
const fixed = (x: number) => (): number => x
/** The largest value Math.random can return. */
const ALMOST_ONE = 1 - Number.EPSILON / 2

interface Case {
  name: string
  life: Lifetime
  renewBeforeMs: number | undefined
  random: number
  want: number
}

const cases: Case[] = [
  { name: 'default: a third of the lifetime before notAfter', life: life(90 * DAY), renewBeforeMs: undefined, random: 0, want: T0 + 60 * DAY },
  { name: 'default uses the actual lifetime, not a requested one', life: life(24 * HOUR), renewBeforeMs: undefined, random: 0, want: T0 + 16 * HOUR },
  { name: 'renewBefore is honoured', life: life(90 * DAY), renewBeforeMs: 7 * DAY, random: 0, want: T0 + 83 * DAY },
  { name: 'renewBefore just under the lifetime is honoured', life: life(DAY), renewBeforeMs: DAY - 1000, random: 0, want: T0 + 1000 },
  { name: 'renewBefore equal to the lifetime falls back to a third', life: life(90 * DAY), renewBeforeMs: 90 * DAY, random: 0, want: T0 + 60 * DAY },
  { name: 'renewBefore longer than the lifetime falls back to a third', life: life(24 * HOUR), renewBeforeMs: 30 * DAY, random: 0, want: T0 + 16 * HOUR },
  { name: 'jitter 0: the default point exactly', life: life(30 * DAY), renewBeforeMs: 10 * DAY, random: 0, want: T0 + 20 * DAY },
  { name: 'jitter 0.5: 5% of the window earlier', life: life(30 * DAY), renewBeforeMs: 10 * DAY, random: 0.5, want: T0 + 20 * DAY - 12 * HOUR },
  { name: 'jitter ~1: 10% of the window earlier', life: life(30 * DAY), renewBeforeMs: 10 * DAY, random: ALMOST_ONE, want: T0 + 19 * DAY },
  { name: 'jitter ~1 on the default window: 10% of a third earlier', life: life(90 * DAY), renewBeforeMs: undefined, random: ALMOST_ONE, want: T0 + 57 * DAY },
  { name: 'jitter past notBefore is clamped to notBefore', life: life(DAY), renewBeforeMs: DAY - 1000, random: ALMOST_ONE, want: T0 },
  { name: 'zero lifetime: notBefore', life: life(0), renewBeforeMs: undefined, random: 0.5, want: T0 },
  { name: 'notAfter before notBefore: notBefore', life: { notBefore: T0, notAfter: T0 - DAY }, renewBeforeMs: undefined, random: 0.5, want: T0 },
  { name: 'a third that is not whole milliseconds is rounded', life: life(1000), renewBeforeMs: undefined, random: 0, want: T0 + 667 },
]

t.test('renewalTime table', async (t) => {
  t.equal(RENEWAL_JITTER, 0.1, 'the jitter is 10% of the window')
  for (const c of cases) t.equal(renewalTime(c.life, c.renewBeforeMs, fixed(c.random)), c.want, c.name)
})

t.test('random is drawn once per call', async (t) => {
  let calls = 0
  renewalTime(life(90 * DAY), undefined, () => (calls++, 0.3))
  t.equal(calls, 1)
})

// ---- properties -------------------------------------------------------

const lifetimeArb = fc.record({
  notBefore: fc.integer({ min: T0 - 1000 * DAY, max: T0 + 1000 * DAY }),
  lifetimeMs: fc.oneof(fc.integer({ min: 0, max: 2 * HOUR }), fc.integer({ min: 0, max: 5 * 365 * DAY })),
})
// Sometimes absent, sometimes within the lifetime, sometimes beyond it.
const renewBeforeArb = (lifetimeMs: number): fc.Arbitrary<number | undefined> =>
  fc.oneof(fc.constant(undefined), fc.integer({ min: 1, max: Math.max(1, lifetimeMs - 1) }), fc.integer({ min: lifetimeMs, max: lifetimeMs * 2 + 1 }))
const randomArb = fc.oneof(fc.constant(0), fc.constant(ALMOST_ONE), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }))
const input = lifetimeArb.chain(({ notBefore, lifetimeMs }) =>
  fc.record({ life: fc.constant(life(lifetimeMs, notBefore)), lifetimeMs: fc.constant(lifetimeMs), renewBeforeMs: renewBeforeArb(lifetimeMs), random: randomArb }))
const runs = { numRuns: 5000 }

t.test('property: whole ms, within the lifetime, and at most 10% of the window earlier than the default point', async (t) => {
  let honoured = 0
  let fallback = 0
  fc.assert(
    fc.property(input, ({ life, lifetimeMs, renewBeforeMs, random }) => {
      const at = renewalTime(life, renewBeforeMs, fixed(random))
      const window = renewBeforeMs !== undefined && renewBeforeMs < lifetimeMs ? (honoured++, renewBeforeMs) : (fallback++, lifetimeMs / 3)
      const before = life.notAfter - at
      // Rounding to whole milliseconds may move either way by half of one.
      const clamped = at === life.notBefore
      return (
        Number.isInteger(at) &&
        at >= life.notBefore &&
        at <= life.notAfter &&
        before >= window - 0.5 &&
        (clamped || before <= window * (1 + RENEWAL_JITTER) + 0.5)
      )
    }),
    runs,
  )
  t.ok(honoured > 0 && fallback > 0, `both renewBefore (${honoured}) and the default (${fallback}) came up`)
})

t.test('property: more jitter never moves the renewal later', async (t) => {
  fc.assert(
    fc.property(input, randomArb, ({ life, renewBeforeMs, random }, other) => {
      const [lo, hi] = random <= other ? [random, other] : [other, random]
      return renewalTime(life, renewBeforeMs, fixed(hi)) <= renewalTime(life, renewBeforeMs, fixed(lo))
    }),
    runs,
  )
  t.pass()
})

t.test('property: without jitter the default is the rounded two-thirds point', async (t) => {
  fc.assert(
    fc.property(lifetimeArb, ({ notBefore, lifetimeMs }) =>
      renewalTime(life(lifetimeMs, notBefore), undefined, fixed(0)) === Math.round(notBefore + lifetimeMs - lifetimeMs / 3)),
    runs,
  )
  t.pass()
})
