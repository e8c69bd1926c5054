// What the node store keeps per volume: the desired state recorded by the
// CSI calls, and the reconciler's progress (so a restart resumes it). The
// volume spec is not stored: it is re-derived from the attributes, so a
// record can never hold a spec that the current parser would reject.
import * as v from 'valibot'
import { parseVolumeAttributes } from '../volume/spec.js'
import type { ParseResult } from '../volume/types.js'

const text = v.string()
const count = v.pipe(v.number(), v.integer())
const podSchema = v.object({ name: text, namespace: text, uid: text, serviceAccountName: text })

export const volumeRecordSchema = v.object({
  version: v.literal(1),
  volumeId: v.pipe(v.string(), v.minLength(1)),
  targetPath: v.pipe(v.string(), v.minLength(1)),
  nodeId: text,
  pod: podSchema,
  attributes: v.record(v.string(), v.string()),
  /** The kubelet's volume_mount_group (the pod's fsGroup), when it sent one. */
  mountGroup: v.optional(v.pipe(count, v.minValue(0))),
  desired: v.picklist(['published', 'unpublished']),
  createdAt: text,
  /** Bumped by every write (the store's compare-and-swap): absent in records from before it. */
  revision: v.optional(v.pipe(count, v.minValue(0))),
  /** Bumped for every CertificateRequest made: part of its deterministic name. */
  generation: v.pipe(count, v.minValue(0)),
  /** The request in flight, recorded before it is created. */
  request: v.optional(v.object({
    name: text,
    generation: count,
    renewal: v.boolean(),
    /** sha256 of the spec.request sent (pending-csr.pem), recorded before the create: only that request is ours. */
    csrSha256: v.optional(text),
    /** The uid the apiserver gave it, recorded once the create answered. */
    uid: v.optional(text),
  })),
  /** The certificate now in the volume. */
  issued: v.optional(v.object({
    requestName: text,
    notBefore: text,
    notAfter: text,
    renewAt: text,
    serial: text,
    issuedAt: text,
  })),
  /** Last terminal failure: no new request before retryAt. */
  failure: v.optional(v.object({ reason: text, message: text, at: text, count, retryAt: text, requestName: v.optional(text) })),
  /** Names taken by objects someone else made (stepped over): never adopted, never deleted, even with the pod's owner reference. */
  steppedOver: v.optional(v.pipe(v.array(text), v.maxLength(16))),
  /** Hash of the keystore last written: it is salted at random, so it cannot be re-derived. */
  keystoreSha256: v.optional(text),
  /**
   * The files last published (publishedDigest) and the end of their
   * certificate's life: a republish after a restart compares the files with
   * this rather than re-deriving them from the stored pair.
   */
  published: v.optional(v.object({ sha256: text, notAfter: text })),
})

export type VolumeRecord = v.InferOutput<typeof volumeRecordSchema>

export const validateRecord = (x: unknown): VolumeRecord => v.parse(volumeRecordSchema, x)

/** The volume's spec as the record's attributes and the kubelet's group give it (records passed the node's annotation check when made). */
export const parseRecord = (record: Pick<VolumeRecord, 'attributes' | 'pod' | 'mountGroup'>): ParseResult =>
  parseVolumeAttributes(record.attributes, record.pod, record.mountGroup === undefined ? { annotationPrefixes: '*' } : { annotationPrefixes: '*', mountGroup: record.mountGroup })
