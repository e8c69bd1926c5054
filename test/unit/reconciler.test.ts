// The real executor (src/reconcile/reconciler.ts) driven in-process: a real
// store and real atomic file writes in a scratch folder, in-memory fakes for
// the API, the request cache, the mounter and the janitor (all in
// test/helpers/reconciler-fakes.ts). Each case here reproduces a fault found
// in review and failed before its fix.
import 'reflect-metadata'
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeAtomically } from '../../src/host/atomic-dir.js'
import type { VolumeRecord } from '../../src/reconcile/record.js'
import { csrDigest } from '../../src/kube/ownership.js'
import { NOW, cr, keyAndCert, setup, type Harness } from '../helpers/reconciler-fakes.js'

t.test('an unpublish that lands while a certificate is accepted is not overwritten', async t => {
  const s = await setup(t)
  const { keyPem, certPem } = await keyAndCert()
  await s.store.commit({ ...s.record, request: { name: 'app-1', generation: 1, renewal: false } }, undefined)
  await writeFile(join(s.store.volumeDir(s.volumeId), 'pending-key.pem'), keyPem)
  s.cache.objects.set('ns/app-1', cr('app-1', s.volumeId, {
    certificate: Buffer.from(certPem).toString('base64'),
    conditions: [{ type: 'Approved', status: 'True' }, { type: 'Ready', status: 'True' }],
  }))
  // The kubelet's NodeUnpublishVolume records "unpublished" while the
  // reconciler is writing the issued pair.
  s.setWriteHook(async dir => {
    if (!dir.endsWith('current')) return
    const now = (await s.store.load(s.volumeId))!
    await s.store.commit({ ...now, desired: 'unpublished' }, now.revision)
  })
  await s.reconciler.reconcile(s.volumeId)
  t.equal(await s.store.load(s.volumeId), undefined, 'torn down: the unpublish won')
  t.same(s.mounter.binds, [], 'never bind-mounted into a target the kubelet is tearing down')
  t.equal(s.reconciler.status(s.volumeId), undefined, 'reported gone')
  t.same(s.janitor.buried.map(b => b.requests.map(r => r.name)), [['app-1']], "its request handed to the janitor")
})

t.test('a stale request the cache keeps after its delete (404) does not stop the volume: the renewal timer is armed', async t => {
  const s = await setup(t)
  const { keyPem, certPem } = await keyAndCert()
  const vdir = s.store.volumeDir(s.volumeId)
  await s.store.commit({ ...s.record, issued: { requestName: 'app-2', notBefore: new Date(NOW - 3600_000).toISOString(), notAfter: new Date(NOW + 3600_000).toISOString(), renewAt: new Date(NOW + 1800_000).toISOString(), serial: '01', issuedAt: new Date(NOW).toISOString() } }, undefined)
  await writeAtomically(join(vdir, 'current'), [{ name: 'key.pem', data: Buffer.from(keyPem), mode: 0o600 }, { name: 'cert.pem', data: Buffer.from(certPem), mode: 0o600 }])
  // The superseded request was deleted in a watch gap: the cache never hears of it.
  s.cache.objects.set('ns/app-1', cr('app-1', s.volumeId))
  const result = await s.reconciler.reconcile(s.volumeId)
  t.same(s.requests.deletes, ['ns/app-1'], 'deleted once')
  t.same(result, { requeueAfterMs: 1800_000 }, 'and the renewal is armed')
  t.equal(s.reconciler.status(s.volumeId)?.ready, true)
  const again = await s.reconciler.reconcile(s.volumeId)
  t.same(s.requests.deletes, ['ns/app-1'], 'not deleted again while the cache catches up')
  t.same(again, { requeueAfterMs: 1800_000 })
})

t.test('teardown is local: no API call, the requests go to the janitor', async t => {
  const s = await setup(t)
  await s.store.commit({ ...s.record, desired: 'unpublished', request: { name: 'app-3', generation: 3, renewal: false } }, undefined)
  s.cache.objects.set('ns/app-2', cr('app-2', s.volumeId))
  s.mounter.mounted.add(s.record.targetPath)
  s.requests.down = true
  await s.reconciler.reconcile(s.volumeId)
  t.equal(await s.store.load(s.volumeId), undefined)
  t.notOk(s.mounter.mounted.has(s.record.targetPath), 'unmounted')
  t.same(s.janitor.buried[0]?.requests.map(r => r.name).sort(), ['app-2', 'app-3'])
  t.same(s.janitor.buried[0]?.namespaces, ['ns'])
})

