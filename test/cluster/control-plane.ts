// A real local control plane for tests and the demo: etcd, kube-apiserver and
// cert-manager's own controllers, on loopback ports, with a CA Issuer and a
// CA ClusterIssuer ready to sign. State lives in one directory so `down` and
// `status` (and other processes) can find what `up` started.
import { mkdirSync, rmSync, writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { execFileSync, execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { request } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import { makeAuthority, issueLeaf, serviceAccountKeyPair } from './pki.js'
import { freePort } from './ports.js'
import { startProcess, stopProcess, isAlive, tail, rssMiB, type ProcessRecord } from './processes.js'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export const ISSUER_NAMESPACE = 'sandbox'
export const ISSUER_NAME = 'ca-issuer'
export const CLUSTER_ISSUER_NAME = 'ca-cluster-issuer'
export const CLUSTER_RESOURCE_NAMESPACE = 'cert-manager'

export function defaultClusterDir(): string {
  return process.env.CSI_CLUSTER_DIR ?? '/tmp/cert-manager-csi-cluster'
}

export interface ClusterState {
  dir: string
  binDir: string
  kubeconfig: string
  server: string
  /** PEM of the root that signs every certificate the CA issuers hand out. */
  issuerCaFile: string
  issuer: { name: string; namespace: string }
  clusterIssuer: { name: string }
  processes: ProcessRecord[]
  startedAt: string
  timings: Record<string, number>
}

export class ClusterError extends Error {}

const stateFile = (dir: string): string => join(dir, 'state.json')

export function readState(dir = defaultClusterDir()): ClusterState | undefined {
  if (!existsSync(stateFile(dir))) return undefined
  return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as ClusterState
}

/** Saves the state after a process was restarted (a new pid), so `down` and `status` still find it. */
export function writeState(state: ClusterState): void {
  const { dir, binDir, kubeconfig, server, issuerCaFile, issuer, clusterIssuer, processes, startedAt, timings } = state
  writeFileSync(stateFile(dir), JSON.stringify({ dir, binDir, kubeconfig, server, issuerCaFile, issuer, clusterIssuer, processes, startedAt, timings }, null, 2))
}

/** The tools a control plane runs on: what `npm run demo` builds on a first run. */
export const CONTROL_PLANE_TOOLS = ['kube-apiserver', 'etcd', 'kubectl', 'cert-manager-controllers']

/** Builds (or finds cached) binaries, all of them or those named, and returns their folder. Progress goes to stderr. */
export function buildTools(names: string[] = []): string {
  const out = execFileSync('bash', [join(repoRoot, 'test/tools/build.sh'), ...names], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' })
  const bin = out.trim().split('\n').pop()
  if (!bin || !existsSync(bin)) throw new ClusterError(`test/tools/build.sh printed no bin directory (got ${JSON.stringify(out)})`)
  return bin
}

interface TlsClient { ca: string; cert: string; key: string }

function httpsGet(url: string, tls: TlsClient): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = request(url, { ...tls, timeout: 5000 }, res => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

async function waitFor(what: string, proc: ProcessRecord, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isAlive(proc.pid)) throw new ClusterError(`${proc.name} exited while waiting for ${what}. Last lines of ${proc.log}:\n${tail(proc.log)}`)
    if (await check().catch(() => false)) return
    await sleep(250)
  }
  throw new ClusterError(`${what} not ready after ${timeoutMs / 1000}s. Last lines of ${proc.log}:\n${tail(proc.log)}`)
}

function kubeconfigYaml(server: string, caPem: string, client: { certPem: string; keyPem: string }): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name: 'admin', user: { 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) } }],
    contexts: [{ name: 'local', context: { cluster: 'local', user: 'admin' } }],
    'current-context': 'local',
  }, null, 2)
}

