// Which CertificateRequests belong to a volume. Labels and annotations are
// written by whoever creates the object, so anyone who may create requests
// somewhere can copy ours. What they cannot forge: the namespace (they need
// rights there), the owner reference to the pod's uid together with that
// namespace (the garbage collector deletes such objects with the pod anyway,
// so treating them as the pod's takes nothing from anyone), and, for the
// request in flight, the CSR bytes the driver sent and the uid the apiserver
// gave it. Pure: no API calls.
import { createHash } from 'node:crypto'
import { ANNOTATION_VOLUME_ID, type CertificateRequest } from './certificate-request.js'

/** Who a volume's requests must point at. */
export interface VolumeOwner {
  volumeId: string
  namespace: string
  podUid: string
}

/** What the record says the driver created for the request in flight. */
export interface CreatedRequest {
  name: string
  /** sha256 of spec.request (the base64 text) as sent; absent in records from before it was kept. */
  csrSha256?: string
  /** metadata.uid the apiserver gave it; absent until the create's answer was seen. */
  uid?: string
}

export function csrDigest(specRequest: string): string {
  return createHash('sha256').update(specRequest).digest('hex')
}

function ownerUids(cr: CertificateRequest): string[] {
  return (cr.metadata.ownerReferences ?? []).filter(r => r.kind === 'Pod').map(r => r.uid)
}

/** The request is in the pod's namespace, names the volume, and is owned by the pod. */
export function belongsToVolume(cr: CertificateRequest, owner: VolumeOwner): boolean {
  return cr.metadata.namespace === owner.namespace &&
    cr.metadata.annotations?.[ANNOTATION_VOLUME_ID] === owner.volumeId &&
    ownerUids(cr).includes(owner.podUid)
}

/** Why `cr` is not the request the record says the driver created, or undefined when it is. */
export function notOurRequest(cr: CertificateRequest, owner: VolumeOwner, created: CreatedRequest): string | undefined {
  if (cr.metadata.name !== created.name) return `it is named ${cr.metadata.name}, not ${created.name}`
  if (!belongsToVolume(cr, owner)) return `it is not owned by pod ${owner.podUid} in namespace ${owner.namespace} for volume ${owner.volumeId}`
  if (created.uid !== undefined && cr.metadata.uid !== created.uid) return `its uid ${cr.metadata.uid ?? '(none)'} is not the one created (${created.uid})`
  if (created.csrSha256 !== undefined) {
    const request = (cr.spec as { request?: unknown }).request
    if (typeof request !== 'string' || csrDigest(request) !== created.csrSha256) return 'its spec.request is not the CSR the driver sent'
  }
  return undefined
}
