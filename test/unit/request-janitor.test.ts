// The janitor deletes a torn-down volume's requests after the unpublish has
// answered: from a tombstone that survives restarts, with backoff while the
// API is away, at once when it is back.
import t, { type Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RequestJanitor } from '../../src/reconcile/request-janitor.js'
import { TombstoneStore, type Tombstone } from '../../src/state/tombstones.js'
import type { CertificateRequest } from '../../src/kube/certificate-request.js'
import { FakeClock } from '../helpers/fake-clock.js'

const notFound = (): Error => Object.assign(new Error('not found'), { code: 404 })

class FakeApi {
  existing = new Set<string>()
  down = false
  listMissing = false
  deletes: string[] = []
  async delete(namespace: string, name: string): Promise<void> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    this.deletes.push(`${namespace}/${name}`)
    this.existing.delete(`${namespace}/${name}`) // a 404 is success for the client too
  }
  async listForVolume(namespace: string, volumeId: string): Promise<CertificateRequest[]> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    if (this.listMissing) throw notFound()
    return [...this.existing].filter(k => k.startsWith(`${namespace}/${volumeId}-`)).map(k => ({ metadata: { name: k.split('/')[1]!, namespace } }) as unknown as CertificateRequest)
  }
}

async function setup(t: Test) {
  const dataRoot = await mkdtemp(join(tmpdir(), 'janitor-'))
  t.teardown(() => rm(dataRoot, { recursive: true, force: true }))
  const clock = new FakeClock(Date.UTC(2026, 0, 1))
  const api = new FakeApi()
  const warnings: string[] = []
  const logger = { info: () => {}, debug: () => {}, warn: (_o: object, m: string) => void warnings.push(m) }
  const tombstones = new TombstoneStore(dataRoot, logger)
  const make = (): RequestJanitor => {
    const j = new RequestJanitor({ tombstones, requests: api, logger: logger as never, clock, random: () => 0.5 })
    clock.settle = () => j.settled()
    return j
  }
  return { dataRoot, clock, api, tombstones, make, warnings }
}

const tomb = (clock: FakeClock, over: Partial<Tombstone> = {}): Tombstone => ({
  volumeId: 'vol', requests: [{ namespace: 'ns', name: 'vol-1' }], namespaces: ['ns'], createdAt: new Date(clock.now()).toISOString(), ...over,
})

t.test('deletes the known requests and the ones only the API lists, then drops the tombstone', async t => {
  const { clock, api, tombstones, make } = await setup(t)
  api.existing = new Set(['ns/vol-1', 'ns/vol-2', 'other/vol-3'])
  const j = make()
  await j.bury(tomb(clock))
  t.equal((await tombstones.list()).length, 1, 'durable before anything is deleted')
  await clock.advance(0)
  t.same(api.deletes.sort(), ['ns/vol-1', 'ns/vol-2'])
  t.same(await tombstones.list(), [])
  t.equal(j.pending, 0)
})

t.test('API away: backoff grows, the tombstone stays, retrySoon goes at once when it is back', async t => {
  const { clock, api, tombstones, make } = await setup(t)
  api.down = true
  const j = make()
  await j.bury(tomb(clock))
  await clock.advance(0)
  t.equal(clock.pending, 1)
  t.equal(clock.dueIn[0]!, 1000, 'first retry after 1 s')
  await clock.advance(1000)
  t.equal(clock.dueIn[0]!, 2000, 'then 2 s')
  await clock.advance(2000)
  await clock.advance(4000)
  await clock.advance(8000)
  t.equal(clock.dueIn[0]!, 16000, 'then 16 s')
  t.equal((await tombstones.list()).length, 1)
  api.down = false
  j.retrySoon()
  t.ok(clock.dueIn[0]! <= 1000, 'retried within a second, not after 16 s')
  await clock.advance(1000)
  t.same(api.deletes, ['ns/vol-1'])
  t.same(await tombstones.list(), [])
})

