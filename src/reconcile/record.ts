// What the node store keeps per volume: the desired state recorded by the
// CSI calls, and the reconciler's progress (so a restart resumes it). The
// volume spec is not stored: it is re-derived from the attributes, so a
// record can never hold a spec that the current parser would reject.
import { z } from 'zod'

const podSchema = z.object({ name: z.string(), namespace: z.string(), uid: z.string(), serviceAccountName: z.string() })

export const volumeRecordSchema = z.object({
  version: z.literal(1),
  volumeId: z.string().min(1),
  targetPath: z.string().min(1),
  nodeId: z.string(),
  pod: podSchema,
  attributes: z.record(z.string(), z.string()),
  desired: z.enum(['published', 'unpublished']),
  createdAt: z.string(),
  /** Bumped by every write (the store's compare-and-swap): absent in records from before it. */
  revision: z.number().int().nonnegative().optional(),
  /** Bumped for every CertificateRequest made: part of its deterministic name. */
  generation: z.number().int().nonnegative(),
  /** The request in flight, recorded before it is created. */
  request: z.object({
    name: z.string(),
    generation: z.number().int(),
    renewal: z.boolean(),
    /** sha256 of the spec.request sent (pending-csr.pem), recorded before the create: only that request is ours. */
    csrSha256: z.string().optional(),
    /** The uid the apiserver gave it, recorded once the create answered. */
    uid: z.string().optional(),
  }).optional(),
  /** The certificate now in the volume. */
  issued: z.object({
    requestName: z.string(),
    notBefore: z.string(),
    notAfter: z.string(),
    renewAt: z.string(),
    serial: z.string(),
    issuedAt: z.string(),
  }).optional(),
  /** Last terminal failure: no new request before retryAt. */
  failure: z.object({ reason: z.string(), message: z.string(), at: z.string(), count: z.number().int(), retryAt: z.string(), requestName: z.string().optional() }).optional(),
  /** Names taken by objects someone else made (stepped over): never adopted, never deleted, even with the pod's owner reference. */
  steppedOver: z.array(z.string()).max(16).optional(),
  /** Hash of the keystore last written: it is salted at random, so it cannot be re-derived. */
  keystoreSha256: z.string().optional(),
})

export type VolumeRecord = z.infer<typeof volumeRecordSchema>

export const validateRecord = (x: unknown): VolumeRecord => volumeRecordSchema.parse(x)
