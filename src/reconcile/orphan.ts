// NodeUnpublishVolume for a volume no record knows (its record was set aside
// as corrupt, say): no reconcile will ever come for it, and a mount left
// behind keeps the pod from terminating. The one exception to "only the
// reconciler mounts and removes", kept to what is provably this driver's.
import { rmdir } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { MountInfo } from '../host/mounts.js'
import { volumeDirName } from '../state/store.js'
import type { RequestBurial } from './reconciler.js'

export interface OrphanDeps {
  dataRoot: string
  mounter: { mountAt(path: string): Promise<MountInfo | undefined>; unmount(path: string): Promise<void> }
  store: { remove(volumeId: string): Promise<void> }
  /** What the request cache still holds for the volume. */
  knownRequests(volumeId: string): Array<{ namespace: string; name: string }>
  janitor: RequestBurial
  logger: Logger
}

/** Local first, like a teardown: the requests the cache knows go to the janitor. */
export async function releaseOrphan(d: OrphanDeps, volumeId: string, targetPath: string): Promise<void> {
  const known = d.knownRequests(volumeId)
  if (known.length > 0) await d.janitor.bury({ volumeId, requests: known, namespaces: [], createdAt: new Date().toISOString() })
  // Only a bind of this volume's own folder on our tmpfs is ours to undo:
  // whatever else is mounted at a path a caller names is left alone.
  const [at, dataRoot] = await Promise.all([d.mounter.mountAt(targetPath), d.mounter.mountAt(d.dataRoot)])
  if (at && dataRoot && at.device === dataRoot.device && at.root.startsWith(`/volumes/${volumeDirName(volumeId)}/`)) {
    await d.mounter.unmount(targetPath)
    await rmdir(targetPath).catch(() => undefined)
  } else if (at) {
    d.logger.warn({ volumeId, targetPath, source: at.root, fsType: at.fsType }, 'unpublish of a volume no record knows: what is mounted at its target is not from this driver; left alone')
  }
  // With no record nothing will ever reconcile the folder: its key goes now.
  await d.store.remove(volumeId)
  d.logger.warn({ volumeId, targetPath, unmounted: at !== undefined }, 'released a volume no record knows')
}
