// The data root's tmpfs full (ENOSPC). The driver mounts its own tmpfs on the
// data root, sized by --data-root-size (4Mi here), and it is filled to the
// last byte. New keys,
// records and files cannot be written: a new volume must not be answered
// OK, the served ones keep their files and answer republishes, an
// unpublish still works, the driver neither crashes nor loops, and a
// Warning Event names the problem. Once space is freed, everything
// converges: the new volume is issued and the due renewals complete.
import t from 'tap'
import { closeSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { figure } from './lib/params.js'
import { startCase, shortLived } from './lib/case.js'
import { ServedSampler, snapshot, waitRenewed } from './lib/sampler.js'
import { until } from './lib/wait.js'
import { expectedRange } from './lib/figures.js'

const TMPFS_SIZE = '4Mi'
const c = await startCase(t, 'tmpfs-full', { driverArgs: ['--data-root-size', TMPFS_SIZE] })
const { ctx, node, monitor, faults, api } = c
const FULL_S = figure(ctx, 'CSI_FAULT_ENOSPC_SECONDS', 15, 60)
const EXISTING = figure(ctx, 'CSI_FAULT_ENOSPC_VOLUMES', 3, 10)
const IDLE_S = figure(ctx, 'CSI_FAULT_IDLE_SECONDS', 8, 60)
const AFTER_S = figure(ctx, 'CSI_FAULT_AFTER_SECONDS', 10, 60)
const BOUND_S = 60
const filler = join(node.dataRoot, 'filler')

/** Writes until the filesystem says ENOSPC; returns the bytes written. */
function fill(path: string): number {
  const fd = openSync(path, 'a')
  let written = 0
  try {
    for (const size of [1 << 16, 512, 1]) {
      const chunk = Buffer.alloc(size)
      for (;;) {
        try {
          written += writeSync(fd, chunk)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw err
        }
      }
    }
  } finally {
    closeSync(fd)
  }
  return written
}

const existing = await c.publishMany(EXISTING, 'v', { extra: shortLived(90, 80) })
const victim = await c.newItem('victim.tmpfs-full.example.com')
await node.publishUntilOk(victim.v, victim.attrs, victim.expected)
const sampler = new ServedSampler(node, () => existing, 2_000)
sampler.start()
t.teardown(() => sampler.stop())
const createdBefore = monitor.created

await t.test(`the data root's tmpfs (${TMPFS_SIZE}) full for ${FULL_S}s`, async t => {
  const idle0 = await api.mark('idle-start')
  await sleep(IDLE_S * 1000)
  const full0 = await api.mark('full-start')
  c.phase('idle', idle0, full0)
  const late = await c.newItem('late.tmpfs-full.example.com')
  const before = snapshot(sampler, existing)
  const fullAt = Date.now()
  const bytes = fill(filler)
  faults.note('data-root', `filled with ${bytes} bytes (ENOSPC)`)

  const reasons = new Set<string>()
  let okWhileFull = false
  const pid = node.pid
  await sleep(2_000)
  const t0 = Date.now()
  const unpublishErr = await node.unpublishOnce(victim.v, 15_000)
  const unpublishMs = Date.now() - t0
  // The unpublish freed the victim's files: fill that room too, so the data root stays full.
  fill(filler)
  while (Date.now() < fullAt + FULL_S * 1000) {
    // Whatever the driver freed meanwhile (the unpublished volume, old versions) is taken again.
    fill(filler)
    const err = await node.publishOnce(late.v, late.attrs, late.expected, 15_000)
    if (!err) okWhileFull = true
    else reasons.add(`${err.code}: ${err.details.replace(/csi-[0-9a-f]{64}/g, 'csi-…').slice(0, 200)}`)
    await sleep(2_000)
  }
  fill(filler)
  const republish = await Promise.all(existing.map(it => node.publishOnce(it.v, it.attrs, it.expected, 10_000)))
  const samePid = node.pid === pid && node.running
  const events = await node.podEventReasons(late.v)
  const full1 = await api.mark('full-end')
  c.phase('outage', full0, full1)
  rmSync(filler)
  const freedAt = Date.now()

  t.ok(samePid && node.unexpectedExits.length === 0, 'the driver kept running (no crash, no restart) while the data root was full', { exits: node.unexpectedExits })
  t.notOk(okWhileFull, 'a new volume was not answered OK while nothing could be written')
  t.notOk(node.isMounted(late.v.targetPath), '... and nothing was mounted for it')
  t.same(republish.filter(e => e !== undefined), [], 'republish of the served volumes answered OK while full')
  t.notOk(unpublishErr, `unpublish while full answered OK (${unpublishMs} ms)`, { error: unpublishErr })
  t.notOk(node.isMounted(victim.v.targetPath), 'the unpublished volume is unmounted')
  const warning = events.filter(e => e.type === 'Warning' && /ENOSPC|no space/i.test(e.note))
  t.ok(warning.length > 0, 'a Warning Event on the pod names the full data root', { events: events.map(e => `${e.type} ${e.reason}: ${e.note.slice(0, 120)}`), publishErrors: [...reasons] })

  const ready = await node.publishUntilOk(late.v, late.attrs, late.expected, { deadlineMs: BOUND_S * 1000 }).catch((e: Error) => e)
  t.notOk(ready instanceof Error, `the new volume is ready within ${BOUND_S}s of space being freed`, { error: ready instanceof Error ? ready.message : undefined })
  const renewed = await waitRenewed(sampler, existing, before, fullAt, freedAt, BOUND_S * 1000)
  t.same(renewed.late, [], `every served volume renewed within ${BOUND_S}s of space being freed (slowest ${Math.round(renewed.slowestMs / 1000)}s)`)
  // The kubelet retries a failed unpublish; so does this test, once there is room again.
  if (unpublishErr) await node.unpublishUntilOk(victim.v, BOUND_S * 1000).catch(() => undefined)
  const victimGone = await until('the unpublished volume forgotten', () => (monitor.current(victim.v.volumeId).length === 0 && !readdirSync(join(node.dataRoot, 'volumes')).some(d => d.includes(victim.v.volumeId)) ? true : undefined), 30_000).catch(() => undefined)
  t.ok(victimGone, 'the unpublished volume\'s request and directory are gone once space is back', { requests: monitor.current(victim.v.volumeId).map(r => r.name) })
  const after0 = await api.mark('after-start')
  c.phase('recovery', full1, after0)
  c.phase('during', full0, after0)
  await sleep(AFTER_S * 1000)
  c.phase('after', after0, await api.mark('after-end'))

  t.same(sampler.problems, [], 'the served volumes kept matching, valid files throughout')
  t.equal(node.expiredServed.size, 0, 'no expired certificate served')
  t.equal(monitor.maxLive(), 1, 'never more than one live request per volume', { violations: monitor.violations.slice(0, 5) })
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
  c.notes.push(`publish errors while full: ${[...reasons].slice(0, 2).join(' | ')}; unpublish while full: ${unpublishErr ? `${unpublishErr.code} ${unpublishErr.details.slice(0, 120)}` : 'OK'} in ${unpublishMs} ms`)
})

c.writeRow(`data root full ${FULL_S}s`, { created: monitor.created - createdBefore, expected: expectedRange(1, sampler.renewals(), EXISTING) })
