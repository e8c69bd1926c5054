// Assembles the reconciling driver: store, informer, queue, reconciler and
// the publisher the CSI Node service calls. main.ts only passes config in.
import { ApiClient } from './kube/api-client.js'
import type { RateLimit } from './kube/rate-limit.js'
import type { PodTokens } from './kube/pod-tokens.js'
import { loadClusterAccess } from './kube/kubeconfig.js'
import { access, constants } from 'node:fs/promises'
import type { DataRootLock } from './host/data-root-lock.js'
import { TombstoneStore } from './state/tombstones.js'
import { RequestJanitor } from './reconcile/request-janitor.js'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { DriverMetrics } from './metrics/metrics.js'
import { VolumeStore } from './state/store.js'
import { Mounter } from './host/mounts.js'
import { writeAtomically, readPublished, clearPublished } from './host/atomic-dir.js'
import { SpaceWatch } from './host/space-watch.js'
import { KubeRequestClient } from './kube/requests.js'
import { RequestInformer } from './kube/request-informer.js'
import { KubeEventRecorder } from './kube/events.js'
import { WorkQueue, type Backoff, type Priority } from './reconcile/queue.js'
import { startResync } from './reconcile/resync.js'
import { Semaphore } from './reconcile/semaphore.js'
import { Reconciler } from './reconcile/reconciler.js'
import { KeyPool } from './pki/key-pool.js'
import { generatePrivateKey } from './pki/keys.js'
import { DesiredStatePublisher } from './reconcile/desired-state.js'
import { releaseOrphan } from './reconcile/orphan.js'
import { validateRecord, type VolumeRecord } from './reconcile/record.js'

export interface DriverConfig {
  nodeId: string
  dataRoot: string
  /** Size of the tmpfs mounted on the data root when it is not on tmpfs already. */
  dataRootSizeBytes?: number
  kubeconfig?: string
  maxConcurrentIssuances: number
  /** Backoff after a terminal failure (denied, failed) before a new request. */
  failureBackoff?: Backoff
  workers?: number
  /** Every known volume is reconciled again this often, spread over the period. */
  resyncPeriodMs?: number
  metrics?: DriverMetrics
  /** --kube-api-timeout, --kube-api-qps/burst and --cache-relist-period; defaults 30 s, no limit and 5 min. */
  kube?: { apiTimeoutMs?: number; rateLimit?: RateLimit; cacheRelistPeriodMs?: number }
  /** --use-token-request: requests are made with the pods' own tokens. */
  podTokens?: PodTokens
  /** The data root's lock, taken by main.ts before anything else. */
  lock?: Pick<DataRootLock, 'lockAgain'>
}

export interface RunningDriver {
  publisher: DesiredStatePublisher
  reconciler: Reconciler
  ready(): Promise<boolean>
  stop(): Promise<void>
}

