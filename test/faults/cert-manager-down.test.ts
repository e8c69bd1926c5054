// cert-manager's controllers down: new requests stay pending (no approval,
// no signature) and publishes keep answering "not ready" with the reason;
// volumes already served keep their files while their renewals wait. Once
// the controllers are back everything issues, with one request per volume
// and Issued/Renewed Events on the pods.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { figure } from './lib/params.js'
import { startCase, shortLived } from './lib/case.js'
import { ServedSampler, snapshot, waitRenewed, type Item } from './lib/sampler.js'
import { pool } from './lib/wait.js'
import { expectedRange } from './lib/figures.js'

const c = await startCase(t, 'cert-manager-down')
const { ctx, node, monitor, faults, api } = c
const DOWN_S = figure(ctx, 'CSI_FAULT_CM_DOWN_SECONDS', 20, 60)
const EXISTING = figure(ctx, 'CSI_FAULT_CM_EXISTING', 4, 10)
const NEW = figure(ctx, 'CSI_FAULT_CM_NEW', 3, 10)
const IDLE_S = figure(ctx, 'CSI_FAULT_IDLE_SECONDS', 8, 60)
const AFTER_S = figure(ctx, 'CSI_FAULT_AFTER_SECONDS', 10, 60)
const BOUND_S = 45

// Due every 2-10 s: every served volume falls due while the controllers are down.
const existing = await c.publishMany(EXISTING, 'old', { extra: shortLived(90, 80) })
const sampler = new ServedSampler(node, () => existing, 2_000)
sampler.start()
t.teardown(() => sampler.stop())
const createdBefore = monitor.created
let fresh: Item[] = []

await t.test(`cert-manager's controllers stopped for ${DOWN_S}s`, async t => {
  const idle0 = await api.mark('idle-start')
  await sleep(IDLE_S * 1000)
  const down0 = await api.mark('down-start')
  c.phase('idle', idle0, down0)
  await faults.stop('cert-manager-controllers')
  const downAt = Date.now()
  // Renewals already in flight when the controllers stopped finish first; take the snapshot after them.
  await sleep(2_000)
  const before = snapshot(sampler, existing)
  fresh = await Promise.all(Array.from({ length: NEW }, (_, i) => c.newItem(`new${i}.cert-manager-down.example.com`)))
  const oks: string[] = []
  const reasons = new Set<string>()
  // The kubelet retries every publish until the controllers are back.
  await pool(fresh, NEW, async it => {
    while (Date.now() < downAt + DOWN_S * 1000 - 6_000) {
      const err = await node.publishOnce(it.v, it.attrs, it.expected, 15_000)
      if (!err) oks.push(it.v.volumeId)
      else reasons.add(`${err.code}: ${err.details.replace(/csi-[0-9a-f]{64}/g, 'csi-…')}`)
      await sleep(1_000)
    }
  })
  const pending = fresh.map(it => ({ live: monitor.live(it.v.volumeId).length, all: monitor.current(it.v.volumeId).length }))
  t.same(oks, [], 'no publish answered OK while nothing can sign')
  t.ok(fresh.every(it => !node.isMounted(it.v.targetPath)), 'nothing mounted for the new volumes')
  t.same(pending.filter(p => p.live !== 1 || p.all !== 1), [], 'each new volume has exactly one request, pending')
  t.ok([...reasons].some(r => /approv|signature|pending|waiting/i.test(r)), `the publish error says what it waits for: ${[...reasons].join(' | ')}`)
  await sleep(Math.max(0, downAt + DOWN_S * 1000 - Date.now()))
  const back = await api.mark('down-end')
  c.phase('outage', down0, back)
  const renewedDuring = existing.filter(it => sampler.latest(it.v.volumeId)?.serial !== before.get(it.v.volumeId)?.serial)
  t.same(renewedDuring.map(it => it.v.volumeId), [], 'no volume got a new certificate while nothing could sign')

  const restarted = Date.now()
  await faults.start('cert-manager-controllers')
  const results = await Promise.all(fresh.map(it => node.publishUntilOk(it.v, it.attrs, it.expected, { deadlineMs: BOUND_S * 1000 }).catch((e: Error) => e)))
  const failed = results.filter(r => r instanceof Error)
  t.same(failed.map(e => e.message), [], `every new volume ready within ${BOUND_S}s of the controllers' return`)
  const renewed = await waitRenewed(sampler, existing, before, downAt, restarted, BOUND_S * 1000)
  t.same(renewed.late, [], `every served volume renewed within ${BOUND_S}s of the return (slowest ${Math.round(renewed.slowestMs / 1000)}s)`)
  const after0 = await api.mark('after-start')
  c.phase('recovery', back, after0)
  c.phase('during', down0, after0)
  await sleep(AFTER_S * 1000)
  c.phase('after', after0, await api.mark('after-end'))

  t.same(fresh.map(it => monitor.createdFor(it.v.volumeId)).filter(n => n !== 1), [], 'one request per new volume: the pending one was kept, not replaced')
  const events = await Promise.all(fresh.map(it => node.podEventReasons(it.v)))
  t.ok(events.every(e => e.some(x => x.reason === 'Issued')), 'an Issued Event on every new pod')
  const renewedEvents = await Promise.all(existing.map(it => node.podEventReasons(it.v)))
  t.ok(renewedEvents.every(e => e.some(x => x.reason === 'Renewed')), 'a Renewed Event on every renewed pod')
  t.same(sampler.problems, [], 'the served volumes kept matching, valid files throughout')
  t.equal(node.expiredServed.size, 0, 'no expired certificate served')
  t.equal(monitor.maxLive(), 1, 'never more than one live request per volume', { violations: monitor.violations.slice(0, 5) })
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
  c.notes.push(`publish errors while down: ${[...reasons].slice(0, 3).join(' | ')}`)
})

c.writeRow(`cert-manager down ${DOWN_S}s`, { created: monitor.created - createdBefore, expected: expectedRange(NEW, sampler.renewals(), EXISTING) })
