// Plays one node for integration tests: a kubelet-like directory tree, the
// real driver process against the real control plane, Pods created in the
// API (so owner references carry real uids), and cleanup of every mount.
import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node'
import type { ControlPlane } from '../fixtures/control-plane.js'
import { CsiTestClient, startDriver, type DriverProcess, type KubeletExtras, type PodRef } from './csi-client.js'

export interface Teardown { teardown(fn: () => unknown): void }

export interface Volume {
  volumeId: string
  targetPath: string
  pod: PodRef
}

export class NodeHarness {
  readonly root: string
  readonly dataRoot: string
  readonly socketPath: string
  readonly nodeId: string
  driver?: DriverProcess
  client?: CsiTestClient
  private readonly core: CoreV1Api
  private readonly custom: CustomObjectsApi

  constructor(readonly cp: ControlPlane, t: Teardown, readonly extraArgs: string[] = []) {
    this.root = mkdtempSync(join(tmpdir(), 'csi-node-'))
    this.dataRoot = join(this.root, 'data')
    this.socketPath = join(this.root, 'csi.sock')
    this.nodeId = `node-${randomBytes(4).toString('hex')}`
    this.core = cp.kc.makeApiClient(CoreV1Api)
    this.custom = cp.kc.makeApiClient(CustomObjectsApi)
    t.teardown(() => this.cleanup())
  }

  async start(): Promise<DriverProcess> {
    this.driver = await startDriver({
      socketPath: this.socketPath,
      dataRoot: this.dataRoot,
      nodeId: this.nodeId,
      extraArgs: ['--kubeconfig', this.cp.kubeconfig, '--log-level', 'debug', '--kubelet-root-dir', join(this.root, 'kubelet'), ...this.extraArgs],
    })
    this.client?.close()
    this.client = new CsiTestClient(this.socketPath)
    return this.driver
  }

  /** kill -9: no cleanup of any kind, as after a node-level crash. */
  async kill(): Promise<void> {
    await this.driver?.stop('SIGKILL')
    this.driver = undefined
  }

  /** A Pod object in the API, and the kubelet's directory for its volume. */
  async newVolume(namespace = this.cp.issuer.namespace, podName = `app-${randomBytes(3).toString('hex')}`): Promise<Volume> {
    const pod = await this.core.createNamespacedPod({
      namespace,
      body: { metadata: { name: podName, namespace }, spec: { nodeName: this.nodeId, containers: [{ name: 'app', image: 'busybox' }] } },
    })
    const uid = pod.metadata!.uid!
    const volumeId = `csi-${randomBytes(32).toString('hex')}`
    const parent = join(this.root, 'kubelet/pods', uid, 'volumes/kubernetes.io~csi/tls')
    mkdirSync(parent, { recursive: true })
    return { volumeId, targetPath: join(parent, 'mount'), pod: { name: podName, namespace, uid, serviceAccountName: 'default' } }
  }

  publish(v: Volume, attributes: Record<string, string>, timeoutMs = 60_000, kubelet?: KubeletExtras) {
    return this.client!.publish({ volumeId: v.volumeId, targetPath: v.targetPath, attributes, pod: v.pod, ...(kubelet ? { kubelet } : {}) }, timeoutMs)
  }

  unpublish(v: Volume, timeoutMs = 60_000) {
    return this.client!.unpublish(v.volumeId, v.targetPath, timeoutMs)
  }

  read(v: Volume, name: string): string {
    return readFileSync(join(v.targetPath, name), 'utf8')
  }

  /** Every CertificateRequest this node made in a namespace, from the API. */
  async requests(namespace = this.cp.issuer.namespace): Promise<{ name: string; volumeId: string; annotations: Record<string, string>; conditions: { type: string; status: string; reason?: string }[] }[]> {
    const list = (await this.custom.listNamespacedCustomObject({
      group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests', namespace, labelSelector: `csi.cert-manager.io/node=${this.nodeId}`,
    })) as { items: { metadata: { name: string; annotations?: Record<string, string> }; status?: { conditions?: { type: string; status: string; reason?: string }[] } }[] }
    return list.items.map(i => ({ name: i.metadata.name, volumeId: i.metadata.annotations?.['csi.cert-manager.io/volume-id'] ?? '', annotations: i.metadata.annotations ?? {}, conditions: i.status?.conditions ?? [] }))
  }

  async requestsFor(v: Volume): Promise<string[]> {
    return (await this.requests(v.pod.namespace)).filter(r => r.volumeId === v.volumeId).map(r => r.name)
  }

  /**
   * The volume's requests once the janitor has had its chance: unpublish
   * answers after the local teardown and the requests are deleted right
   * after it, off the kubelet's path. Polls until none is left or timeoutMs.
   */
  async requestsAfterUnpublish(v: Volume, timeoutMs = 15_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const left = await this.requestsFor(v)
      if (left.length === 0 || Date.now() > deadline) return left
      await new Promise(r => setTimeout(r, 100))
    }
  }

  isMounted(path: string): boolean {
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some(l => l.split(' ')[4] === path)
  }

  async cleanup(): Promise<void> {
    this.client?.close()
    await this.driver?.stop('SIGKILL')
    unmountUnder(this.root)
    await rm(this.root, { recursive: true, force: true })
  }
}

/** Unmounts everything mounted below root, deepest first. */
export function unmountUnder(root: string): void {
  const points = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map(l => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((p): p is string => !!p && (p === root || p.startsWith(`${root}/`)))
    .sort((a, b) => b.length - a.length)
  for (const p of points) {
    try { execFileSync('umount', ['-l', p]) } catch { /* already gone */ }
  }
}
