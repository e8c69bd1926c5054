// A cache of this node's CertificateRequests, kept by a Reflector
// (./reflector.ts: LIST + WATCH with resourceVersions, bookmarks, a diffed
// periodic re-list and backoff). Not client-node's makeInformer: it stops for
// good on any error, our own stop raises an error too, and a restarted one
// starts empty so what was deleted in between is never reported (STACK.md).
// It holds only requests that belong to a volume this node tracks (see
// ./ownership.ts): labelled copies from anyone else are dropped on arrival,
// so they can neither grow the cache nor be mistaken for ours.
import { CustomObjectsApi, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import {
  CR_GROUP, CR_VERSION, CR_PLURAL, LABEL_NODE, ANNOTATION_VOLUME_ID,
  certificateRequestSchema, nodeLabelValue, type CertificateRequest,
} from './certificate-request.js'
import { DEFAULT_API_TIMEOUT_MS, withTimeout } from './config.js'
import { belongsToVolume, type VolumeOwner } from './ownership.js'
import { Reflector, objectKey, type ListResult, type ListWatch, type WatchEventType, type WatchRequest } from './reflector.js'
import type { Backoff, Clock } from '../time/backoff.js'

export interface RequestCache {
  readonly synced: boolean
  get(namespace: string, name: string): CertificateRequest | undefined
  forVolume(volumeId: string): CertificateRequest[]
  /** From now on, keep the requests that belong to this volume (before any is created for it). */
  track(owner: VolumeOwner): void
  /** Forget the volume and its requests. */
  untrack(volumeId: string): void
}

export interface RequestInformerOptions {
  kc: KubeConfig
  nodeId: string
  logger: Logger
  /** Every add, update and delete (a delete found by a re-list included), with the request's last state. */
  onChange: (volumeId: string, cr: CertificateRequest) => void
  /** Safety re-list period (LIST + diff); default 5 min. */
  relistPeriodMs?: number
  /** Old name of relistPeriodMs. */
  resyncMs?: number
  /** Deadline of the LIST and of opening a watch; default 30 s. */
  apiTimeoutMs?: number
  /** The API answers again after one or more failures. */
  onRecovered?: () => void
  /** For tests: what to list and watch instead of the API. */
  listWatch?: ListWatch<KubernetesObject>
  backoff?: Backoff
  healthyAfterMs?: number
  clock?: Clock
  random?: () => number
}

const key = (namespace: string, name: string): string => `${namespace}/${name}`
const volumeOf = (cr: CertificateRequest): string | undefined => cr.metadata.annotations?.[ANNOTATION_VOLUME_ID]

export class RequestInformer implements RequestCache {
  readonly #byKey = new Map<string, CertificateRequest>()
  readonly #byVolume = new Map<string, Set<string>>()
  readonly #owners = new Map<string, VolumeOwner>()
  readonly #reflector: Reflector<KubernetesObject>

  readonly #opts: RequestInformerOptions
  constructor(opts: RequestInformerOptions) {
    this.#opts = opts
    this.#reflector = new Reflector<KubernetesObject>({
      what: 'CertificateRequest',
      listWatch: opts.listWatch ?? new CertificateRequestListWatch(opts.kc, opts.nodeId, opts.apiTimeoutMs ?? DEFAULT_API_TIMEOUT_MS),
      handlers: {
        add: obj => this.#upsert(obj),
        update: obj => this.#upsert(obj),
        delete: obj => this.#remove(obj),
      },
      logger: opts.logger,
      ...(opts.relistPeriodMs ?? opts.resyncMs ? { relistPeriodMs: opts.relistPeriodMs ?? opts.resyncMs } : {}),
      ...(opts.onRecovered ? { onRecovered: opts.onRecovered } : {}),
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      ...(opts.healthyAfterMs !== undefined ? { healthyAfterMs: opts.healthyAfterMs } : {}),
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.random ? { random: opts.random } : {}),
    })
  }

  get synced(): boolean {
    return this.#reflector.synced
  }

  /** The apiserver answered another call: stop waiting out a backoff (see Reflector.retryNow). */
  retryNow(): void {
    this.#reflector.retryNow()
  }

  get(namespace: string, name: string): CertificateRequest | undefined {
    return this.#byKey.get(key(namespace, name))
  }

  forVolume(volumeId: string): CertificateRequest[] {
    return [...(this.#byVolume.get(volumeId) ?? [])].map(k => this.#byKey.get(k)).filter((cr): cr is CertificateRequest => cr !== undefined)
  }

  /** Sizes of the two indexes, for tests and debugging. */
  get size(): { requests: number; volumes: number } {
    return { requests: this.#byKey.size, volumes: this.#byVolume.size }
  }

  /** Volumes whose requests the cache keeps. */
  get tracked(): number {
    return this.#owners.size
  }

  track(owner: VolumeOwner): void {
    this.#owners.set(owner.volumeId, owner)
  }

  untrack(volumeId: string): void {
    this.#owners.delete(volumeId)
    for (const k of this.#byVolume.get(volumeId) ?? []) this.#byKey.delete(k)
    this.#byVolume.delete(volumeId)
  }

  /**
   * Resolves after the first successful LIST. A failing LIST is retried with
   * backoff, so this waits for the API rather than rejecting; it resolves
   * unsynced if stop() comes first.
   */
  start(): Promise<void> {
    return this.#reflector.start()
  }

  stop(): Promise<void> {
    return this.#reflector.stop()
  }

  #upsert(obj: KubernetesObject): void {
    const parsed = certificateRequestSchema.safeParse(obj)
    if (!parsed.success) {
      this.#opts.logger.warn({ name: obj.metadata?.name, namespace: obj.metadata?.namespace }, 'ignoring a CertificateRequest we cannot read')
      // What we held of it is no longer what the server holds.
      this.#remove(obj)
      return
    }
    const cr = parsed.data
    const k = key(cr.metadata.namespace, cr.metadata.name)
    const volumeId = volumeOf(cr)
    const old = this.#byKey.get(k)
    // Someone edited the annotation or the owner: what we held no longer belongs where it was.
    const owner = volumeId === undefined ? undefined : this.#owners.get(volumeId)
    const ours = owner !== undefined && belongsToVolume(cr, owner)
    if (old && (volumeOf(old) !== volumeId || !ours)) this.#remove(obj)
    if (!ours || !volumeId) return
    this.#byKey.set(k, cr)
    let set = this.#byVolume.get(volumeId)
    if (!set) this.#byVolume.set(volumeId, (set = new Set()))
    set.add(k)
    this.#opts.logger.debug({ request: k, volumeId, change: old ? 'update' : 'add' }, 'CertificateRequest cache')
    this.#opts.onChange(volumeId, cr)
  }

  #remove(obj: KubernetesObject): void {
    const k = objectKey(obj)
    const cr = k === undefined ? undefined : this.#byKey.get(k)
    if (k === undefined || !cr) return
    this.#byKey.delete(k)
    const volumeId = volumeOf(cr)
    if (!volumeId) return
    const set = this.#byVolume.get(volumeId)
    set?.delete(k)
    if (set?.size === 0) this.#byVolume.delete(volumeId)
    this.#opts.logger.debug({ request: k, volumeId, change: 'delete' }, 'CertificateRequest cache')
    this.#opts.onChange(volumeId, cr)
  }
}

/**
 * The reflector's port on the real API: a typed LIST through CustomObjectsApi
 * with a deadline, and client-node's Watch for the stream.
 */
export class CertificateRequestListWatch implements ListWatch<KubernetesObject> {
  readonly #api: CustomObjectsApi
  readonly #watcher: Watch
  readonly #labelSelector: string
  readonly #path = `/apis/${CR_GROUP}/${CR_VERSION}/${CR_PLURAL}`

  readonly #timeoutMs: number
  constructor(kc: KubeConfig, nodeId: string, timeoutMs: number) {
    this.#timeoutMs = timeoutMs
    this.#api = kc.makeApiClient(CustomObjectsApi)
    this.#labelSelector = `${LABEL_NODE}=${nodeLabelValue(nodeId)}`
    // Watch sets its own AbortSignal on the request (we cannot add ours) and
    // hands its controller back only once the response headers arrived, so a
    // connect to a blackholed apiserver could not be aborted at all. A
    // kubeconfig whose fetch options carry node-fetch's `timeout` (which
    // covers the request until the headers) bounds that phase; the stream
    // after it is ended by the server's timeoutSeconds or the reflector.
    const watchConfig = Object.create(kc) as KubeConfig
    watchConfig.applyToFetchOptions = async opts => ({ ...(await kc.applyToFetchOptions(opts)), timeout: timeoutMs })
    this.#watcher = new Watch(watchConfig)
  }

  async list(signal: AbortSignal): Promise<ListResult<KubernetesObject>> {
    const list = (await withTimeout('CertificateRequest list', this.#timeoutMs, options =>
      this.#api.listClusterCustomObject({ group: CR_GROUP, version: CR_VERSION, plural: CR_PLURAL, labelSelector: this.#labelSelector }, options), signal,
    )) as { items?: KubernetesObject[]; metadata?: { resourceVersion?: string } }
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '' }
  }

  watch(req: WatchRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (req.signal.aborted) return resolve()
      let controller: AbortController | undefined
      let settled = false
      const settle = (err?: unknown): void => {
        if (settled) return
        settled = true
        req.signal.removeEventListener('abort', onAbort)
        controller?.abort()
        // Aborting makes Watch report an AbortError: that is our own stop.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the watch's own error, as it came
        if (err && !req.signal.aborted) reject(err)
        else resolve()
      }
      const onAbort = (): void => settle()
      req.signal.addEventListener('abort', onAbort, { once: true })
      const query = { labelSelector: this.#labelSelector, resourceVersion: req.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: req.timeoutSeconds }
      this.#watcher.watch(this.#path, query, (type: string, obj: unknown) => {
        if (!settled) req.onEvent(type as WatchEventType, obj)
      }, (err: unknown) => settle(err ?? undefined)).then(c => {
        controller = c
        // A non-200 answer has already called done; an abort may have come while connecting.
        if (settled) c.abort()
        else req.onOpen()
      }, (err: unknown) => settle(err))
    })
  }
}
