// The one writer: observes a volume (record, keys, CertificateRequest,
// files, mount), asks the planner for the next step, performs it, and
// repeats until the planner says wait. CSI calls only record desired state
// and enqueue (desired-state.ts); the one exception, an unpublish of a volume no
// record knows, is orphan.ts.
// Every record write is a compare-and-swap against the revision this
// reconcile read, so a step never overwrites what a CSI call recorded
// meanwhile (an unpublish landing during acceptCertificate): on a conflict
// the reconcile starts over from the record as it is now.
import { type KeyObject, X509Certificate } from 'node:crypto'
import { access, rmdir } from 'node:fs/promises'
import { isNoSpace } from '../host/files.js'
import { VolumeStatuses, type VolumeStatus } from './status.js'
import { VolumeDir, type AtomicFolders } from '../state/volume-dir.js'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import type { KeySpec, VolumeSpec } from '../volume/types.js'
import { encodePrivateKeyPem, parsePrivateKeyPem, publicKeyMatches } from '../pki/keys.js'
import { buildCertificateRequest, requestName, requestState, type CertificateRequest } from '../kube/certificate-request.js'
import { RequestNameTakenError, type RequestClient } from '../kube/requests.js'
import { belongsToVolume, csrDigest, notOurRequest, type VolumeOwner } from '../kube/ownership.js'
import type { RequestCache } from '../kube/request-informer.js'
import type { EventRecorder, ObjectRef } from '../kube/events.js'
import { apiMessage } from '../kube/errors.js'
import { UnavailableError } from '../errors.js'
import type { PodTokens } from '../kube/pod-tokens.js'
import { nextStep, servesCertificate, type Observation, type Step } from './plan.js'
import { parseRecord, type VolumeRecord } from './record.js'
import { renewalTime } from './renewal.js'
import { backoffDelay, type Backoff, type ReconcileResult } from './queue.js'
import { renderDeterministic, renderKeystore, isFresh, encodeKey, publishedDigest, sha256, type StoredCertificate } from './render.js'
import type { Semaphore } from './semaphore.js'
import { RecordConflictError, revisionOf } from '../state/store.js'
import type { Tombstone } from '../state/tombstones.js'

export interface RecordStore {
  volumeDir(volumeId: string): string
  load(volumeId: string): Promise<VolumeRecord | undefined>
  /** Writes `next` only if the stored record is still at `expected` (undefined: none); throws RecordConflictError otherwise. */
  commit(next: VolumeRecord, expected: number | undefined): Promise<VolumeRecord>
  removeIfUnchanged(volumeId: string, expected: number | undefined): Promise<void>
}

/** Takes over deleting a torn-down volume's requests (see request-janitor.ts). */
export interface RequestBurial {
  bury(t: Tombstone): Promise<void>
}

export interface MountOps {
  isMountPoint(path: string): Promise<boolean>
  bindReadOnly(source: string, target: string): Promise<void>
  unmount(target: string): Promise<void>
}


export type { VolumeStatus } from './status.js'

export interface ReconcilerDeps {
  nodeId: string
  store: RecordStore
  requests: RequestClient
  cache: RequestCache
  janitor: RequestBurial
  mounter: MountOps
  /** The atomic folder writer each volume's folder uses (src/state/volume-dir.ts). */
  files: AtomicFolders
  events: EventRecorder
  logger: Logger
  now: () => number
  random: () => number
  /** Where new private keys come from: src/pki/key-pool.ts, or generatePrivateKey itself. */
  keys: KeySource
  /** Caps concurrent key generation and request creation on this node. */
  issuance: Semaphore
  failureBackoff: Backoff
  onIssued?: (volumeId: string, renewal: boolean, latencyMs: number) => void
  onFailure?: (volumeId: string, renewal: boolean, reason: string) => void
  /** Every status a volume reaches (undefined once forgotten), for metrics. */
  onVolumeState?: (volumeId: string, s: VolumeState | undefined) => void
  /** A write failed for want of space (every time, not rate-limited like the Event). */
  onDataRootFull?: () => void
  /** --use-token-request: requests are created with the pod's own token (src/kube/pod-tokens.ts). */
  podTokens?: Pick<PodTokens, 'tokenFor'>
}

export interface KeySource {
  take(spec: KeySpec): Promise<KeyObject>
}