t.test('CRDs uninstalled (404 on the list): done, nothing to delete but what is known', async t => {
  const { clock, api, tombstones, make } = await setup(t)
  api.listMissing = true
  const j = make()
  await j.bury(tomb(clock))
  await clock.advance(0)
  t.same(api.deletes, ['ns/vol-1'])
  t.same(await tombstones.list(), [])
})

t.test('a restart resumes the tombstones left behind', async t => {
  const { clock, api, tombstones, make } = await setup(t)
  api.down = true
  const first = make()
  await first.bury(tomb(clock))
  await clock.advance(0)
  await first.stop()
  api.down = false
  const second = make()
  await second.start()
  await clock.advance(0)
  t.same(api.deletes, ['ns/vol-1'])
  t.same(await tombstones.list(), [])
})

t.test('two burials of one volume merge; a tombstone older than a day is given up with a warning', async t => {
  const { clock, api, tombstones, make, warnings } = await setup(t)
  api.down = true
  const j = make()
  await j.bury(tomb(clock))
  await j.bury(tomb(clock, { requests: [{ namespace: 'ns', name: 'vol-2' }] }))
  t.same((await tombstones.list())[0]!.requests.map(r => r.name).sort(), ['vol-1', 'vol-2'])
  await clock.advance(25 * 3600_000)
  t.same(await tombstones.list(), [])
  t.ok(warnings.some(w => /giving up/.test(w)))
  t.equal(j.pending, 0)
})

t.test("a listed request that this pod does not own is not deleted, the pod's own by their uid (the forged-label bug)", async t => {
  const { clock, api, make } = await setup(t)
  const listed: CertificateRequest[] = [
    // Created by someone else in the pod's namespace, labelled and annotated like ours.
    { metadata: { name: 'vol-forged', namespace: 'ns', uid: 'u-forged', annotations: { 'csi.cert-manager.io/volume-id': 'vol' }, ownerReferences: [{ kind: 'Pod', uid: 'other-pod' }] } },
    { metadata: { name: 'vol-2', namespace: 'ns', uid: 'u-2', annotations: { 'csi.cert-manager.io/volume-id': 'vol' }, ownerReferences: [{ kind: 'Pod', uid: 'pod-uid' }] } },
  ] as unknown as CertificateRequest[]
  api.listForVolume = async () => listed
  const uids: Array<string | undefined> = []
  const del = api.delete.bind(api)
  api.delete = async (namespace: string, name: string, uid?: string) => { uids.push(uid); await del(namespace, name) }
  const j = make()
  await j.bury(tomb(clock, { podUid: 'pod-uid', requests: [{ namespace: 'ns', name: 'vol-1', uid: 'u-1' }] }))
  await clock.advance(0)
  t.same(api.deletes.sort(), ['ns/vol-1', 'ns/vol-2'], 'the forged one is left alone')
  t.same(uids.sort(), ['u-1', 'u-2'], 'each deleted by its uid')
})

t.test('a name the volume stepped over is spared, even with a copy of the pod\'s owner reference', async t => {
  const { clock, api, make } = await setup(t)
  api.listForVolume = async () => [
    { metadata: { name: 'vol-2', namespace: 'ns', uid: 'u-squat', annotations: { 'csi.cert-manager.io/volume-id': 'vol' }, ownerReferences: [{ kind: 'Pod', uid: 'pod-uid' }] } },
    { metadata: { name: 'vol-3-abcde', namespace: 'ns', uid: 'u-3', annotations: { 'csi.cert-manager.io/volume-id': 'vol' }, ownerReferences: [{ kind: 'Pod', uid: 'pod-uid' }] } },
  ] as unknown as CertificateRequest[]
  const j = make()
  await j.bury(tomb(clock, { podUid: 'pod-uid', requests: [], spare: ['vol-2'] }))
  await clock.advance(0)
  t.same(api.deletes, ['ns/vol-3-abcde'], 'only our own request deleted')
})
