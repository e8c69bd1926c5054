// Pure checks of NodePublishVolume / NodeUnpublishVolume requests. Each
// failure is a DriverError whose message tells the user what to change in
// their pod spec or CSIDriver object; nothing here touches the system.

import { isAbsolute } from 'node:path'
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js'
import type { ParseResult, PodInfo } from '../volume/types.js'
import { FS_GROUP_MAX, KUBELET_PREFIX } from '../volume/attributes.js'
import { groupId } from '../volume/shapes.js'
import type { NodePublishVolumeRequest__Output } from './generated/csi/v1/NodePublishVolumeRequest.js'
import type { NodeUnpublishVolumeRequest__Output } from './generated/csi/v1/NodeUnpublishVolumeRequest.js'
import type { PublishRequest } from './node.js'

/** The kubelet's keys in volume_context (CSIDriver podInfoOnMount: true). */
export const POD_INFO_KEYS = {
  name: 'csi.storage.k8s.io/pod.name',
  namespace: 'csi.storage.k8s.io/pod.namespace',
  uid: 'csi.storage.k8s.io/pod.uid',
  serviceAccountName: 'csi.storage.k8s.io/serviceAccount.name',
  ephemeral: 'csi.storage.k8s.io/ephemeral',
} as const


const SINGLE_NODE_MODES = new Set(['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER'])

/** `mountGroup`: the kubelet's volume_mount_group, already checked. */
export type AttributeParser = (attributes: Record<string, string>, pod: PodInfo, mountGroup?: number) => ParseResult

export interface PublishPolicy {
  driverName: string
  /** The kubelet's --root-dir: a target outside its pod volume folders is refused. */
  kubeletRootDir: string
}

export const DEFAULT_POLICY: PublishPolicy = { driverName: 'csi.cert-manager.io', kubeletRootDir: '/var/lib/kubelet' }

export function validatePublishRequest(
  req: NodePublishVolumeRequest__Output,
  parseAttributes: AttributeParser,
  policy: PublishPolicy = DEFAULT_POLICY,
): PublishRequest {
  const { driverName } = policy
  const volumeId = checkVolumeId(req.volume_id)
  const targetPath = checkTargetPath(req.target_path)

  const cap = req.volume_capability
  if (cap === null || cap === undefined) throw new InvalidArgumentError('volume_capability is required')
  if (cap.block !== null && cap.block !== undefined) {
    throw new InvalidArgumentError(`block access is not supported: ${driverName} provides files, request a mount (filesystem) volume`)
  }
  if (cap.mount === null || cap.mount === undefined) {
    throw new InvalidArgumentError('volume_capability must request mount access')
  }
  const mode = cap.access_mode?.mode ?? 'UNKNOWN'
  if (!SINGLE_NODE_MODES.has(mode)) {
    throw new InvalidArgumentError(
      `access mode ${mode} is not supported: ${driverName} volumes belong to one pod on one node (use a single-node access mode)`,
    )
  }

  const ctx = req.volume_context ?? {}
  const ephemeral = ctx[POD_INFO_KEYS.ephemeral]
  if (ephemeral === undefined && ctx[POD_INFO_KEYS.name] === undefined) {
    // The kubelet sends the ephemeral flag only together with pod info, so
    // both missing means the CSIDriver object is not set up for us.
    throw missingPodInfo(driverName, Object.values(POD_INFO_KEYS))
  }
  if (ephemeral !== 'true') {
    throw new InvalidArgumentError(
      `${driverName} only supports inline ephemeral volumes: declare it under pod.spec.volumes[].csi, not in a PersistentVolume`,
    )
  }
  if (!req.readonly) {
    throw new InvalidArgumentError('set readOnly: true on the csi volume in the pod spec')
  }

  // The service account may be empty (a cluster without the ServiceAccount
  // admission plugin); it only matters to ${SERVICE_ACCOUNT_NAME}, which the
  // attribute parser refuses to expand to nothing.
  const missing = [POD_INFO_KEYS.name, POD_INFO_KEYS.namespace, POD_INFO_KEYS.uid].filter((k) => (ctx[k] ?? '') === '')
  if (missing.length > 0) throw missingPodInfo(driverName, missing)
  const pod: PodInfo = {
    name: ctx[POD_INFO_KEYS.name] as string,
    namespace: ctx[POD_INFO_KEYS.namespace] as string,
    uid: ctx[POD_INFO_KEYS.uid] as string,
    serviceAccountName: ctx[POD_INFO_KEYS.serviceAccountName] ?? '',
  }

  checkTargetConfined(targetPath, policy.kubeletRootDir, pod.uid)

  const mountGroup = checkMountGroup(cap.mount.volume_mount_group)
  const attributes = userAttributes(ctx)
  const parsed = parseAttributes(attributes, pod, mountGroup)
  if (!parsed.ok) throw InvalidArgumentError.fromIssues(parsed.issues)

  return { volumeId, targetPath, readonly: true, pod, attributes, ...(mountGroup === undefined ? {} : { mountGroup }) }
}

