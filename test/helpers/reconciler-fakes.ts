// In-memory fakes of every port the reconciler (src/reconcile/reconciler.ts)
// takes, and a harness that builds the real executor over them with a real
// VolumeStore and real atomic file writes in a scratch folder. Shared by the
// fault cases (test/unit/reconciler.test.ts) and the life-cycle walk
// (test/unit/reconciler-walk.test.ts).
import 'reflect-metadata'
import type { Test } from 'tap'
import { mkdtemp, mkdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import { generatePrivateKey } from '../../src/pki/keys.js'
import pino from 'pino'
import { Reconciler, type MountOps, type RequestBurial } from '../../src/reconcile/reconciler.js'
import { VolumeStore } from '../../src/state/store.js'
import { validateRecord, type VolumeRecord } from '../../src/reconcile/record.js'
import { writeAtomically, readPublished, clearPublished } from '../../src/host/atomic-dir.js'
import { Semaphore } from '../../src/reconcile/semaphore.js'
import type { CertificateRequest } from '../../src/kube/certificate-request.js'
import { RequestNameTakenError, type RequestClient } from '../../src/kube/requests.js'
import type { RequestCache } from '../../src/kube/request-informer.js'
import type { EventRecorder } from '../../src/kube/events.js'
import type { Tombstone } from '../../src/state/tombstones.js'

x509.cryptoProvider.set(webcrypto as Crypto)
export const NOW = Date.UTC(2026, 11, 1, 12)

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
const b64 = (s: string): string => Buffer.from(s).toString('base64')

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key)).toString('base64').replace(/.{64}/g, '$&\n')
  return `-----BEGIN PRIVATE KEY-----\n${der}\n-----END PRIVATE KEY-----\n`
}

/** A P-256 key (PKCS#8 PEM) and a certificate for it valid an hour either side of NOW. */
export async function keyAndCert(): Promise<{ keyPem: string; certPem: string }> {
  const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=test', notBefore: new Date(NOW - 3600_000), notAfter: new Date(NOW + 3600_000), keys, signingAlgorithm: EC,
  })
  return { keyPem: await pkcs8Pem(keys.privateKey), certPem: cert.toString('pem') + '\n' }
}

/** A CA that signs the CSR a request carries, as a cert-manager issuer would. */
export class TestCA {
  #serial = 0x10
  private constructor(private readonly keys: CryptoKeyPair, private readonly cert: x509.X509Certificate) {}

  static async create(now: number): Promise<TestCA> {
    const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01', name: 'CN=walk test CA', notBefore: new Date(now - 86_400_000), notAfter: new Date(now + 365 * 86_400_000), keys, signingAlgorithm: EC,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    })
    return new TestCA(keys, cert)
  }

  get pem(): string {
    return this.cert.toString('pem') + '\n'
  }

  /** A certificate for the CSR in `specRequest` (base64 PEM), with the extensions it asks for. */
  async sign(specRequest: string, notBefore: number, lifetimeMs: number): Promise<string> {
    const csr = new x509.Pkcs10CertificateRequest(Buffer.from(specRequest, 'base64').toString('utf8'))
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: (this.#serial++).toString(16), subject: csr.subjectName, issuer: this.cert.subjectName,
      notBefore: new Date(notBefore), notAfter: new Date(notBefore + lifetimeMs),
      publicKey: csr.publicKey, signingKey: this.keys.privateKey, signingAlgorithm: EC, extensions: csr.extensions,
    })
    return cert.toString('pem') + '\n'
  }
}

/** The request cache, as an informer that is always synced (unless told otherwise). */
export class FakeCache implements RequestCache {
  synced = true
  objects = new Map<string, CertificateRequest>()
  get(namespace: string, name: string): CertificateRequest | undefined {
    return this.objects.get(`${namespace}/${name}`)
  }
  forVolume(volumeId: string): CertificateRequest[] {
    return [...this.objects.values()].filter(cr => cr.metadata.annotations?.['csi.cert-manager.io/volume-id'] === volumeId)
  }
  tracked = new Set<string>()
  track(owner: { volumeId: string }): void { this.tracked.add(owner.volumeId) }
  untrack(volumeId: string): void { this.tracked.delete(volumeId) }
}

