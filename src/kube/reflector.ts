// A reflector in the style of client-go's: LIST, then WATCH from the list's
// resourceVersion, and keep a cache of what the server holds in step with it.
//
// Why not client-node's makeInformer (STACK.md): it stops for good on any
// error, stopping it yourself raises an `error` too, each restart is a new
// informer with an empty cache (what was deleted in the gap is never
// reported), and its watch timeout does not fire. Our old wrapper restarted it
// on every `error`, its own re-list included: one LIST and one WATCH per
// second per node, forever. This reflector owns the loop instead, over a
// narrow ListWatch port that tests fake.
//
// The loop:
// - LIST (with a timeout, in the adapter), diff it against the cache, then
//   WATCH from its resourceVersion with bookmarks and a randomised server-side
//   timeoutSeconds (5 to 10 min, as client-go) so the server ends it cleanly.
// - A watch that closes normally is re-opened from the last resourceVersion
//   seen (events and bookmarks move it), without a LIST.
// - LIST again only on 410 Gone (an ERROR event with code 410, or an HTTP
//   410), on a failure, or when the periodic safety re-list is due (exactly
//   one LIST per period while idle: the timer counts from the last LIST).
// - Failures back off exponentially with jitter (1 s doubling to 5 min, ±20 %).
//   A LIST that succeeds does not reset the backoff (a server that answers
//   LISTs but drops every watch would otherwise be hammered): only a watch
//   that has stayed open for `healthyAfterMs` (30 s) does.
// - A stop we asked for (AbortSignal) is never a failure: nothing is logged
//   and nothing is scheduled after it.
import type { Logger } from 'pino'
import { backoffDelay, type Backoff, type Clock } from '../time/backoff.js'
import { apiStatus } from './errors.js'

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'

/** What the reflector needs of an object: its identity and version. */
export interface ObjectWithMeta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string }
}

export interface ListResult<T> {
  items: T[]
  resourceVersion: string
}

export interface WatchRequest {
  resourceVersion: string
  /** Sent to the server: it closes the watch cleanly after this long. */
  timeoutSeconds: number
  /** Aborted when the reflector is done with this watch (stop, re-list, stall). */
  signal: AbortSignal
  /** The server accepted the watch (HTTP 200). */
  onOpen(): void
  /** One event; for ERROR the object is a Status (`code` 410: the resourceVersion is gone). */
  onEvent(type: WatchEventType, obj: unknown): void
}

/** The port: one LIST and one WATCH of the same selection. */
export interface ListWatch<T> {
  /** Rejects on failure, or with an abort error once `signal` aborts. */
  list(signal: AbortSignal): Promise<ListResult<T>>
  /**
   * Resolves when the watch closes normally or `signal` aborts; rejects on
   * an error (an HTTP status arrives as `statusCode`, as ApiError carries it).
   */
  watch(req: WatchRequest): Promise<void>
}

export interface ReflectorHandlers<T> {
  add(obj: T): void
  update(obj: T, old: T): void
  /** The object's last state: from the DELETED event, or the cache when a re-list found it gone. */
  delete(obj: T): void
}

export interface ReflectorOptions<T> {
  listWatch: ListWatch<T>
  handlers: ReflectorHandlers<T>
  logger: Pick<Logger, 'debug' | 'info' | 'warn'>
  /** For log lines: "CertificateRequest". */
  what: string
  /** Safety re-list period; default 5 min. */
  relistPeriodMs?: number
  /** Fired by the first LIST that succeeds after one or more failures. */
  onRecovered?: () => void
  backoff?: Backoff
  /** How long a watch must stay open before the backoff resets; default 30 s. */
  healthyAfterMs?: number
  /** Lower bound of the randomised server-side watch timeout; default 5 min. */
  minWatchTimeoutMs?: number
  /** Slack past the server-side timeout before a silent watch counts as stalled; default 30 s. */
  stallSlackMs?: number
  clock?: Clock
  random?: () => number
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 1_000, maxMs: 5 * 60_000, jitter: 0.2 }
export const DEFAULT_RELIST_PERIOD_MS = 5 * 60_000

// As client-go: a normal close within a second that carried no event is a
// server refusing watches, not a healthy watch; re-opening at once would spin.
const VERY_SHORT_WATCH_MS = 1_000

const realClock: Clock = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: h => clearTimeout(h as NodeJS.Timeout),
}

/** namespace/name, or name for cluster-scoped objects; undefined without a name. */
export function objectKey(obj: ObjectWithMeta | undefined): string | undefined {
  const m = obj?.metadata
  if (!m?.name) return undefined
  return m.namespace ? `${m.namespace}/${m.name}` : m.name
}

type WatchOutcome = 'closed' | 'gone' | 'relist' | 'stopped'

export class Reflector<T extends ObjectWithMeta> {
  readonly #store = new Map<string, T>()
  readonly #stopController = new AbortController()
  readonly #clock: Clock
  readonly #random: () => number
  readonly #backoff: Backoff
  readonly #relistPeriodMs: number
  #resourceVersion = ''
  #nextRelistAt = 0
  #failures = 0
  #failedSinceList = false
  #hasSynced = false
  #loop?: Promise<void>
  #resolveSynced!: () => void
  readonly #syncedOnce = new Promise<void>(resolve => (this.#resolveSynced = resolve))
  /** Ends the backoff wait now: set while the loop waits out a failure. */
  #wakeFromBackoff?: () => void
  #lastWokenAt = -Infinity

