// Watches one node's CertificateRequests in etcd, revision by revision, and
// checks after every change that no volume has more than one live request
// (live: not being deleted, not issued, denied, failed or invalid). Reading
// etcd rather than the apiserver keeps the observer out of the apiserver's
// request counts and lets it keep watching while the apiserver is down.
import { setTimeout as sleep } from 'node:timers/promises'
import { CompactedError, type EtcdClient, type WatchEvent } from './etcd.js'

export const CR_PREFIX = '/registry/cert-manager.io/certificaterequests/'
const LABEL_NODE = 'csi.cert-manager.io/node'
const ANNOTATION_VOLUME_ID = 'csi.cert-manager.io/volume-id'

export interface ObservedRequest {
  key: string
  name: string
  namespace: string
  uid: string
  volumeId: string
  /** The node label's value. */
  node: string
  deleting: boolean
  /** Issued, denied, failed or invalid. */
  terminal: boolean
  issued: boolean
  conditions: { type: string; status: string; reason?: string }[]
}

export interface Violation {
  at: string
  volumeId: string
  live: string[]
}

interface RawCr {
  metadata?: { name?: string; namespace?: string; uid?: string; deletionTimestamp?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  status?: { conditions?: { type: string; status: string; reason?: string }[]; certificate?: string }
}

function parse(key: string, value: string): ObservedRequest | undefined {
  let raw: RawCr
  try {
    raw = JSON.parse(value) as RawCr
  } catch {
    return undefined // not JSON: not a custom resource we can read
  }
  const m = raw.metadata ?? {}
  const conditions = raw.status?.conditions ?? []
  const is = (type: string, status = 'True'): boolean => conditions.some(c => c.type === type && c.status === status)
  const issued = is('Ready') && !!raw.status?.certificate
  const failed = conditions.some(c => c.type === 'Ready' && c.status === 'False' && c.reason === 'Failed')
  return {
    key,
    name: m.name ?? '',
    namespace: m.namespace ?? '',
    uid: m.uid ?? key,
    volumeId: m.annotations?.[ANNOTATION_VOLUME_ID] ?? '',
    node: m.labels?.[LABEL_NODE] ?? '',
    deleting: !!m.deletionTimestamp,
    terminal: issued || failed || is('Denied') || is('InvalidRequest'),
    issued,
    conditions,
  }
}

export class RequestMonitor {
  private readonly objects = new Map<string, ObservedRequest>()
  private readonly byVolume = new Map<string, Set<string>>()
  private readonly createdUids = new Map<string, string>() // uid -> volumeId
  private readonly maxLiveByVolume = new Map<string, number>()
  /** When each request was first seen issued (cert-manager wrote its certificate), per volume. */
  private readonly issuedTimes: { volumeId: string; at: number }[] = []
  readonly violations: Violation[] = []
  private revision = 0
  private abort?: AbortController
  private loop?: Promise<void>
  /** Times the watch had to be re-established (etcd restarts). */
  reconnects = 0

  constructor(private readonly etcd: EtcdClient, private readonly nodeId: string, private readonly log: (msg: string) => void = () => {}) {}

  async start(): Promise<void> {
    await this.relist()
    this.abort = new AbortController()
    this.loop = this.watchLoop(this.abort.signal)
  }

  async stop(): Promise<void> {
    this.abort?.abort()
    await this.loop?.catch(() => undefined)
  }

  /** Distinct requests this node ever made while watched. */
  /**
   * When cert-manager first issued a request of this volume after `after`
   * (ms since the epoch), as etcd showed it: what a renewal's latency is
   * measured from, so cert-manager's own recovery is not counted as ours.
   */
  issuedAfter(volumeId: string, after: number): number | undefined {
    return this.issuedTimes.find(x => x.volumeId === volumeId && x.at >= after)?.at
  }

  get created(): number {
    return this.createdUids.size
  }

  createdFor(volumeId: string): number {
    let n = 0
    for (const v of this.createdUids.values()) if (v === volumeId) n++
    return n
  }

  /** The node's requests stored right now (including those being deleted). */
  current(volumeId?: string): ObservedRequest[] {
    if (volumeId === undefined) return [...this.objects.values()]
    return [...(this.byVolume.get(volumeId) ?? [])].map(k => this.objects.get(k)!).filter(Boolean)
  }

  live(volumeId: string): ObservedRequest[] {
    return this.current(volumeId).filter(r => !r.deleting && !r.terminal)
  }

  /** The most live requests any one volume had at any revision. */
  maxLive(): number {
    let max = 0
    for (const n of this.maxLiveByVolume.values()) max = Math.max(max, n)
    return max
  }

  async waitUntil(what: string, pred: () => boolean, timeoutMs: number): Promise<number> {
    const start = Date.now()
    while (!pred()) {
      if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`)
      await sleep(100)
    }
    return Date.now() - start
  }

  private async relist(): Promise<void> {
    const { kvs, revision } = await this.etcd.range(CR_PREFIX)
    const seen = new Set<string>()
    for (const kv of kvs) {
      seen.add(kv.key)
      this.apply({ type: 'PUT', key: kv.key, value: kv.value, revision: kv.modRevision })
    }
    for (const key of [...this.objects.keys()]) {
      if (!seen.has(key)) this.apply({ type: 'DELETE', key, value: '', revision })
    }
    this.revision = revision
  }

  private async watchLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.etcd.watch(CR_PREFIX, this.revision + 1, e => {
          this.apply(e)
          this.revision = Math.max(this.revision, e.revision)
        }, signal)
      } catch (err) {
        if (signal.aborted) return
        if (err instanceof CompactedError) await this.relist().catch(() => undefined)
      }
      if (signal.aborted) return
      this.reconnects++
      await sleep(300)
    }
  }

  private apply(e: WatchEvent): void {
    if (e.type === 'DELETE') {
      const old = this.objects.get(e.key)
      if (!old) return
      this.objects.delete(e.key)
      this.byVolume.get(old.volumeId)?.delete(e.key)
      return
    }
    const cr = parse(e.key, e.value)
    if (!cr || cr.node !== this.nodeId) return
    if (!this.createdUids.has(cr.uid)) this.createdUids.set(cr.uid, cr.volumeId)
    if (cr.issued && !this.objects.get(e.key)?.issued) this.issuedTimes.push({ volumeId: cr.volumeId, at: Date.now() })
    this.objects.set(e.key, cr)
    let set = this.byVolume.get(cr.volumeId)
    if (!set) this.byVolume.set(cr.volumeId, (set = new Set()))
    set.add(e.key)
    const live = this.live(cr.volumeId)
    const max = this.maxLiveByVolume.get(cr.volumeId) ?? 0
    if (live.length > max) this.maxLiveByVolume.set(cr.volumeId, live.length)
    if (live.length > 1) {
      const v = { at: new Date().toISOString(), volumeId: cr.volumeId, live: live.map(r => r.name) }
      this.violations.push(v)
      this.log(`more than one live CertificateRequest for volume ${cr.volumeId.slice(0, 16)}…: ${v.live.join(', ')}`)
    }
  }
}