export async function startDriver(config: DriverConfig, logger: Logger): Promise<RunningDriver> {
  const api = new ApiClient(await loadClusterAccess(config.kubeconfig), {
    timeoutMs: config.kube?.apiTimeoutMs,
    ...(config.kube?.rateLimit ? { rateLimit: config.kube.rateLimit } : {}),
    onThrottled: ms => config.metrics?.apiThrottled(ms / 1000),
  })
  const mounter = new Mounter()
  // Key material never touches a disk: the data root gets our own tmpfs
  // (main.ts checked the directory with checkDataRoot before locking it).
  const tmpfs = await mounter.mountPrivateTmpfs(config.dataRoot, config.dataRootSizeBytes)
  // A driver starting later finds the tmpfs, not the directory main.ts locked.
  if (tmpfs === 'mounted') await config.lock?.lockAgain()
  logger.info({ dataRoot: config.dataRoot, tmpfs }, 'data root ready')

  const events = new KubeEventRecorder(api, config.nodeId, logger)
  const store = new VolumeStore<VolumeRecord>({
    dataRoot: config.dataRoot,
    validate: validateRecord,
    logger,
    onCorrupt: (path, err) => {
      logger.error({ path, err }, 'corrupt volume record set aside')
      // The pod is unknown without the record: tell the node's story instead.
      events.record({ apiVersion: 'v1', kind: 'Node', name: config.nodeId, namespace: 'default' }, 'Warning', 'CorruptVolumeRecord', 'Recover',
        `set aside ${path}: ${String(err).slice(0, 200)}; the kubelet's next publish records the volume again`)
    },
  })
  // A request call that reaches the apiserver ends the cache's backoff wait (declared below).
  const requests = new KubeRequestClient(api, { onAnswered: () => informer.retryNow() })
  const janitor = new RequestJanitor({
    tombstones: new TombstoneStore(config.dataRoot, logger),
    requests,
    logger,
    clock: { now: Date.now, setTimeout: (fn, ms) => setTimeout(fn, ms).unref(), clearTimeout: h => clearTimeout(h as NodeJS.Timeout) },
    random: Math.random,
  })
  // Declared before it is built: the callbacks below refer to it before it exists.
  // eslint-disable-next-line prefer-const
  let queue: WorkQueue | undefined
  const enqueue = (volumeId: string, priority?: Priority): void => queue?.add(volumeId, priority)
  // The first LIST reports every request of every stored volume: those all
  // go to the start-up pass anyway, at low priority, not ahead of CSI calls.
  let listedOnce = false
  const informer = new RequestInformer({
    api, nodeId: config.nodeId, logger, onChange: volumeId => enqueue(volumeId, listedOnce ? 'normal' : 'low'),
    relistPeriodMs: config.kube?.cacheRelistPeriodMs,
    // The API is back: what failed on it goes again now, not after a backoff
    // grown during the outage (a renewal due meanwhile would wait minutes).
    onRecovered: () => {
      const retried = queue?.retryFailed(1000) ?? 0
      janitor.retrySoon()
      logger.info({ retried, tombstones: janitor.pending }, 'Kubernetes API reachable again; retrying what failed on it')
    },
  })
  // Work that failed on a full data root goes again as soon as there is room,
  // not after a backoff grown while it was full.
  const space = new SpaceWatch({
    path: config.dataRoot,
    onRoom: freeBytes => {
      const retried = queue?.retryFailed(1000) ?? 0
      logger.info({ retried, freeBytes }, 'the data root has room again; retrying what failed on it')
    },
    onError: err => logger.warn({ err }, 'cannot read the data root\'s free space; will try again'),
  })
  const keys = new KeyPool({
    generate: generatePrivateKey,
    onRefillError: (err, spec) => logger.warn({ err, key: `${spec.algorithm}-${spec.size}` }, 'could not make a key ahead; publishes make their own'),
  })
  const reconciler = new Reconciler({
    ...(config.podTokens ? { podTokens: config.podTokens } : {}),
    nodeId: config.nodeId,
    store,
    requests,
    cache: informer,
    janitor,
    mounter,
    files: { write: writeAtomically, read: readPublished, clear: clearPublished },
    events,
    logger,
    now: Date.now,
    random: Math.random,
    keys,
    issuance: new Semaphore(config.maxConcurrentIssuances),
    failureBackoff: config.failureBackoff ?? { baseMs: 30_000, maxMs: 60 * 60_000, jitter: 0.2 },
    onIssued: (_id, renewal, latencyMs) => config.metrics?.issued(renewal ? 'renew' : 'issue', latencyMs > 0 ? latencyMs / 1000 : undefined),
    onFailure: (_id, renewal, reason) => config.metrics?.failed(renewal ? 'renew' : 'issue', reason),
    onVolumeState: (id, s) => (s ? config.metrics?.volumeState(id, s) : config.metrics?.volumeForgotten(id)),
    onDataRootFull: () => space.noteFull(),
  })
  queue = new WorkQueue({
    workers: config.workers ?? 16,
    reconcile: (volumeId, signal) => reconciler.reconcile(volumeId, signal),
    onError: (volumeId, err, retryInMs) => {
      config.metrics?.reconcileError()
      logger.warn({ volumeId, err, retryInMs }, 'reconcile failed; will retry')
    },
  })
  config.metrics?.setQueueDepth(() => queue?.length ?? 0)

  // A restart resumes every volume from the store, after clearing what a kill
  // left half removed. The cache keeps only requests of known volumes, so it
  // learns them all before its first LIST.
  await store.sweep()
  const records = await store.list()
  for (const r of records) informer.track({ volumeId: r.volumeId, namespace: r.pod.namespace, podUid: r.pod.uid })
  await informer.start()
  listedOnce = true
  await janitor.start()
  queue.start()
  // Low priority: a republish (or any CSI call) goes ahead of this pass.
  for (const r of records) queue.add(r.volumeId, 'low')
  logger.info({ volumes: records.length }, 'recovered volumes from the store')
  const closeWatch = await store.watch(volumeId => volumeId && queue?.add(volumeId))
  const resync = startResync({
    volumes: () => reconciler.knownVolumes(),
    status: id => reconciler.status(id),
    servesAsIs: (id, targetPath) => reconciler.servesAsIs(id, targetPath),
    enqueue,
  }, config.resyncPeriodMs ?? 120_000, r => {
    if (r.enqueued > 0) logger.debug(r, 'resync: volumes in doubt go to a full reconcile')
  })

  return {
    reconciler,
    publisher: new DesiredStatePublisher({
      nodeId: config.nodeId, store, enqueue, reconciler, statuses: reconciler.statuses, now: Date.now,
      holdLowPriority: () => queue?.hold() ?? (() => {}),
      releaseOrphan: (volumeId, targetPath) => releaseOrphan({
        dataRoot: config.dataRoot, mounter, store, janitor, logger,
        knownRequests: id => informer.forVolume(id).map(cr => ({ namespace: cr.metadata.namespace, name: cr.metadata.name })),
      }, volumeId, targetPath),
    }),
    ready: async () => informer.synced && (await access(join(config.dataRoot), constants.W_OK).then(() => true, () => false)),
    stop: async () => {
      resync.stop()
      space.stop()
      await closeWatch()
      await queue?.shutdown()
      await janitor.stop()
      await informer.stop()
      keys.close()
    },
  }
}
