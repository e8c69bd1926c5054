import t from 'tap'
import { TokenBucket } from '../../src/kube/rate-limit.js'

t.test('a burst passes at once, then one token per 1/qps seconds', async t => {
  const b = new TokenBucket({ qps: 10, burst: 3 }, 0)
  t.same([b.take(0), b.take(0), b.take(0)], [0, 0, 0], 'the burst')
  t.same([b.take(0), b.take(0), b.take(0)], [100, 200, 300], 'callers past it queue, 100 ms apart')
  // At 300 ms all three reserved tokens have been earned: the bucket is empty, not negative.
  t.equal(b.take(300), 100, 'the next one waits its turn')
})

t.test('a quiet spell refills up to the burst, never beyond', async t => {
  const b = new TokenBucket({ qps: 5, burst: 2 }, 0)
  b.take(0)
  b.take(0)
  t.equal(b.take(10_000), 0)
  t.equal(b.take(10_000), 0)
  t.equal(b.take(10_000), 200, 'only two were kept')
})

t.test('sustained rate over a minute matches qps', async t => {
  const b = new TokenBucket({ qps: 20, burst: 50 }, 0)
  let served = 0
  for (let now = 0; now <= 60_000; now += 10) if (b.take(now) === 0) served++
  else b.giveBack()
  t.ok(served >= 50 + 1200 - 1 && served <= 50 + 1200 + 1, `served ${served} in 60 s (burst 50 + 20/s × 60 s)`)
})

t.test('a caller that gives up hands its token back', async t => {
  const b = new TokenBucket({ qps: 1, burst: 1 }, 0)
  t.equal(b.take(0), 0)
  t.equal(b.take(0), 1000)
  b.giveBack()
  t.equal(b.take(0), 1000, 'the next caller waits as if the one who left had never come')
})

t.test('nonsense limits are refused', async t => {
  t.throws(() => new TokenBucket({ qps: 0, burst: 1 }, 0), /qps must be a positive number/)
  t.throws(() => new TokenBucket({ qps: Number.NaN, burst: 1 }, 0), /qps/)
  t.throws(() => new TokenBucket({ qps: 1, burst: 0 }, 0), /burst must be a whole number/)
  t.throws(() => new TokenBucket({ qps: 1, burst: 1.5 }, 0), /burst/)
})
