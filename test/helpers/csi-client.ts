// A kubelet-like CSI client over the driver's real unix socket, and a helper
// that runs the driver as its own process the way a DaemonSet would.

import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js'
import { loadSync, type MethodDefinition } from '@grpc/proto-loader'
import type { ProtoGrpcType } from '../../src/csi/generated/csi.js'
import type { IdentityClient, IdentityDefinition } from '../../src/csi/generated/csi/v1/Identity.js'
import type { NodeClient, NodeDefinition } from '../../src/csi/generated/csi/v1/Node.js'
import type { NodePublishVolumeRequest } from '../../src/csi/generated/csi/v1/NodePublishVolumeRequest.js'
import { PROTO_LOADER_OPTIONS } from '../../src/csi/proto.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const PROTO = `${ROOT}proto/csi.proto`

export interface PodRef {
  name: string
  namespace: string
  uid: string
  serviceAccountName: string
}

export const DEFAULT_POD: PodRef = {
  name: 'app-0',
  namespace: 'default',
  uid: '0b9c2b4e-7d1f-4a57-9c1b-3f0c6e1d2a10',
  serviceAccountName: 'default',
}

export interface PublishArgs {
  volumeId: string
  targetPath: string
  attributes: Record<string, string>
  pod?: PodRef
  /** What the kubelet adds for this CSIDriver: the pod's fsGroup (volume_mount_group), token requests' tokens. */
  kubelet?: KubeletExtras
}

export interface KubeletExtras {
  mountGroup?: string
  /** Merged into volume_context, e.g. csi.storage.k8s.io/serviceAccount.tokens. */
  context?: Record<string, string>
}

type Known<T> = { [K in keyof T as string extends K ? never : K]: T[K] }
type Defs = Known<IdentityDefinition> & Known<NodeDefinition>
export type CsiMethod = Extract<keyof Defs, string>
type ReqOf<M extends CsiMethod> = Defs[M] extends MethodDefinition<infer Req, infer _Res, infer _ReqOut, infer _ResOut> ? Req : never
type ResOf<M extends CsiMethod> = Defs[M] extends MethodDefinition<infer _Req, infer _Res, infer _ReqOut, infer ResOut> ? ResOut : never
type Unary = (req: unknown, options: { deadline: Date }, cb: (err: ServiceError | null, res?: unknown) => void) => unknown

const IDENTITY_METHODS = new Set(['GetPluginInfo', 'GetPluginCapabilities', 'Probe'])

export class CsiTestClient {
  readonly identity: IdentityClient
  readonly node: NodeClient

  constructor(socketPath: string) {
    const csi = (loadPackageDefinition(loadSync(PROTO, PROTO_LOADER_OPTIONS)) as unknown as ProtoGrpcType).csi.v1
    this.identity = new csi.Identity(`unix://${socketPath}`, credentials.createInsecure())
    this.node = new csi.Node(`unix://${socketPath}`, credentials.createInsecure())
  }

  /** One unary call; rejects with the grpc ServiceError (`.code`, `.details`). */
  call<M extends CsiMethod>(method: M, req: ReqOf<M>, timeoutMs = 10_000): Promise<ResOf<M>> {
    const client = (IDENTITY_METHODS.has(method) ? this.identity : this.node) as unknown as Record<string, Unary>
    const fn = (client[method] as Unary).bind(client)
    return new Promise((resolve, reject) => {
      fn(req, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res as ResOf<M>)))
    })
  }

  /** Exactly what the kubelet sends for an inline ephemeral volume with readOnly: true. */
  publishRequest({ volumeId, targetPath, attributes, pod = DEFAULT_POD, kubelet = {} }: PublishArgs): NodePublishVolumeRequest {
    return {
      volume_id: volumeId,
      target_path: targetPath,
      volume_capability: { mount: kubelet.mountGroup === undefined ? {} : { volume_mount_group: kubelet.mountGroup }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      readonly: true,
      volume_context: {
        ...attributes,
        ...kubelet.context,
        'csi.storage.k8s.io/pod.name': pod.name,
        'csi.storage.k8s.io/pod.namespace': pod.namespace,
        'csi.storage.k8s.io/pod.uid': pod.uid,
        'csi.storage.k8s.io/serviceAccount.name': pod.serviceAccountName,
        'csi.storage.k8s.io/ephemeral': 'true',
      },
    }
  }

  publish(args: PublishArgs, timeoutMs?: number) {
    return this.call('NodePublishVolume', this.publishRequest(args), timeoutMs)
  }

  unpublish(volumeId: string, targetPath: string, timeoutMs?: number) {
    return this.call('NodeUnpublishVolume', { volume_id: volumeId, target_path: targetPath }, timeoutMs)
  }

  close(): void {
    ;(this.identity as unknown as Client).close()
    ;(this.node as unknown as Client).close()
  }
}

export interface DriverProcess {
  proc: ChildProcess
  socketPath: string
  /** Everything the driver wrote to stderr (its log) so far. */
  logs(): string
  /** Resolves once the log matches (lines arrive through a pipe, a little after the call returns). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<void>
  /** Sends `signal` and resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/**
 * Starts `node --import tsx src/main.ts --node-id ... --endpoint unix://<socket>
 * --data-root <dataRoot> ...extraArgs` and resolves once GetPluginInfo answers.
 * `entry` replaces `--import tsx src/main.ts` (the bundle, say), run from
 * `cwd` (the repository root by default) with `env` added to this process's.
 */
export async function startDriver(opts: {
  socketPath: string
  dataRoot: string
  nodeId?: string
  extraArgs?: string[]
  startTimeoutMs?: number
  entry?: string[]
  cwd?: string
  env?: NodeJS.ProcessEnv
}): Promise<DriverProcess> {
  const args = [
    ...(opts.entry ?? ['--import', 'tsx', 'src/main.ts']),
    '--node-id',
    opts.nodeId ?? 'test-node',
    '--endpoint',
    `unix://${opts.socketPath}`,
    '--data-root',
    opts.dataRoot,
    // Many drivers run side by side in tests: no fixed metrics port unless asked.
    ...(opts.extraArgs?.includes('--metrics-bind-address') ? [] : ['--metrics-bind-address', '127.0.0.1:0']),
    ...(opts.extraArgs ?? []),
  ]
  const proc = spawn(process.execPath, args, { cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } })
  let logs = ''
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => (logs += s))
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => (logs += s))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))

  const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000)
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`driver exited with ${proc.exitCode} before serving:\n${logs}`)
    if (existsSync(opts.socketPath) && logs.includes('CSI server listening')) {
      const c = new CsiTestClient(opts.socketPath)
      const ok = await c.call('GetPluginInfo', {}, 1_000).then(
        () => true,
        () => false,
      )
      c.close()
      if (ok) break
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`driver did not start serving on ${opts.socketPath}:\n${logs}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }

  return {
    proc,
    socketPath: opts.socketPath,
    logs: () => logs,
    waitForLog: async (pattern, timeoutMs = 5_000) => {
      const until = Date.now() + timeoutMs
      while (!pattern.test(logs)) {
        if (Date.now() > until) throw new Error(`log never matched ${pattern}:\n${logs}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    },
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    },
  }
}
