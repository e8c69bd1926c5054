// etcd killed and started again on the same data: the apiserver answers
// errors (or hangs) until it reconnects. Served volumes keep their files,
// an unpublish answers OK during the gap, a publish made during the gap and
// every renewal due in it complete once etcd is back, one request each.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { figure } from './lib/params.js'
import { startCase, shortLived } from './lib/case.js'
import { ServedSampler, snapshot, waitRenewed } from './lib/sampler.js'
import { until } from './lib/wait.js'
import { expectedRange } from './lib/figures.js'

const c = await startCase(t, 'etcd-restart')
const { ctx, node, monitor, faults, api } = c
const DOWN_S = figure(ctx, 'CSI_FAULT_ETCD_DOWN_SECONDS', 8, 30)
const EXISTING = figure(ctx, 'CSI_FAULT_ETCD_VOLUMES', 5, 20)
const IDLE_S = figure(ctx, 'CSI_FAULT_IDLE_SECONDS', 8, 60)
const AFTER_S = figure(ctx, 'CSI_FAULT_AFTER_SECONDS', 10, 60)
const BOUND_S = 45

const existing = await c.publishMany(EXISTING, 'v', { extra: shortLived(90, 80) })
const victim = await c.newItem('victim.etcd-restart.example.com')
await node.publishUntilOk(victim.v, victim.attrs, victim.expected)
const sampler = new ServedSampler(node, () => existing, 2_000)
sampler.start()
t.teardown(() => sampler.stop())
const createdBefore = monitor.created

await t.test(`etcd killed, down ${DOWN_S}s, started again`, async t => {
  const idle0 = await api.mark('idle-start')
  await sleep(IDLE_S * 1000)
  const down0 = await api.mark('down-start')
  c.phase('idle', idle0, down0)
  // Its Pod is made now: the test's own API calls would fail while etcd is down.
  const late = await c.newItem('late.etcd-restart.example.com')
  const before = snapshot(sampler, existing)
  const downAt = Date.now()
  await faults.kill('etcd')
  await sleep(2_000)

  const t0 = Date.now()
  const unpublishErr = await node.unpublishOnce(victim.v, 30_000)
  const unpublishMs = Date.now() - t0
  const latePublish = node.publishOnce(late.v, late.attrs, late.expected, 8_000) // answers "not ready" or hangs: either is fine
  await sleep(Math.max(0, downAt + DOWN_S * 1000 - Date.now()))
  const aliveThroughout = node.running && node.unexpectedExits.length === 0
  await faults.start('etcd')
  const etcdBack = Date.now()
  await until('the apiserver ready again', async () => ((await faults.apiserverReady()) ? true : undefined), 60_000)
  const back = await api.mark('down-end')
  c.phase('outage', down0, back)
  await latePublish

  t.ok(aliveThroughout, 'the driver never exited while etcd was down')
  t.notOk(unpublishErr, `unpublish while etcd was down answered OK (${unpublishMs} ms)`, { error: unpublishErr })
  t.ok(unpublishMs <= 5_000, `... within 5s (${unpublishMs} ms)`)
  t.notOk(node.isMounted(victim.v.targetPath), 'the unpublished volume is unmounted')

  const ready = await node.publishUntilOk(late.v, late.attrs, late.expected, { deadlineMs: BOUND_S * 1000 }).catch((e: Error) => e)
  t.notOk(ready instanceof Error, `the volume published during the gap is ready within ${BOUND_S}s of etcd's return`, { error: ready instanceof Error ? ready.message : undefined })
  // Events are sent off the publish path: the publish can answer before the Event lands.
  const issued = await until('an Issued Event on the late pod', async () => ((await node.podEventReasons(late.v)).some(e => e.reason === 'Issued') ? true : undefined), 15_000).catch(() => undefined)
  t.ok(issued, 'an Issued Event on its pod (within 15 s of the publish answering)')
  const renewed = await waitRenewed(sampler, existing, before, downAt, etcdBack, BOUND_S * 1000)
  t.same(renewed.late, [], `every volume renewed within ${BOUND_S}s of etcd's return (slowest ${Math.round(renewed.slowestMs / 1000)}s)`)
  const gone = await until('the victim\'s requests deleted', () => (monitor.current(victim.v.volumeId).length === 0 ? true : undefined), 30_000).catch(() => undefined)
  t.ok(gone, 'the unpublished volume\'s CertificateRequest deleted after the return', { left: monitor.current(victim.v.volumeId).map(r => r.name) })
  const after0 = await api.mark('after-start')
  c.phase('recovery', back, after0)
  c.phase('during', down0, after0)
  await sleep(AFTER_S * 1000)
  const after = c.phase('after', after0, await api.mark('after-end'))
  t.ok(after.perMinute.LIST <= 10 && after.perMinute.WATCH <= 10, `LIST ${after.perMinute.LIST}/min, WATCH ${after.perMinute.WATCH}/min after the return (at most 10 each)`)

  t.same(sampler.problems, [], 'the served volumes kept matching, valid files throughout')
  t.equal(node.expiredServed.size, 0, 'no expired certificate served')
  t.equal(monitor.maxLive(), 1, 'never more than one live request per volume', { violations: monitor.violations.slice(0, 5) })
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
  c.notes.push(`unpublish during the gap: ${unpublishErr ? `${unpublishErr.code} ${unpublishErr.details}` : 'OK'} in ${unpublishMs} ms; slowest renewal ${Math.round(renewed.slowestMs / 1000)}s after etcd's return; observer reconnects ${monitor.reconnects}`)
})

c.writeRow(`etcd killed ${DOWN_S}s`, { created: monitor.created - createdBefore, expected: expectedRange(1, sampler.renewals(), EXISTING) })
