// The CSI Node service. Handlers validate, then hand the volume to a
// VolumePublisher (src/reconcile/desired-state.ts: it records desired state and
// waits for the reconciler) and answer with what it says. They never touch
// keys, files or mounts themselves.

import { DeadlineExceededError, UnavailableError, UnimplementedError, isDriverError } from '../errors.js'
import { parseVolumeAttributes } from '../volume/spec.js'
import type { PodInfo } from '../volume/types.js'
import type { PodTokens } from '../kube/pod-tokens.js'
import type { NodeHandlers } from './generated/csi/v1/Node.js'
import type { AsyncService } from './handlers.js'
import { DEFAULT_POLICY, validatePublishRequest, validateUnpublishRequest, type AttributeParser } from './validate.js'

export interface PublishRequest {
  volumeId: string
  targetPath: string
  /** Always true: validation refuses writable volumes. */
  readonly: boolean
  pod: PodInfo
  /** The user's attributes (validated; the reconciler parses them again from the record) (volume_context minus the kubelet's csi.storage.k8s.io/ keys). */
  attributes: Record<string, string>
  /** The pod's fsGroup from the kubelet (volume_mount_group), if it sent one. */
  mountGroup?: number
}

/** `unchanged`: the volume already served as asked (a republish); nothing was done for this call. */
export type PublishOutcome = 'published' | 'unchanged'

export interface VolumePublisher {
  /**
   * Resolves only when the files are in place and mounted at targetPath.
   * Rejects with a DriverError saying why not; must give up when `signal`
   * aborts (publish timeout, kubelet cancel, shutdown).
   */
  publish(req: PublishRequest, signal: AbortSignal): Promise<PublishOutcome>
  /** Idempotent: an unknown volume or a missing target path is success. */
  unpublish(volumeId: string, targetPath: string): Promise<void>
}

/** Stands in until the reconciler is wired: publish never succeeds without one. */
export class UnavailablePublisher implements VolumePublisher {
  async publish(): Promise<PublishOutcome> {
    throw new UnavailableError('reconciler not running: cannot issue certificates yet')
  }

  async unpublish(): Promise<void> {
    // Nothing was ever published, so there is nothing to undo.
  }
}

export interface NodeServiceOptions {
  nodeId: string
  driverName: string
  publisher: VolumePublisher
  publishTimeoutMs: number
  /** The kubelet's --root-dir (target paths lie under it); default /var/lib/kubelet. */
  kubeletRootDir?: string
  /** --annotation-prefixes; default none. */
  annotationPrefixes?: readonly string[] | '*'
  parseAttributes?: AttributeParser
  /** --use-token-request: every publish must carry the pod's token, kept here for its requests. */
  podTokens?: Pick<PodTokens, 'remember' | 'forget'>
}

export function createNodeService(opts: NodeServiceOptions): AsyncService<NodeHandlers> {
  const annotationPrefixes = opts.annotationPrefixes ?? []
  const parse: AttributeParser = opts.parseAttributes ?? ((attributes, pod, mountGroup) => parseVolumeAttributes(attributes, pod, mountGroup === undefined ? { annotationPrefixes } : { annotationPrefixes, mountGroup }))
  const policy = { driverName: opts.driverName, kubeletRootDir: opts.kubeletRootDir ?? DEFAULT_POLICY.kubeletRootDir }
  const unimplemented = (rpc: string, capability: string) => async (): Promise<never> => {
    throw new UnimplementedError(`${rpc} is not implemented: ${opts.driverName} does not advertise ${capability}`)
  }

  return {
    // VOLUME_MOUNT_GROUP: the kubelet hands us the pod's fsGroup rather than
    // chown-ing a read-only volume itself (CSIDriver fsGroupPolicy: File).
    NodeGetCapabilities: async () => ({ capabilities: [{ rpc: { type: 'VOLUME_MOUNT_GROUP' } }] }),

    NodeGetInfo: async () => ({ node_id: opts.nodeId, max_volumes_per_node: 0, accessible_topology: null }),

    NodePublishVolume: async (req, ctx) => {
      const publishReq = validatePublishRequest(req, parse, policy)
      // Every call, republishes too: each brings a fresh token.
      opts.podTokens?.remember(publishReq.volumeId, req.volume_context ?? {})
      const timeout = AbortSignal.timeout(opts.publishTimeoutMs)
      const signal = AbortSignal.any([ctx.signal, timeout])
      try {
        if (await opts.publisher.publish(publishReq, signal) === 'unchanged') ctx.routine()
      } catch (err) {
        // A publisher that merely gave up on the signal has no better reason
        // to offer; without these its abort error would read as INTERNAL.
        if (!isDriverError(err) && timeout.aborted) {
          throw new DeadlineExceededError(
            `certificate for volume ${publishReq.volumeId} not ready within ${opts.publishTimeoutMs / 1000}s; the kubelet will retry`,
            { cause: err },
          )
        }
        if (!isDriverError(err) && ctx.signal.aborted) {
          throw new UnavailableError(`publish of volume ${publishReq.volumeId} abandoned: ${String((ctx.signal.reason as Error)?.message ?? ctx.signal.reason)}`, {
            cause: err,
          })
        }
        throw err
      }
      return {}
    },

    NodeUnpublishVolume: async (req) => {
      const { volumeId, targetPath } = validateUnpublishRequest(req)
      await opts.publisher.unpublish(volumeId, targetPath)
      opts.podTokens?.forget(volumeId)
      return {}
    },

    NodeStageVolume: unimplemented('NodeStageVolume', 'STAGE_UNSTAGE_VOLUME'),
    NodeUnstageVolume: unimplemented('NodeUnstageVolume', 'STAGE_UNSTAGE_VOLUME'),
    NodeGetVolumeStats: unimplemented('NodeGetVolumeStats', 'GET_VOLUME_STATS'),
    NodeExpandVolume: unimplemented('NodeExpandVolume', 'EXPAND_VOLUME'),
  }
}
