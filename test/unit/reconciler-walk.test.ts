// A volume's whole life through the real executor (src/reconcile/reconciler.ts)
// over the in-memory fakes of test/helpers/reconciler-fakes.ts: publish,
// renewal, denial, failure, unpublish, restart and self-heal, with a clock the
// test advances. Every step kind the planner (src/reconcile/plan.ts) can
// return is walked at least once; the last test checks that, so a new kind
// cannot land without a walk of its own. The subtests run in order and share
// `seen`: run the whole file.
// @peculiar/x509 needs the polyfill loaded before it.
import 'reflect-metadata'
import t, { type Test } from 'tap'
import { access, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import type { Step } from '../../src/reconcile/plan.js'
import { requestName } from '../../src/kube/certificate-request.js'
import { FakeIssuer, NOW, TestCA, cr, setup, type Harness } from '../helpers/reconciler-fakes.js'

/** Every kind of Step: tsc fails here when plan.ts gains or loses one. */
const PLANNER_KINDS = {
  teardown: true, generateKey: true, createRequest: true, abandonRequest: true, stepOver: true,
  acceptCertificate: true, recordFailure: true, deleteRequests: true, render: true, mount: true, wait: true,
} satisfies Record<Step['kind'], true>

/** Step kinds performed by the walks below. */
const seen = new Set<string>()

/**
 * One reconcile: the steps it performed, in order, from the executor's
 * 'reconcile step' debug lines. The executor logs every step but 'wait';
 * a reconcile that still knows the volume and did not stop after creating
 * a request (it then waits for the informer) ended in a wait.
 */
async function run(s: Harness): Promise<{ steps: string[]; result: { requeueAfterMs?: number } | void }> {
  const from = s.logs.length
  const result = await s.reconciler.reconcile(s.volumeId)
  const steps = s.logs.slice(from).filter(l => l.msg === 'reconcile step').map(l => String(l.step))
  if (steps.at(-1) !== 'createRequest' && s.reconciler.status(s.volumeId) !== undefined) steps.push('wait')
  for (const k of steps) seen.add(k)
  return { steps, result }
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false)
const nameOf = (s: Harness, generation: number): string => requestName(s.record.pod, s.volumeId, generation)
const load = async (s: Harness) => (await s.store.load(s.volumeId))!
const publishedFile = (s: Harness, name: string): Promise<string> => readFile(join(s.store.volumeDir(s.volumeId), 'published', name), 'utf8')

/** A harness whose cache sees creates and deletes, a CA, and the record as NodePublishVolume leaves it. */
async function recorded(t: Test): Promise<{ s: Harness; issuer: FakeIssuer }> {
  const s = await setup(t, { informer: true })
  const issuer = new FakeIssuer(s, await TestCA.create(NOW))
  await s.store.commit(s.record, undefined)
  return { s, issuer }
}

/** A volume walked to ready: its first request (generation 2) created and issued. */
async function published(t: Test): Promise<{ s: Harness; issuer: FakeIssuer; first: string }> {
  const { s, issuer } = await recorded(t)
  await run(s)
  const first = nameOf(s, 2)
  await issuer.issue(first)
  const { steps } = await run(s)
  if (steps.join() !== 'acceptCertificate,render,mount,wait') throw new Error(`publish walked ${steps.join()}`)
  return { s, issuer, first }
}

t.test('publish: one request with the expected CSR; once signed, the files are written and bound, and the volume is ready', async t => {
  const { s, issuer } = await recorded(t)
  const vdir = s.store.volumeDir(s.volumeId)
  const made = await run(s)
  t.same(made.steps, ['generateKey', 'createRequest'])
  t.same(made.result, { requeueAfterMs: 60_000 }, 'rechecked in a minute should the informer never report')
  const name = nameOf(s, 2)
  t.same(s.requests.creates.map(c => `${c.namespace}/${c.body.metadata.name}`), [`ns/${name}`], 'one request, under the next generation\'s name')
  const body = s.requests.creates[0]!.body as unknown as { spec: { request: string; issuerRef: { name: string }; duration: string } }
  t.same(body.spec.issuerRef.name, 'ca-issuer')
  t.equal(body.spec.duration, '2592000s', 'the default 720h')
  const csr = new x509.Pkcs10CertificateRequest(Buffer.from(body.spec.request, 'base64').toString('utf8'))
  t.ok(await csr.verify(), 'the CSR is signed by its own key')
  // By OID: the class form misses when the library is loaded as both ESM and CJS.
  const san = csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null
  t.same(san?.names.toJSON(), [{ type: 'dns', value: 'a.example' }], 'asking for the volume\'s DNS name')
  const pendingKey = createPrivateKey(await readFile(join(vdir, 'pending-key.pem')))
  t.ok(createPublicKey(pendingKey).export({ format: 'der', type: 'spki' }).equals(Buffer.from(csr.publicKey.rawData)), 'for the pending key kept on disk')
  t.match(await load(s), { generation: 2, request: { name, generation: 2, renewal: false, uid: `uid-of-${name}` } })
  t.match(s.reconciler.status(s.volumeId), { ready: false, failed: false, message: /waiting for approval/ })
  t.same(s.mounter.binds, [], 'nothing to bind yet')

  const idle = await run(s)
  t.same(idle.steps, ['wait'], 'nothing to do until the issuer acts')
  t.equal(idle.result, undefined, 'the informer wakes it, not a timer')
  t.equal(s.requests.creates.length, 1)

  const certPem = await issuer.issue(name)
  const done = await run(s)
  t.same(done.steps, ['acceptCertificate', 'render', 'mount', 'wait'])
  const crt = await publishedFile(s, 'crt.pem')
  t.equal(crt, certPem, 'the certificate issued')
  t.equal(await publishedFile(s, 'ca.pem'), issuer.ca.pem, 'the CA the request carried')
  const cert = new X509Certificate(crt)
  t.ok(cert.checkPrivateKey(createPrivateKey(await publishedFile(s, 'key.pem'))), 'the key it was issued for')
  t.ok(cert.verify(new X509Certificate(issuer.ca.pem).publicKey), 'signed by the test CA')
  t.same(s.mounter.binds, [{ source: join(vdir, 'published'), target: s.record.targetPath }], 'the published folder bound onto the target')
  t.same(s.reconciler.status(s.volumeId), { ready: true, failed: false, message: 'ready', gone: false, targetPath: s.record.targetPath })
  const rec = await load(s)
  t.equal(rec.request, undefined, 'nothing in flight')
  t.equal(rec.issued?.requestName, name)
  t.same(done.result, { requeueAfterMs: Date.parse(rec.issued!.renewAt) - NOW }, 'the renewal timer is armed')
  t.equal(await exists(join(vdir, 'pending-key.pem')), false, 'the pending key became the current one')
  t.same(s.events.filter(e => e.reason === 'Issued').map(e => e.kind), ['CertificateRequest', 'Pod'])
})

t.test('renewal: past renewAt the next generation is requested, its pair replaces the files, and the superseded request is deleted', async t => {
  const { s, issuer, first } = await published(t)
  const before = await load(s)
  const oldKey = await publishedFile(s, 'key.pem')
  const renewAt = Date.parse(before.issued!.renewAt)
  s.clock.t = renewAt - 1000
  const early = await run(s)
  t.same(early.steps, ['wait'])
  t.same(early.result, { requeueAfterMs: 1000 }, 'not due yet: the timer says when')

  s.clock.t = renewAt + 1000
  const due = await run(s)
  t.same(due.steps, ['generateKey', 'createRequest'])
  const second = nameOf(s, 3)
  t.same(s.requests.creates.map(c => c.body.metadata.name), [first, second])
  t.match(await load(s), { request: { name: second, renewal: true }, issued: { requestName: first } })
  t.match(s.reconciler.status(s.volumeId), { ready: true }, 'still served from the current pair meanwhile')

  const certPem = await issuer.issue(second)
  const renewed = await run(s)
  t.same(renewed.steps, ['acceptCertificate', 'render', 'deleteRequests', 'wait'])
  t.equal(await publishedFile(s, 'crt.pem'), certPem, 'the new certificate')
  const newKey = await publishedFile(s, 'key.pem')
  t.not(newKey, oldKey, 'under a new key')
  t.ok(new X509Certificate(certPem).checkPrivateKey(createPrivateKey(newKey)))
  t.same(s.requests.deletes, [`ns/${first}`], 'the superseded request deleted')
  t.same(s.requests.deleteUids, [`uid-of-${first}`], 'by its uid')
  t.equal(s.cache.get('ns', first), undefined)
  t.equal(s.mounter.binds.length, 1, 'no second bind: the files are swapped under it')
  const after = await load(s)
  t.equal(after.issued?.requestName, second)
  t.same(renewed.result, { requeueAfterMs: Date.parse(after.issued!.renewAt) - s.clock.t })
  t.ok(s.events.some(e => e.reason === 'Renewed' && e.kind === 'Pod'))
})

t.test('denial: a recorded failure, not ready and failed; no new request before the backoff, one after it', async t => {
  const { s, issuer } = await recorded(t)
  await run(s)
  const first = nameOf(s, 2)
  issuer.deny(first)
  const denied = await run(s)
  t.same(denied.steps, ['recordFailure', 'wait'])
  t.same(denied.result, { requeueAfterMs: 30_000 }, 'the failure backoff')
  const rec = await load(s)
  t.equal(rec.request, undefined)
  t.match(rec.failure, { reason: 'denied', count: 1, requestName: first, retryAt: new Date(NOW + 30_000).toISOString() })
  t.match(s.reconciler.status(s.volumeId), { ready: false, failed: true, message: /request denied \(Policy\): not on the allow list \(retrying in 30s\)/ })
  t.ok(s.events.some(e => e.reason === 'IssuanceFailed' && e.type === 'Warning' && e.kind === 'Pod'))

  s.clock.t = NOW + 29_000
  const early = await run(s)
  t.same(early.steps, ['wait'])
  t.same(early.result, { requeueAfterMs: 1000 })
  t.equal(s.requests.creates.length, 1, 'no request before the backoff')

  s.clock.t = NOW + 30_000
  const retry = await run(s)
  // The pending key outlives a denial (it never got a certificate): only the request is new.
  t.same(retry.steps, ['createRequest'])
  const second = nameOf(s, 3)
  t.same(s.requests.creates.map(c => c.body.metadata.name), [first, second], 'one after it')
  t.match(s.reconciler.status(s.volumeId), { failed: false })

  await issuer.issue(second)
  const done = await run(s)
  t.same(done.steps, ['acceptCertificate', 'render', 'mount', 'deleteRequests', 'wait'])
  t.equal((await load(s)).failure, undefined, 'a certificate clears the failure')
  t.same(s.requests.deletes, [`ns/${first}`], 'and the denied request, kept while it explained the failure, goes')
})

t.test('failure: the issuer marks Failed; a second failure doubles the backoff and retires the first', async t => {
  const { s, issuer } = await recorded(t)
  await run(s)
  const first = nameOf(s, 2)
  issuer.fail(first)
  const failed = await run(s)
  t.same(failed.steps, ['recordFailure', 'wait'])
  t.same(failed.result, { requeueAfterMs: 30_000 })
  t.match((await load(s)).failure, { reason: 'failed', count: 1, message: /request failed: the issuer refused to sign/ })
  t.match(s.reconciler.status(s.volumeId), { ready: false, failed: true })

  s.clock.t = NOW + 30_000
  t.same((await run(s)).steps, ['createRequest'])
  const second = nameOf(s, 3)
  issuer.fail(second)
  const again = await run(s)
  t.same(again.steps, ['recordFailure', 'deleteRequests', 'wait'], 'the older failed request is no longer the one that explains')
  t.same(again.result, { requeueAfterMs: 60_000 }, 'twice the backoff')
  t.match((await load(s)).failure, { count: 2, requestName: second })
  t.same(s.requests.deletes, [`ns/${first}`])

  s.clock.t = NOW + 30_000 + 59_000
  t.same((await run(s)).steps, ['wait'])
  t.equal(s.requests.creates.length, 2, 'none before the longer backoff')
  s.clock.t = NOW + 30_000 + 60_000
  t.same((await run(s)).steps, ['createRequest'])
  t.equal(s.requests.creates.length, 3, 'one after it')
})

t.test('unpublish: unmounted, files and record removed, the requests handed to the janitor', async t => {
  const { s, first } = await published(t)
  const vdir = s.store.volumeDir(s.volumeId)
  const rec = await load(s)
  // What NodeUnpublishVolume records.
  await s.store.commit({ ...rec, desired: 'unpublished' }, rec.revision)
  const gone = await run(s)
  t.same(gone.steps, ['teardown'])
  t.equal(gone.result, undefined)
  t.notOk(s.mounter.mounted.has(s.record.targetPath), 'unmounted')
  t.equal(await s.store.load(s.volumeId), undefined, 'record removed')
  t.equal(await exists(vdir), false, 'the volume folder, keys and files with it, removed')
  t.same(s.janitor.buried.map(b => b.requests), [[{ namespace: 'ns', name: first, uid: `uid-of-${first}` }]])
  t.same(s.requests.deletes, [], 'no API call: the janitor deletes them')
  t.equal(s.reconciler.status(s.volumeId), undefined, 'reported gone')
  t.equal(s.cache.tracked.has(s.volumeId), false)
  t.same((await run(s)).steps, [], 'a second reconcile has nothing to do')
  t.equal(s.janitor.buried.length, 1)
})

t.test('restart: a new Reconciler over the same store resumes a volume mid-issuance without a second request', async t => {
  const { s, issuer } = await recorded(t)
  await run(s)
  const first = nameOf(s, 2)
  const old = s.reconciler
  s.restart()
  t.not(s.reconciler, old)
  s.cache.synced = false
  const cold = await run(s)
  t.same(cold.steps, ['wait'])
  t.match(s.reconciler.status(s.volumeId), { ready: false, message: /cache to sync/ }, 'it does not guess before the cache has listed')
  s.cache.synced = true
  const warm = await run(s)
  t.same(warm.steps, ['wait'], 'the request it made before the restart is found')
  t.match(s.reconciler.status(s.volumeId), { message: /waiting for approval/ })
  await issuer.issue(first)
  t.same((await run(s)).steps, ['acceptCertificate', 'render', 'mount', 'wait'])
  t.same(s.requests.creates.map(c => c.body.metadata.name), [first], 'one request in all')
  t.match(s.reconciler.status(s.volumeId), { ready: true })
})

t.test('restart after a create that never reached the apiserver: the same name and CSR are sent again', async t => {
  const { s } = await recorded(t)
  s.requests.down = true
  await t.rejects(s.reconciler.reconcile(s.volumeId), /ECONNREFUSED/)
  const named = (await load(s)).request!
  s.restart()
  s.requests.down = false
  t.same((await run(s)).steps, ['createRequest'], 'no new key: the pending one survived')
  t.same(s.requests.creates.map(c => c.body.metadata.name), [named.name])
  t.equal(s.cache.forVolume(s.volumeId).length, 1, 'one object')
  t.equal((await load(s)).request?.csrSha256, named.csrSha256, 'holding the CSR recorded before the crash')
})

t.test('self-heal: a published file deleted on disk is rewritten, and a lost bind made again, without a new request', async t => {
  const { s } = await published(t)
  const crt = await publishedFile(s, 'crt.pem')
  await rm(join(s.store.volumeDir(s.volumeId), 'published', 'crt.pem'))
  t.same((await run(s)).steps, ['render', 'wait'])
  t.equal(await publishedFile(s, 'crt.pem'), crt, 'the same certificate, back')
  s.mounter.mounted.delete(s.record.targetPath)
  t.same((await run(s)).steps, ['mount', 'wait'])
  t.equal(s.mounter.binds.length, 2)
  t.equal(s.requests.creates.length, 1, 'no new request')
  t.match(s.reconciler.status(s.volumeId), { ready: true })
})

t.test('a request whose pending key is gone is abandoned (deleted), and a new one made from a new key', async t => {
  const { s } = await recorded(t)
  await run(s)
  const first = nameOf(s, 2)
  // The key is on tmpfs; without it the certificate the request brings is useless.
  await rm(join(s.store.volumeDir(s.volumeId), 'pending-key.pem'))
  const r = await run(s)
  t.same(r.steps, ['abandonRequest', 'generateKey', 'createRequest'])
  t.same(s.requests.deletes, [`ns/${first}`])
  t.same(s.requests.deleteUids, [`uid-of-${first}`])
  t.same(s.requests.creates.map(c => c.body.metadata.name), [first, nameOf(s, 3)])
  t.match(await load(s), { request: { name: nameOf(s, 3), generation: 3 } })
})

t.test('a request name taken by someone else is stepped over: never adopted, and a name no one can guess used', async t => {
  const { s, issuer } = await recorded(t)
  s.requests.down = true
  await t.rejects(s.reconciler.reconcile(s.volumeId), /ECONNREFUSED/)
  const first = nameOf(s, 2)
  t.equal((await load(s)).request?.name, first, 'recorded before the create')
  // Made under our predictable name while the API was away from us.
  const squat = cr(first, s.volumeId)
  squat.metadata.uid = 'uid-squat'
  ;(squat.spec as { request?: string }).request = Buffer.from('not our CSR').toString('base64')
  s.cache.objects.set(`ns/${first}`, squat)
  s.requests.down = false
  const r = await run(s)
  t.same(r.steps, ['stepOver', 'createRequest'])
  const rec = await load(s)
  t.match(rec, { generation: 3, request: { name: /^app-[0-9a-f]{12}-3-[0-9a-z]{5}$/ } })
  t.same(s.requests.creates.map(c => c.body.metadata.name), [rec.request!.name])
  t.equal(s.cache.get('ns', first), squat, 'the squatter is neither adopted nor deleted while it holds the name')
  t.same(s.requests.deletes, [])
  t.ok(s.events.some(e => e.reason === 'RequestNameTaken' && e.kind === 'Pod'))
  await issuer.issue(rec.request!.name)
  // The squatter copied the pod's owner reference (anyone can): it is still
  // never deleted as superseded, nor handed to the janitor at teardown.
  t.same((await run(s)).steps, ['acceptCertificate', 'render', 'mount', 'wait'], 'and the volume is served from the new one')
  t.same(s.requests.deletes, [], 'the squatter is left alone once superseded')
  t.same((await load(s)).steppedOver, [first], 'its name remembered as not ours')
  await s.store.commit({ ...(await load(s)), desired: 'unpublished' }, (await load(s)).revision)
  t.same((await run(s)).steps, ['teardown'])
  t.notOk(s.janitor.buried.some(b => b.requests.some(r => r.name === first)), 'nor buried at teardown')
  t.same(s.janitor.buried.at(-1)?.spare, [first], 'and the janitor told to spare it when it lists the namespace')
})


t.test('a CSI call that rewrites the record while a renewal is accepted does not throw the issued certificate away', async t => {
  const { s, issuer, first } = await published(t)
  s.clock.t = Date.parse((await load(s)).issued!.renewAt) + 1000
  await run(s)
  const second = nameOf(s, 3)
  await issuer.issue(second)
  // A republish to another target path lands between the pair's swap and the record's save.
  let fired = false
  s.setWriteHook(async dir => {
    if (fired || !dir.endsWith('current')) return
    fired = true
    const now = await load(s)
    await s.store.commit({ ...now, targetPath: `${now.targetPath}-moved` }, now.revision)
  })
  const accepted = await run(s)
  t.ok(fired, 'the record changed under the accept')
  t.equal(accepted.steps[0], 'acceptCertificate')
  t.notOk(accepted.steps.includes('abandonRequest'), 'the issued request is not abandoned')
  t.same(s.requests.creates.map(c => c.body.metadata.name), [first, second], 'no third request')
  const rec = await load(s)
  t.equal(rec.issued?.requestName, second, 'the record describes the certificate served')
  t.equal(rec.targetPath, `${s.record.targetPath}-moved`, "and keeps the CSI call's change")
  t.equal(rec.request, undefined)
  t.notOk(s.requests.deletes.includes(`ns/${second}`), 'the new request is not deleted')
})

t.test('a renewal requested after the stored pair was lost is not reported ready', async t => {
  const { s } = await published(t)
  await rm(join(s.store.volumeDir(s.volumeId), 'current'), { recursive: true, force: true })
  const made = await run(s)
  t.same(made.steps, ['generateKey', 'createRequest'], 'a new request for the lost pair')
  t.match(s.reconciler.status(s.volumeId), { ready: false }, 'nothing is served from a lost pair: not ready while it is requested')
})


t.test('an aborted signal (shutdown) ends a reconcile before its next step, with nothing done', async t => {
  const { s } = await recorded(t)
  const stopped = new AbortController()
  stopped.abort()
  t.equal(await s.reconciler.reconcile(s.volumeId, stopped.signal), undefined)
  t.same(s.requests.creates, [], 'no request')
  t.equal(await exists(join(s.store.volumeDir(s.volumeId), 'pending-key.pem')), false, 'no key made')
})

t.test('every step kind the planner can return was walked through the executor above', async t => {
  // Read from the source as well, so a new kind fails here even without tsc.
  const plan = await readFile(new URL('../../src/reconcile/plan.ts', import.meta.url), 'utf8')
  const union = plan.slice(plan.indexOf('export type Step ='), plan.indexOf('export function nextStep'))
  const declared = [...union.matchAll(/kind: '(\w+)'/g)].map(m => m[1]!).sort()
  t.same(declared, Object.keys(PLANNER_KINDS).sort(), 'PLANNER_KINDS is the union in plan.ts')
  t.same([...seen].sort(), declared, 'each was performed by some walk')
})