t.test('forceTeardown (the record could not be marked unpublished: data root full) tears the volume down all the same', async t => {
  const s = await setup(t)
  await s.store.commit({ ...s.record, request: { name: 'app-4', generation: 4, renewal: false } }, undefined)
  s.mounter.mounted.add(s.record.targetPath)
  s.reconciler.forceTeardown(s.volumeId)
  await s.reconciler.reconcile(s.volumeId)
  t.equal(await s.store.load(s.volumeId), undefined, 'record removed')
  t.notOk(s.mounter.mounted.has(s.record.targetPath), 'unmounted')
  t.same(s.janitor.buried[0]?.requests.map(r => r.name), ['app-4'])
})

// ---- ownership: labels are anyone's to copy (issue 12) -------------------

const issuedRecord = (s: Harness): VolumeRecord => ({
  ...s.record,
  issued: { requestName: 'app-2', notBefore: new Date(NOW - 3600_000).toISOString(), notAfter: new Date(NOW + 3600_000).toISOString(), renewAt: new Date(NOW + 1800_000).toISOString(), serial: '01', issuedAt: new Date(NOW).toISOString() },
})

/** A request in flight: recorded, with its pending key on disk. */
async function inFlight(s: Harness, request: NonNullable<VolumeRecord['request']>, keyPem: string): Promise<void> {
  await s.store.commit({ ...s.record, generation: request.generation, request }, undefined)
  await writeFile(join(s.store.volumeDir(s.volumeId), 'pending-key.pem'), keyPem)
}

async function storeCurrent(s: Harness, keyPem: string, certPem: string): Promise<void> {
  await writeAtomically(join(s.store.volumeDir(s.volumeId), 'current'), [{ name: 'key.pem', data: Buffer.from(keyPem), mode: 0o600 }, { name: 'cert.pem', data: Buffer.from(certPem), mode: 0o600 }])
}

t.test("a labelled copy in another namespace, or not owned by the pod, is never deleted as stale (the cross-namespace delete bug)", async t => {
  const s = await setup(t)
  const { keyPem, certPem } = await keyAndCert()
  await s.store.commit(issuedRecord(s), undefined)
  await storeCurrent(s, keyPem, certPem)
  // Made by a user of namespace "attacker", annotated with our volume id:
  // deleting "its" name in our namespace would delete someone else's request.
  const copy = cr('victims-request', s.volumeId)
  copy.metadata.namespace = 'attacker'
  s.cache.objects.set('attacker/victims-request', copy)
  const unowned = cr('unowned', s.volumeId)
  delete unowned.metadata.ownerReferences
  s.cache.objects.set('ns/unowned', unowned)
  const result = await s.reconciler.reconcile(s.volumeId)
  t.same(s.requests.deletes, [], 'nothing deleted')
  t.same(result, { requeueAfterMs: 1800_000 }, 'the volume is ready and its renewal armed')
  t.equal(s.cache.tracked.has(s.volumeId), true, 'the cache was told whose requests to keep')
})

t.test('a superseded request of ours is deleted by its uid', async t => {
  const s = await setup(t)
  const { keyPem, certPem } = await keyAndCert()
  await s.store.commit(issuedRecord(s), undefined)
  await storeCurrent(s, keyPem, certPem)
  const old = cr('app-1', s.volumeId)
  old.metadata.uid = 'uid-app-1'
  s.cache.objects.set('ns/app-1', old)
  await s.reconciler.reconcile(s.volumeId)
  t.same(s.requests.deletes, ['ns/app-1'])
  t.same(s.requests.deleteUids, ['uid-app-1'], 'a namesake made since would not be deleted')
})

