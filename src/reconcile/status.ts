// What each volume's last reconcile concluded, for those who answer from it:
// NodePublishVolume (ready yet?), republish (answered from memory) and the
// metrics. The reconciler is its only writer.

export interface VolumeStatus {
  ready: boolean
  message: string
  /** A terminal failure is recorded and no request is in flight: waiting will not help soon. */
  failed: boolean
  /** The record is gone (unpublished or never published). */
  gone: boolean
  /** Where the volume is (to be) mounted, as last reconciled. */
  targetPath?: string
}

export class VolumeStatuses {
  readonly #statuses = new Map<string, VolumeStatus>()
  readonly #listeners = new Map<string, Set<(s: VolumeStatus) => void>>()

  get(volumeId: string): VolumeStatus | undefined {
    return this.#statuses.get(volumeId)
  }

  /** Volumes with a status: reconciled by this process and not gone. */
  volumes(): IterableIterator<string> {
    return this.#statuses.keys()
  }

  /** Records `s` (a gone volume is forgotten) and tells every watcher of the volume. */
  set(volumeId: string, s: VolumeStatus): void {
    if (s.gone) this.#statuses.delete(volumeId)
    else this.#statuses.set(volumeId, s)
    for (const fn of this.#listeners.get(volumeId) ?? []) fn(s)
  }

  /** Calls fn with every status this volume reaches, until the returned function is called. */
  watch(volumeId: string, fn: (s: VolumeStatus) => void): () => void {
    let set = this.#listeners.get(volumeId)
    if (!set) this.#listeners.set(volumeId, (set = new Set()))
    set.add(fn)
    return () => {
      set.delete(fn)
      if (set.size === 0) this.#listeners.delete(volumeId)
    }
  }
}
