// A one-node Kubernetes cluster on this machine for the e2e tier: the local
// control plane (test/cluster/control-plane.ts: etcd, kube-apiserver,
// cert-manager's controllers, CA Issuer sandbox/ca-issuer), then containerd
// and runc from Debian's packages, a real kubelet built from the same
// k8s.io/kubernetes pin as kube-apiserver, and the driver running as its node
// plugin would: CSI socket in the kubelet's plugins directory, registered
// through the kubelet's plugin watcher, data root on tmpfs.
//
//   node --import tsx test/e2e/node.ts up | down | status | leftovers
//
// Everything lives under one root ($CSI_E2E_ROOT, default /var/lib/cm-csi-e2e)
// so that `down` can prove it left nothing behind: no process, no mount, no
// container, no cgroup.
import { execFileSync } from 'node:child_process'
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildTools, down as clusterDown, up as clusterUp, kubectl, readState as readClusterState, type ClusterState } from '../cluster/control-plane.js'
import { freePort } from '../cluster/ports.js'
import { isAlive, startProcess, stopProcess, tail, type ProcessRecord } from '../cluster/processes.js'
import { buildImages, BUSYBOX_IMAGE, PAUSE_IMAGE } from './images.js'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export const DRIVER_NAME = 'csi.cert-manager.io'
/**
 * The node's name is its address. The kubelet refuses a loopback --node-ip,
 * but takes an IP given as --hostname-override as the node's address without
 * that check; kube-apiserver then reaches the kubelet (logs, exec) on
 * 127.0.0.1 and no traffic ever goes to the machine's own interface address.
 */
export const NODE_NAME = '127.0.0.1'

/**
 * Paths outside the root that the kubelet and containerd hard-code: the
 * kubelet's device plugin socket (/var/lib/kubelet/device-plugins/kubelet.sock,
 * k8s.io/kubelet deviceplugin v1beta1 DevicePluginPath) and containerd 1.6's
 * shim sockets (/run/containerd/s). Removed by `down` only when this node
 * created them, i.e. when they did not exist before `up`.
 */
export const HOST_PATHS = ['/var/lib/kubelet', '/run/containerd'] as const

export function e2eRoot(): string {
  return resolve(process.env.CSI_E2E_ROOT ?? '/var/lib/cm-csi-e2e')
}

export interface E2eNode {
  root: string
  nodeName: string
  binDir: string
  cluster: ClusterState
  kubeconfig: string
  kubeletRoot: string
  /** The driver's CSI socket: <kubelet root>/plugins/csi.cert-manager.io/csi.sock. */
  csiSocket: string
  /** The kubelet's plugin watcher directory: <kubelet root>/plugins_registry. */
  registrationDir: string
  dataRoot: string
  containerdSocket: string
  logs: string
  kubeletPort: number
  images: { pause: string; test: string }
  processes: { containerd: ProcessRecord; kubelet: ProcessRecord; driver: ProcessRecord }
  driverCommand: string[]
  versions: Record<string, string>
  /** Paths outside the root that this node created and `down` removes (see HOST_PATHS). */
  createdHostPaths: string[]
  startedAt: string
  timings: Record<string, number>
}

const paths = (root: string) => ({
  state: join(root, 'state.json'),
  controlPlane: join(root, 'control-plane'),
  containerd: join(root, 'containerd'),
  kubelet: join(root, 'kubelet'),
  data: join(root, 'data'),
  images: join(root, 'images'),
  logs: join(root, 'logs'),
})

export function readNode(root = e2eRoot()): E2eNode | undefined {
  const file = paths(root).state
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as E2eNode) : undefined
}

function saveNode(node: E2eNode): void {
  writeFileSync(paths(node.root).state, JSON.stringify(node, null, 2))
}

async function waitFor(what: string, proc: ProcessRecord | undefined, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (proc && !isAlive(proc.pid)) throw new Error(`${proc.name} exited while waiting for ${what}. Last lines of ${proc.log}:\n${tail(proc.log, 40)}`)
    if (await Promise.resolve().then(check).catch(() => false)) return
    await sleep(250)
  }
  throw new Error(`${what}: not ready after ${timeoutMs / 1000}s${proc ? `. Last lines of ${proc.log}:\n${tail(proc.log, 40)}` : ''}`)
}