t.test('a request name taken by an object the driver did not create is stepped over, with an Event, and never read or deleted', async t => {
  const s = await setup(t)
  const { keyPem, certPem } = await keyAndCert()
  // The digest of the CSR the driver is about to send is recorded before the create.
  await inFlight(s, { name: 'app-2', generation: 2, renewal: false, csrSha256: csrDigest('b3VyIENTUg==') }, keyPem)
  // Pre-created under our predictable name, owner reference and annotation
  // copied, issued with a certificate of the squatter's choosing.
  const squat = cr('app-2', s.volumeId, { certificate: Buffer.from(certPem).toString('base64'), conditions: [{ type: 'Approved', status: 'True' }, { type: 'Ready', status: 'True' }] })
  squat.metadata.uid = 'uid-squat'
  ;(squat.spec as { request?: string }).request = Buffer.from('not our CSR').toString('base64')
  s.cache.objects.set('ns/app-2', squat)
  await s.reconciler.reconcile(s.volumeId)
  const after = (await s.store.load(s.volumeId))!
  t.equal(after.issued, undefined, "the squatter's certificate was not taken")
  t.equal(after.generation, 3)
  t.match(after.request?.name, /^app-[0-9a-f]{12}-3-[0-9a-z]{5}$/, 'the next generation, under a name no one can guess')
  t.same(s.requests.creates.map(c => c.body.metadata.name), [after.request!.name], 'created under the new name')
  t.ok(after.request?.csrSha256, 'the CSR sent is recorded')
  t.equal(after.request?.uid, `uid-of-${after.request!.name}`, 'and the uid the apiserver gave it')
  t.same(s.requests.deletes, [], 'the squatter is left alone')
  t.ok(s.events.some(e => e.reason === 'RequestNameTaken' && e.kind === 'Pod' && /ns\/app-2 exists but was not created by the driver/.test(e.note)), 'an Event on the pod says so')
})

t.test('a create answered AlreadyExists by an object that is not ours is stepped over too', async t => {
  const s = await setup(t)
  const { keyPem } = await keyAndCert()
  await inFlight(s, { name: 'app-2', generation: 2, renewal: false }, keyPem)
  // The cache has not seen it yet; the apiserver has.
  const squat = cr('app-2', s.volumeId)
  ;(squat.spec as { request?: string }).request = 'c3F1YXQ='
  s.requests.existing = squat
  await s.reconciler.reconcile(s.volumeId)
  const after = (await s.store.load(s.volumeId))!
  t.equal(after.generation, 3)
  t.same(s.requests.creates.map(c => c.body.metadata.name), ['app-2', after.request!.name])
  t.ok(s.events.some(e => e.reason === 'RequestNameTaken'))
})

t.test('a lost create answer is adopted: the retry sends the same CSR bytes, and the object holding them is ours', async t => {
  const s = await setup(t)
  const { keyPem } = await keyAndCert()
  await inFlight(s, { name: 'app-2', generation: 2, renewal: false }, keyPem)
  s.requests.down = true
  await t.rejects(s.reconciler.reconcile(s.volumeId), /ECONNREFUSED/)
  const recorded = (await s.store.load(s.volumeId))!.request!
  t.ok(recorded.csrSha256, 'the digest is recorded before the create')
  // The create reached the apiserver; only its answer was lost.
  s.requests.down = false
  const sent = cr('app-2', s.volumeId)
  sent.metadata.uid = 'uid-lost-answer'
  ;(sent.spec as { request?: string }).request = Buffer.from(await readFile(join(s.store.volumeDir(s.volumeId), 'pending-csr.pem'), 'utf8')).toString('base64')
  s.requests.existing = sent
  await s.reconciler.reconcile(s.volumeId)
  const after = (await s.store.load(s.volumeId))!
  t.equal(after.request?.name, 'app-2', 'adopted, not stepped over')
  t.equal(after.request?.csrSha256, recorded.csrSha256, 'the same CSR')
  t.equal(after.request?.uid, 'uid-lost-answer')
  t.notOk(s.events.some(e => e.reason === 'RequestNameTaken'))
})

