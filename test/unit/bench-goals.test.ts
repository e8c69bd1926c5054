import t from 'tap'
import { goalFor } from '../../bench/goals.js'

t.test('goals say met or missed from the row values, with ratios against the reference', async t => {
  t.same(goalFor('rss-0', 1000, 100)?.met(64, 38), false, 'start-up RSS 64 MiB misses ≤ 60')
  t.same(goalFor('rss-0', 1000, 100)?.met(59, 38), true)
  t.same(goalFor('rss-1000', 1000, 100)?.met(85, 71), true, '85 / 71 = 1.197× meets ≤ 1.2×')
  t.same(goalFor('rss-1000', 1000, 100)?.met(86, 71), false)
  t.equal(goalFor('rss-60', 60, 20), undefined, 'the 1000-volume goal has no meaning at 60 volumes')
  t.same(goalFor('p2-med', 1000, 100)?.met(160, 242), true, '0.66× meets ≤ 0.7×')
  t.same(goalFor('p4-cpu', 1000, 100)?.met(1, undefined), undefined, 'no reference: no verdict')
  t.same(goalFor('p6-crs', 1000, 100)?.met(1, 0), false)
  t.same(goalFor('p3-med', 1000, 100)?.text, '≤ 0.5× the reference')
  t.same(goalFor('p3-med', 60, 20)?.text, '≤ 1× the reference')
  t.equal(goalFor('fill-rate', 1000, 100), undefined)
})
