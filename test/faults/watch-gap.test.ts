// Requests deleted by someone else while the driver cannot watch. Three
// gaps: the driver killed (deleted through the API meanwhile); the
// apiserver killed (deleted in etcd behind its back: no watch anywhere ever
// reports the delete, only a fresh list shows it); the apiserver stopped
// with SIGSTOP (deleted in etcd; the delete events arrive late). In each,
// requests still pending (cert-manager's controllers are stopped) must be
// made again and issued, and volumes already served keep their files.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { figure } from './lib/params.js'
import { startCase } from './lib/case.js'
import type { Item } from './lib/sampler.js'
import { checkServed } from './lib/served.js'

const c = await startCase(t, 'watch-gap')
const { ctx, node, monitor, faults, api } = c
const PENDING = figure(ctx, 'CSI_FAULT_GAP_PENDING', 3, 10)
const SERVED = figure(ctx, 'CSI_FAULT_GAP_SERVED', 2, 10)
const GAP_S = figure(ctx, 'CSI_FAULT_GAP_SECONDS', 3, 20)
const IDLE_S = figure(ctx, 'CSI_FAULT_IDLE_SECONDS', 8, 60)
const BOUND_S = 60
const createdBefore = monitor.created
const all: Item[] = []
const results: { variant: string; convergedMs?: number; recreated: number; pending: number }[] = []

type Variant = 'driver killed' | 'apiserver killed, deleted in etcd' | 'apiserver SIGSTOP, deleted in etcd'

for (const variant of ['driver killed', 'apiserver killed, deleted in etcd', 'apiserver SIGSTOP, deleted in etcd'] as Variant[]) {
  await t.test(`watch gap: ${variant}`, async t => {
    const tag = variant.split(' ')[0]! + (variant.includes('SIGSTOP') ? '-stop' : variant.includes('etcd') ? '-kill' : '')
    const served = await c.publishMany(SERVED, `${tag}-served`)
    all.push(...served)
    const servedSerials = await Promise.all(served.map(async it => (await checkServed(it.v.targetPath, it.expected)).serial))

    await faults.stop('cert-manager-controllers')
    const pending = await Promise.all(Array.from({ length: PENDING }, (_, i) => c.newItem(`${tag}-pending${i}.watch-gap.example.com`)))
    all.push(...pending)
    await Promise.all(pending.map(it => node.publishOnce(it.v, it.attrs, it.expected, 15_000)))
    await monitor.waitUntil('a pending request for every new volume', () => pending.every(it => monitor.live(it.v.volumeId).length === 1), 30_000)
    const victims = [...served, ...pending].flatMap(it => monitor.current(it.v.volumeId))

    const gap0 = await api.mark('gap-start')
    if (variant === 'driver killed') {
      await node.kill()
      faults.note('driver', 'SIGKILL for the watch gap')
      await c.deleteRequests(victims)
      await sleep(GAP_S * 1000)
      await node.startRetrying()
    } else if (variant === 'apiserver killed, deleted in etcd') {
      await faults.kill('kube-apiserver')
      await faults.deleteInEtcd(victims.map(r => r.key))
      await sleep(GAP_S * 1000)
      await faults.start('kube-apiserver')
    } else {
      faults.pause('kube-apiserver')
      await faults.deleteInEtcd(victims.map(r => r.key))
      await sleep(GAP_S * 1000)
      faults.resume('kube-apiserver')
    }
    await monitor.waitUntil('the deletes in etcd', () => victims.every(r => !monitor.current().some(x => x.key === r.key && x.uid === r.uid)), 30_000)
    const back = await api.mark('gap-end')
    c.phase(`outage (${tag})`, gap0, back)
    const restarted = Date.now()
    await faults.start('cert-manager-controllers')

    const ready = await Promise.all(pending.map(it => node.publishUntilOk(it.v, it.attrs, it.expected, { deadlineMs: BOUND_S * 1000 }).then(r => r.ms, (e: Error) => e)))
    const failed = ready.filter(r => r instanceof Error)
    const convergedMs = failed.length === 0 ? Date.now() - restarted : undefined
    t.same(failed.map(e => e.message.slice(0, 300)), [], `every pending volume re-requested and ready within ${BOUND_S}s${convergedMs !== undefined ? ` (${Math.round(convergedMs / 1000)}s)` : ''}`, {
      driverSays: pending.map(it => monitor.current(it.v.volumeId).map(r => `${r.name} ${r.terminal ? 'done' : 'live'}`)),
    })
    const recreated = pending.filter(it => monitor.createdFor(it.v.volumeId) >= 2).length
    t.equal(recreated, pending.length, `a new request for each deleted pending one (${recreated}/${pending.length})`)
    const errors: string[] = []
    for (const [i, it] of served.entries()) {
      const err = await node.publishOnce(it.v, it.attrs, it.expected, 10_000)
      if (err) errors.push(`${err.code} ${err.details}`)
      const s = await checkServed(it.v.targetPath, it.expected)
      if (s.serial !== servedSerials[i]) errors.push(`${it.v.volumeId.slice(0, 16)}: serial changed`)
    }
    t.same(errors, [], 'the volumes already served kept their certificate and republish answers OK')
    const after0 = await api.mark('after-start')
    c.phase(`recovery (${tag})`, back, after0)
    t.equal(monitor.maxLive(), 1, 'never more than one live request per volume', { violations: monitor.violations.slice(0, 5) })
    t.same(node.unexpectedExits, [], 'the driver never exited on its own')
    t.same(node.badOks, [], 'no publish answered OK without matching files')
    results.push({ variant, ...(convergedMs !== undefined ? { convergedMs } : {}), recreated, pending: pending.length })
    if (failed.length > 0) {
      // Let the next variant start clean: the stuck volumes are left behind.
      for (const it of pending) await node.unpublishOnce(it.v, 10_000)
    }
  })
}

await t.test('idle after the gaps', async t => {
  const idle0 = await api.mark('idle-start')
  await sleep(IDLE_S * 1000)
  const idle = c.phase('idle', idle0, await api.mark('idle-end'))
  t.ok(idle.perMinute.LIST <= 10 && idle.perMinute.WATCH <= 10, `LIST ${idle.perMinute.LIST}/min, WATCH ${idle.perMinute.WATCH}/min when idle (at most 10 each)`)
})
c.writeRow('watch gap (3 kinds)', { created: monitor.created - createdBefore, expected: String(all.length + results.reduce((n, r) => n + r.pending, 0)) }, results.map(r => `${r.variant}: ${r.convergedMs !== undefined ? `converged ${Math.round(r.convergedMs / 1000)}s after the gap` : 'did NOT converge'}, ${r.recreated}/${r.pending} re-requested`))
