// R1, kill storm: many issuances of mixed key types, several in flight, the
// driver SIGKILLed at random moments and restarted like a DaemonSet would
// (same node id, data root and socket). Every publish answered OK must have
// matching files at that very moment; no volume ever has two live requests;
// every volume ends with exactly the one request it needed; after unpublish
// (with kills too) no request, mount, record or key is left.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Volume } from '../helpers/node-harness.js'
import { caseContext, figure } from './lib/params.js'
import { privateControlPlane } from './lib/fixture.js'
import { FaultNode } from './lib/fault-node.js'
import { RequestMonitor } from './lib/request-monitor.js'
import { volumeAttributes, type Expected, type KeyKind } from './lib/served.js'
import { pool, until } from './lib/wait.js'
import { writeFigures } from './lib/figures.js'
import type { WindowRate } from './lib/api-metrics.js'

const log = (m: string): void => t.comment(m)
const ctx = caseContext('kill-storm', log)
const N = figure(ctx, 'CSI_FAULT_R1_ISSUANCES', 30, 200)
const IN_FLIGHT = figure(ctx, 'CSI_FAULT_R1_IN_FLIGHT', 6, 20)
const KILLS = figure(ctx, 'CSI_FAULT_R1_KILLS', 5, 24)
const UNPUBLISH_KILLS = figure(ctx, 'CSI_FAULT_R1_UNPUBLISH_KILLS', 1, 4)
const IDLE_S = figure(ctx, 'CSI_FAULT_IDLE_SECONDS', 8, 60)
const started = Date.now()

const { cp, faults, api } = await privateControlPlane(t, ctx)
const node = new FaultNode(cp, t, ctx.outDir, ['--publish-timeout', '10s'], log)
const monitor = new RequestMonitor(faults.etcd, node.nodeId, log)
await monitor.start()
t.teardown(() => monitor.stop())
await node.start()

const KINDS: KeyKind[] = ['ECDSA-256', 'Ed25519', 'RSA-2048']
// Every choice drawn up front: workers racing each other must not change the draws.
const keyRng = ctx.rng.fork('keys')
const plan = Array.from({ length: N }, (_, i) => ({ i, key: keyRng.pick(KINDS), dnsName: `v${i}.kill-storm.example.com` }))
const killRng = ctx.rng.fork('kills')
// Kill after the k-th OK (spread over the run), then a random delay so the
// kill lands at a random stage of whatever is in flight.
// Points up to N - IN_FLIGHT - 1: at least one item waits for each kill (see below).
const killPoints = Array.from({ length: KILLS }, () => killRng.int(0, Math.max(0, N - IN_FLIGHT - 1))).sort((a, b) => a - b)
const killDelays = Array.from({ length: KILLS + UNPUBLISH_KILLS }, () => ({ before: killRng.int(0, 1500), down: killRng.int(0, 2000) }))

interface Item { v: Volume; attrs: Record<string, string>; expected: Expected }
const items: Item[] = []
const api0 = await api.mark('start')
const windows: WindowRate[] = []
const notes: string[] = []
let killsDone = 0
let stormOver = false

async function killStorm(done: () => boolean, points: number[], progress: () => number): Promise<void> {
  for (const point of points) {
    while (!done() && progress() < point) await sleep(50)
    if (done()) return
    const d = killDelays[killsDone]!
    await sleep(d.before)
    if (done()) return
    faults.note('driver', `SIGKILL #${killsDone + 1} (after ${progress()} done), down ${d.down}ms`)
    await node.killAndRestart(d.down)
    killsDone++
  }
}

await t.test(`${N} issuances, ${IN_FLIGHT} in flight, ${KILLS} SIGKILLs of the driver`, async t => {
  let oks = 0
  let finished = false
  const storm = killStorm(() => finished, killPoints, () => oks).finally(() => (stormOver = true))
  await pool(plan, IN_FLIGHT, async p => {
    // Item i waits for the kills planned before OK number i - IN_FLIGHT: the
    // storm cannot run out of work before its last kill.
    const owed = killPoints.filter(k => k <= p.i - IN_FLIGHT).length
    while (killsDone < owed && !stormOver) await sleep(50)
    const v = await node.newVolume()
    const item = { v, attrs: volumeAttributes(p.dnsName, p.key), expected: { dnsName: p.dnsName, key: p.key } }
    items[p.i] = item
    await node.publishUntilOk(v, item.attrs, item.expected, { deadlineMs: 300_000 })
    oks++
  }).finally(() => (finished = true))
  await storm
  windows.push(api.rate('during', api0, await api.mark('storm-end')))
  t.equal(oks, N, 'every publish eventually answered OK')
  t.equal(killsDone, KILLS, `the driver was killed ${killsDone} times during issuance`)
  t.same(node.badOks, [], 'no publish answered OK while its target had missing or mismatched files')
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
})