function ctr(node: Pick<E2eNode, 'containerdSocket'>, args: string[]): string {
  return execFileSync('ctr', ['--address', node.containerdSocket, '--namespace', 'k8s.io', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function containerdConfig(root: string, sock: string): string {
  const c = paths(root).containerd
  return `# Written by test/e2e/node.ts for the e2e node; not the machine's containerd.
version = 2
root = "${c}/root"
state = "${c}/state"
# Snapshotters that cannot work here only add noise to the log.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "${sock}"

[plugins."io.containerd.grpc.v1.cri"]
  # Nothing can be pulled here: the sandbox image is built and imported locally.
  sandbox_image = "${PAUSE_IMAGE}"
  # This VM's root lacks CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj: runc failed every pod sandbox with "failed to update
  # /proc/self/oom_score_adj: Permission denied" (the kubelet asks -998 for
  # sandboxes). This clamps what the kubelet asks to containerd's own score.
  restrict_oom_score_adj = true
  # Every test pod uses the host network: no CNI plugin is installed or needed
  # (the Node stays NotReady for "cni plugin not initialized", which does not
  # stop the kubelet from running host-network pods bound to it).
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet's cgroupDriver is cgroupfs: there is no systemd here.
        SystemdCgroup = false
        # runc's state under our root too, not /run/containerd/runc.
        Root = "${c}/runc"
`
}

function kubeletConfig(node: { containerdSocket: string; kubeletPort: number; healthzPort: number }): object {
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    containerRuntimeEndpoint: `unix://${node.containerdSocket}`,
    // No systemd on this VM: cgroupfs, as containerd's runc is told too.
    cgroupDriver: 'cgroupfs',
    // The VM runs cgroup v1 (cgroup2 only at /sys/fs/cgroup/unified); since
    // 1.35 the kubelet refuses to start on v1 unless told this.
    failCgroupV1: false,
    // The VM has no swap today; a machine that has some must not stop the kubelet.
    failSwapOn: false,
    // Loopback only: the API server reaches the kubelet on 127.0.0.1.
    address: '127.0.0.1',
    port: node.kubeletPort,
    healthzBindAddress: '127.0.0.1',
    healthzPort: node.healthzPort,
    readOnlyPort: 0,
    // The API server calls the kubelet (logs, exec) with no client
    // certificate: the control plane has no kubelet client credentials. The
    // kubelet listens on loopback only.
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: 'AlwaysAllow' },
    // A shared build machine's disk fills up and empties again: default
    // eviction (nodefs.available<10%, imagefs.available<15%) would evict test
    // pods for reasons that have nothing to do with the driver.
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'nodefs.inodesFree': '1%', 'imagefs.available': '1%', 'imagefs.inodesFree': '1%' },
    // Image GC would delete the locally imported images, which can never be
    // pulled back.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
  }
}

