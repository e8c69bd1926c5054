// The CSI side of the reconciler: NodePublishVolume and NodeUnpublishVolume
// only record desired state, enqueue the volume, and wait for the reconciler
// to report it ready (or gone). They never touch keys, requests or mounts.
import type { VolumePublisher, PublishRequest, PublishOutcome } from '../csi/node.js'
import { DeadlineExceededError, FailedPreconditionError, ResourceExhaustedError } from '../errors.js'
import { isNoSpace } from '../host/files.js'
import type { VolumeRecord } from './record.js'
import type { Reconciler, RecordStore } from './reconciler.js'
import type { VolumeStatus, VolumeStatuses } from './status.js'
import { RecordConflictError, revisionOf } from '../state/store.js'
import type { Priority } from './queue.js'

export interface PublisherDeps {
  nodeId: string
  store: RecordStore
  /** `low`: nobody waits on it (see the work queue's priorities). */
  enqueue: (volumeId: string, priority?: Priority) => void
  /** Holds the queue's low lane while a CSI call is in flight (WorkQueue.hold); returns the release. */
  holdLowPriority?: () => () => void
  /** Read, never written: the reconciler concludes each volume's status. */
  statuses: Pick<VolumeStatuses, 'get' | 'watch'>
  reconciler: Pick<Reconciler, 'forceTeardown' | 'reportDataRootFull' | 'servesAsIs'>
  now: () => number
  /** Unmounts a target no record knows (the record was lost) and deletes its requests: see unpublish. */
  releaseOrphan: (volumeId: string, targetPath: string) => Promise<void>
}

export class DesiredStatePublisher implements VolumePublisher {
  readonly #d: PublisherDeps
  constructor(d: PublisherDeps) {
    this.#d = d
  }

  async publish(req: PublishRequest, signal: AbortSignal): Promise<PublishOutcome> {
    // requiresRepublish calls this every minute or so per volume: answer from memory.
    const status = this.#d.statuses.get(req.volumeId)
    if (status?.ready && status.targetPath === req.targetPath && !this.#unpublishing.has(req.volumeId)) return 'unchanged'
    const release = this.#d.holdLowPriority?.()
    try {
      return await this.#publish(req, status, signal)
    } finally {
      release?.()
    }
  }

  async #publish(req: PublishRequest, status: VolumeStatus | undefined, signal: AbortSignal): Promise<PublishOutcome> {
    const { unchanged } = await this.#updateRecord(req.volumeId, existing => {
      if (existing && existing.desired === 'published' && existing.targetPath === req.targetPath) return undefined
      const { mountGroup: _, ...kept } = existing ?? { generation: 0, createdAt: new Date(this.#d.now()).toISOString() }
      return {
        ...kept,
        version: 1,
        volumeId: req.volumeId,
        targetPath: req.targetPath,
        nodeId: this.#d.nodeId,
        pod: req.pod,
        attributes: req.attributes,
        ...(req.mountGroup === undefined ? {} : { mountGroup: req.mountGroup }),
        desired: 'published',
      }
    }).catch((err: unknown) => {
      if (!isNoSpace(err)) throw err
      this.#d.reconciler.reportDataRootFull(req.pod, req.volumeId, err)
      throw new ResourceExhaustedError(`the data root is full (${(err as NodeJS.ErrnoException).code}): no room to record volume ${req.volumeId}; the kubelet will retry once there is room`, { cause: err })
    })
    // Not looked at since this process started (a restart with many volumes):
    // a volume that serves as things stand is answered now, not after the
    // start-up pass reaches it; the pass (low priority) still comes for it.
    // Any doubt falls through to the reconciler.
    if (status === undefined && unchanged && !this.#unpublishing.has(req.volumeId) &&
      await this.#d.reconciler.servesAsIs(req.volumeId, req.targetPath, unchanged).catch(() => false)) {
      this.#d.enqueue(req.volumeId, 'low')
      return 'unchanged'
    }
    await this.#waitFor(req.volumeId, signal, s => {
      if (s.ready) return true
      if (s.failed) throw new FailedPreconditionError(s.message)
      return false
    }, last => `volume ${req.volumeId} not ready yet: ${last ?? 'waiting for the reconciler'}; the kubelet will retry`)
    return 'published'
  }

  // A ready status lingers until the teardown's reconcile: no republish may
  // be answered from it meanwhile.
  readonly #unpublishing = new Set<string>()

  async unpublish(volumeId: string, targetPath: string): Promise<void> {
    this.#unpublishing.add(volumeId)
    const release = this.#d.holdLowPriority?.()
    try {
      await this.#teardown(volumeId, targetPath)
    } finally {
      release?.()
      this.#unpublishing.delete(volumeId)
    }
  }

  async #teardown(volumeId: string, targetPath: string): Promise<void> {
    const record = await this.#d.store.load(volumeId)
    // The one exception to "only the reconciler mounts": with its record lost
    // (set aside as corrupt, say) no reconcile will ever come for this
    // volume, and a mount left behind keeps the pod from terminating.
    if (!record) return this.#d.releaseOrphan(volumeId, targetPath)
    await this.#updateRecord(volumeId, r => (r && r.desired !== 'unpublished' ? { ...r, desired: 'unpublished' } : undefined)).catch((err: unknown) => {
      // A full data root must not keep a pod from terminating: the teardown
      // frees the volume's files first, then has room for its tombstone.
      if (!isNoSpace(err)) throw err
      this.#d.reconciler.forceTeardown(volumeId)
    })
    const signal = AbortSignal.timeout(60_000)
    await this.#waitFor(volumeId, signal, s => s.gone, last => `volume ${volumeId} not torn down yet: ${last ?? 'waiting for the reconciler'}`)
  }

  /**
   * Read, change, compare-and-swap, until no reconcile wrote in between:
   * neither side ever overwrites the other. `change` returns undefined for
   * "nothing to write"; the record read is then handed back as `unchanged`.
   */
  async #updateRecord(volumeId: string, change: (r: VolumeRecord | undefined) => VolumeRecord | undefined): Promise<{ unchanged?: VolumeRecord }> {
    for (let attempt = 1; ; attempt++) {
      const existing = await this.#d.store.load(volumeId)
      const next = change(existing)
      if (!next) return existing ? { unchanged: existing } : {}
      try {
        await this.#d.store.commit(next, revisionOf(existing))
        return {}
      } catch (err) {
        if (!(err instanceof RecordConflictError) || attempt >= 10) throw err
      }
    }
  }

  /** Subscribes before enqueueing so no status change can slip between the two. */
  #waitFor(volumeId: string, signal: AbortSignal, done: (s: VolumeStatus) => boolean, timeoutMessage: (last?: string) => string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let last: string | undefined
      const finish = (err?: unknown): void => {
        unsubscribe()
        signal.removeEventListener('abort', onAbort)
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the check's own error, as it came
        if (err) reject(err)
        else resolve()
      }
      const check = (s: VolumeStatus): void => {
        last = s.message
        try {
          if (done(s)) finish()
        } catch (err) {
          finish(err)
        }
      }
      const onAbort = (): void => finish(new DeadlineExceededError(timeoutMessage(last)))
      const unsubscribe = this.#d.statuses.watch(volumeId, check)
      signal.addEventListener('abort', onAbort, { once: true })
      if (signal.aborted) return onAbort()
      this.#d.enqueue(volumeId)
    })
  }
}
