// cert-manager.io/v1 CertificateRequest: how we build one for a volume and
// how we read one back. Pure: no API calls here.
import { createHash } from 'node:crypto'
import * as v from 'valibot'
import type { PodInfo, VolumeSpec } from '../volume/types.js'

export const CR_GROUP = 'cert-manager.io'
export const CR_VERSION = 'v1'
export const CR_PLURAL = 'certificaterequests'

export const LABEL_NODE = 'csi.cert-manager.io/node'
export const LABEL_VOLUME = 'csi.cert-manager.io/volume'
export const ANNOTATION_VOLUME_ID = 'csi.cert-manager.io/volume-id'
export const ANNOTATION_NODE_ID = 'csi.cert-manager.io/node-id'

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')

/** A node name when it is a valid label value, else a stable hash of it. */
export function nodeLabelValue(nodeId: string): string {
  return nodeId.length <= 63 && LABEL_VALUE.test(nodeId) ? nodeId : `h-${sha256(nodeId).slice(0, 40)}`
}

/** Kubelet volume ids ("csi-" + 64 hex) exceed a label's 63 characters: always hash; 128 bits do not collide. */
export function volumeLabelValue(volumeId: string): string {
  return sha256(volumeId).slice(0, 32)
}

/**
 * Deterministic per (volume, generation): a retry after a lost response or a
 * restart finds the request it already made instead of making a second one.
 */
export function requestName(pod: PodInfo, volumeId: string, generation: number): string {
  const suffix = `-${sha256(volumeId).slice(0, 12)}-${generation}`
  return pod.name.slice(0, 253 - suffix.length).replace(/[.-]+$/, '') + suffix
}

export interface RequestInput {
  name: string
  volumeId: string
  nodeId: string
  pod: PodInfo
  spec: VolumeSpec
  csrPem: string
}

export function goDuration(ms: number): string {
  // cert-manager parses Go durations; whole seconds are all it needs.
  return `${Math.max(1, Math.round(ms / 1000))}s`
}

export function buildCertificateRequest(input: RequestInput): object {
  const { spec, pod } = input
  return {
    apiVersion: `${CR_GROUP}/${CR_VERSION}`,
    kind: 'CertificateRequest',
    metadata: {
      name: input.name,
      namespace: pod.namespace,
      labels: {
        [LABEL_NODE]: nodeLabelValue(input.nodeId),
        [LABEL_VOLUME]: volumeLabelValue(input.volumeId),
      },
      annotations: {
        ...spec.annotations,
        [ANNOTATION_VOLUME_ID]: input.volumeId,
        [ANNOTATION_NODE_ID]: input.nodeId,
      },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid, controller: false, blockOwnerDeletion: false }],
    },
    spec: {
      request: Buffer.from(input.csrPem).toString('base64'),
      issuerRef: { name: spec.issuer.name, kind: spec.issuer.kind, group: spec.issuer.group },
      duration: goDuration(spec.durationMs),
      isCA: spec.isCA,
      usages: spec.usages,
    },
  }
}

const str = v.optional(v.string())
const timestamp = v.optional(v.union([v.string(), v.date()]))
const stringMap = v.optional(v.record(v.string(), v.string()))

const conditionSchema = v.object({ type: v.string(), status: v.string(), reason: str, message: str })

// The API hands custom objects back untyped: take only what we read, checked
// (loose objects keep the rest as it came).
const certificateRequestSchema = v.looseObject({
  metadata: v.object({
    name: v.string(),
    namespace: v.string(),
    uid: str,
    resourceVersion: str,
    creationTimestamp: timestamp,
    labels: stringMap,
    annotations: stringMap,
    deletionTimestamp: timestamp,
    ownerReferences: v.optional(v.array(v.looseObject({ kind: v.string(), name: str, uid: v.string() }))),
  }),
  spec: v.looseObject({
    issuerRef: v.object({ name: v.string(), kind: str, group: str }),
  }),
  status: v.optional(v.object({
    certificate: str,
    ca: str,
    conditions: v.optional(v.array(conditionSchema)),
    failureTime: str,
  })),
})

export type CertificateRequest = v.InferOutput<typeof certificateRequestSchema>

/** The object as a CertificateRequest; throws naming the first field that is not what we read. */
export function parseCertificateRequest(x: unknown): CertificateRequest {
  const parsed = v.safeParse(certificateRequestSchema, x)
  if (parsed.success) return parsed.output
  const issue = parsed.issues[0]
  throw new TypeError(`not a CertificateRequest: ${v.getDotPath(issue) ?? '(top)'}: ${issue.message}`)
}

/** The object as a CertificateRequest, or undefined when it cannot be read as one. */
export function readCertificateRequest(x: unknown): CertificateRequest | undefined {
  const parsed = v.safeParse(certificateRequestSchema, x)
  return parsed.success ? parsed.output : undefined
}

export type RequestPhase = 'awaiting-approval' | 'pending' | 'issued' | 'denied' | 'failed' | 'invalid'

export interface RequestState {
  phase: RequestPhase
  /** Why, in words an operator understands. */
  message: string
  certificatePem?: string
  caPem?: string
  terminal: boolean
}

const decode = (b64: string | undefined): string | undefined => (b64 ? Buffer.from(b64, 'base64').toString('utf8') : undefined)

/** Reads a CertificateRequest's conditions into the one fact the reconciler needs. */
export function requestState(cr: CertificateRequest): RequestState {
  const cond = (type: string): v.InferOutput<typeof conditionSchema> | undefined => cr.status?.conditions?.find(c => c.type === type)
  const ready = cond('Ready')
  const issuer = cr.spec.issuerRef
  const denied = cond('Denied')
  if (denied?.status === 'True') {
    return { phase: 'denied', terminal: true, message: `request denied${denied.reason ? ` (${denied.reason})` : ''}: ${denied.message ?? 'no reason given'}` }
  }
  const invalid = cond('InvalidRequest')
  if (invalid?.status === 'True') {
    return { phase: 'invalid', terminal: true, message: `request invalid: ${invalid.message ?? invalid.reason ?? 'no reason given'}` }
  }
  if (ready?.status === 'True' && cr.status?.certificate) {
    const caPem = decode(cr.status.ca)
    return { phase: 'issued', terminal: true, message: 'issued', certificatePem: decode(cr.status.certificate)!, ...(caPem ? { caPem } : {}) }
  }
  if (ready?.status === 'False' && ready.reason === 'Failed') {
    return { phase: 'failed', terminal: true, message: `request failed: ${ready.message ?? 'no reason given'}` }
  }
  if (cond('Approved')?.status !== 'True') {
    return { phase: 'awaiting-approval', terminal: false, message: 'waiting for approval of the CertificateRequest' }
  }
  const kind = issuer.kind ?? 'Issuer'
  // cert-manager's own wording for a missing issuer; other "not found"s
  // (the issuer's Secret, say) are passed through as they are.
  if (ready?.message && /^Referenced "(Cluster)?Issuer" not found/.test(ready.message)) {
    const where = kind === 'ClusterIssuer' ? '' : ` in namespace "${cr.metadata.namespace}"`
    return { phase: 'pending', terminal: false, message: `waiting for signature: ${kind} "${issuer.name}" not found${where}` }
  }
  return { phase: 'pending', terminal: false, message: `waiting for signature${ready?.message ? `: ${ready.message}` : ` from ${kind} "${issuer.name}"`}` }
}