export interface VolumeState {
  ready: boolean
  notAfter?: number
  renewAt?: number
  pod: { namespace: string; name: string }
}

/**
 * A step that failed, saying which: "createRequest: the Kubernetes API
 * answered 500 ...". The cause is kept whole (logged with its stack), and its
 * errno-style code copied so a full disk still reads as one.
 */
export class StepError extends Error {
  readonly code?: string
  constructor(readonly step: string, cause: unknown) {
    super(`${step}: ${apiMessage(cause)}`, { cause })
    this.name = 'StepError'
    const code = (cause as { code?: unknown } | null)?.code
    if (typeof code === 'string') this.code = code
  }
}

const MAX_STEPS = 25
/** Starts over from a fresh read this many times when a CSI call changes the record under a reconcile. */
const MAX_CONFLICTS = 5
/** A request we deleted is not "stale" again while the cache catches up (a lost delete event, a watch gap). */
const DELETED_MEMORY_MS = 10 * 60_000
/** After creating a request the informer wakes us; this is the next time if it never does. */
const REQUEST_RECHECK_MS = 60_000

export class Reconciler {
  /** What each volume's last reconcile concluded (src/reconcile/status.ts); written only here. */
  readonly statuses = new VolumeStatuses()

  readonly #d: ReconcilerDeps
  constructor(d: ReconcilerDeps) {
    this.#d = d
  }

  status(volumeId: string): VolumeStatus | undefined {
    return this.statuses.get(volumeId)
  }

  /** Volumes this process has reconciled and not forgotten. */
  knownVolumes(): IterableIterator<string> {
    return this.statuses.volumes()
  }

