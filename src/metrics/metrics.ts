// Prometheus metrics for one driver process, on a registry of its own (never
// prom-client's global one, so two drivers in one test process do not clash).
// Names follow cert-manager's: `certmanager_csi_` + what, unit last.
//
// Per-volume facts live in one Map, updated in O(1); the gauges derived from
// it (counts, earliest expiry and renewal, per-volume series) are computed at
// scrape time, so a forgotten volume cannot leave a stale series behind.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export const METRIC_PREFIX = 'certmanager_csi_'

export type IssuanceKind = 'issue' | 'renew'

/** The only values the `reason` label takes: anything else becomes `other`. */
export const FAILURE_REASONS = ['denied', 'failed', 'invalid', 'key-mismatch', 'api-error', 'other'] as const
export type FailureReason = (typeof FAILURE_REASONS)[number]

const KNOWN_REASONS: ReadonlySet<string> = new Set(FAILURE_REASONS)

/**
 * Keeps the `reason` label bounded: a reason is free text somewhere upstream
 * (a condition reason, an API message), and every distinct value would be a
 * new series for the life of the process.
 */
export function failureReason(reason: string): FailureReason {
  const r = reason.trim().toLowerCase()
  return KNOWN_REASONS.has(r) ? (r as FailureReason) : 'other'
}

/** From cert-manager answering in 50 ms to an issuer that takes the whole publish deadline. */
export const ISSUANCE_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120]

export interface VolumeState {
  ready: boolean
  /** Expiry of the certificate in the volume, epoch milliseconds. */
  notAfter?: number
  /** When the next renewal is due, epoch milliseconds. */
  renewAt?: number
  pod?: { namespace: string; name: string }
}

export interface DriverMetricsOptions {
  /**
   * Label the expiry and renewal gauges per volume (`volume_id`,
   * `pod_namespace`, `pod_name`): one series per volume, removed when the
   * volume is forgotten. Off by default: a node with 1000 volumes would
   * otherwise export 2000 series that churn with every pod.
   */
  perVolumeLabels?: boolean
  /** Process metrics (CPU, memory, event loop, GC). Default true. */
  defaultMetrics?: boolean
}

const VOLUME_LABELS = ['volume_id', 'pod_namespace', 'pod_name'] as const

export class DriverMetrics {
  readonly registry = new Registry()

  readonly #volumes = new Map<string, VolumeState>()
  #queueDepth: (() => number) | undefined

  readonly #issuances: Counter<'kind'>
  readonly #failures: Counter<'kind' | 'reason'>
  readonly #duration: Histogram<'kind'>
  readonly #reconcileErrors: Counter
  readonly #throttled: Counter
  readonly #throttledSeconds: Counter

