// A republish after a restart is answered before the start-up pass reaches
// its volume when the volume serves as things stand (issue 14, P6): the real
// DesiredStatePublisher over the real executor, a real store and real files
// (test/helpers/reconciler-fakes.ts). The queue is left out on purpose: the
// enqueue only records, as if a thousand volumes were ahead of this one. Any
// doubt (a file altered, the mount gone, a key that does not match) must fall
// through to waiting for the reconciler. The check compares the pod's files
// with the digest recorded when they were rendered: no crypto.
import 'reflect-metadata'
import t, { type Test } from 'tap'
import { symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DesiredStatePublisher } from '../../src/reconcile/desired-state.js'
import type { PublishOutcome } from '../../src/csi/node.js'
import { DeadlineExceededError } from '../../src/errors.js'
import { requestName } from '../../src/kube/certificate-request.js'
import { FakeIssuer, NOW, TestCA, keyAndCert, setup, type Harness } from '../helpers/reconciler-fakes.js'

/** A volume issued, rendered and mounted, then a new process over the same data root. */
async function servedThenRestarted(t: Test): Promise<Harness> {
  const s = await setup(t, { informer: true })
  const issuer = new FakeIssuer(s, await TestCA.create(NOW))
  await s.store.commit(s.record, undefined)
  await s.reconciler.reconcile(s.volumeId)
  await issuer.issue(requestName(s.record.pod, s.volumeId, 2))
  await s.reconciler.reconcile(s.volumeId)
  if (!s.reconciler.status(s.volumeId)?.ready) throw new Error('the volume did not become ready before the restart')
  s.restart()
  return s
}

function publisherOver(s: Harness): { publisher: DesiredStatePublisher; enqueued: string[] } {
  const enqueued: string[] = []
  const publisher = new DesiredStatePublisher({
    nodeId: 'node-1', store: s.store, enqueue: (id, priority = 'normal') => void enqueued.push(`${id} ${priority}`), reconciler: s.reconciler,
    statuses: s.reconciler.statuses, now: () => s.clock.t, releaseOrphan: async () => {},
  })
  return { publisher, enqueued }
}

/** Aborts after `ms` on a timer that keeps the process alive (AbortSignal.timeout's does not). */
function deadline(ms = 300): AbortSignal {
  const c = new AbortController()
  setTimeout(() => c.abort(), ms)
  return c.signal
}

const republish = (s: Harness, publisher: DesiredStatePublisher): Promise<PublishOutcome> =>
  publisher.publish({ volumeId: s.volumeId, targetPath: s.record.targetPath, readonly: true, pod: s.record.pod, attributes: s.record.attributes }, deadline())

t.test('a volume that serves as things stand is answered at once, and still goes to the start-up pass', async t => {
  const s = await servedThenRestarted(t)
  const { publisher, enqueued } = publisherOver(s)
  t.equal(await republish(s, publisher), 'unchanged', 'answered as a republish that changed nothing')
  t.same(enqueued, [`${s.volumeId} low`], 'enqueued for the full reconcile all the same, at low priority')
  t.equal(s.reconciler.status(s.volumeId), undefined, 'the check concludes no status: only a reconcile does')
  t.equal(s.requests.creates.length, 1, 'no new request')
})

t.test('a published file altered behind our back: the republish waits for the reconciler', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  await writeFile(join(s.store.volumeDir(s.volumeId), 'published', 'crt.pem'), 'tampered\n')
  await t.rejects(republish(s, publisher), DeadlineExceededError)
})

t.test('the bind mount gone: the republish waits for the reconciler', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  s.mounter.mounted.clear()
  await t.rejects(republish(s, publisher), DeadlineExceededError)
})

t.test('a certificate swapped in the pod\'s folder and the stored pair alike: the republish waits for the reconciler', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  const other = await keyAndCert()
  const vdir = s.store.volumeDir(s.volumeId)
  await writeFile(join(vdir, 'current', 'cert.pem'), other.certPem)
  await writeFile(join(vdir, 'published', 'crt.pem'), other.certPem)
  await t.rejects(republish(s, publisher), DeadlineExceededError)
})