function versionOf(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim()
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0]})`
  }
}

function goModuleVersion(binary: string, module: string): string {
  const out = versionOf('bash', ['-c', `go version -m ${JSON.stringify(binary)} | awk '($1 == "mod" || $1 == "dep") && $2 == "${module}" { print $3 }'`])
  return out || 'unknown'
}

export interface UpOptions { log?: (line: string) => void }

export async function up(opts: UpOptions = {}): Promise<E2eNode> {
  const log = opts.log ?? ((): void => {})
  const root = e2eRoot()
  const p = paths(root)
  if (process.getuid?.() !== 0) throw new Error('the e2e node needs root (mounts, containers, cgroups)')
  for (const tool of ['containerd', 'ctr', 'runc']) {
    try {
      execFileSync('bash', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
    } catch {
      throw new Error(`${tool} not found: run bash test/e2e/install-host.sh (containerd and runc from Debian's packages)`)
    }
  }
  const existing = readNode(root)
  if (existing && Object.values(existing.processes).some(pr => isAlive(pr.pid))) {
    throw new Error(`an e2e node is already running from ${root}; stop it with: node --import tsx test/e2e/node.ts down`)
  }
  // Whatever a crashed run left: gone before we start.
  await down({ root, log })

  const timings: Record<string, number> = {}
  const t0 = Date.now()
  for (const d of [p.containerd, p.kubelet, p.data, p.images, p.logs]) mkdirSync(d, { recursive: true })
  const binDir = buildTools()
  timings.toolsMs = Date.now() - t0

  const t1 = Date.now()
  log('starting the control plane (etcd, kube-apiserver, cert-manager controllers)')
  const cluster = await clusterUp({ dir: p.controlPlane, binDir, log: line => log(`  ${line}`) })
  timings.controlPlaneMs = Date.now() - t1

  const kubeletRoot = p.kubelet
  const csiSocket = join(kubeletRoot, 'plugins', DRIVER_NAME, 'csi.sock')
  const registrationDir = join(kubeletRoot, 'plugins_registry')
  const containerdSocket = join(p.containerd, 'containerd.sock')
  const [kubeletPort, healthzPort] = [await freePort(), await freePort()]
  const node: E2eNode = {
    root, nodeName: NODE_NAME, binDir, cluster, kubeconfig: cluster.kubeconfig, kubeletRoot, csiSocket, registrationDir,
    dataRoot: p.data, containerdSocket, logs: p.logs, kubeletPort, images: { pause: PAUSE_IMAGE, test: BUSYBOX_IMAGE },
    processes: {} as E2eNode['processes'], driverCommand: [], versions: {}, startedAt: new Date().toISOString(), timings,
    createdHostPaths: HOST_PATHS.filter(h => !existsSync(h)),
  }
  saveNode(node)

  try {
    const t2 = Date.now()
    log('building the pause and test images (OCI layouts)')
    const images = buildImages(p.images)
    timings.imagesMs = Date.now() - t2

    const t3 = Date.now()
    log(`starting containerd on ${containerdSocket}`)
    const configFile = join(p.containerd, 'config.toml')
    writeFileSync(configFile, containerdConfig(root, containerdSocket))
    node.processes.containerd = startProcess('containerd', ['containerd', '--config', configFile, '--log-level', 'info'], join(p.logs, 'containerd.log'))
    saveNode(node)
    await waitFor('containerd', node.processes.containerd, 30_000, () => existsSync(containerdSocket) && ctr(node, ['version']).includes('Server'))
    for (const img of images) {
      ctr(node, ['images', 'import', img.tarball])
    }
    const listed = ctr(node, ['images', 'ls', '-q'])
    for (const img of images) if (!listed.split('\n').includes(img.ref)) throw new Error(`${img.ref} missing after import; ctr lists:\n${listed}`)
    timings.containerdMs = Date.now() - t3

    const t4 = Date.now()
    log('creating the CSIDriver object (config/base/csidriver.yaml) and ServiceAccount sandbox/default')
    await kubectl(cluster, ['apply', '-f', join(repoRoot, 'config/base/csidriver.yaml')])
    // No controller-manager runs to create it; the kubelet passes the pod's
    // serviceAccountName to the driver, which requires one.
    await kubectl(cluster, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: cluster.issuer.namespace } }))

    log(`starting the kubelet (node ${NODE_NAME}, root ${kubeletRoot})`)
    const kubeletConfigFile = join(root, 'kubelet-config.json')
    writeFileSync(kubeletConfigFile, JSON.stringify(kubeletConfig({ containerdSocket, kubeletPort, healthzPort }), null, 2))
    node.processes.kubelet = startProcess('kubelet', [
      join(binDir, 'kubelet'),
      '--config', kubeletConfigFile,
      '--kubeconfig', cluster.kubeconfig,
      '--root-dir', kubeletRoot,
      '--cert-dir', join(root, 'kubelet-pki'),
      '--hostname-override', NODE_NAME,
      '--v', '2',
    ], join(p.logs, 'kubelet.log'))
    saveNode(node)
    await waitFor('kubelet /healthz', node.processes.kubelet, 90_000, async () => (await fetch(`http://127.0.0.1:${healthzPort}/healthz`)).ok)
    await waitFor(`Node ${NODE_NAME}`, node.processes.kubelet, 60_000, async () => {
      await kubectl(cluster, ['get', 'node', NODE_NAME])
      return true
    })
    timings.kubeletMs = Date.now() - t4

    const t5 = Date.now()
    log(`starting the driver (socket ${csiSocket}, data root ${p.data} on tmpfs)`)
    node.driverCommand = [
      process.execPath, '--import', 'tsx', join(repoRoot, 'src/main.ts'),
      '--node-id', NODE_NAME,
      '--endpoint', `unix://${csiSocket}`,
      '--data-root', p.data,
      '--kubelet-root-dir', p.kubelet,
      '--kubeconfig', cluster.kubeconfig,
      // Registers itself with the kubelet: node-driver-registrar cannot be built here (test/e2e/README.md).
      '--kubelet-registration-path', csiSocket,
      '--plugin-registration-dir', registrationDir,
      '--metrics-bind-address', '127.0.0.1:0',
      '--log-level', 'debug',
    ]
    await startDriver(node)
    timings.driverMs = Date.now() - t5

    node.versions = {
      kubelet: `${goModuleVersion(join(binDir, 'kubelet'), 'k8s.io/kubernetes')} (k8s.io/kubernetes module; the binary says ${versionOf(join(binDir, 'kubelet'), ['--version'])})`,
      kubeApiserver: goModuleVersion(join(binDir, 'kube-apiserver'), 'k8s.io/kubernetes'),
      containerd: versionOf('containerd', ['--version']),
      runc: versionOf('runc', ['--version']),
      containerdPackage: versionOf('dpkg-query', ['-W', '-f=${Version}', 'containerd']),
      runcPackage: versionOf('dpkg-query', ['-W', '-f=${Version}', 'runc']),
      busyboxPackage: versionOf('dpkg-query', ['-W', '-f=${Version}', 'busybox-static']),
      certManager: readFileSync(join(repoRoot, 'crds/VERSION'), 'utf8').trim(),
      node: process.version,
    }
    timings.totalMs = Date.now() - t0
    saveNode(node)
    return node
  } catch (err) {
    log(`start failed: ${(err as Error).message.split('\n')[0]}`)
    if (!process.env.CSI_E2E_KEEP_ON_FAILURE) await down({ root, log })
    throw err
  }
}

