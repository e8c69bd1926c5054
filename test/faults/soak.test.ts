// R5, soak (long form only; or `--case soak`): many volumes with short
// certificates for a long while. Every volume's files are read every few
// seconds as a pod would: never an expired certificate, never a mismatch;
// renewals seen at the targets are counted against the renewals due.
//   CSI_FAULT_SOAK_VOLUMES (1000), CSI_FAULT_SOAK_MINUTES (30),
//   CSI_FAULT_SOAK_DURATION_S (900) and CSI_FAULT_SOAK_RENEW_BEFORE_S (600):
//   each certificate is renewed every 4-5 minutes;
//   CSI_FAULT_SOAK_SAMPLE_S (10): the sampling period.
// The short-form figures (when asked for by name) are 50 volumes, 4 minutes.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { rssMiB } from '../cluster/processes.js'
import { figure } from './lib/params.js'
import { startCase, shortLived } from './lib/case.js'
import { ServedSampler } from './lib/sampler.js'

const c = await startCase(t, 'soak', { driverArgs: ['--max-concurrent-issuances', '8'] })
const { ctx, node, monitor, api } = c
const VOLUMES = figure(ctx, 'CSI_FAULT_SOAK_VOLUMES', 50, 1000)
const MINUTES = figure(ctx, 'CSI_FAULT_SOAK_MINUTES', 4, 30)
const DURATION_S = figure(ctx, 'CSI_FAULT_SOAK_DURATION_S', 120, 900)
const RENEW_BEFORE_S = figure(ctx, 'CSI_FAULT_SOAK_RENEW_BEFORE_S', 80, 600)
const SAMPLE_S = figure(ctx, 'CSI_FAULT_SOAK_SAMPLE_S', 10, 10)
/** A renewal seen at the target later than this after its due time counts as late. */
const GRACE_S = 60

t.comment(`soak: ${VOLUMES} volumes, ${MINUTES} min, certificates of ${DURATION_S}s renewed ${RENEW_BEFORE_S}s before expiry, sampled every ${SAMPLE_S}s`)
const t0 = Date.now()
const items = await c.publishMany(VOLUMES, 'v', { extra: shortLived(DURATION_S, RENEW_BEFORE_S), inFlight: 20 })
const publishS = (Date.now() - t0) / 1000
const rssStart = node.pid ? rssMiB(node.pid) : undefined
const sampler = new ServedSampler(node, () => items, SAMPLE_S * 1000)
t.teardown(() => sampler.stop())

await t.test(`${VOLUMES} volumes for ${MINUTES} minutes`, async t => {
  sampler.start()
  const soak0 = await api.mark('soak-start')
  const soakStart = soak0.at
  const end = soakStart + MINUTES * 60_000
  while (Date.now() < end) await sleep(Math.min(30_000, end - Date.now()))
  await sampler.stop()
  const soakEnd = Date.now()
  c.phase('idle', soak0, await api.mark('soak-end'))
  const rssEnd = node.pid ? rssMiB(node.pid) : undefined

  // Due renewals: every certificate that was replaced, and every last one whose due time (plus grace) has passed.
  let renewed = 0
  let missed = 0
  let late = 0
  for (const list of sampler.seen.values()) {
    for (const [i, cert] of list.entries()) {
      const dueAt = cert.notAfter - RENEW_BEFORE_S * 1000
      const next = list[i + 1]
      if (next) {
        renewed++
        if (next.firstSeen > dueAt + GRACE_S * 1000 + SAMPLE_S * 1000) late++
      } else if (dueAt + GRACE_S * 1000 < soakEnd) {
        missed++
      }
    }
  }
  const expected = renewed + missed
  t.equal(node.expiredServed.size, 0, `no expired certificate served in ${sampler.sweeps} sweeps of ${VOLUMES} volumes`)
  t.same(sampler.problems.slice(0, 10), [], `every sample found a matching key, certificate and CA (${sampler.problems.length} problems)`)
  t.equal(missed, 0, `every due renewal happened: ${renewed} seen at the targets, ${expected} due`)
  t.equal(late, 0, `none later than ${GRACE_S}s after it was due`)
  t.ok(renewed > 0 || MINUTES * 60 < DURATION_S - RENEW_BEFORE_S, `renewals happened (${renewed})`)
  const created = monitor.created
  t.ok(created >= VOLUMES + renewed && created <= VOLUMES + renewed + VOLUMES, `requests made ${created}: one per volume and per renewal (${VOLUMES + renewed}), plus at most one in flight per volume`)
  t.equal(monitor.maxLive(), 1, 'never more than one live request per volume', { violations: monitor.violations.slice(0, 5) })
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
  t.ok(sampler.slowestSweepMs < SAMPLE_S * 1000, `a sweep of every volume took at most ${sampler.slowestSweepMs} ms (under the ${SAMPLE_S}s period)`)
  c.notes.push(`${VOLUMES} volumes published in ${Math.round(publishS)}s; ${sampler.sweeps} sweeps (slowest ${sampler.slowestSweepMs} ms); ${renewed} renewals seen, ${expected} due, ${late} late; driver RSS ${rssStart ?? '?'} -> ${rssEnd ?? '?'} MiB`)

  c.writeRow(`R5 soak ${VOLUMES} volumes ${MINUTES} min`, { created, expected: `${VOLUMES + renewed}-${VOLUMES * 2 + renewed}` })
})
