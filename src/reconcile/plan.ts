// The pure heart of the reconciler: given what is observed about one volume,
// the next step that moves it towards its desired state. The executor
// (reconciler.ts) performs the step, observes again and asks again, until the
// answer is "wait".
import type { VolumeRecord } from './record.js'
import { renewalTime } from './renewal.js'
import type { RequestState } from '../kube/certificate-request.js'

export interface CurrentCertificate {
  notBefore: number
  notAfter: number
  /** The stored key is the one the certificate was issued for. */
  keyMatches: boolean
}

export interface Observation {
  now: number
  record: VolumeRecord
  /** Set when the attributes no longer validate (e.g. after an upgrade). */
  invalidSpec?: string
  disableAutoRenew: boolean
  hasPendingKey: boolean
  current?: CurrentCertificate
  /**
   * State of record.request: undefined when the cache cannot tell yet,
   * 'missing' when it does not exist, 'foreign' when an object of its name
   * exists that the driver did not create (see kube/ownership.ts).
   */
  request?: RequestState | 'missing' | { foreign: string }
  /** This volume's CertificateRequests that are neither in flight, nor issued the current certificate, nor the last failure. */
  staleRequests: string[]
  publishedFresh: boolean
  mounted: boolean
  /** The kubelet's per-volume directory above the target: gone means the pod is gone. */
  targetParentExists: boolean
}

export type Step =
  | { kind: 'teardown'; reason: string }
  | { kind: 'generateKey' }
  | { kind: 'createRequest' }
  | { kind: 'abandonRequest'; reason: string }
  | { kind: 'stepOver'; reason: string }
  | { kind: 'acceptCertificate'; certificatePem: string; caPem?: string }
  | { kind: 'recordFailure'; reason: string; message: string }
  | { kind: 'deleteRequests'; names: string[] }
  | { kind: 'render' }
  | { kind: 'mount' }
  | { kind: 'wait'; ready: boolean; message: string; requeueAfterMs?: number }

export function nextStep(o: Observation): Step {
  const { record, now } = o
  if (record.desired === 'unpublished') return { kind: 'teardown', reason: 'unpublished' }
  if (!o.targetParentExists) return { kind: 'teardown', reason: `the pod's volume directory above ${record.targetPath} is gone` }
  if (o.invalidSpec) return { kind: 'wait', ready: false, message: o.invalidSpec }

  // The volume is served from what we have, even while a renewal is under way
  // and even once expired (with disable-auto-renew it is left to expire).
  const hasCert = servesCertificate(o)
  if (hasCert && !o.publishedFresh) return { kind: 'render' }
  if (hasCert && !o.mounted) return { kind: 'mount' }
  const ready = hasCert

  if (record.request) {
    if (!o.hasPendingKey) return { kind: 'abandonRequest', reason: 'the key for the request in flight is gone' }
    const state = o.request
    if (state === undefined) return { kind: 'wait', ready, message: 'waiting for the CertificateRequest cache to sync' }
    if (state === 'missing') return { kind: 'createRequest' }
    // Someone took the name: never read, adopt or delete their object; use the next generation.
    if ('foreign' in state) return { kind: 'stepOver', reason: state.foreign }
    if (state.phase === 'issued') {
      return { kind: 'acceptCertificate', certificatePem: state.certificatePem!, ...(state.caPem ? { caPem: state.caPem } : {}) }
    }
    if (state.terminal) return { kind: 'recordFailure', reason: state.phase, message: state.message }
    if (o.staleRequests.length > 0) return { kind: 'deleteRequests', names: o.staleRequests }
    return { kind: 'wait', ready, message: ready ? `renewing: ${state.message}` : state.message }
  }

  if (o.staleRequests.length > 0) return { kind: 'deleteRequests', names: o.staleRequests }

  const renewAt = renewalDue(record, o.current)
  const due = (renewAt !== undefined && now >= renewAt) || (o.current !== undefined && now >= o.current.notAfter)
  const needsCertificate = !hasCert || (!o.disableAutoRenew && due)
  if (needsCertificate) {
    const retryAt = record.failure ? Date.parse(record.failure.retryAt) : 0
    if (now < retryAt) {
      return { kind: 'wait', ready, message: `${record.failure!.message} (retrying in ${Math.ceil((retryAt - now) / 1000)}s)`, requeueAfterMs: retryAt - now }
    }
    if (!o.hasPendingKey) return { kind: 'generateKey' }
    return { kind: 'createRequest' }
  }

  if (o.disableAutoRenew || renewAt === undefined) return { kind: 'wait', ready, message: 'ready' }
  return { kind: 'wait', ready, message: 'ready', requeueAfterMs: Math.max(0, renewAt - now) }
}

/**
 * The volume is served from what it has (even while a renewal is under way):
 * a stored certificate whose key matches. The executor reports readiness by
 * this rule too.
 */
export function servesCertificate(o: Pick<Observation, 'current'>): boolean {
  return o.current !== undefined && o.current.keyMatches
}

/**
 * The recorded renewal time; or, when the record lost it (a crash between
 * writing the files and saving the record) or holds garbage, two thirds into
 * the certificate's life, so no certificate is ever served without a timer.
 */
function renewalDue(record: Observation['record'], current: CurrentCertificate | undefined): number | undefined {
  const recorded = record.issued ? Date.parse(record.issued.renewAt) : NaN
  if (Number.isFinite(recorded)) return recorded
  if (!current) return undefined
  return renewalTime(current, undefined, () => 0)
}