export function kubectl(state: Pick<ClusterState, 'binDir' | 'kubeconfig'>, args: string[], input?: string): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = execFile(join(state.binDir, 'kubectl'), ['--kubeconfig', state.kubeconfig, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new ClusterError(`kubectl ${args.join(' ')} failed: ${stderr.trim() || err.message}`))
      else resolveRun(stdout)
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

function issuerObjects(caCertPem: string, caKeyPem: string): object {
  const secret = (namespace: string): object => ({
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls',
    metadata: { name: 'ca-key-pair', namespace },
    stringData: { 'tls.crt': caCertPem, 'tls.key': caKeyPem, 'ca.crt': caCertPem },
  })
  const ns = (name: string): object => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })
  return {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      ns(CLUSTER_RESOURCE_NAMESPACE),
      ns(ISSUER_NAMESPACE),
      secret(CLUSTER_RESOURCE_NAMESPACE),
      secret(ISSUER_NAMESPACE),
      { apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: { name: ISSUER_NAME, namespace: ISSUER_NAMESPACE }, spec: { ca: { secretName: 'ca-key-pair' } } },
      { apiVersion: 'cert-manager.io/v1', kind: 'ClusterIssuer', metadata: { name: CLUSTER_ISSUER_NAME }, spec: { ca: { secretName: 'ca-key-pair' } } },
    ],
  }
}

export interface UpOptions {
  dir?: string
  binDir?: string
  log?: (line: string) => void
  apiserverTimeoutMs?: number
  /** cert-manager controllers to run; default: all of cert-manager-controllers' defaults. */
  controllers?: string[]
  /** Build only the control plane's own tools, not the test tools (csi-sanity, helm, kubelet). */
  controlPlaneToolsOnly?: boolean
}