t.test('a file added to the pod\'s folder: the republish waits for the reconciler', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  const dataDir = join(s.store.volumeDir(s.volumeId), 'published', '..data')
  await writeFile(join(dataDir, 'extra.pem'), 'x')
  await symlink('..data/extra.pem', join(s.store.volumeDir(s.volumeId), 'published', 'extra.pem'))
  await t.rejects(republish(s, publisher), DeadlineExceededError)
})

t.test('the published certificate has expired: the republish waits for the reconciler', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  const record = await s.store.load(s.volumeId)
  s.clock.t = Date.parse(record!.published!.notAfter) + 1
  await t.rejects(republish(s, publisher), DeadlineExceededError)
})

t.test('a record written before the digest existed: the republish waits for the reconciler', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  const record = await s.store.load(s.volumeId)
  t.match(record?.published, { sha256: /^[0-9a-f]{64}$/, notAfter: String }, 'the render recorded the digest')
  const { published: _p, ...older } = record!
  await s.store.commit(older, record!.revision)
  await t.rejects(republish(s, publisher), DeadlineExceededError)
  await s.reconciler.reconcile(s.volumeId)
  t.equal((await s.store.load(s.volumeId))?.published?.sha256, record!.published!.sha256, 'the next reconcile records the digest again, of the same files')
  t.equal(s.requests.creates.length, 1, 'with no new request')
  s.restart()
  await republish(s, publisherOver(s).publisher)
})

t.test('a republish at another target path: the record moves there, and nothing is mounted there yet', async t => {
  const s = await servedThenRestarted(t)
  const { publisher } = publisherOver(s)
  const elsewhere = join(s.record.targetPath, '..', '..', 'other', 'mount')
  await t.rejects(publisher.publish({ volumeId: s.volumeId, targetPath: elsewhere, readonly: true, pod: s.record.pod, attributes: s.record.attributes }, deadline()), DeadlineExceededError)
})

t.test('once the reconciler has looked, its status answers, not the check', async t => {
  const s = await servedThenRestarted(t)
  const { publisher, enqueued } = publisherOver(s)
  s.mounter.mounted.clear()
  await s.reconciler.reconcile(s.volumeId)
  t.equal(s.reconciler.status(s.volumeId)?.ready, true, 'the reconcile mounted it again')
  t.equal(await republish(s, publisher), 'unchanged')
  t.same(enqueued, [], 'answered from memory: nothing enqueued')
})

t.test('a publish holds the low lane while it runs and releases it after, answered or not', async t => {
  const s = await servedThenRestarted(t)
  let held = 0
  let peak = 0
  const publisher = new DesiredStatePublisher({
    nodeId: 'node-1', store: s.store, enqueue: () => {}, reconciler: s.reconciler,
    statuses: s.reconciler.statuses, now: () => s.clock.t, releaseOrphan: async () => {},
    holdLowPriority: () => {
      peak = Math.max(peak, ++held)
      return () => void held--
    },
  })
  await republish(s, publisher)
  t.equal(peak, 1, 'held during the republish')
  t.equal(held, 0, 'released once answered')
  s.mounter.mounted.clear()
  s.restart()
  await t.rejects(republish(s, publisher), DeadlineExceededError)
  t.equal(held, 0, 'released when the call fails too')
})

t.test('a record made again without its issued certificate (a corrupt one set aside) converges', async t => {
  const s = await servedThenRestarted(t)
  const record = await s.store.load(s.volumeId)
  const { issued: _i, published: _p, ...remade } = record!
  await s.store.commit({ ...remade, generation: 0 }, record!.revision)
  // It must settle: a render that records nothing, then asks to render again, never would.
  await s.reconciler.reconcile(s.volumeId)
  t.pass('the reconcile converged within its step limit')
})