  /**
   * Converges one volume: observe, plan, perform one step, until the planner
   * says wait (the result then says when to look again) or the record is
   * gone. Throws a StepError naming the failed step (its cause kept) for the
   * queue's backoff; a CSI call that changes the record meanwhile makes it
   * start over, up to MAX_CONFLICTS times. An aborted `signal` (shutdown)
   * ends it at the next step, with nothing half done.
   */
  async reconcile(volumeId: string, signal?: AbortSignal): Promise<ReconcileResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#reconcileOnce(volumeId, signal)
      } catch (err) {
        if (!(err instanceof RecordConflictError) || attempt >= MAX_CONFLICTS) throw err
        this.#d.logger.debug({ volumeId, err }, 'record changed during the reconcile; starting over')
      }
    }
  }

  /**
   * True when the volume serves its certificate as things stand: its record
   * wants it published at `targetPath`, the files the pod sees are the ones
   * last rendered (their digest, recorded then) with a certificate not yet
   * expired, and the bind mount stands. No crypto, no status concluded: it
   * lets a republish after a restart be answered before the start-up pass
   * reaches its volume (the pass still comes, and checks everything).
   * `record`: the volume's record as the caller just read it, if it has one.
   */
  async servesAsIs(volumeId: string, targetPath: string, record?: VolumeRecord): Promise<boolean> {
    const doubt = await this.#doubtAboutServing(volumeId, targetPath, record ?? await this.#d.store.load(volumeId))
    if (doubt !== undefined) this.#d.logger.debug({ volumeId, doubt }, 'volume not known to serve as is: left to the reconciler')
    return doubt === undefined
  }

  async #doubtAboutServing(volumeId: string, targetPath: string, record: VolumeRecord | undefined): Promise<string | undefined> {
    const published = record?.published
    if (!record) return 'no record'
    if (record.desired !== 'published' || record.targetPath !== targetPath || this.#teardownWithoutRecord.has(volumeId)) return 'not wanted published at this target'
    if (!published) return 'no digest of the published files recorded'
    if (!(Date.parse(published.notAfter) > this.#d.now())) return 'the published certificate has expired'
    if (!parseRecord(record).ok) return 'invalid attributes'
    const files = await this.#dir(volumeId).readPublished().catch(() => undefined)
    if (!files || publishedDigest(files) !== published.sha256) return 'the published files differ from those rendered'
    if (!(await this.#d.mounter.isMountPoint(targetPath))) return 'not mounted'
    return undefined
  }

  // Unpublished volumes whose record could not say so (the data root is full).
  readonly #teardownWithoutRecord = new Set<string>()

  /** Tears the volume down as if its record said unpublished: for when writing that is what fails. */
  forceTeardown(volumeId: string): void {
    this.#teardownWithoutRecord.add(volumeId)
  }

  readonly #fullReported = new Map<string, number>()

  /** A Warning Event on the pod, at most once a minute per volume: the data root has no room. */
  reportDataRootFull(pod: { namespace: string; name: string; uid: string }, volumeId: string, err: unknown): void {
    this.#d.onDataRootFull?.()
    const now = this.#d.now()
    if (now - (this.#fullReported.get(volumeId) ?? -Infinity) < 60_000) return
    if (this.#fullReported.size > 10_000) this.#fullReported.clear()
    this.#fullReported.set(volumeId, now)
    this.#d.logger.error({ volumeId, err }, 'the data root is full')
    this.#d.events.record({ apiVersion: 'v1', kind: 'Pod', name: pod.name, namespace: pod.namespace, uid: pod.uid }, 'Warning', 'DataRootFull', 'Publish',
      `the driver's data root is full (${(err as NodeJS.ErrnoException).code ?? 'ENOSPC'}): volume ${volumeId} cannot be written until there is room; raise the tmpfs size or free volumes on this node`)
  }

  async #reconcileOnce(volumeId: string, signal?: AbortSignal): Promise<ReconcileResult> {
    let record = await this.#d.store.load(volumeId)
    if (!record) this.#teardownWithoutRecord.delete(volumeId)
    else if (this.#teardownWithoutRecord.has(volumeId)) record = { ...record, desired: 'unpublished' }
    const log = this.#d.logger.child({ volumeId, ...(record ? { pod: `${record.pod.namespace}/${record.pod.name}` } : {}) })
    // Steps change the record's progress, never its attributes or pod: one parse serves them all.
    // Before any request of it can exist, the cache learns whose requests to keep.
    if (record) this.#d.cache.track(ownerOf(record))
    const parsed = record ? parseRecord(record) : undefined
    const spec = parsed?.ok ? parsed.spec : undefined
    const invalidSpec = parsed && !parsed.ok ? `invalid attributes: ${parsed.issues.map(x => `${x.attribute}: ${x.message}`).join('; ')}` : undefined
    try {
      for (let i = 0; i < MAX_STEPS && record; i++) {
        if (signal?.aborted) return undefined
        const obs = await this.#observe(record, spec, invalidSpec)
        const step = nextStep(obs)
        if (step.kind === 'wait') {
          this.#setStatus(volumeId, { ready: step.ready, message: step.message, failed: !step.ready && record.failure !== undefined && !record.request, gone: false, targetPath: record.targetPath })
          this.#report(volumeId, step.ready, record, spec)
          return step.requeueAfterMs === undefined ? undefined : { requeueAfterMs: step.requeueAfterMs }
        }
        log.debug({ step: step.kind }, 'reconcile step')
        const next = await this.#apply(step, record, spec!, log, obs).catch((err: unknown) => {
          throw err instanceof RecordConflictError ? err : new StepError(step.kind, err)
        })
        if (next === 'stop') return { requeueAfterMs: REQUEST_RECHECK_MS }
        record = next
      }
      if (record) throw new Error(`volume did not converge within ${MAX_STEPS} steps`)
      this.#setStatus(volumeId, { ready: false, message: 'volume is not published on this node', failed: false, gone: true })
    } catch (err) {
      if (err instanceof RecordConflictError) throw err
      if (isNoSpace(err) && record) this.reportDataRootFull(record.pod, volumeId, err)
      const current = this.statuses.get(volumeId)
      this.#setStatus(volumeId, { ...current, ready: current?.ready ?? false, message: `error: ${apiMessage(err)}`, failed: false, gone: false })
      throw err
    }
  }

  #report(volumeId: string, ready: boolean, record: VolumeRecord, spec: VolumeSpec | undefined): void {
    const issued = record.issued
    this.#d.onVolumeState?.(volumeId, {
      ready,
      pod: { namespace: record.pod.namespace, name: record.pod.name },
      ...(issued ? { notAfter: Date.parse(issued.notAfter) } : {}),
      // With disable-auto-renew the recorded time passes with nothing done.
      ...(issued && spec && !spec.disableAutoRenew ? { renewAt: Date.parse(issued.renewAt) } : {}),
    })
  }

  #setStatus(volumeId: string, s: VolumeStatus): void {
    if (s.gone) {
      this.#described.delete(volumeId)
      this.#d.onVolumeState?.(volumeId, undefined)
    }
    this.statuses.set(volumeId, s)
  }

  // ---- observation ------------------------------------------------------

  #dir(volumeId: string): VolumeDir {
    return new VolumeDir(this.#d.store.volumeDir(volumeId), this.#d.files)
  }

  #readStored(volumeId: string): Promise<StoredCertificate | undefined> {
    return this.#dir(volumeId).readStored()
  }

  async #observe(record: VolumeRecord, spec: VolumeSpec | undefined, invalidSpec: string | undefined): Promise<Observation> {
    const p = this.#dir(record.volumeId)
    const now = this.#d.now()
    const stored = await p.readStored().catch(() => undefined)
    const current = stored ? this.#describe(record.volumeId, stored) : undefined
    let request: Observation['request']
    const owner = ownerOf(record)
    if (record.request && this.#d.cache.synced) {
      const cr = this.#d.cache.get(record.pod.namespace, record.request.name)
      const foreign = cr && notOurRequest(cr, owner, record.request)
      request = !cr ? 'missing' : foreign ? { foreign } : requestState(cr)
    }
    const keep = new Set([record.request?.name, record.issued?.requestName, record.failure?.requestName, ...(record.steppedOver ?? [])])
    const staleRequests = this.#d.cache.forVolume(record.volumeId)
      .filter(cr => belongsToVolume(cr, owner) && !keep.has(cr.metadata.name) && !cr.metadata.deletionTimestamp && !this.#deletedRecently(cr.metadata.namespace, cr.metadata.name, now))
      .map(cr => cr.metadata.name)
    const publishedFiles = await p.readPublished().catch(() => undefined)
    // Fresh also means recorded: the digest the quick checks compare with
    // (servesAsIs) is of these files. A crash between the write and the
    // record, or a record from before the digest, renders once more.
    const publishedFresh = stored !== undefined && spec !== undefined && publishedFiles !== undefined &&
      isFresh(spec, stored, publishedFiles, record.keystoreSha256, this.#encodedKey(record.volumeId, spec, stored)) &&
      // A record that lost its issued certificate (set aside as corrupt, made
      // again by a republish) gets no digest at render: it cannot need one.
      (record.issued === undefined || (record.published?.notAfter === record.issued.notAfter && record.published?.sha256 === publishedDigest(publishedFiles)))
    return {
      now,
      record,
      ...(invalidSpec ? { invalidSpec } : {}),
      disableAutoRenew: spec?.disableAutoRenew ?? true,
      hasPendingKey: await p.hasPendingKey(),
      ...(current ? { current } : {}),
      ...(request !== undefined ? { request } : {}),
      staleRequests,
      publishedFresh,
      mounted: await this.#d.mounter.isMountPoint(record.targetPath),
      targetParentExists: await exists(dirname(record.targetPath)),
    }
  }

  // Parsing the pair on every observation is most of an idle reconcile's
  // cost: remember the answer for the bytes it was computed from.
  readonly #described = new Map<string, { keyPem: string; certificatePem: string; current: Observation['current']; encoded?: { encoding: string; pem: string } }>()

  #encodedKey(volumeId: string, spec: VolumeSpec, stored: StoredCertificate): string {
    const known = this.#described.get(volumeId)
    if (known?.keyPem !== stored.keyPem) return encodeKey(spec, stored)
    if (known.encoded?.encoding !== spec.key.encoding) known.encoded = { encoding: spec.key.encoding, pem: encodeKey(spec, stored) }
    return known.encoded.pem
  }

  #describe(volumeId: string, stored: StoredCertificate): Observation['current'] {
    const known = this.#described.get(volumeId)
    if (known && known.keyPem === stored.keyPem && known.certificatePem === stored.certificatePem) return known.current
    let current: Observation['current']
    try {
      const cert = new X509Certificate(stored.certificatePem)
      current = {
        notBefore: Date.parse(cert.validFrom),
        notAfter: Date.parse(cert.validTo),
        keyMatches: publicKeyMatches(parsePrivateKeyPem(stored.keyPem), stored.certificatePem),
      }
    } catch {
      current = undefined // unreadable: treated as absent, and so re-issued
    }
    this.#described.set(volumeId, { keyPem: stored.keyPem, certificatePem: stored.certificatePem, current })
    return current
  }

  // A delete that answered (or 404'd) is done, whatever the cache still says.
  readonly #deleted = new Map<string, number>()

  #deletedRecently(namespace: string, name: string, now: number): boolean {
    const at = this.#deleted.get(`${namespace}/${name}`)
    if (at === undefined) return false
    if (now - at < DELETED_MEMORY_MS) return true
    this.#deleted.delete(`${namespace}/${name}`)
    return false
  }

  /** Deletes by the uid the cache holds, so an object that took the name since is left alone. */
  async #deleteRequest(namespace: string, name: string): Promise<void> {
    await this.#d.requests.delete(namespace, name, this.#d.cache.get(namespace, name)?.metadata.uid)
    if (this.#deleted.size > 10_000) this.#deleted.clear()
    this.#deleted.set(`${namespace}/${name}`, this.#d.now())
  }

  /** The compare-and-swap every step writes through. */
  #commit(next: VolumeRecord, read: VolumeRecord): Promise<VolumeRecord> {
    return this.#d.store.commit(next, revisionOf(read))
  }

  // ---- effects ----------------------------------------------------------

  /** Whose request it is: the driver's own (undefined), or the pod's with --use-token-request. */
  #requestIdentity(record: VolumeRecord): { bearerToken: string } | undefined {
    if (!this.#d.podTokens) return undefined
    const bearerToken = this.#d.podTokens.tokenFor(record.volumeId)
    if (bearerToken !== undefined) return { bearerToken }
    // After a restart, or a token left to expire: the kubelet's next republish brings one.
    throw new UnavailableError(`no current service account token of pod ${record.pod.namespace}/${record.pod.name} to make its CertificateRequest with (--use-token-request); waiting for the kubelet's next republish`)
  }

  /**
   * Performs one step. Answers the record as the step left it (the next
   * observation starts from it), undefined once the record is gone
   * (teardown), or 'stop': a request was created and the informer will say
   * when it changes, so the reconcile ends here and looks again in
   * REQUEST_RECHECK_MS should it never hear.
   */
  async #apply(step: Exclude<Step, { kind: 'wait' }>, record: VolumeRecord, spec: VolumeSpec, log: Logger, obs: Observation): Promise<VolumeRecord | undefined | 'stop'> {
    const p = this.#dir(record.volumeId)
    switch (step.kind) {
      case 'teardown':
        await this.#teardown(record, log, step.reason)
        return undefined

      case 'generateKey': {
        const stored = spec.reusePrivateKey ? await this.#readStored(record.volumeId) : undefined
        const keyPem = stored?.keyPem ??
          encodePrivateKeyPem(await this.#d.issuance.run(() => this.#d.keys.take(spec.key)), 'PKCS8')
        await p.writePendingKey(keyPem)
        return record
      }

      case 'createRequest': {
        const csr = await this.#requestCsr(record, spec)
        if (record.request?.csrSha256 !== csr.sha256) {
          // Name and CSR digest in one write, before the create: the object
          // of that name holding these bytes is the one we made.
          const generation = record.request ? record.generation : record.generation + 1
          const request = record.request ?? { name: requestName(record.pod, record.volumeId, generation), generation, renewal: record.issued !== undefined }
          record = await this.#commit({ ...record, generation, request: { ...request, csrSha256: csr.sha256 } }, record)
        }
        const req = record.request!
        const owner = ownerOf(record)
        const body = buildCertificateRequest({ name: req.name, volumeId: record.volumeId, nodeId: this.#d.nodeId, pod: record.pod, spec, csrPem: csr.pem })
        const as = this.#requestIdentity(record)
        let created: CertificateRequest
        try {
          created = await this.#d.issuance.run(() => this.#d.requests.create(record.pod.namespace, body, existing => notOurRequest(existing, owner, req), as))
        } catch (err) {
          if (!(err instanceof RequestNameTakenError)) throw err
          return this.#stepOver(record, err.why, log)
        }
        log.info({ request: req.name, generation: req.generation, renewal: req.renewal }, 'CertificateRequest created')
        this.#requestedAt.set(req.name, this.#d.now())
        if (created.metadata.uid !== undefined && created.metadata.uid !== req.uid) {
          record = await this.#commit({ ...record, request: { ...req, uid: created.metadata.uid } }, record)
        }
        // The informer reports its progress; nothing more to do until then.
        // Ready while a renewal is in flight only if a certificate is served
        // meanwhile (the planner's rule): a lost stored pair is not ready.
        const state = requestState(created)
        const served = servesCertificate(obs)
        this.#setStatus(record.volumeId, { ready: served, message: state.message, failed: false, gone: false, targetPath: record.targetPath })
        this.#report(record.volumeId, served, record, spec)
        return 'stop'
      }

      case 'stepOver':
        return this.#stepOver(record, step.reason, log)

      case 'abandonRequest': {
        log.warn({ request: record.request?.name, reason: step.reason }, 'abandoning CertificateRequest')
        await this.#deleteRequest(record.pod.namespace, record.request!.name)
        this.#requestedAt.delete(record.request!.name)
        await p.dropPendingCsr()
        const { request: _dropped, ...rest } = record
        return this.#commit(rest, record)
      }

      case 'acceptCertificate':
        return this.#accept(record, spec, step.certificatePem, step.caPem, log)

      case 'recordFailure':
        return this.#recordFailure(record, step.reason, step.message, log)

      case 'deleteRequests':
        // Remembered as deleted, so the next observation moves on even if
        // the cache never hears of it (a 404 means someone was quicker).
        for (const name of step.names) {
          await this.#deleteRequest(record.pod.namespace, name)
          log.info({ request: name }, 'deleted superseded CertificateRequest')
        }
        return record

      case 'render': {
        const stored = (await this.#readStored(record.volumeId))!
        const files = renderDeterministic(spec, stored)
        const keystore = await renderKeystore(spec, stored)
        if (keystore) files.push(keystore)
        await p.writePublished(files, spec.fsGroup === undefined ? undefined : { uid: 0, gid: spec.fsGroup })
        const keystoreSha256 = keystore ? sha256(keystore.data) : undefined
        const published = record.issued ? { sha256: publishedDigest(files), notAfter: record.issued.notAfter } : undefined
        if (keystoreSha256 !== record.keystoreSha256 || published?.sha256 !== record.published?.sha256) {
          const { keystoreSha256: _old, published: _was, ...rest } = record
          record = await this.#commit({ ...rest, ...(keystoreSha256 ? { keystoreSha256 } : {}), ...(published ? { published } : {}) }, record)
        }
        log.debug('volume files written')
        return record
      }

      case 'mount':
        await this.#d.mounter.bindReadOnly(p.publishedPath, record.targetPath)
        log.info({ targetPath: record.targetPath }, 'volume mounted')
        return record
    }
  }

  readonly #requestedAt = new Map<string, number>()

  /** Requests whose issuance latency is being timed: each entry goes when its request ends (a leak check reads this). */
  get timedRequests(): number {
    return this.#requestedAt.size
  }

  async #accept(record: VolumeRecord, spec: VolumeSpec, certificatePem: string, caPem: string | undefined, log: Logger): Promise<VolumeRecord> {
    const p = this.#dir(record.volumeId)
    const req = record.request!
    const keyPem = await p.readPendingKey()
    let cert: X509Certificate
    try {
      cert = new X509Certificate(certificatePem)
    } catch (err) {
      // An issuer's bug, not ours: retrying the same request cannot help, a new one may.
      return this.#rejectCertificate(record, 'malformed-certificate', `the certificate issued for ${req.name} cannot be parsed (${String((err as Error).message ?? err).slice(0, 200)})`, log)
    }
    if (!publicKeyMatches(parsePrivateKeyPem(keyPem), certificatePem)) {
      return this.#rejectCertificate(record, 'key-mismatch', `the certificate issued for ${req.name} does not match the volume's private key`, log)
    }
    const notBefore = Date.parse(cert.validFrom)
    const notAfter = Date.parse(cert.validTo)
    const renewAt = renewalTime({ notBefore, notAfter }, spec.renewBeforeMs, this.#d.random)
    // Order matters for a crash at any point: the stored pair is swapped in
    // one step, then the pending key goes, then the record says so.
    await p.writeStored({ keyPem, certificatePem, ...(caPem ? { caPem } : {}) })
    await p.dropPending()
    const next = await this.#commitIssued(record, req.name, {
      requestName: req.name, notBefore: new Date(notBefore).toISOString(), notAfter: new Date(notAfter).toISOString(), renewAt: new Date(renewAt).toISOString(), serial: cert.serialNumber, issuedAt: new Date(this.#d.now()).toISOString(),
    })
    const reason = req.renewal ? 'Renewed' : 'Issued'
    const note = `certificate ${cert.serialNumber} valid until ${new Date(notAfter).toISOString()}; renewal at ${new Date(renewAt).toISOString()}`
    log.info({ request: req.name, notAfter: new Date(notAfter).toISOString(), renewAt: new Date(renewAt).toISOString() }, reason === 'Issued' ? 'certificate issued' : 'certificate renewed')
    this.#emit(record, req.name, 'Normal', reason, req.renewal ? 'Renew' : 'Issue', note)
    const started = this.#requestedAt.get(req.name)
    this.#requestedAt.delete(req.name)
    this.#d.onIssued?.(record.volumeId, req.renewal, started === undefined ? 0 : this.#d.now() - started)
    return next
  }

  /**
   * Records an accepted certificate even when a CSI call wrote the record
   * meanwhile. The new pair is already swapped in and the pending key gone:
   * starting the reconcile over would see a request in flight without its
   * key and abandon a request that was issued. So the change is applied
   * again to the fresh record, as long as it still awaits this request.
   */
  async #commitIssued(read: VolumeRecord, requestName: string, issued: NonNullable<VolumeRecord['issued']>): Promise<VolumeRecord> {
    for (let attempt = 1; ; attempt++) {
      const { request: _r, failure: _f, ...rest } = read
      try {
        return await this.#commit({ ...rest, issued }, read)
      } catch (err) {
        if (!(err instanceof RecordConflictError) || attempt >= MAX_CONFLICTS) throw err
        const fresh = await this.#d.store.load(read.volumeId)
        if (fresh?.request?.name !== requestName) throw err
        read = fresh
      }
    }
  }

  /**
   * Local only, so it finishes with the API away: unmount, files, keys, then
   * the record. The requests are handed to the janitor first (durably), which
   * deletes them when the API lets it.
   */
  async #teardown(record: VolumeRecord, log: Logger, reason: string): Promise<void> {
    const p = this.#dir(record.volumeId)
    await this.#d.mounter.unmount(record.targetPath)
    // The CSI spec has the plugin remove the target it created; a kubelet-made one may already be gone.
    await rmdir(record.targetPath).catch(() => undefined)
    await p.clear()
    const owner = ownerOf(record)
    // Only what is ours by more than a label; each with the uid we know, so a
    // namesake someone made since is left alone (see kube/ownership.ts).
    const uids = new Map<string, string | undefined>()
    const notOurs = new Set(record.steppedOver ?? [])
    for (const cr of this.#d.cache.forVolume(record.volumeId)) if (belongsToVolume(cr, owner) && !notOurs.has(cr.metadata.name)) uids.set(cr.metadata.name, cr.metadata.uid)
    for (const name of [record.issued?.requestName, record.failure?.requestName]) if (name !== undefined && !uids.has(name)) uids.set(name, undefined)
    if (record.request) {
      const cached = this.#d.cache.get(record.pod.namespace, record.request.name)
      const ours = cached === undefined || notOurRequest(cached, owner, record.request) === undefined
      if (ours) uids.set(record.request.name, record.request.uid ?? cached?.metadata.uid)
      else uids.delete(record.request.name)
      this.#requestedAt.delete(record.request.name)
    }
    await this.#d.janitor.bury({
      volumeId: record.volumeId,
      podUid: record.pod.uid,
      requests: [...uids].map(([name, uid]) => ({ namespace: record.pod.namespace, name, ...(uid ? { uid } : {}) })),
      namespaces: [record.pod.namespace],
      ...(record.steppedOver?.length ? { spare: record.steppedOver } : {}),
      createdAt: new Date(this.#d.now()).toISOString(),
    })
    await this.#d.store.removeIfUnchanged(record.volumeId, revisionOf(record))
    this.#d.cache.untrack(record.volumeId)
    this.#teardownWithoutRecord.delete(record.volumeId)
    log.info({ reason, requests: uids.size }, 'volume torn down; its CertificateRequests are being deleted')
  }

  /**
   * The CSR for the request in flight: the one kept next to the pending key
   * when the record names it, so a retry sends the same bytes (ECDSA
   * signatures differ every time) and adopts what a lost answer created.
   */
  async #requestCsr(record: VolumeRecord, spec: VolumeSpec): Promise<{ pem: string; sha256: string }> {
    const p = this.#dir(record.volumeId)
    // spec.request carries the PEM in base64: the digest is of what is sent.
    const digestOf = (pem: string): string => csrDigest(Buffer.from(pem).toString('base64'))
    const kept = await p.readPendingCsr()
    if (kept !== undefined && record.request?.csrSha256 === digestOf(kept)) return { pem: kept, sha256: record.request.csrSha256 }
    const key = parsePrivateKeyPem(await p.readPendingKey())
    // Loaded on the first CSR: the X.509 library is ~6 MiB that an idle node never needs.
    const { buildCsrPem } = await import('../pki/csr.js')
    const pem = await this.#d.issuance.run(() => buildCsrPem(spec, key))
    await p.writePendingCsr(pem)
    return { pem, sha256: digestOf(pem) }
  }

  /**
   * The request's name holds an object the driver did not create: leave it
   * be and move to the next generation, under a name no one can guess.
   */
  async #stepOver(record: VolumeRecord, why: string, log: Logger): Promise<VolumeRecord> {
    const taken = record.request!
    const generation = record.generation + 1
    const suffix = Math.floor(this.#d.random() * 36 ** 5).toString(36).padStart(5, '0')
    const name = `${requestName(record.pod, record.volumeId, generation).slice(0, 247)}-${suffix}`
    const { csrSha256: _c, uid: _u, ...rest } = taken
    // Remembered, so that it is never deleted as superseded: an owner reference to the pod is anyone's to copy.
    const steppedOver = [...(record.steppedOver ?? []), taken.name].slice(-16)
    const next = await this.#commit({ ...record, generation, steppedOver, request: { ...rest, name, generation } }, record)
    log.warn({ request: taken.name, why, next: name }, 'CertificateRequest name taken by an object the driver did not create; using another')
    this.#emit(record, taken.name, 'Warning', 'RequestNameTaken', taken.renewal ? 'Renew' : 'Issue',
      `CertificateRequest ${record.pod.namespace}/${taken.name} exists but was not created by the driver for this volume (${why}); it is left alone and ${name} is requested instead`)
    return next
  }

  /** The request in flight ended in failure: recorded (no new request before its backoff), an Event, the metrics. */
  async #recordFailure(record: VolumeRecord, reason: string, message: string, log: Logger): Promise<VolumeRecord> {
    const req = record.request!
    const now = this.#d.now()
    const count = (record.failure?.count ?? 0) + 1
    const retryAt = now + backoffDelay(count, this.#d.failureBackoff, this.#d.random)
    const { request: _done, ...rest } = record
    const next = await this.#commit({ ...rest, failure: { reason, message, at: new Date(now).toISOString(), count, retryAt: new Date(retryAt).toISOString(), requestName: req.name } }, record)
    log.warn({ request: req.name, reason, retryInMs: retryAt - now }, message)
    this.#emit(record, req.name, 'Warning', req.renewal ? 'RenewalFailed' : 'IssuanceFailed', req.renewal ? 'Renew' : 'Issue', `${message}; retrying in ${Math.ceil((retryAt - now) / 1000)}s`)
    this.#d.onFailure?.(record.volumeId, req.renewal, reason)
    this.#requestedAt.delete(req.name)
    return next
  }

  /** The issued certificate cannot be used: a recorded failure, and the next attempt starts from a new key. */
  async #rejectCertificate(record: VolumeRecord, reason: string, message: string, log: Logger): Promise<VolumeRecord> {
    const next = await this.#recordFailure(record, reason, message, log)
    await this.#dir(record.volumeId).dropPending()
    return next
  }

  #emit(record: VolumeRecord, requestNameValue: string, type: 'Normal' | 'Warning', reason: string, action: string, note: string): void {
    const cr: ObjectRef = { apiVersion: 'cert-manager.io/v1', kind: 'CertificateRequest', name: requestNameValue, namespace: record.pod.namespace }
    const pod: ObjectRef = { apiVersion: 'v1', kind: 'Pod', name: record.pod.name, namespace: record.pod.namespace, uid: record.pod.uid }
    this.#d.events.record(cr, type, reason, action, note)
    this.#d.events.record(pod, type, reason, action, `${note} (CertificateRequest ${requestNameValue})`)
  }
}

function ownerOf(record: VolumeRecord): VolumeOwner {
  return { volumeId: record.volumeId, namespace: record.pod.namespace, podUid: record.pod.uid }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false)
}
