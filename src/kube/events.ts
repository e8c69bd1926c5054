// Kubernetes Events (events.k8s.io/v1) on CertificateRequests and Pods, so
// `kubectl events` tells what the driver did. Best effort: a failed Event is
// logged, never fails a reconcile.
import { EventsV1Api, V1MicroTime, type KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { randomBytes } from 'node:crypto'

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

export class KubeEventRecorder implements EventRecorder {
  private readonly api: EventsV1Api

  constructor(kc: KubeConfig, private readonly nodeId: string, private readonly logger: Logger, private readonly controller = 'csi.cert-manager.io') {
    this.api = kc.makeApiClient(EventsV1Api)
  }

  record(regarding: ObjectRef, type: EventType, reason: string, action: string, note: string): void {
    const body = {
      metadata: { name: `${regarding.name.slice(0, 200)}.${randomBytes(8).toString('hex')}`, namespace: regarding.namespace },
      // events.k8s.io/v1 insists on microsecond precision: a Date serialises with milliseconds.
      eventTime: new V1MicroTime(),
      reportingController: this.controller,
      reportingInstance: `${this.controller}/${this.nodeId}`.slice(0, 128),
      action,
      reason,
      type,
      note: note.slice(0, 1024),
      regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name: regarding.name, namespace: regarding.namespace, ...(regarding.uid ? { uid: regarding.uid } : {}) },
    }
    this.api.createNamespacedEvent({ namespace: regarding.namespace, body }).catch((err: unknown) => {
      this.logger.warn({ err: String(err), reason, object: `${regarding.kind}/${regarding.namespace}/${regarding.name}` }, 'could not record an Event')
    })
  }
}
