// cert-manager's CertificateRequest CRD deleted (every request goes with it)
// and applied again later. The driver must not crash or hammer the
// apiserver while the resource does not exist, must keep serving what it
// has, and once the CRD is back must make the requests it needs again:
// renewals due meanwhile and a volume published meanwhile complete.
import t from 'tap'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { kubectl } from '../cluster/control-plane.js'
import { ROOT } from '../helpers/csi-client.js'
import { figure } from './lib/params.js'
import { startCase, shortLived } from './lib/case.js'
import { ServedSampler, snapshot, waitRenewed } from './lib/sampler.js'
import { expectedRange } from './lib/figures.js'

const c = await startCase(t, 'crds-reapplied')
const { ctx, node, monitor, faults, api, cp } = c
const ABSENT_S = figure(ctx, 'CSI_FAULT_CRD_ABSENT_SECONDS', 15, 60)
const EXISTING = figure(ctx, 'CSI_FAULT_CRD_VOLUMES', 4, 10)
const IDLE_S = figure(ctx, 'CSI_FAULT_IDLE_SECONDS', 8, 60)
const AFTER_S = figure(ctx, 'CSI_FAULT_AFTER_SECONDS', 10, 60)
const BOUND_S = 60
const CRD = 'certificaterequests.cert-manager.io'

const existing = await c.publishMany(EXISTING, 'v', { extra: shortLived(120, 100) })
const sampler = new ServedSampler(node, () => existing, 2_000)
sampler.start()
t.teardown(() => sampler.stop())
const createdBefore = monitor.created

await t.test(`the CertificateRequest CRD deleted for ${ABSENT_S}s, then applied again`, async t => {
  const idle0 = await api.mark('idle-start')
  await sleep(IDLE_S * 1000)
  const gone0 = await api.mark('absent-start')
  c.phase('idle', idle0, gone0)
  const late = await c.newItem('late.crds-reapplied.example.com')
  const before = snapshot(sampler, existing)
  const goneAt = Date.now()
  await kubectl(cp, ['delete', 'crd', CRD, '--wait=true', '--timeout=60s'])
  faults.note('api', `CRD ${CRD} deleted`)
  await monitor.waitUntil('every request gone with the CRD', () => monitor.current().length === 0, 60_000)

  const reasons = new Set<string>()
  let okWhileAbsent = false
  while (Date.now() < goneAt + ABSENT_S * 1000) {
    const err = await node.publishOnce(late.v, late.attrs, late.expected, 15_000)
    if (!err) okWhileAbsent = true
    else reasons.add(`${err.code}: ${err.details.replace(/csi-[0-9a-f]{64}/g, 'csi-…')}`)
    await sleep(2_000)
  }
  const republish = await Promise.all(existing.map(it => node.publishOnce(it.v, it.attrs, it.expected, 10_000)))
  const aliveThroughout = node.running && node.unexpectedExits.length === 0
  const absentEnd = await api.mark('absent-end')
  c.phase('outage', gone0, absentEnd)

  await kubectl(cp, ['apply', '--server-side', '-f', join(ROOT, 'crds', 'cert-manager.io_certificaterequests.yaml')])
  await kubectl(cp, ['wait', '--for=condition=Established', `crd/${CRD}`, '--timeout=60s'])
  const backAt = Date.now()

  t.ok(aliveThroughout, 'the driver never exited while the CRD was gone')
  t.notOk(okWhileAbsent, 'a new volume was not answered OK while requests could not be made')
  // What the kubelet puts in the pod's events: a reason, not a client library's dump of the HTTP exchange.
  const dumps = [...reasons].filter(r => /Headers:|Unknown API Status Code/.test(r))
  t.same(dumps, [], 'the publish error while the CRD was gone reads as a reason', { reasons: [...reasons].map(r => r.slice(0, 200)) })
  t.same(republish.filter(e => e !== undefined), [], 'republish of the served volumes answered OK while the CRD was gone')
  const ready = await node.publishUntilOk(late.v, late.attrs, late.expected, { deadlineMs: BOUND_S * 1000 }).catch((e: Error) => e)
  t.notOk(ready instanceof Error, `the volume published meanwhile is ready within ${BOUND_S}s of the CRD's return`, { error: ready instanceof Error ? ready.message : undefined })
  const renewed = await waitRenewed(sampler, existing, before, goneAt, backAt, BOUND_S * 1000)
  t.same(renewed.late, [], `every served volume renewed within ${BOUND_S}s of the CRD's return (slowest ${Math.round(renewed.slowestMs / 1000)}s)`)
  const after0 = await api.mark('after-start')
  c.phase('recovery', absentEnd, after0)
  c.phase('during', gone0, after0)
  await sleep(AFTER_S * 1000)
  const after = c.phase('after', after0, await api.mark('after-end'))
  const outage = c.windows.find(w => w.phase === 'outage')!
  t.ok(outage.perMinute.LIST + outage.perMinute.WATCH + outage.perMinute.CREATE <= 60, `while the CRD was gone: LIST ${outage.perMinute.LIST}, WATCH ${outage.perMinute.WATCH}, CREATE ${outage.perMinute.CREATE} per minute (at most 60 together)`)
  t.ok(after.perMinute.LIST <= 10 && after.perMinute.WATCH <= 10, `after: LIST ${after.perMinute.LIST}/min, WATCH ${after.perMinute.WATCH}/min (at most 10 each)`)
  const events = await node.podEventReasons(late.v)
  t.ok(events.some(e => e.reason === 'Issued'), 'an Issued Event on the pod published meanwhile')

  t.same(sampler.problems, [], 'the served volumes kept matching, valid files throughout')
  t.equal(node.expiredServed.size, 0, 'no expired certificate served')
  t.equal(monitor.maxLive(), 1, 'never more than one live request per volume', { violations: monitor.violations.slice(0, 5) })
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
  c.notes.push(`publish errors while the CRD was gone: ${[...reasons].slice(0, 2).map(r => r.split('\n')[0]!.slice(0, 120)).join(' | ')}; warning events on that pod: ${events.filter(e => e.type === 'Warning').map(e => e.reason).join(', ') || 'none'}`)
})

c.writeRow(`CRD deleted ${ABSENT_S}s`, { created: monitor.created - createdBefore, expected: expectedRange(1, sampler.renewals(), EXISTING) })
