// Deletes the CertificateRequests of volumes already torn down, from their
// tombstones (src/state/tombstones.ts), best-effort and off the unpublish
// path: with the API away, the CRDs uninstalled or RBAC drifted, a pod still
// terminates, and the requests go once the API lets them (or the garbage
// collector takes them through their owner references to the pod).
import type { Logger } from 'pino'
import type { Tombstone, TombstoneStore } from '../state/tombstones.js'
import type { RequestClient } from '../kube/requests.js'
import { isNotFound } from '../kube/errors.js'
import { belongsToVolume } from '../kube/ownership.js'
import { backoffDelay, type Backoff, type Clock } from '../time/backoff.js'

export interface RequestJanitorDeps {
  tombstones: Pick<TombstoneStore, 'add' | 'remove' | 'list'>
  requests: Pick<RequestClient, 'delete' | 'listForVolume'>
  logger: Pick<Logger, 'info' | 'warn' | 'debug'>
  clock: Clock
  random: () => number
  /** Between attempts for one volume; default 1 s doubling to 5 min, ±20 %. */
  backoff?: Backoff
  /** A tombstone older than this is dropped (with a warning): the garbage collector has it. Default 24 h. */
  giveUpAfterMs?: number
}

interface Entry {
  tombstone: Tombstone
  failures: number
  timer?: unknown
  running: boolean
  again: boolean
}

export class RequestJanitor {
  readonly #d: RequestJanitorDeps
  readonly #backoff: Backoff
  readonly #entries = new Map<string, Entry>()
  readonly #inFlight = new Set<Promise<void>>()
  #stopped = false

  constructor(d: RequestJanitorDeps) {
    this.#d = d
    this.#backoff = d.backoff ?? { baseMs: 1000, maxMs: 5 * 60_000, jitter: 0.2 }
  }

  /** Volumes whose requests are still to be deleted. */
  get pending(): number {
    return this.#entries.size
  }

  /** Resumes the tombstones a previous run left. */
  async start(): Promise<void> {
    for (const t of await this.#d.tombstones.list()) this.#schedule(this.#entry(t), 0)
  }

  /** Records the volume's requests durably, then deletes them soon. */
  async bury(t: Tombstone): Promise<void> {
    const merged = await this.#d.tombstones.add(t)
    const e = this.#entry(merged)
    e.tombstone = merged
    if (e.running) e.again = true
    else this.#schedule(e, 0)
  }

  /** The API is back: every volume waiting out a backoff tries again within a second. */
  retrySoon(): void {
    for (const e of this.#entries.values()) {
      if (e.failures > 0 && !e.running) this.#schedule(e, this.#d.random() * 1000)
    }
  }

  /** Resolves once the deletions running now have finished (tests wait on it). */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const e of this.#entries.values()) if (e.timer !== undefined) this.#d.clock.clearTimeout(e.timer)
    await Promise.all(this.#inFlight)
  }

  #entry(t: Tombstone): Entry {
    let e = this.#entries.get(t.volumeId)
    if (!e) this.#entries.set(t.volumeId, (e = { tombstone: t, failures: 0, running: false, again: false }))
    return e
  }

  #schedule(e: Entry, ms: number): void {
    if (this.#stopped) return
    if (e.timer !== undefined) this.#d.clock.clearTimeout(e.timer)
    e.timer = this.#d.clock.setTimeout(() => {
      e.timer = undefined
      const run = this.#sweep(e).finally(() => this.#inFlight.delete(run))
      this.#inFlight.add(run)
    }, ms)
  }

  async #sweep(e: Entry): Promise<void> {
    if (this.#stopped) return
    e.running = true
    e.again = false
    const t = e.tombstone
    try {
      const refs = new Map<string, Tombstone['requests'][number]>(t.requests.map(r => [`${r.namespace}/${r.name}`, r]))
      // The API, not only what we knew: a request the watch had not shown yet
      // must not leak. Labels are anyone's to copy: only the pod's own count.
      for (const namespace of t.namespaces) {
        for (const cr of await listOrNone(() => this.#d.requests.listForVolume(namespace, t.volumeId))) {
          if (t.podUid !== undefined && !belongsToVolume(cr, { volumeId: t.volumeId, namespace, podUid: t.podUid })) continue
          if (t.spare?.includes(cr.metadata.name)) continue
          const key = `${namespace}/${cr.metadata.name}`
          const uid = refs.get(key)?.uid ?? cr.metadata.uid
          refs.set(key, { namespace, name: cr.metadata.name, ...(uid ? { uid } : {}) })
        }
      }
      for (const r of refs.values()) await this.#d.requests.delete(r.namespace, r.name, r.uid)
      if (e.again) return this.#schedule(e, 0)
      await this.#d.tombstones.remove(t.volumeId)
      this.#entries.delete(t.volumeId)
      this.#d.logger.info({ volumeId: t.volumeId, deletedRequests: refs.size }, 'deleted the CertificateRequests of a torn-down volume')
    } catch (err) {
      e.failures++
      const age = this.#d.clock.now() - Date.parse(t.createdAt)
      if (age > (this.#d.giveUpAfterMs ?? 24 * 3600_000)) {
        this.#d.logger.warn({ volumeId: t.volumeId, err, requests: t.requests }, 'giving up deleting the CertificateRequests of a torn-down volume; their owner references leave them to the garbage collector')
        await this.#d.tombstones.remove(t.volumeId).catch(() => undefined)
        this.#entries.delete(t.volumeId)
        return
      }
      const delay = backoffDelay(e.failures, this.#backoff, this.#d.random)
      this.#d.logger.warn({ volumeId: t.volumeId, err, retryInMs: delay }, 'could not delete the CertificateRequests of a torn-down volume; will retry')
      this.#schedule(e, delay)
    } finally {
      e.running = false
    }
  }
}

// No CertificateRequest kind at all (the CRDs are uninstalled): nothing to delete.
async function listOrNone<T>(list: () => Promise<T[]>): Promise<T[]> {
  try {
    return await list()
  } catch (err) {
    if (isNotFound(err)) return []
    throw err
  }
}