t.test('a malformed certificate from the issuer is a recorded failure with an Event, not a reconcile error retried for ever', async t => {
  const s = await setup(t)
  const { keyPem } = await keyAndCert()
  await inFlight(s, { name: 'app-1', generation: 1, renewal: false }, keyPem)
  s.cache.objects.set('ns/app-1', cr('app-1', s.volumeId, {
    certificate: Buffer.from('-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n').toString('base64'),
    conditions: [{ type: 'Approved', status: 'True' }, { type: 'Ready', status: 'True' }],
  }))
  const result = await s.reconciler.reconcile(s.volumeId)
  const after = (await s.store.load(s.volumeId))!
  t.equal(after.failure?.reason, 'malformed-certificate')
  t.match(after.failure?.message, /the certificate issued for app-1 cannot be parsed/)
  t.equal(after.request, undefined, 'the next attempt makes a new request')
  t.ok(result && typeof result.requeueAfterMs === 'number', 'waits out the failure backoff')
  t.ok(s.events.some(e => e.reason === 'IssuanceFailed' && e.type === 'Warning' && /cannot be parsed/.test(e.note)), 'an Event says why')
  t.equal(s.reconciler.timedRequests, 0, 'no timing entry left behind')
})

t.test('a denied request leaves no timing entry behind (the per-failure map leak)', async t => {
  const s = await setup(t)
  const { keyPem } = await keyAndCert()
  await s.store.commit(s.record, undefined)
  await writeFile(join(s.store.volumeDir(s.volumeId), 'pending-key.pem'), keyPem)
  await s.reconciler.reconcile(s.volumeId)
  const made = (await s.store.load(s.volumeId))!.request!
  s.cache.objects.set(`ns/${made.name}`, cr(made.name, s.volumeId, { conditions: [{ type: 'Denied', status: 'True', reason: 'Policy', message: 'no' }] }))
  ;(s.cache.objects.get(`ns/${made.name}`)!.spec as { request?: string }).request = s.requests.creates[0]!.body.spec.request
  s.cache.objects.get(`ns/${made.name}`)!.metadata.uid = made.uid
  await s.reconciler.reconcile(s.volumeId)
  t.equal((await s.store.load(s.volumeId))!.failure?.reason, 'denied')
  t.equal(s.reconciler.timedRequests, 0)
})

t.test('teardown hands the janitor only what the pod owns, with uids', async t => {
  const s = await setup(t)
  await s.store.commit({ ...s.record, desired: 'unpublished', request: { name: 'app-3', generation: 3, renewal: false, uid: 'uid-3' } }, undefined)
  const mine = cr('app-2', s.volumeId)
  mine.metadata.uid = 'uid-2'
  s.cache.objects.set('ns/app-2', mine)
  const copy = cr('victims', s.volumeId)
  copy.metadata.namespace = 'attacker'
  s.cache.objects.set('attacker/victims', copy)
  await s.reconciler.reconcile(s.volumeId)
  const tb = s.janitor.buried[0]!
  t.same(tb.requests.sort((a, b) => a.name.localeCompare(b.name)), [{ namespace: 'ns', name: 'app-2', uid: 'uid-2' }, { namespace: 'ns', name: 'app-3', uid: 'uid-3' }])
  t.equal(tb.podUid, 'uid-1', 'the janitor lists by label but keeps only what this pod owns')
  t.equal(s.cache.tracked.has(s.volumeId), false, 'the cache forgets the volume')
})

t.test('--use-token-request: no request without the pod\'s token; with it, the request is made as the pod', async t => {
  const tokens = new Map<string, string>()
  const s = await setup(t, { podTokens: tokens })
  await s.store.commit(s.record, undefined)
  await t.rejects(s.reconciler.reconcile(s.volumeId), /no current service account token of pod ns\/app .*waiting for the kubelet's next republish/)
  t.equal(s.requests.creates.length, 0, 'nothing was created as the driver instead')
  tokens.set(s.volumeId, 'pod-token')
  await s.reconciler.reconcile(s.volumeId)
  t.equal(s.requests.creates.length, 1)
  t.equal(s.requests.creates[0]?.bearerToken, 'pod-token', 'created with the pod\'s token')
  t.notOk(JSON.stringify(s.logs).includes('pod-token'), 'which no log line holds')
})

t.test('without --use-token-request the driver\'s own identity makes the request', async t => {
  const s = await setup(t)
  await s.store.commit(s.record, undefined)
  await s.reconciler.reconcile(s.volumeId)
  t.equal(s.requests.creates.length, 1)
  t.equal(s.requests.creates[0]?.bearerToken, undefined)
})