export class FakeRequests implements RequestClient {
  deletes: string[] = []
  deleteUids: Array<string | undefined> = []
  /** Every call fails, as with the apiserver away. */
  down = false
  #check(): void { if (this.down) throw new Error('connect ECONNREFUSED') }
  creates: Array<{ namespace: string; body: { metadata: { name: string }; spec: { request: string } }; bearerToken?: string }> = []
  /** When set, what create answers (after the ownership check has been asked about `existing`). */
  existing?: CertificateRequest
  /**
   * When set, the apiserver as this cache sees it: creates land in it and
   * deletes leave it, as the watch would report. Unset, the cache only holds
   * what a test puts there (a watch gap, a lagging informer).
   */
  informer?: FakeCache

  async create(namespace: string, body: object, isOurs: (existing: CertificateRequest) => string | undefined, as?: { bearerToken: string }): Promise<CertificateRequest> {
    this.#check()
    const b = body as FakeRequests['creates'][number]['body']
    this.creates.push({ namespace, body: b, ...as })
    const name = b.metadata.name
    const taken = this.existing?.metadata.name === name ? this.existing : this.informer?.get(namespace, name)
    if (taken) {
      const why = isOurs(taken)
      if (why !== undefined) throw new RequestNameTakenError(namespace, name, why)
      return taken
    }
    const made = { ...b, metadata: { ...b.metadata, namespace, uid: `uid-of-${name}` } } as unknown as CertificateRequest
    this.informer?.objects.set(`${namespace}/${name}`, made)
    return made
  }
  async get(): Promise<CertificateRequest | undefined> { this.#check(); return undefined }
  // Like the real client, a 404 or another uid is success: the request is gone either way.
  async delete(namespace: string, name: string, uid?: string): Promise<void> {
    this.#check()
    this.deletes.push(`${namespace}/${name}`)
    this.deleteUids.push(uid)
    const key = `${namespace}/${name}`
    if (uid === undefined || this.informer?.objects.get(key)?.metadata.uid === uid) this.informer?.objects.delete(key)
  }
  async listForVolume(): Promise<CertificateRequest[]> { this.#check(); return [] }
}

export class FakeMounter implements MountOps {
  mounted = new Set<string>()
  /** Every bind made, in order. */
  binds: Array<{ source: string; target: string }> = []
  async isMountPoint(p: string): Promise<boolean> { return this.mounted.has(p) }
  async bindReadOnly(source: string, target: string): Promise<void> { this.binds.push({ source, target }); this.mounted.add(target) }
  async unmount(target: string): Promise<void> { this.mounted.delete(target) }
}

export class FakeJanitor implements RequestBurial {
  buried: Tombstone[] = []
  async bury(tb: Tombstone): Promise<void> { this.buried.push(tb) }
}

export interface RecordedEvent { kind: string; type: string; reason: string; note: string }

/** A request as the cache would hold it, owned by the harness's pod. */
export const cr = (name: string, volumeId: string, status?: object): CertificateRequest => ({
  metadata: { name, namespace: 'ns', annotations: { 'csi.cert-manager.io/volume-id': volumeId }, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: 'app', uid: 'uid-1' }] },
  spec: { issuerRef: { name: 'ca-issuer' } },
  ...(status ? { status } : {}),
})

export interface SetupOptions {
  /** Creates and deletes show in the cache at once (see FakeRequests.informer). */
  informer?: boolean
  /** --use-token-request: the pods' tokens by volume id. */
  podTokens?: Map<string, string>
}