  readonly #opts: ReflectorOptions<T>
  constructor(opts: ReflectorOptions<T>) {
    this.#opts = opts
    this.#clock = opts.clock ?? realClock
    this.#random = opts.random ?? Math.random
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF
    this.#relistPeriodMs = opts.relistPeriodMs ?? DEFAULT_RELIST_PERIOD_MS
  }

  /** True once a LIST has succeeded; stays true (the cache may be stale, never empty by mistake). */
  get synced(): boolean {
    return this.#hasSynced
  }

  /** Consecutive failures the backoff is counting. */
  get consecutiveFailures(): number {
    return this.#failures
  }

  get lastResourceVersion(): string {
    return this.#resourceVersion
  }

  get(key: string): T | undefined {
    return this.#store.get(key)
  }

  /**
   * Starts the loop. Resolves once the first LIST succeeded (however many
   * failures come before it: it retries with backoff and never rejects), or
   * when stop() comes first, with `synced` still false.
   */
  start(): Promise<void> {
    if (this.#stopping) return Promise.resolve()
    this.#loop ??= this.#run()
    return Promise.race([this.#syncedOnce, this.#loop])
  }

  /** Ends the loop: the watch is aborted, no timer is left, nothing is logged as a failure. */
  async stop(): Promise<void> {
    this.#stopController.abort()
    await this.#loop
  }

  get #stopping(): boolean {
    return this.#stopController.signal.aborted
  }

  async #run(): Promise<void> {
    let needList = true
    while (!this.#stopping) {
      let op: 'list' | 'watch' = 'list'
      try {
        if (needList) {
          await this.#listAndDiff()
          needList = false
        }
        op = 'watch'
        const outcome = await this.#watchOnce()
        if (outcome === 'gone' || outcome === 'relist') needList = true
      } catch (err) {
        if (this.#stopping) break
        needList = true
        this.#failures++
        this.#failedSinceList = true
        const retryInMs = backoffDelay(this.#failures, this.#backoff, this.#random)
        this.#opts.logger.warn({ err, op, failures: this.#failures, retryInMs }, `${this.#opts.what} ${op} failed; will LIST again`)
        await this.#sleep(retryInMs, wake => (this.#wakeFromBackoff = wake))
        this.#wakeFromBackoff = undefined
      }
    }
  }

  async #listAndDiff(): Promise<void> {
    const list = await this.#opts.listWatch.list(this.#stopController.signal)
    if (this.#stopping) return
    if (!list.resourceVersion) throw new Error(`${this.#opts.what} LIST answered without a resourceVersion`)
    this.#diff(list.items)
    this.#resourceVersion = list.resourceVersion
    this.#nextRelistAt = this.#clock.now() + this.#relistPeriodMs
    if (!this.#hasSynced) {
      this.#hasSynced = true
      this.#resolveSynced()
    }
    this.#opts.logger.debug({ items: list.items.length, resourceVersion: list.resourceVersion }, `${this.#opts.what} LIST`)
    if (this.#failedSinceList) {
      this.#failedSinceList = false
      this.#opts.logger.info({ failures: this.#failures }, `${this.#opts.what} LIST succeeded again`)
      this.#call(() => this.#opts.onRecovered?.())
    }
  }

  /** The cache becomes the list: deletes for what vanished, adds and updates for the rest. */
  #diff(items: T[]): void {
    const fresh = new Map<string, T>()
    for (const item of items) {
      const k = objectKey(item)
      if (k) fresh.set(k, item)
    }
    for (const [k, old] of [...this.#store]) {
      if (fresh.has(k)) continue
      this.#store.delete(k)
      this.#call(() => this.#opts.handlers.delete(old))
    }
    for (const [k, obj] of fresh) this.#upsert(k, obj)
  }

  #upsert(k: string, obj: T): void {
    const old = this.#store.get(k)
    this.#store.set(k, obj)
    if (!old) this.#call(() => this.#opts.handlers.add(obj))
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.#call(() => this.#opts.handlers.update(obj, old))
  }

  async #watchOnce(): Promise<WatchOutcome> {
    if (this.#stopping) return 'stopped'
    const ac = new AbortController()
    const stopWatch = (): void => ac.abort()
    this.#stopController.signal.addEventListener('abort', stopWatch, { once: true })
    const minTimeoutMs = this.#opts.minWatchTimeoutMs ?? DEFAULT_RELIST_PERIOD_MS
    const timeoutSeconds = Math.max(1, Math.floor((minTimeoutMs / 1000) * (1 + this.#random())))
    const stallMs = timeoutSeconds * 1000 + (this.#opts.stallSlackMs ?? 30_000)
    const startedAt = this.#clock.now()
    let ended: 'relist' | 'stalled' | undefined
    let errorStatus: { code?: number; message?: string; reason?: string } | undefined
    let events = 0
    let opened = false
    const timers = new Set<unknown>()
    const after = (ms: number, fn: () => void): unknown => {
      const h = this.#clock.setTimeout(() => {
        timers.delete(h)
        fn()
      }, ms)
      timers.add(h)
      return h
    }
    const cancel = (h: unknown): void => {
      this.#clock.clearTimeout(h)
      timers.delete(h)
    }
    const end = (why: 'relist' | 'stalled'): void => {
      ended ??= why
      ac.abort()
    }
    after(Math.max(0, this.#nextRelistAt - this.#clock.now()), () => end('relist'))
    // No event, no bookmark, no close for longer than the server promised to
    // keep the watch open: the connection is dead without saying so.
    let stall = after(stallMs, () => end('stalled'))
    const alive = (): void => {
      cancel(stall)
      stall = after(stallMs, () => end('stalled'))
    }
    const open = (): void => {
      if (opened || ac.signal.aborted) return
      opened = true
      alive()
      after(this.#opts.healthyAfterMs ?? 30_000, () => this.#healthy())
    }

    let failure: unknown
    try {
      await this.#opts.listWatch.watch({
        resourceVersion: this.#resourceVersion,
        timeoutSeconds,
        signal: ac.signal,
        onOpen: open,
        onEvent: (type, obj) => {
          if (ac.signal.aborted) return
          open()
          alive()
          if (type === 'ERROR') {
            errorStatus = (typeof obj === 'object' && obj !== null ? obj : {})
            ac.abort()
            return
          }
          events++
          this.#apply(type, obj)
        },
      })
    } catch (err) {
      failure = err
    } finally {
      for (const h of [...timers]) cancel(h)
      this.#stopController.signal.removeEventListener('abort', stopWatch)
    }

    if (this.#stopping) return 'stopped'
    if (ended === 'relist') {
      this.#opts.logger.debug({ resourceVersion: this.#resourceVersion }, `${this.#opts.what} periodic re-list`)
      return 'relist'
    }
    if (ended === 'stalled') throw new Error(`${this.#opts.what} watch stalled: nothing received for ${Math.round(stallMs / 1000)}s`)
    if (errorStatus) {
      if (errorStatus.code === 410) return this.#gone()
      throw new Error(`${this.#opts.what} watch ERROR event: ${errorStatus.message ?? errorStatus.reason ?? 'no message'}`, { cause: errorStatus })
    }
    if (failure !== undefined) {
      if (apiStatus(failure) === 410) return this.#gone()
      // The watch's own failure, passed on as it came.
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      throw failure
    }
    if (events === 0 && this.#clock.now() - startedAt < VERY_SHORT_WATCH_MS) {
      throw new Error(`${this.#opts.what} watch closed at once without an event`)
    }
    return 'closed'
  }

  #gone(): WatchOutcome {
    this.#opts.logger.debug({ resourceVersion: this.#resourceVersion }, `${this.#opts.what} resourceVersion gone (410); re-listing`)
    return 'gone'
  }

  #healthy(): void {
    if (this.#failures === 0) return
    this.#opts.logger.info({ failures: this.#failures }, `${this.#opts.what} watch healthy again; backoff reset`)
    this.#failures = 0
  }

  #apply(type: WatchEventType, obj: unknown): void {
    const o = (typeof obj === 'object' && obj !== null ? obj : {}) as T
    const rv = o.metadata?.resourceVersion
    if (type === 'BOOKMARK') {
      if (rv) this.#resourceVersion = rv
      return
    }
    const k = objectKey(o)
    if (k) {
      if (type === 'DELETED') {
        const had = this.#store.get(k)
        this.#store.delete(k)
        if (had) this.#call(() => this.#opts.handlers.delete(o))
      } else if (type === 'ADDED' || type === 'MODIFIED') {
        this.#upsert(k, o)
      }
    }
    if (rv) this.#resourceVersion = rv
  }

  /** A handler's bug must not stop the loop. */
  #call(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.#opts.logger.warn({ err }, `${this.#opts.what} handler threw`)
    }
  }

  /**
   * Something else just reached the apiserver (a create answered): if we are
   * waiting out a backoff grown during an outage, LIST now instead of up to
   * minutes later. At most once a second, so a flapping server is not hammered.
   */
  retryNow(): void {
    if (!this.#wakeFromBackoff || this.#clock.now() - this.#lastWokenAt < 1000) return
    this.#lastWokenAt = this.#clock.now()
    this.#opts.logger.info({ failures: this.#failures }, `${this.#opts.what}: the apiserver answers again; LIST now instead of waiting out the backoff`)
    this.#wakeFromBackoff()
  }

  #sleep(ms: number, onWake?: (wake: () => void) => void): Promise<void> {
    return new Promise(resolve => {
      const signal = this.#stopController.signal
      if (signal.aborted) return resolve()
      const done = (): void => {
        this.#clock.clearTimeout(h)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const h = this.#clock.setTimeout(done, ms)
      signal.addEventListener('abort', done, { once: true })
      onWake?.(done)
    })
  }
}