/** Starts the driver from node.driverCommand and waits until the kubelet has registered it. */
export async function startDriver(node: E2eNode): Promise<ProcessRecord> {
  const logFile = join(node.logs, 'driver.log')
  const from = existsSync(logFile) ? readFileSync(logFile).length : 0
  const proc = startProcess('driver', node.driverCommand, logFile)
  node.processes.driver = proc
  saveNode(node)
  await waitFor('driver registered with the kubelet', proc, 60_000, () => readFileSync(logFile).subarray(from).toString().includes('"msg":"registered with the kubelet"'))
  await waitFor(`CSINode ${node.nodeName} lists ${DRIVER_NAME}`, proc, 30_000, async () => {
    const out = await kubectl(node.cluster, ['get', 'csinode', node.nodeName, '-o', 'jsonpath={.spec.drivers[*].name}'])
    return out.split(' ').includes(DRIVER_NAME)
  })
  return proc
}

/** kill -9 the driver, as a node-level crash would: no cleanup of any kind. */
export async function killDriver(node: E2eNode): Promise<void> {
  const pid = node.processes.driver.pid
  try { process.kill(-pid, 'SIGKILL') } catch { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
  while (isAlive(pid)) await sleep(50)
}

// ---------------------------------------------------------------- teardown

interface Mount { id: number; parent: number; target: string; fstype: string }

function mountsUnder(root: string): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map(line => {
    const f = line.split(' ')
    const sep = f.indexOf('-')
    return { id: Number(f[0]), parent: Number(f[1]), target: f[4]!.replace(/\\040/g, ' '), fstype: f[sep + 1]! }
  }).filter(m => m.target === root || m.target.startsWith(`${root}/`))
}

/** Processes whose command line names a path under root (kubelet, containerd, its shims, the driver, the control plane). */
function processesUnder(root: string): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue
    let cmd: string
    try { cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() } catch { continue }
    if (cmd.includes(`${root}/`) || cmd.endsWith(root)) out.push({ pid: Number(d), cmd })
  }
  return out
}

/** Processes in a cgroup the kubelet made: containers. */
function containerProcesses(): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      if (!readFileSync(`/proc/${d}/cgroup`, 'utf8').includes('/kubepods')) continue
      out.push({ pid: Number(d), cmd: readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() })
    } catch { /* gone */ }
  }
  return out
}

/** The kubelet's cgroups (cgroupfs driver, cgroup v1 and v2 mounts alike). */
function kubeletCgroups(): string[] {
  const out: string[] = []
  const base = '/sys/fs/cgroup'
  if (!existsSync(base)) return out
  const dirs = [base, ...readdirSync(base).map(d => join(base, d))]
  for (const d of dirs) if (existsSync(join(d, 'kubepods'))) out.push(join(d, 'kubepods'))
  return [...new Set(out)]
}

function removeCgroupTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name))
  }
  try { rmSync(dir, { recursive: false }) } catch { execFileSync('rmdir', [dir], { stdio: 'ignore' }) }
}

