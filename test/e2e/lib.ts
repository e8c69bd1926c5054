// Helpers for the e2e tests: the running e2e node (test/e2e/node.ts up, which
// test/e2e/run.sh does), pods made from the product example, kubectl, and
// what a pod's volume looks like on the host.
import { createHash, X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { existsSync, readFileSync, appendFileSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { CoreV1Api, CustomObjectsApi, KubeConfig, loadYaml, type V1Pod } from '@kubernetes/client-node'
import { kubectl as clusterKubectl } from '../cluster/control-plane.js'
import { isAlive } from '../cluster/processes.js'
import { readNode, e2eRoot, DRIVER_NAME, type E2eNode } from './node.js'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const NS = 'sandbox'
export const ATTR = (k: string): string => `${DRIVER_NAME}/${k}`
/** A short-lived ECDSA certificate: renewed about 15 s after issuance. */
export const SHORT = { [ATTR('duration')]: '1m', [ATTR('renew-before')]: '45s', [ATTR('key-algorithm')]: 'ECDSA' }

export interface Env {
  node: E2eNode
  core: CoreV1Api
  custom: CustomObjectsApi
  kubectl(args: string[], input?: string): Promise<string>
}

/** The running e2e node; fails with how to start one when there is none. */
export function env(): Env {
  const node = readNode()
  if (!node) throw new Error(`no e2e node in ${e2eRoot()}: run bash test/e2e/run.sh, or node --import tsx test/e2e/node.ts up first`)
  const dead = Object.values(node.processes).filter(p => !isAlive(p.pid)).map(p => p.name)
  if (dead.length > 0) throw new Error(`e2e node in ${e2eRoot()} has dead processes: ${dead.join(', ')}`)
  const kc = new KubeConfig()
  kc.loadFromFile(node.kubeconfig)
  return {
    node,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    kubectl: (args, input) => clusterKubectl(node.cluster, args, input),
  }
}

/** Appends a line to $CSI_E2E_RESULTS (run.sh prints the file at the end). */
export function report(line: string): void {
  if (process.env.CSI_E2E_RESULTS) appendFileSync(process.env.CSI_E2E_RESULTS, `${line}\n`)
}

interface ExampleDeployment {
  spec: { template: { metadata: { labels: Record<string, string> }; spec: V1Pod['spec'] } }
}

/**
 * A pod of the product example's Deployment (config/example/deployment.yaml),
 * as a plain Pod bound to the node: no scheduler or controller-manager runs.
 * What changes and why: the local busybox image (nothing can be pulled), the
 * host network (no CNI), the service account named explicitly (no admission
 * plugin fills it in), a short grace period (sleep as PID 1 ignores SIGTERM).
 */
export function examplePod(node: E2eNode, name: string, opts: { attributes?: Record<string, string>; replaceAttributes?: boolean; labels?: Record<string, string> } = {}): V1Pod {
  const dep = loadYaml<ExampleDeployment>(readFileSync(join(repoRoot, 'config/example/deployment.yaml'), 'utf8'))
  const spec = structuredClone(dep.spec.template.spec)!
  const container = spec.containers[0]!
  container.image = node.images.test
  container.imagePullPolicy = 'Never'
  const volume = spec.volumes!.find(v => v.name === 'tls')!
  const base = opts.replaceAttributes ? {} : volume.csi!.volumeAttributes
  volume.csi!.volumeAttributes = { ...base, ...opts.attributes }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { ...dep.spec.template.metadata.labels, 'e2e-run': runId(), ...opts.labels } },
    spec: { ...spec, nodeName: node.nodeName, hostNetwork: true, serviceAccountName: 'default', terminationGracePeriodSeconds: 2 },
  }
}

let run: string | undefined
/** Short and unique per test file process: pod names never collide between runs. */
export function runId(): string {
  run ??= `${Date.now().toString(36).slice(-5)}${process.pid.toString(36).slice(-2)}`
  return run
}

export async function createPod(e: Env, pod: V1Pod): Promise<{ pod: V1Pod; createdAt: number }> {
  const createdAt = Date.now()
  const created = await e.core.createNamespacedPod({ namespace: NS, body: pod })
  return { pod: created, createdAt }
}

export async function getPod(e: Env, name: string): Promise<V1Pod | undefined> {
  try {
    return await e.core.readNamespacedPod({ namespace: NS, name })
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined
    throw err
  }
}

