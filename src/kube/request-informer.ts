// A cache of this node's CertificateRequests, kept by a Reflector
// (./reflector.ts: LIST + WATCH with resourceVersions, bookmarks, a diffed
// periodic re-list and backoff). Not client-node's makeInformer: it stops for
// good on any error, our own stop raises an error too, and a restarted one
// starts empty so what was deleted in between is never reported (STACK.md).
// It holds only requests that belong to a volume this node tracks (see
// ./ownership.ts): labelled copies from anyone else are dropped on arrival,
// so they can neither grow the cache nor be mistaken for ours.
import type { Logger } from 'pino'
import {
  CR_GROUP, CR_VERSION, CR_PLURAL, LABEL_NODE, ANNOTATION_VOLUME_ID,
  readCertificateRequest, nodeLabelValue, type CertificateRequest,
} from './certificate-request.js'
import type { ApiClient } from './api-client.js'
import { belongsToVolume, type VolumeOwner } from './ownership.js'
import { Reflector, objectKey, type ListResult, type ListWatch, type ObjectWithMeta, type WatchEventType, type WatchRequest } from './reflector.js'
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

type KubernetesObject = ObjectWithMeta

export interface RequestInformerOptions {
  /** The API to list and watch (or `listWatch`). */
  api?: ApiClient
  nodeId: string
  logger: Logger
  /** Every add, update and delete (a delete found by a re-list included), with the request's last state. */
  onChange: (volumeId: string, cr: CertificateRequest) => void
  /** Safety re-list period (LIST + diff); default 5 min. */
  relistPeriodMs?: number
  /** Old name of relistPeriodMs. */
  resyncMs?: number
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
    const listWatch = opts.listWatch ?? (opts.api ? new CertificateRequestListWatch(opts.api, opts.nodeId) : undefined)
    if (!listWatch) throw new TypeError('RequestInformer needs an api or a listWatch')
    this.#reflector = new Reflector<KubernetesObject>({
      what: 'CertificateRequest',
      listWatch,
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
    const cr = readCertificateRequest(obj)
    if (!cr) {
      this.#opts.logger.warn({ name: obj.metadata?.name, namespace: obj.metadata?.namespace }, 'ignoring a CertificateRequest we cannot read')
      // What we held of it is no longer what the server holds.
      this.#remove(obj)
      return
    }
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

/** The reflector's port on the real API: this node's requests, listed and watched cluster-wide by label. */
export class CertificateRequestListWatch implements ListWatch<KubernetesObject> {
  readonly #api: ApiClient
  readonly #labelSelector: string
  readonly #path = `/apis/${CR_GROUP}/${CR_VERSION}/${CR_PLURAL}`

  constructor(api: ApiClient, nodeId: string) {
    this.#api = api
    this.#labelSelector = `${LABEL_NODE}=${nodeLabelValue(nodeId)}`
  }

  async list(signal: AbortSignal): Promise<ListResult<KubernetesObject>> {
    const list = await this.#api.request<{ items?: KubernetesObject[]; metadata?: { resourceVersion?: string } }>(
      'CertificateRequest list', { method: 'GET', path: this.#path, query: { labelSelector: this.#labelSelector }, signal })
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '' }
  }

  watch(req: WatchRequest): Promise<void> {
    const query = { labelSelector: this.#labelSelector, resourceVersion: req.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: req.timeoutSeconds }
    return this.#api.watch('CertificateRequest watch', this.#path, query, {
      signal: req.signal,
      onOpen: () => req.onOpen(),
      onEvent: (type, obj) => req.onEvent(type as WatchEventType, obj),
    })
  }
}
