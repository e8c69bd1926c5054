import t from 'tap'
import fc from 'fast-check'
import { formatDuration, parseDuration } from '../../src/volume/duration.js'

const H = 3_600_000
const M = 60_000
const S = 1_000

t.test('parses Go durations to milliseconds', async (t) => {
  const cases: Array<[string, number]> = [
    ['720h', 720 * H],
    ['1h30m', H + 30 * M],
    ['90s', 90 * S],
    ['1.5h', 1.5 * H],
    ['300ms', 300],
    ['2h45m30.5s', 2 * H + 45 * M + 30.5 * S],
    ['1m', M],
    ['+5m', 5 * M],
    ['.5s', 500],
    ['1.s', S],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['1500μs', 1.5],
    ['2000000ns', 2],
    ['0', 0],
    ['0s', 0],
    ['1h0m0s', H],
    ['10m10m', 20 * M],
  ]
  for (const [text, ms] of cases) {
    const got = parseDuration(text)
    t.same(got, { ok: true, ms }, text)
  }
})

t.test('rejects what Go rejects, negatives and unit-less numbers', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['+', /empty/],
    ['10', /missing its unit/],
    ['-1h', /negative/],
    ['-0', /negative/],
    ['1d', /unknown unit "d"/],
    ['1 h', /unknown unit " h"/],
    ['h', /expected a number/],
    ['.h', /expected a number/],
    ['1h30', /missing its unit/],
    ['abc', /expected a number/],
    ['1e3s', /unknown unit "e"/],
    ['3000000h', /too long/],
    ['9999999999999999999ns', /too long/],
  ]
  for (const [text, reason] of cases) {
    const got = parseDuration(text)
    t.equal(got.ok, false, `${JSON.stringify(text)} is rejected`)
    if (!got.ok) {
      t.match(got.reason, reason, `${JSON.stringify(text)}: reason`)
      t.match(got.reason, /Go syntax/, 'the reason says what is allowed')
    }
  }
})

t.test('the largest Go duration parses, one nanosecond more does not', async (t) => {
  t.equal(parseDuration('9223372036854775807ns').ok, true)
  t.equal(parseDuration('9223372036854775808ns').ok, false)
})

t.test('formats compactly, the way users write durations', async (t) => {
  const cases: Array<[number, string]> = [
    [720 * H, '720h'],
    [H + 30 * M, '1h30m'],
    [90 * S, '1m30s'],
    [1.5 * S, '1.5s'],
    [300, '300ms'],
    [1.5, '1.5ms'],
    [0.0015, '1.5µs'],
    [0.000001, '1ns'],
    [0, '0s'],
    [-M, '-1m'],
    [2 * H + 45 * M + 30.5 * S, '2h45m30.5s'],
  ]
  for (const [ms, text] of cases) t.equal(formatDuration(ms), text, `${ms} ms`)
})

t.test('property: formatting then parsing gives the same whole milliseconds back', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2_000_000 * H }), (ms) => {
      const parsed = parseDuration(formatDuration(ms))
      return parsed.ok && parsed.ms === ms
    }),
  )
  t.pass('no counterexample')
})

t.test('property: parseDuration never throws', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'0123456789.+-hmsunµ μx '.split('')) }), (text) => {
      const r = parseDuration(text)
      return r.ok ? Number.isFinite(r.ms) && r.ms >= 0 : r.reason.length > 0
    }),
  )
  t.pass('no counterexample')
})