/** Polls every 100 ms; resolves with the time the pod was first seen Running. */
export async function waitRunning(e: Env, name: string, timeoutMs = 120_000): Promise<{ pod: V1Pod; runningAt: number }> {
  const deadline = Date.now() + timeoutMs
  let last: V1Pod | undefined
  while (Date.now() < deadline) {
    last = await getPod(e, name)
    if (last?.status?.phase === 'Running') return { pod: last, runningAt: Date.now() }
    if (last?.status?.phase === 'Failed' || last?.status?.phase === 'Succeeded') break
    await sleep(100)
  }
  const events = await e.kubectl(['events', '-n', NS, '--for', `pod/${name}`]).catch(err => String(err))
  throw new Error(`pod ${name} not Running after ${timeoutMs / 1000}s: phase ${last?.status?.phase}\n${JSON.stringify(last?.status?.containerStatuses ?? [])}\n${events}`)
}

export async function deletePod(e: Env, name: string, timeoutMs = 90_000): Promise<void> {
  await e.core.deleteNamespacedPod({ namespace: NS, name }).catch((err: { code?: number }) => {
    if (err.code !== 404) throw err
  })
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!(await getPod(e, name))) return
    await sleep(200)
  }
  throw new Error(`pod ${name} still exists ${timeoutMs / 1000}s after deletion`)
}

export async function exec(e: Env, pod: string, command: string[]): Promise<string> {
  return e.kubectl(['exec', '-n', NS, pod, '-c', 'my-frontend', '--', ...command])
}

/** What the container sees: key, certificate and CA read in one exec, so they belong together. */
export async function readTls(e: Env, pod: string): Promise<{ key: string; crt: string; ca: string }> {
  const out = await exec(e, pod, ['sh', '-c', 'cat /tls/key.pem; echo ===; cat /tls/crt.pem; echo ===; cat /tls/ca.pem'])
  const [key = '', crt = '', ca = ''] = out.split('===\n')
  return { key: key.trim(), crt: crt.trim(), ca: ca.trim() }
}

export function certMatchesKey(crtPem: string, keyPem: string): boolean {
  const cert = new X509Certificate(crtPem)
  const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' })
  return Buffer.compare(cert.publicKey.export({ type: 'spki', format: 'der' }), fromKey) === 0
}

/** The kubelet's handle for an inline volume: "csi-" + sha256(pod UID + volume name). */
export function volumeHandle(podUid: string, volumeName = 'tls'): string {
  return `csi-${createHash('sha256').update(`${podUid}${volumeName}`).digest('hex')}`
}

export interface HostVolume {
  volumeId: string
  /** Where the kubelet asked the driver to mount it. */
  targetPath: string
  /** The driver's directory for it on the data root. */
  dataDir: string
}

export function hostVolume(node: E2eNode, pod: V1Pod, volumeName = 'tls'): HostVolume {
  const uid = pod.metadata!.uid!
  const volumeId = volumeHandle(uid, volumeName)
  return {
    volumeId,
    targetPath: join(node.kubeletRoot, 'pods', uid, 'volumes', 'kubernetes.io~csi', volumeName, 'mount'),
    dataDir: join(node.dataRoot, 'volumes', volumeId),
  }
}

export function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some(line => line.split(' ')[4] === path)
}

/** The filesystem type of the mount holding path (longest mount point prefix). */
export function fsTypeOf(path: string): string | undefined {
  let best: { target: string; fstype: string } | undefined
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n')) {
    const f = line.split(' ')
    const target = f[4]!
    const fstype = f[f.indexOf('-') + 1]!
    if ((path === target || path.startsWith(target.endsWith('/') ? target : `${target}/`)) && target.length >= (best?.target.length ?? -1)) best = { target, fstype }
  }
  return best?.fstype
}

export function exists(path: string): boolean {
  return existsSync(path)
}

export interface CertificateRequest {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Array<{ uid: string }>; creationTimestamp?: string }
  status?: { certificate?: string; conditions?: Array<{ type: string; status: string; reason?: string }> }
}

/** CertificateRequests for a volume, by the driver's volume label. */
export async function requestsFor(e: Env, volumeId: string): Promise<CertificateRequest[]> {
  const label = createHash('sha256').update(volumeId).digest('hex').slice(0, 32)
  const res = await e.custom.listNamespacedCustomObject({
    group: 'cert-manager.io', version: 'v1', namespace: NS, plural: 'certificaterequests', labelSelector: `${DRIVER_NAME}/volume=${label}`,
  }) as { items: CertificateRequest[] }
  return res.items
}

/** CertificateRequests owned by a pod. */
export async function requestsOwnedBy(e: Env, podUid: string): Promise<CertificateRequest[]> {
  const res = await e.custom.listNamespacedCustomObject({ group: 'cert-manager.io', version: 'v1', namespace: NS, plural: 'certificaterequests' }) as { items: CertificateRequest[] }
  return res.items.filter(cr => cr.metadata.ownerReferences?.some(o => o.uid === podUid))
}

export async function eventually<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      lastErr = err
    }
    await sleep(everyMs)
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000}s${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`)
}

export function serialOf(crtPem: string): string {
  return new X509Certificate(crtPem).serialNumber
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