export interface Leftovers { processes: string[]; mounts: string[]; cgroups: string[]; files: string[] }

/**
 * What would show that a run did not clean up after itself. Empty lists:
 * clean. hostPaths: the paths outside the root the node created.
 */
export function leftovers(root = e2eRoot(), hostPaths: readonly string[] = readNode(root)?.createdHostPaths ?? []): Leftovers {
  return {
    processes: [...processesUnder(root), ...containerProcesses()].map(pr => `${pr.pid} ${pr.cmd}`),
    mounts: mountsUnder(root).map(m => `${m.target} (${m.fstype})`),
    cgroups: kubeletCgroups(),
    files: [root, ...hostPaths].filter(f => existsSync(f)),
  }
}

export interface DownOptions { root?: string; log?: (line: string) => void }

/**
 * Deletes every pod (the kubelet unpublishes their volumes through the
 * driver), stops driver, kubelet, containers, containerd and the control
 * plane, unmounts and removes everything under the root. Safe to run on a
 * half-started or crashed node, and when nothing runs at all.
 */
export async function down(opts: DownOptions = {}): Promise<Leftovers> {
  const root = opts.root ?? e2eRoot()
  const log = opts.log ?? ((): void => {})
  const p = paths(root)
  const node = readNode(root)
  const cluster = readClusterState(p.controlPlane)
  const alive = (pr?: ProcessRecord): pr is ProcessRecord => pr !== undefined && isAlive(pr.pid)

  if (node && cluster && alive(node.processes.kubelet) && cluster.processes.every(pr => isAlive(pr.pid))) {
    // Through the kubelet, so volumes are unpublished the way they are in a cluster.
    log('deleting all pods')
    try {
      await kubectl(cluster, ['delete', 'pods', '--all', '--all-namespaces', '--wait=true', '--timeout=90s'])
    } catch (err) {
      log(`pods did not go in time (${(err as Error).message.split('\n')[0]}); forcing`)
      await kubectl(cluster, ['delete', 'pods', '--all', '--all-namespaces', '--grace-period=0', '--force']).catch(() => undefined)
    }
  }
  for (const name of ['driver', 'kubelet'] as const) {
    const pr = node?.processes?.[name]
    if (alive(pr)) { log(`stopping ${name}`); await stopProcess(pr.pid) }
  }
  const containerd = node?.processes?.containerd
  if (node && alive(containerd)) {
    // Containers of pods the kubelet could not stop, and stopped sandboxes it had not yet removed.
    try {
      for (const line of ctr(node, ['tasks', 'ls']).trim().split('\n').slice(1)) {
        const id = line.split(/\s+/)[0]
        if (!id) continue
        try { ctr(node, ['tasks', 'kill', '--signal', 'SIGKILL', id]) } catch { /* already stopped */ }
        for (let i = 0; i < 50; i++) {
          try { ctr(node, ['tasks', 'delete', id]); break } catch { await sleep(100) }
        }
      }
      for (const id of ctr(node, ['containers', 'ls', '-q']).trim().split('\n').filter(Boolean)) {
        try { ctr(node, ['containers', 'rm', id]) } catch { /* best effort */ }
      }
    } catch (err) {
      log(`could not list containers: ${(err as Error).message.split('\n')[0]}`)
    }
    log('stopping containerd')
    await stopProcess(containerd.pid)
  }
  // Shims (they outlive containerd by design) and anything else started from under root.
  for (const pr of processesUnder(root)) {
    if (!existsSync(p.controlPlane) || !pr.cmd.includes(p.controlPlane)) {
      log(`killing leftover process ${pr.pid}: ${pr.cmd.slice(0, 120)}`)
      try { process.kill(pr.pid, 'SIGKILL') } catch { /* gone */ }
    }
  }
  if (existsSync(p.controlPlane)) {
    log('stopping the control plane')
    await clusterDown(p.controlPlane)
  }
  // Deepest first: pod volume bind mounts, container rootfs and shm mounts,
  // the kubelet's own rshared bind mount of its root, the data root tmpfs.
  for (let pass = 0; pass < 5; pass++) {
    const mounts = mountsUnder(root).sort((a, b) => b.target.length - a.target.length || b.id - a.id)
    if (mounts.length === 0) break
    for (const m of mounts) {
      try { execFileSync('umount', [m.target], { stdio: 'ignore' }) } catch {
        try { execFileSync('umount', ['-l', m.target], { stdio: 'ignore' }) } catch { /* next pass */ }
      }
    }
  }
  for (const cg of kubeletCgroups()) {
    try { removeCgroupTree(cg) } catch (err) { log(`could not remove cgroup ${cg}: ${(err as Error).message}`) }
  }
  if (process.env.CSI_E2E_KEEP_LOGS && existsSync(p.logs)) {
    mkdirSync(process.env.CSI_E2E_KEEP_LOGS, { recursive: true })
    cpSync(p.logs, process.env.CSI_E2E_KEEP_LOGS, { recursive: true })
    const cpLogs = join(p.controlPlane, 'logs')
    if (existsSync(cpLogs)) cpSync(cpLogs, process.env.CSI_E2E_KEEP_LOGS, { recursive: true })
  }
  // Only sockets and empty directories are expected there once kubelet and shims are gone.
  const hostPaths = node?.createdHostPaths ?? []
  for (const h of hostPaths) rmSync(h, { recursive: true, force: true })
  if (mountsUnder(root).length === 0) rmSync(root, { recursive: true, force: true })
  return leftovers(root, hostPaths)
}