  constructor(opts: DriverMetricsOptions = {}) {
    const registers = [this.registry]
    const perVolume = opts.perVolumeLabels ?? false
    const volumes = this.#volumes

    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX })

    this.#issuances = new Counter({
      name: `${METRIC_PREFIX}issuances_total`,
      help: 'Certificates issued into volumes, by kind: a first issuance or a renewal.',
      labelNames: ['kind'],
      registers,
    })
    this.#failures = new Counter({
      name: `${METRIC_PREFIX}issuance_failures_total`,
      help: 'Issuances or renewals that failed, by kind and reason (denied, failed, invalid, key-mismatch, api-error, other).',
      labelNames: ['kind', 'reason'],
      registers,
    })
    this.#duration = new Histogram({
      name: `${METRIC_PREFIX}issuance_duration_seconds`,
      help: 'Time from creating a CertificateRequest to accepting its certificate, by kind.',
      labelNames: ['kind'],
      buckets: ISSUANCE_DURATION_BUCKETS,
      registers,
    })
    this.#reconcileErrors = new Counter({
      name: `${METRIC_PREFIX}reconcile_errors_total`,
      help: 'Reconciles that ended in an error and were queued for retry.',
      registers,
    })
    this.#throttled = new Counter({
      name: `${METRIC_PREFIX}api_throttled_requests_total`,
      help: 'Kubernetes API calls and watch connects that waited for the client-side limit (--kube-api-qps, --kube-api-burst).',
      registers,
    })
    this.#throttledSeconds = new Counter({
      name: `${METRIC_PREFIX}api_throttled_seconds_total`,
      help: 'Time Kubernetes API calls spent waiting for the client-side limit.',
      registers,
    })

    new Gauge({
      name: `${METRIC_PREFIX}managed_volumes`,
      help: 'Volumes this driver is managing on this node.',
      registers,
      collect() {
        this.set(volumes.size)
      },
    })
    new Gauge({
      name: `${METRIC_PREFIX}ready_volumes`,
      help: 'Managed volumes whose certificate is in place and mounted.',
      registers,
      collect() {
        let n = 0
        for (const v of volumes.values()) if (v.ready) n++
        this.set(n)
      },
    })
    // Every bounded series starts at 0: Prometheus' rate() and increase()
    // miss the first event of a series that appears already at 1.
    for (const kind of ['issue', 'renew'] as const) {
      this.#issuances.inc({ kind }, 0)
      this.#duration.zero({ kind })
      for (const reason of FAILURE_REASONS) this.#failures.inc({ kind, reason }, 0)
    }

    const depth = (): number | undefined => this.#queueDepth?.()
    new Gauge({
      name: `${METRIC_PREFIX}workqueue_depth`,
      help: 'Volumes waiting in the work queue to be reconciled.',
      registers,
      collect() {
        const d = depth()
        if (d === undefined) this.remove()
        else this.set(d)
      },
    })

    const timeGauge = (what: 'expiration' | 'renewal', field: 'notAfter' | 'renewAt', help: string): void => {
      const name = `${METRIC_PREFIX}certificate_${what}_timestamp_seconds`
      if (perVolume) {
        new Gauge({
          name,
          help: `${help}, per volume.`,
          labelNames: VOLUME_LABELS,
          registers,
          collect() {
            this.reset()
            for (const [volumeId, v] of volumes) {
              const ms = v[field]
              if (ms === undefined) continue
              this.set({ volume_id: volumeId, pod_namespace: v.pod?.namespace ?? '', pod_name: v.pod?.name ?? '' }, ms / 1000)
            }
          },
        })
        return
      }
      new Gauge({
        name,
        help: `${help}: the earliest across the volumes on this node.`,
        registers,
        collect() {
          let min = Infinity
          for (const v of volumes.values()) {
            const ms = v[field]
            if (ms !== undefined && ms < min) min = ms
          }
          // No sample rather than 0: an alert on `expiry - time() < 7d` must
          // stay quiet on a node with no certificates.
          if (min === Infinity) this.remove()
          else this.set(min / 1000)
        },
      })
    }
    timeGauge('expiration', 'notAfter', 'Expiry time (Unix seconds) of the certificates in volumes')
    timeGauge('renewal', 'renewAt', 'Next scheduled renewal time (Unix seconds) of the certificates in volumes')
  }

  /** A certificate was accepted. `seconds` unknown (e.g. a request resumed after a restart): counted, not timed. */
  issued(kind: IssuanceKind, seconds?: number): void {
    this.#issuances.inc({ kind })
    if (seconds !== undefined && Number.isFinite(seconds) && seconds >= 0) this.#duration.observe({ kind }, seconds)
  }

  failed(kind: IssuanceKind, reason: string): void {
    this.#failures.inc({ kind, reason: failureReason(reason) })
  }

  /** The latest known state of a volume; replaces the previous one. */
  volumeState(volumeId: string, state: VolumeState): void {
    this.#volumes.set(volumeId, state)
  }

  volumeForgotten(volumeId: string): void {
    this.#volumes.delete(volumeId)
  }

  reconcileError(): void {
    this.#reconcileErrors.inc()
  }

  apiThrottled(waitSeconds: number): void {
    this.#throttled.inc()
    this.#throttledSeconds.inc(waitSeconds)
  }

  /** Read at scrape time: the queue is never asked on every change. */
  setQueueDepth(fn: () => number): void {
    this.#queueDepth = fn
  }

  metricsText(): Promise<string> {
    return this.registry.metrics()
  }
}