export async function up(opts: UpOptions = {}): Promise<ClusterState> {
  const dir = opts.dir ?? defaultClusterDir()
  const log = opts.log ?? ((): void => {})
  const existing = readState(dir)
  if (existing && existing.processes.some(p => isAlive(p.pid))) {
    throw new ClusterError(`a control plane is already running from ${dir} (started ${existing.startedAt}); kubeconfig: ${existing.kubeconfig}. Stop it first with: npm run cluster -- down`)
  }
  const timings: Record<string, number> = {}
  const t0 = Date.now()
  const binDir = opts.binDir ?? buildTools(opts.controlPlaneToolsOnly ? CONTROL_PLANE_TOOLS : [])
  timings.toolsMs = Date.now() - t0

  rmSync(dir, { recursive: true, force: true })
  mkdirSync(join(dir, 'pki'), { recursive: true })
  mkdirSync(join(dir, 'logs'))
  const pki = (name: string, content: string): string => {
    const path = join(dir, 'pki', name)
    writeFileSync(path, content, { mode: 0o600 })
    return path
  }

  const t1 = Date.now()
  const clusterCa = await makeAuthority('local-control-plane-ca')
  const serving = await issueLeaf(clusterCa, { commonName: 'kube-apiserver', dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'], ips: ['127.0.0.1', '10.0.0.1'], server: true })
  const admin = await issueLeaf(clusterCa, { commonName: 'admin', organizations: ['system:masters'], client: true })
  const issuerCa = await makeAuthority('cert-manager-csi-driver test root', 365)
  const sa = serviceAccountKeyPair()
  const caFile = pki('ca.crt', clusterCa.certPem)
  const issuerCaFile = pki('issuer-ca.crt', issuerCa.certPem)
  timings.pkiMs = Date.now() - t1

  const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()]
  const processes: ProcessRecord[] = []
  const state: ClusterState = {
    dir, binDir, kubeconfig: join(dir, 'kubeconfig'), server: `https://127.0.0.1:${securePort}`, issuerCaFile,
    issuer: { name: ISSUER_NAME, namespace: ISSUER_NAMESPACE }, clusterIssuer: { name: CLUSTER_ISSUER_NAME },
    processes, startedAt: new Date().toISOString(), timings,
  }
  const save = (): void => writeFileSync(stateFile(dir), JSON.stringify(state, null, 2))
  save()

  try {
    const t2 = Date.now()
    log(`starting etcd on 127.0.0.1:${etcdClient}`)
    const etcdUrl = `http://127.0.0.1:${etcdClient}`
    const etcd = startProcess('etcd', [
      join(binDir, 'etcd'), '--name', 'default', '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`,
      // Test data is thrown away with the run: durability buys nothing here.
      '--unsafe-no-fsync', '--log-level', 'warn',
    ], join(dir, 'logs/etcd.log'))
    processes.push(etcd); save()
    await waitFor('etcd', etcd, 30_000, async () => (await fetch(`${etcdUrl}/health`)).ok)
    timings.etcdMs = Date.now() - t2

    const t3 = Date.now()
    log(`starting kube-apiserver on ${state.server}`)
    const apiserver = startProcess('kube-apiserver', [
      join(binDir, 'kube-apiserver'),
      '--etcd-servers', etcdUrl,
      '--bind-address', '127.0.0.1', '--advertise-address', '127.0.0.1', '--secure-port', String(securePort),
      '--tls-cert-file', pki('serving.crt', serving.certPem), '--tls-private-key-file', pki('serving.key', serving.keyPem),
      '--client-ca-file', caFile,
      '--service-account-key-file', pki('sa.pub', sa.publicPem), '--service-account-signing-key-file', pki('sa.key', sa.privatePem),
      '--service-account-issuer', 'https://kubernetes.default.svc',
      '--service-cluster-ip-range', '10.0.0.0/24',
      '--authorization-mode', 'RBAC',
      '--allow-privileged=true',
      // No controller-manager runs, so no namespace ever gets its "default"
      // ServiceAccount; the admission plugin would then refuse every Pod.
      '--disable-admission-plugins', 'ServiceAccount',
      '--cert-dir', join(dir, 'apiserver-certs'),
    ], join(dir, 'logs/kube-apiserver.log'))
    processes.push(apiserver); save()
    const tls = { ca: clusterCa.certPem, cert: admin.certPem, key: admin.keyPem }
    await waitFor('kube-apiserver', apiserver, opts.apiserverTimeoutMs ?? 120_000, async () => (await httpsGet(`${state.server}/readyz`, tls)).status === 200)
    timings.apiserverMs = Date.now() - t3
    writeFileSync(state.kubeconfig, kubeconfigYaml(state.server, clusterCa.certPem, admin), { mode: 0o600 })

    const t4 = Date.now()
    log('installing cert-manager CRDs')
    const crdDir = join(repoRoot, 'crds')
    const crds = readdirSync(crdDir).filter(f => f.endsWith('.yaml')).map(f => join(crdDir, f))
    if (crds.length === 0) throw new ClusterError(`no CRDs in ${crdDir}: run npm run tools`)
    await kubectl(state, ['apply', '--server-side', ...crds.flatMap(f => ['-f', f])])
    await kubectl(state, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s'])
    timings.crdsMs = Date.now() - t4

    const t5 = Date.now()
    log('starting cert-manager controllers')
    const controllers = startProcess('cert-manager-controllers', [
      join(binDir, 'cert-manager-controllers'), '--kubeconfig', state.kubeconfig,
      '--cluster-resource-namespace', CLUSTER_RESOURCE_NAMESPACE, '-v', '2',
      ...(opts.controllers ? ['--controllers', opts.controllers.join(',')] : []),
    ], join(dir, 'logs/cert-manager-controllers.log'))
    processes.push(controllers); save()
    log(`creating namespace ${ISSUER_NAMESPACE}, Issuer ${ISSUER_NAME} and ClusterIssuer ${CLUSTER_ISSUER_NAME}`)
    await kubectl(state, ['apply', '-f', '-'], JSON.stringify(issuerObjects(issuerCa.certPem, issuerCa.keyPem)))
    await waitFor('issuers', controllers, 60_000, async () => {
      await kubectl(state, ['wait', '--for=condition=Ready', '-n', ISSUER_NAMESPACE, `issuer/${ISSUER_NAME}`, '--timeout=5s'])
      await kubectl(state, ['wait', '--for=condition=Ready', `clusterissuer/${CLUSTER_ISSUER_NAME}`, '--timeout=5s'])
      return true
    })
    timings.issuersMs = Date.now() - t5
    timings.totalMs = Date.now() - t0
    save()
    return state
  } catch (err) {
    await down(dir).catch(() => undefined)
    throw err
  }
}

export async function down(dir = defaultClusterDir()): Promise<{ stopped: string[] }> {
  const state = readState(dir)
  if (!state) return { stopped: [] }
  const stopped: string[] = []
  // Reverse order: controllers before the apiserver before etcd.
  for (const p of [...state.processes].reverse()) {
    if (isAlive(p.pid)) {
      await stopProcess(p.pid)
      stopped.push(p.name)
    }
  }
  rmSync(dir, { recursive: true, force: true })
  return { stopped }
}

export interface ProcessStatus extends ProcessRecord { alive: boolean; rssMiB?: number }

export function status(dir = defaultClusterDir()): { state?: ClusterState; processes: ProcessStatus[] } {
  const state = readState(dir)
  if (!state) return { processes: [] }
  return {
    state,
    processes: state.processes.map(p => {
      const alive = isAlive(p.pid)
      const rss = alive ? rssMiB(p.pid) : undefined
      return { ...p, alive, ...(rss === undefined ? {} : { rssMiB: rss }) }
    }),
  }
}