/**
 * The pod's fsGroup, which the kubelet sends (as a decimal string) because
 * we advertise VOLUME_MOUNT_GROUP and the CSIDriver says fsGroupPolicy File.
 */
function checkMountGroup(group: string | undefined): number | undefined {
  if (group === undefined || group === '') return undefined
  const n = groupId(group)
  if (n === undefined) {
    throw new InvalidArgumentError(`volume_capability.mount.volume_mount_group ${JSON.stringify(group.slice(0, 64))} is not a group id: the kubelet sends the pod's securityContext.fsGroup, a whole number from 0 to ${FS_GROUP_MAX}`)
  }
  return n
}

export function validateUnpublishRequest(req: NodeUnpublishVolumeRequest__Output): { volumeId: string; targetPath: string } {
  return { volumeId: checkVolumeId(req.volume_id), targetPath: checkTargetPath(req.target_path) }
}

/**
 * The volume context minus what the kubelet adds. The service account token
 * in particular must never reach the attribute parser, where unknown
 * prefixed keys become CertificateRequest annotations.
 */
export function userAttributes(ctx: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(ctx).filter(([k]) => !k.startsWith(KUBELET_PREFIX)))
}

// The id ends up naming a directory under the data root: one path segment only.
function checkVolumeId(id: string | undefined): string {
  if (id === undefined || id === '') throw new InvalidArgumentError('volume_id is required')
  // The kubelet's ids are "csi-" and 64 hex digits; the limit leaves room for any other CO.
  if (id.length > MAX_VOLUME_ID) throw new InvalidArgumentError(`volume_id is ${id.length} characters long; at most ${MAX_VOLUME_ID} are allowed`)
  if (id.includes('/') || id.includes('\0') || id === '.' || id === '..') {
    throw new InvalidArgumentError(`volume_id ${JSON.stringify(id)} is not valid: it must not contain "/" or NUL, or be "." or ".."`)
  }
  return id
}

function checkTargetPath(p: string | undefined): string {
  if (p === undefined || p === '') throw new InvalidArgumentError('target_path is required')
  if (p.length > MAX_PATH) throw new InvalidArgumentError(`target_path is ${p.length} characters long; at most ${MAX_PATH} are allowed`)
  if (!isAbsolute(p) || p.includes('\0')) throw new InvalidArgumentError(`target_path ${JSON.stringify(p)} must be an absolute path`)
  return p
}

const MAX_PATH = 4096
const MAX_VOLUME_ID = 256
const VOLUME_NAME = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/

/**
 * The kubelet mounts an inline volume at
 * <root>/pods/<pod uid>/volumes/kubernetes.io~csi/<volume name>/mount and
 * nowhere else: any other path (a host directory, another pod's folder, ".."
 * tricks) is a caller we must not serve, since the driver mounts there as root.
 */
export function checkTargetConfined(targetPath: string, kubeletRootDir: string, podUid: string): void {
  const root = kubeletRootDir.endsWith('/') ? kubeletRootDir : `${kubeletRootDir}/`
  const shape = `${root}pods/${podUid}/volumes/kubernetes.io~csi/<volume name>/mount`
  const fail = (why: string) => new InvalidArgumentError(`target_path ${JSON.stringify(targetPath.slice(0, 300))} ${why}; the kubelet mounts this pod's volumes at ${shape}`)
  if (!targetPath.startsWith(root)) throw fail(`is not under the kubelet's root ${kubeletRootDir} (--kubelet-root-dir)`)
  const parts = targetPath.slice(root.length).split('/')
  const [pods, uid, volumes, plugin, name, mount] = parts
  if (parts.length !== 6 || pods !== 'pods' || volumes !== 'volumes' || plugin !== 'kubernetes.io~csi' || mount !== 'mount' || !uid) {
    throw fail('is not a pod volume mount point')
  }
  // The API server admits only DNS-1123 labels as pod volume names.
  if (!VOLUME_NAME.test(name!)) throw fail(`names volume ${JSON.stringify(name!.slice(0, 64))}, which is not a pod volume name (a DNS-1123 label)`)
  if (uid !== podUid) throw fail(`belongs to pod ${JSON.stringify(uid.slice(0, 64))}, not to the pod in the volume context (${podUid})`)
}

function missingPodInfo(driverName: string, keys: readonly string[]): FailedPreconditionError {
  return new FailedPreconditionError(
    `the kubelet sent no pod information (missing ${keys.join(', ')}): the CSIDriver object ${driverName} needs podInfoOnMount: true`,
  )
}