await t.test('idle, then republish everything', async t => {
  const idle0 = await api.mark('idle-start')
  await sleep(IDLE_S * 1000)
  windows.push(api.rate('idle', idle0, await api.mark('idle-end')))
  const errors: string[] = []
  await pool(items, IN_FLIGHT, async it => {
    const err = await node.publishOnce(it.v, it.attrs, it.expected, 10_000)
    if (err) errors.push(`${it.v.volumeId.slice(0, 16)}: ${err.code} ${err.details}`)
  })
  t.same(errors, [], 'every republish answered OK at once')
  t.same(node.badOks, [], 'and each with a key, certificate and CA that match (DNS SAN, key type, signature, not expired)')
  const perVolume = items.map(it => monitor.createdFor(it.v.volumeId))
  t.equal(monitor.created, N, `one CertificateRequest per volume however many kills (made ${monitor.created} for ${N})`, { perVolume: perVolume.filter(n => n !== 1) })
  t.equal(monitor.maxLive(), 1, 'never more than one live CertificateRequest for a volume', { violations: monitor.violations.slice(0, 5) })
  t.equal(items.filter(it => monitor.live(it.v.volumeId).length > 0).length, 0, 'none still live: all issued')
})

await t.test(`unpublish everything, ${UNPUBLISH_KILLS} SIGKILLs meanwhile`, async t => {
  let done = 0
  let finished = false
  const points = Array.from({ length: UNPUBLISH_KILLS }, () => killRng.int(0, Math.max(0, N - IN_FLIGHT - 1))).sort((a, b) => a - b)
  const before = killsDone
  let over = false
  const storm = killStorm(() => finished, points, () => done).finally(() => (over = true))
  const after0 = await api.mark('unpublish-start')
  await pool(items, IN_FLIGHT, async (it, i) => {
    const owed = before + points.filter(k => k <= i - IN_FLIGHT).length
    while (killsDone < owed && !over) await sleep(50)
    await node.unpublishUntilOk(it.v)
    done++
  }).finally(() => (finished = true))
  await storm
  t.equal(killsDone - before, UNPUBLISH_KILLS, `the driver was killed ${killsDone - before} times during unpublish`)
  const { ms } = await until('every request deleted', () => (monitor.current().length === 0 ? true : undefined), 60_000).catch(() => ({ ms: -1 }))
  windows.push(api.rate('after', after0, await api.mark('unpublish-end')))
  t.equal(monitor.current().length, 0, `no CertificateRequest left${ms >= 0 ? ` (last gone ${ms} ms after the last unpublish)` : ''}`, { left: monitor.current().map(r => r.name).slice(0, 10) })
  t.same(node.targetMounts(), [], 'no mount left at any target')
  const left = node.dataRootEntries().filter(p => p.startsWith('volumes/'))
  t.same(left, [], 'no record or key left under the data root', { all: node.dataRootEntries() })
  // A write cut short by a kill leaves its temporary file: someone must sweep it.
  const temps = node.dataRootEntries().filter(p => /\.tmp-|\.tmp$/.test(p))
  t.same(temps, [], 'no temporary file left behind by a write a kill interrupted')
  t.same(node.unexpectedExits, [], 'the driver never exited on its own')
})

const extra = node.dataRootEntries().filter(p => !p.startsWith('volumes'))
if (extra.length > 0) notes.push(`left at the data root's top level (not volume data): ${extra.join(', ')}`)
writeFigures(ctx, {
  row: 'R1 kill storm',
  seconds: Math.round((Date.now() - started) / 1000),
  faults: faults.injected.length,
  volumes: node.checked.size,
  requestsCreated: monitor.created,
  requestsExpected: String(N),
  maxLivePerVolume: monitor.maxLive(),
  expiredServed: node.expiredServed.size,
  badOks: node.badOks.length,
  driverCrashes: node.unexpectedExits.length,
  api: windows,
  notes: [`${killsDone} driver kills in all`, ...notes],
})
