// A cache of this node's CertificateRequests, fed by a watch. client-node's
// informer stops for good on any error and its watch timeout never fires
// (STACK.md): we restart it with jittered backoff and re-list periodically.
import { CustomObjectsApi, makeInformer, type KubeConfig, type KubernetesObject, type Informer } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import {
  CR_GROUP, CR_VERSION, CR_PLURAL, LABEL_NODE, ANNOTATION_VOLUME_ID,
  certificateRequestSchema, nodeLabelValue, type CertificateRequest,
} from './certificate-request.js'

export interface RequestCache {
  readonly synced: boolean
  get(namespace: string, name: string): CertificateRequest | undefined
  forVolume(volumeId: string): CertificateRequest[]
}

export interface RequestInformerOptions {
  kc: KubeConfig
  nodeId: string
  logger: Logger
  onChange: (volumeId: string, cr: CertificateRequest) => void
  resyncMs?: number
  random?: () => number
}

const key = (namespace: string, name: string): string => `${namespace}/${name}`

export class RequestInformer implements RequestCache {
  private readonly byKey = new Map<string, CertificateRequest>()
  private readonly byVolume = new Map<string, Set<string>>()
  private informer?: Informer<KubernetesObject>
  private restartTimer?: NodeJS.Timeout
  private resyncTimer?: NodeJS.Timeout
  private failures = 0
  private stopped = false
  private syncedOnce = false

  constructor(private readonly opts: RequestInformerOptions) {}

  get synced(): boolean {
    return this.syncedOnce
  }

  get(namespace: string, name: string): CertificateRequest | undefined {
    return this.byKey.get(key(namespace, name))
  }

  forVolume(volumeId: string): CertificateRequest[] {
    return [...(this.byVolume.get(volumeId) ?? [])].map(k => this.byKey.get(k)!).filter(Boolean)
  }

  /** Resolves after the first full list. */
  async start(): Promise<void> {
    this.stopped = false
    await this.run()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.restartTimer)
    clearInterval(this.resyncTimer)
    await this.informer?.stop()
  }

  private async run(): Promise<void> {
    const api = this.opts.kc.makeApiClient(CustomObjectsApi)
    const selector = `${LABEL_NODE}=${nodeLabelValue(this.opts.nodeId)}`
    const list = (): Promise<{ items: KubernetesObject[]; metadata?: object }> =>
      api.listClusterCustomObject({ group: CR_GROUP, version: CR_VERSION, plural: CR_PLURAL, labelSelector: selector }) as Promise<{ items: KubernetesObject[] }>
    const informer = makeInformer(this.opts.kc, `/apis/${CR_GROUP}/${CR_VERSION}/${CR_PLURAL}`, list, selector)
    this.informer = informer
    informer.on('add', obj => this.upsert(obj))
    informer.on('update', obj => this.upsert(obj))
    informer.on('delete', obj => this.remove(obj))
    informer.on('error', err => this.restartAfterError(err))
    await informer.start()
    this.syncedOnce = true
    this.failures = 0
    clearInterval(this.resyncTimer)
    this.resyncTimer = setInterval(() => void this.resync(), this.opts.resyncMs ?? 5 * 60_000)
    this.resyncTimer.unref()
  }

  // A full re-list also catches anything a silently stalled watch missed.
  private async resync(): Promise<void> {
    if (this.stopped) return
    await this.informer?.stop()
    await this.run().catch(err => this.restartAfterError(err))
  }

  private restartAfterError(err: unknown): void {
    if (this.stopped) return
    this.failures++
    const base = Math.min(30_000, 500 * 2 ** Math.min(this.failures, 10))
    const delay = base * (0.8 + 0.4 * (this.opts.random ?? Math.random)())
    this.opts.logger.warn({ err: String(err), retryInMs: Math.round(delay) }, 'CertificateRequest watch failed; restarting')
    clearTimeout(this.restartTimer)
    this.restartTimer = setTimeout(() => {
      void this.informer?.stop()
      this.run().catch(e => this.restartAfterError(e))
    }, delay)
  }

  private upsert(obj: KubernetesObject): void {
    const parsed = certificateRequestSchema.safeParse(obj)
    if (!parsed.success) {
      this.opts.logger.warn({ name: obj.metadata?.name, namespace: obj.metadata?.namespace }, 'ignoring a CertificateRequest we cannot read')
      return
    }
    const cr = parsed.data
    const volumeId = cr.metadata.annotations?.[ANNOTATION_VOLUME_ID]
    if (!volumeId) return
    const k = key(cr.metadata.namespace, cr.metadata.name)
    this.byKey.set(k, cr)
    let set = this.byVolume.get(volumeId)
    if (!set) this.byVolume.set(volumeId, (set = new Set()))
    set.add(k)
    this.opts.onChange(volumeId, cr)
  }

  private remove(obj: KubernetesObject): void {
    const namespace = obj.metadata?.namespace
    const name = obj.metadata?.name
    if (!namespace || !name) return
    const k = key(namespace, name)
    const cr = this.byKey.get(k)
    this.byKey.delete(k)
    const volumeId = cr?.metadata.annotations?.[ANNOTATION_VOLUME_ID]
    if (!volumeId || !cr) return
    const set = this.byVolume.get(volumeId)
    set?.delete(k)
    if (set?.size === 0) this.byVolume.delete(volumeId)
    this.opts.onChange(volumeId, cr)
  }
}