/** A scratch data root, the fakes, a Reconciler over them, and a published-to-be record (not yet stored). */
export async function setup(t: Test, opts: SetupOptions = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'reconciler-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const dataRoot = join(dir, 'data')
  const newStore = () => new VolumeStore<VolumeRecord>({ dataRoot, validate: validateRecord, logger: { warn: () => {}, debug: () => {} } })
  const targetPath = join(dir, 'kubelet/pods/uid-1/volumes/kubernetes.io~csi/tls/mount')
  await mkdir(join(targetPath, '..'), { recursive: true })
  const requests = new FakeRequests()
  const clock = { t: NOW }
  /** Every log line the reconciler wrote, parsed: 'reconcile step' lines name the step performed. */
  const logs: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) })
  let writeHook: (dir: string) => Promise<void> = async () => {}
  const events: RecordedEvent[] = []
  const recorder: EventRecorder = { record: (ref, type, reason, _action, note) => void events.push({ kind: ref.kind, type, reason, note }) }
  const mounter = new FakeMounter()
  const janitor = new FakeJanitor()

  const build = (store: VolumeStore<VolumeRecord>, cache: FakeCache) => new Reconciler({
    nodeId: 'node-1', store, requests, cache, janitor, mounter,
    keys: { take: generatePrivateKey },
    files: { write: async (d, f, o) => { await writeHook(d); await writeAtomically(d, f, o) }, read: readPublished, clear: clearPublished },
    events: recorder,
    logger,
    now: () => clock.t,
    random: () => 0.5,
    issuance: new Semaphore(2),
    failureBackoff: { baseMs: 30_000, maxMs: 3600_000, jitter: 0 },
    ...(opts.podTokens ? { podTokens: { tokenFor: (id: string) => opts.podTokens!.get(id) } } : {}),
  })

  const store = newStore()
  const cache = new FakeCache()
  if (opts.informer) requests.informer = cache
  const volumeId = 'csi-vol-1'
  const record: VolumeRecord = {
    version: 1, volumeId, targetPath, nodeId: 'node-1',
    pod: { name: 'app', namespace: 'ns', uid: 'uid-1', serviceAccountName: 'default' },
    attributes: { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'a.example', 'csi.cert-manager.io/key-algorithm': 'ECDSA' },
    desired: 'published', createdAt: new Date(NOW).toISOString(), generation: 1,
  }
  const s = {
    dir, dataRoot, store, cache, requests, mounter, janitor, reconciler: build(store, cache), volumeId, record, events, logs, clock,
    setWriteHook: (h: typeof writeHook) => (writeHook = h),
    /**
     * A new process over the same data root: a new store and Reconciler (no
     * memory of the old one), and a cache re-listed from the apiserver.
     */
    restart(): void {
      const relisted = new FakeCache()
      relisted.objects = new Map(s.cache.objects)
      if (requests.informer) requests.informer = relisted
      s.store = newStore()
      s.cache = relisted
      s.reconciler = build(s.store, relisted)
    },
  }
  return s
}

export type Harness = Awaited<ReturnType<typeof setup>>

/** Plays cert-manager for the harness's cache: approves and signs, denies, or fails a request it holds. */
export class FakeIssuer {
  constructor(private readonly s: Harness, readonly ca: TestCA) {}

  #update(name: string, status: object): CertificateRequest {
    const key = `${this.s.record.pod.namespace}/${name}`
    const found = this.s.cache.objects.get(key)
    if (!found) throw new Error(`no CertificateRequest ${key} in the cache`)
    const next = { ...found, status } as CertificateRequest
    this.s.cache.objects.set(key, next)
    return next
  }

  /** Approved and Ready, with a certificate valid from now for the duration the request asks for. */
  async issue(name: string): Promise<string> {
    const found = this.s.cache.get(this.s.record.pod.namespace, name)
    const spec = found?.spec as { request?: string; duration?: string } | undefined
    if (!spec?.request) throw new Error(`CertificateRequest ${name} carries no CSR`)
    const lifetimeMs = Number.parseInt(spec.duration ?? '3600s', 10) * 1000
    const certPem = await this.ca.sign(spec.request, this.s.clock.t, lifetimeMs)
    this.#update(name, {
      certificate: b64(certPem), ca: b64(this.ca.pem),
      conditions: [{ type: 'Approved', status: 'True' }, { type: 'Ready', status: 'True', reason: 'Issued' }],
    })
    return certPem
  }

  deny(name: string, message = 'not on the allow list'): void {
    this.#update(name, { conditions: [{ type: 'Denied', status: 'True', reason: 'Policy', message }, { type: 'Ready', status: 'False', reason: 'Denied' }] })
  }

  fail(name: string, message = 'the issuer refused to sign'): void {
    this.#update(name, { conditions: [{ type: 'Approved', status: 'True' }, { type: 'Ready', status: 'False', reason: 'Failed', message }] })
  }
}
