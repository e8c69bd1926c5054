// The real executor (src/reconcile/reconciler.ts) driven in-process: a real
// store and real atomic file writes in a scratch folder, in-memory fakes for
// the API, the request cache, the mounter and the janitor. Each case here
// reproduces a fault found in review and failed before its fix.
import 'reflect-metadata'
import t, { type Test } from 'tap'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import pino from 'pino'
import { Reconciler, type RequestBurial } from '../../src/reconcile/reconciler.js'
import { VolumeStore } from '../../src/state/store.js'
import { validateRecord, type VolumeRecord } from '../../src/reconcile/record.js'
import { writeAtomically, readPublished, clearPublished } from '../../src/host/atomic-dir.js'
import { Semaphore } from '../../src/reconcile/semaphore.js'
import type { CertificateRequest } from '../../src/kube/certificate-request.js'
import type { RequestClient } from '../../src/kube/requests.js'
import type { RequestCache } from '../../src/kube/request-informer.js'
import type { Tombstone } from '../../src/state/tombstones.js'

x509.cryptoProvider.set(webcrypto as Crypto)
const NOW = Date.UTC(2026, 11, 1, 12)

/** A P-256 key (PKCS#8 PEM) and a certificate for it valid an hour either side of NOW. */
async function keyAndCert(): Promise<{ keyPem: string; certPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=test', notBefore: new Date(NOW - 3600_000), notAfter: new Date(NOW + 3600_000), keys, signingAlgorithm: alg,
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64').replace(/.{64}/g, '$&\n')
  return { keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n`, certPem: cert.toString('pem') + '\n' }
}

class FakeCache implements RequestCache {
  synced = true
  objects = new Map<string, CertificateRequest>()
  get(namespace: string, name: string): CertificateRequest | undefined {
    return this.objects.get(`${namespace}/${name}`)
  }
  forVolume(volumeId: string): CertificateRequest[] {
    return [...this.objects.values()].filter(cr => cr.metadata.annotations?.['csi.cert-manager.io/volume-id'] === volumeId)
  }
}

class FakeRequests implements RequestClient {
  deletes: string[] = []
  /** Every call fails, as with the apiserver away. */
  down = false
  #check(): void { if (this.down) throw new Error('connect ECONNREFUSED') }
  async create(): Promise<CertificateRequest> { this.#check(); throw new Error('not expected') }
  async get(): Promise<CertificateRequest | undefined> { this.#check(); return undefined }
  // Like the real client, a 404 is success: the request is gone either way.
  async delete(namespace: string, name: string): Promise<void> { this.#check(); this.deletes.push(`${namespace}/${name}`) }
  async listForVolume(): Promise<CertificateRequest[]> { this.#check(); return [] }
}

class FakeMounter {
  mounted = new Set<string>()
  binds = 0
  async isMountPoint(p: string): Promise<boolean> { return this.mounted.has(p) }
  async bindReadOnly(_s: string, target: string): Promise<void> { this.binds++; this.mounted.add(target) }
  async unmount(target: string): Promise<void> { this.mounted.delete(target) }
}

class FakeJanitor implements RequestBurial {
  buried: Tombstone[] = []
  async bury(tb: Tombstone): Promise<void> { this.buried.push(tb) }
}

const cr = (name: string, volumeId: string, status?: object): CertificateRequest => ({
  metadata: { name, namespace: 'ns', annotations: { 'csi.cert-manager.io/volume-id': volumeId } },
  spec: { issuerRef: { name: 'ca-issuer' } },
  ...(status ? { status } : {}),
}) as CertificateRequest

async function setup(t: Test) {
  const dir = await mkdtemp(join(tmpdir(), 'reconciler-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = new VolumeStore<VolumeRecord>({ dataRoot: join(dir, 'data'), validate: validateRecord, logger: { warn: () => {}, debug: () => {} } })
  const targetPath = join(dir, 'kubelet/pods/uid-1/volumes/kubernetes.io~csi/tls/mount')
  await mkdir(join(targetPath, '..'), { recursive: true })
  const cache = new FakeCache()
  const requests = new FakeRequests()
  const mounter = new FakeMounter()
  const janitor = new FakeJanitor()
  let writeHook: (dir: string) => Promise<void> = async () => {}
  const reconciler = new Reconciler({
    nodeId: 'node-1', store, requests, cache, janitor, mounter,
    files: { write: async (d, f, o) => { await writeHook(d); await writeAtomically(d, f, o) }, read: readPublished, clear: clearPublished },
    events: { record: () => {} },
    logger: pino({ level: 'silent' }),
    now: () => NOW,
    random: () => 0.5,
    issuance: new Semaphore(2),
    failureBackoff: { baseMs: 30_000, maxMs: 3600_000, jitter: 0 },
  })
  const volumeId = 'csi-vol-1'
  const record: VolumeRecord = {
    version: 1, volumeId, targetPath, nodeId: 'node-1',
    pod: { name: 'app', namespace: 'ns', uid: 'uid-1', serviceAccountName: 'default' },
    attributes: { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'a.example', 'csi.cert-manager.io/key-algorithm': 'ECDSA' },
    desired: 'published', createdAt: new Date(NOW).toISOString(), generation: 1,
  }
  return { dir, store, cache, requests, mounter, janitor, reconciler, volumeId, record, setWriteHook: (h: typeof writeHook) => (writeHook = h) }
}

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
  t.equal(s.mounter.binds, 0, 'never bind-mounted into a target the kubelet is tearing down')
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