function describe(l: Leftovers): string[] {
  return [
    ...l.processes.map(x => `process: ${x}`),
    ...l.mounts.map(x => `mount: ${x}`),
    ...l.cgroups.map(x => `cgroup: ${x}`),
    ...l.files.map(x => `files: ${x}`),
  ]
}

async function main(cmd: string | undefined): Promise<number> {
  const log = (line: string): void => console.error(`[e2e] ${line}`)
  switch (cmd) {
    case 'up': {
      const node = await up({ log })
      console.log(`e2e node ${node.nodeName} ready in ${((node.timings.totalMs ?? 0) / 1000).toFixed(1)}s`)
      console.log(`kubeconfig: ${node.kubeconfig}`)
      console.log(`kubectl:    ${node.binDir}/kubectl --kubeconfig ${node.kubeconfig} get pods -A`)
      console.log(`logs:       ${node.logs}`)
      for (const [k, v] of Object.entries(node.versions)) console.log(`version ${k}: ${v}`)
      if (process.env.CSI_E2E_RESULTS) {
        const t = node.timings
        appendFileSync(process.env.CSI_E2E_RESULTS, [
          ...Object.entries(node.versions).map(([k, v]) => `version ${k}: ${v}`),
          `node up in ${((t.totalMs ?? 0) / 1000).toFixed(1)}s (control plane ${((t.controlPlaneMs ?? 0) / 1000).toFixed(1)}s, kubelet ${((t.kubeletMs ?? 0) / 1000).toFixed(1)}s, driver registered ${((t.driverMs ?? 0) / 1000).toFixed(1)}s)`,
        ].join('\n') + '\n')
      }
      return 0
    }
    case 'down': {
      const left = describe(await down({ log }))
      for (const l of left) console.log(`left behind: ${l}`)
      console.log(left.length === 0 ? 'e2e node stopped; nothing left behind' : `${left.length} things left behind`)
      return left.length === 0 ? 0 : 1
    }
    case 'leftovers': {
      const left = describe(leftovers())
      for (const l of left) console.log(l)
      return left.length === 0 ? 0 : 1
    }
    case 'status': {
      const node = readNode()
      if (!node) { console.log(`no e2e node (nothing in ${e2eRoot()})`); return 1 }
      let ok = true
      for (const pr of Object.values(node.processes)) {
        const a = isAlive(pr.pid)
        ok &&= a
        console.log(`${pr.name.padEnd(12)} pid ${String(pr.pid).padEnd(8)} ${a ? 'running' : 'DEAD'}  log ${pr.log}`)
      }
      for (const pr of readClusterState(paths(node.root).controlPlane)?.processes ?? []) {
        const a = isAlive(pr.pid)
        ok &&= a
        console.log(`${pr.name.padEnd(12)} pid ${String(pr.pid).padEnd(8)} ${a ? 'running' : 'DEAD'}  log ${pr.log}`)
      }
      return ok ? 0 : 1
    }
    default:
      console.error('usage: node --import tsx test/e2e/node.ts up | down | status | leftovers   (root: $CSI_E2E_ROOT, default /var/lib/cm-csi-e2e)')
      return 2
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv[2]).then(code => process.exit(code), (err: unknown) => {
    console.error(`e2e: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  })
}
