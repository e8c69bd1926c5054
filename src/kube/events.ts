// Kubernetes Events (events.k8s.io/v1) on CertificateRequests and Pods, so
// `kubectl events` tells what the driver did. Best effort: a failed Event is
// logged, never fails a reconcile. Rate limited per object and reason
// (./event-limiter.ts).
import type { Logger } from 'pino'
import { randomBytes } from 'node:crypto'
import { microTime, type ApiClient } from './api-client.js'
import { EventLimiter, type EventLimiterOptions } from './event-limiter.js'

export interface ObjectRef {
  apiVersion: string
  kind: string
  name: string
  namespace: string
  uid?: string
}

export type EventType = 'Normal' | 'Warning'

export interface EventRecorder {
  record(regarding: ObjectRef, type: EventType, reason: string, action: string, note: string): void
}

export interface EventRecorderOptions {
  /** reportingController; default csi.cert-manager.io. */
  controller?: string
  limits?: EventLimiterOptions
  now?: () => number
}

export class KubeEventRecorder implements EventRecorder {
  readonly #api: ApiClient
  readonly #controller: string
  readonly #limiter: EventLimiter
  readonly #now: () => number

  readonly #nodeId: string

  readonly #logger: Logger
  constructor(api: ApiClient, nodeId: string, logger: Logger, opts: EventRecorderOptions = {}) {
    this.#nodeId = nodeId
    this.#logger = logger
    this.#api = api
    this.#controller = opts.controller ?? 'csi.cert-manager.io'
    this.#limiter = new EventLimiter(opts.limits)
    this.#now = opts.now ?? Date.now
  }

  record(regarding: ObjectRef, type: EventType, reason: string, action: string, givenNote: string): void {
    const decision = this.#limiter.decide(`${regarding.kind}/${regarding.namespace}/${regarding.name}/${type}/${reason}`, this.#now())
    if (!decision.send) {
      this.#logger.debug({ reason, object: `${regarding.kind}/${regarding.namespace}/${regarding.name}` }, 'Event rate limited')
      return
    }
    const note = decision.suppressedBefore > 0 ? `${givenNote} (${decision.suppressedBefore} similar Events held back)` : givenNote
    const body = {
      metadata: { name: `${regarding.name.slice(0, 200)}.${randomBytes(8).toString('hex')}`, namespace: regarding.namespace },
      eventTime: microTime(new Date(this.#now())),
      reportingController: this.#controller,
      reportingInstance: `${this.#controller}/${this.#nodeId}`.slice(0, 128),
      action,
      reason,
      type,
      note: note.slice(0, 1024),
      regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name: regarding.name, namespace: regarding.namespace, ...(regarding.uid ? { uid: regarding.uid } : {}) },
    }
    const path = `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(regarding.namespace)}/events`
    this.#api.request('Event create', { method: 'POST', path, body }).catch((err: unknown) => {
      this.#logger.warn({ err, reason, object: `${regarding.kind}/${regarding.namespace}/${regarding.name}` }, 'could not record an Event')
    })
  }
}
