// The benchmark's test bed: one local control plane, a "node under test"
// that runs either our driver or the reference driver (cert-manager's own
// csi-driver, built by bench/build-reference.sh) as a node process with its
// own socket, data root and kubelet-like directory tree, Pods in the API,
// a watch on CertificateRequests, and cleanup of every mount, process and
// object this run made, on success, on error and on Ctrl-C.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { CoreV1Api, CustomObjectsApi, KubeConfig, Watch } from '@kubernetes/client-node'
import { CsiTestClient, ROOT, type PodRef } from '../test/helpers/csi-client.js'
import { unmountUnder } from '../test/helpers/node-harness.js'
import { up, down, readState, type ClusterState } from '../test/cluster/control-plane.js'
import { isAlive } from '../test/cluster/processes.js'

// ---- cleanup ------------------------------------------------------------

type Cleanup = () => unknown
const cleanups: Cleanup[] = []

/** Registers fn to run at exit (last registered runs first); returns an unregister function. */
export function onCleanup(fn: Cleanup): () => void {
  cleanups.push(fn)
  return () => {
    const i = cleanups.lastIndexOf(fn)
    if (i >= 0) cleanups.splice(i, 1)
  }
}

export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!
    try {
      await fn()
    } catch (err) {
      process.stderr.write(`[bench] cleanup failed: ${String(err)}\n`)
    }
  }
}

let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130)
    interrupted = true
    process.stderr.write(`[bench] ${sig}: cleaning up (again to force)\n`)
    void runCleanups().finally(() => process.exit(130))
  })
}

export const log = (line: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

// ---- statistics ---------------------------------------------------------

/** Nearest-rank percentile (p in 0..100) of unsorted samples; NaN when empty. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export const median = (s: readonly number[]): number => percentile(s, 50)

// ---- control plane -------------------------------------------------------

export interface Cluster {
  state: ClusterState
  kc: KubeConfig
  namespace: string
  issuerName: string
  /** True when this run started the control plane (and so stops it). */
  owned: boolean
}

/**
 * The control plane named by CSI_CLUSTER_DIR when one runs there, else a
 * private one in a temporary directory, stopped at cleanup. binDir skips
 * test/tools/build.sh (e.g. CSI_TOOLS_BIN from a test run).
 */
export async function startCluster(binDir?: string): Promise<Cluster> {
  const shared = process.env.CSI_CLUSTER_DIR ? readState(process.env.CSI_CLUSTER_DIR) : undefined
  let state: ClusterState
  let owned = false
  if (shared && shared.processes.every(p => isAlive(p.pid))) {
    log(`using the control plane in ${shared.dir}`)
    state = shared
  } else {
    if (process.env.CSI_CLUSTER_DIR) throw new Error(`CSI_CLUSTER_DIR=${process.env.CSI_CLUSTER_DIR} holds no running control plane`)
    const dir = mkdtempSync(join(tmpdir(), 'csi-bench-cluster-'))
    log(`starting a control plane in ${dir}`)
    onCleanup(async () => {
      log('stopping the control plane')
      await down(dir)
    })
    state = await up({ dir, ...(binDir ? { binDir } : {}), log: l => log(`cluster: ${l}`) })
    owned = true
  }
  const kc = new KubeConfig()
  kc.loadFromFile(state.kubeconfig)
  return { state, kc, namespace: state.issuer.namespace, issuerName: state.issuer.name, owned }
}

// ---- CertificateRequests --------------------------------------------------

interface Condition { type: string; status: string; reason?: string }
export interface CrObject {
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; ownerReferences?: { uid: string }[] }
  status?: { conditions?: Condition[] }
}

export interface CrTimes {
  /** When this process first saw the object (ADDED event). */
  added?: number
  approved?: number
  ready?: number
  readyReason?: string
}

const CR = { group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests' }

/**
 * One watch on the namespace's CertificateRequests, resumed from the last
 * resourceVersion when the server closes it. Records when each request was
 * first seen, approved and ready (performance.now() ms), and counts ADDED
 * events per owner (Pod uid).
 */
export class CrWatcher {
  readonly times = new Map<string, CrTimes>()
  private readonly waiters = new Map<string, Set<() => void>>()
  private abort?: AbortController
  private stopped = false
  private rv = ''
  private readonly watch: Watch
  private readonly custom: CustomObjectsApi
  /** ADDED events after start(), as [owner uid, name]. */
  readonly added: { owner?: string; name: string; at: number }[] = []

  constructor(kc: KubeConfig, readonly namespace: string) {
    this.watch = new Watch(kc)
    this.custom = kc.makeApiClient(CustomObjectsApi)
  }

  async start(): Promise<void> {
    const list = (await this.custom.listNamespacedCustomObject({ ...CR, namespace: this.namespace })) as { metadata: { resourceVersion: string } }
    this.rv = list.metadata.resourceVersion
    await this.connect()
  }

  private async connect(): Promise<void> {
    if (this.stopped) return
    this.abort = await this.watch.watch(
      `/apis/${CR.group}/${CR.version}/namespaces/${this.namespace}/${CR.plural}`,
      { resourceVersion: this.rv, allowWatchBookmarks: true },
      (type: string, obj: CrObject) => this.onEvent(type, obj),
      (err: unknown) => {
        if (this.stopped) return
        if (err) log(`CR watch ended (${err instanceof Error ? err.message : JSON.stringify(err)}); resuming`)
        // 410 Gone (resourceVersion too old) only after long gaps: re-list then.
        const gone = String(err).includes('410') || String(err).includes('Gone')
        void sleep(gone ? 0 : 200).then(() => (gone ? this.start() : this.connect())).catch(e => log(`CR watch restart failed: ${String(e)}`))
      },
    )
  }

  private onEvent(type: string, obj: CrObject): void {
    const now = performance.now()
    if (obj?.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion
    if (type === 'BOOKMARK' || type === 'ERROR' || !obj?.metadata?.name) return
    const name = obj.metadata.name
    let t = this.times.get(name)
    if (!t) this.times.set(name, (t = {}))
    if (type === 'ADDED') {
      t.added ??= now
      this.added.push({ ...(obj.metadata.ownerReferences?.[0]?.uid ? { owner: obj.metadata.ownerReferences[0].uid } : {}), name, at: now })
    }
    for (const c of obj.status?.conditions ?? []) {
      if (c.type === 'Approved' && c.status === 'True') t.approved ??= now
      if (c.type === 'Ready' && c.status === 'True') {
        t.ready ??= now
        t.readyReason = c.reason ?? ''
      }
    }
    if (t.ready !== undefined) {
      for (const fn of this.waiters.get(name) ?? []) fn()
      this.waiters.delete(name)
    }
  }

  /** Resolves with the times once the request is Ready=True. */
  waitReady(name: string, timeoutMs = 60_000): Promise<CrTimes> {
    const t = this.times.get(name)
    if (t?.ready !== undefined) return Promise.resolve(t)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`CertificateRequest ${name} not ready after ${timeoutMs} ms`)), timeoutMs)
      let set = this.waiters.get(name)
      if (!set) this.waiters.set(name, (set = new Set()))
      set.add(() => {
        clearTimeout(timer)
        resolve(this.times.get(name)!)
      })
    })
  }

  /** ADDED events since index `from` whose owner is in `owners`. */
  addedSince(from: number, owners: ReadonlySet<string>): number {
    return this.added.slice(from).filter(a => a.owner !== undefined && owners.has(a.owner)).length
  }

  stop(): void {
    this.stopped = true
    this.abort?.abort()
  }
}

/** Every CertificateRequest in the namespace owned by one of these Pods, from the API. */
export async function requestsOwnedBy(kc: KubeConfig, namespace: string, owners: ReadonlySet<string>): Promise<CrObject[]> {
  const custom = kc.makeApiClient(CustomObjectsApi)
  const list = (await custom.listNamespacedCustomObject({ ...CR, namespace })) as { items: CrObject[] }
  return list.items.filter(cr => cr.metadata.ownerReferences?.some(o => owners.has(o.uid)))
}

export async function deleteRequests(kc: KubeConfig, namespace: string, names: string[]): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi)
  await pool(names, 16, async name => {
    await custom.deleteNamespacedCustomObject({ ...CR, namespace, name }).catch(() => undefined)
  })
}

/** Runs fn over items with at most `limit` at once. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

/** A command's trimmed output, or '?' when it fails (machine facts for a results header). */
export function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', cwd: ROOT }).trim()
  } catch {
    return '?'
  }
}

/** Builds the reference driver (or finds it built) with bench/build-reference.sh; answers its binary's path. */
export function referenceBinary(): string {
  log('building (or finding) the reference driver')
  const out = execFileSync('bash', [join(ROOT, 'bench/build-reference.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  const bin = out.trim().split('\n').pop()
  if (!bin) throw new Error('bench/build-reference.sh printed no binary path')
  return bin
}

// ---- the node under test ---------------------------------------------------

export type DriverKind = 'ours' | 'reference'

/** How our driver runs: `compiled` as the image does (the esbuild bundle, plain node), or `tsx` from source. */
export type OursRuntime = 'compiled' | 'tsx'

/**
 * Node arguments that start our driver. `compiled` bundles src/ with
 * scripts/bundle.ts (what the image runs) into bench/.build/dist/bundle,
 * where proto/ and package.json resolve at ../../ as they do in the image.
 */
export function prepareOurs(runtime: OursRuntime): string[] {
  if (runtime === 'tsx') return ['--import', 'tsx', 'src/main.ts']
  const out = join(ROOT, 'bench/.build')
  log('bundling our driver (scripts/bundle.ts) into bench/.build, as the image runs it')
  rmSync(out, { recursive: true, force: true })
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/bundle.ts', join(out, 'dist/bundle')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  symlinkSync('../../proto', join(out, 'proto'))
  symlinkSync('../../package.json', join(out, 'package.json'))
  return [join(out, 'dist/bundle/main.js')]
}

export interface Volume {
  volumeId: string
  targetPath: string
  pod: PodRef
}

export interface NodeOptions {
  kind: DriverKind
  cluster: Cluster
  /** The reference driver's binary (bench/build-reference.sh). */
  referenceBin?: string
  /** Our driver's log level; the reference runs at its default verbosity (-v 1). */
  logLevel?: string
  /** Extra node options for our driver (e.g. --cpu-prof), before the script. */
  nodeOptions?: string[]
  /** From prepareOurs(): the node arguments that start our driver. */
  oursCommand?: string[]
  /** Volumes per Pod: kubelet's default max-pods is 110, so 1000 volumes on a node means ~10 a pod. */
  volumesPerPod?: number
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

/** user+system CPU seconds of a process and its waited-for children, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 14-17 of proc(5) (utime stime cutime cstime) are 11-14 after the state field.
  const [utime, stime, cutime, cstime] = [f[11], f[12], f[13], f[14]].map(Number) as [number, number, number, number]
  return (utime + stime + cutime + cstime) / CLK_TCK
}

/** VmRSS in KiB. */
export function rssKiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(kb)
}

export class NodeUnderTest {
  readonly root: string
  readonly dataRoot: string
  readonly socketPath: string
  readonly nodeId: string
  readonly logFile: string
  proc?: ChildProcess
  client?: CsiTestClient
  /** Pod uids of this node, for counting and deleting its CertificateRequests. */
  readonly podUids = new Set<string>()
  private readonly core: CoreV1Api
  private currentPod?: { ref: PodRef; used: number }
  private readonly perPod: number
  private starts = 0
  private exited?: Promise<void>
  private readonly unregister: () => void

  constructor(readonly opts: NodeOptions) {
    this.root = mkdtempSync(join(tmpdir(), `csi-bench-${opts.kind}-`))
    this.dataRoot = join(this.root, 'data')
    this.socketPath = join(this.root, 'csi.sock')
    this.nodeId = `bench-${opts.kind === 'ours' ? 'ours' : 'ref'}-${randomBytes(3).toString('hex')}`
    this.logFile = join(this.root, 'driver.log')
    this.core = opts.cluster.kc.makeApiClient(CoreV1Api)
    this.perPod = opts.volumesPerPod ?? 10
    this.unregister = onCleanup(() => this.cleanup())
  }

  get pid(): number {
    if (!this.proc?.pid) throw new Error('driver not running')
    return this.proc.pid
  }

  private command(): { cmd: string; args: string[]; cwd: string } {
    const kubeconfig = this.opts.cluster.state.kubeconfig
    if (this.opts.kind === 'ours') {
      return {
        cmd: process.execPath,
        cwd: ROOT,
        args: [
          ...(this.opts.nodeOptions ?? []), ...(this.opts.oursCommand ?? ['--import', 'tsx', 'src/main.ts']),
          '--node-id', this.nodeId, '--endpoint', `unix://${this.socketPath}`, '--data-root', this.dataRoot,
          '--kubelet-root-dir', join(this.root, 'kubelet'), '--kubeconfig', kubeconfig, '--metrics-bind-address', '127.0.0.1:0', '--log-level', this.opts.logLevel ?? 'warn',
        ],
      }
    }
    if (!this.opts.referenceBin) throw new Error('referenceBin is required for the reference driver')
    // Flags from cmd/app/options: --kubeconfig comes from genericclioptions;
    // the data root gets a tmpfs mounted at <data-root>/inmemfs by the driver.
    // Its store reads through os.DirFS("/"), which refuses absolute paths
    // ("readdir /...: invalid argument"): its own chart passes
    // --data-root=csi-data-dir and relies on the container's working
    // directory being /. So: cwd / and the data root without its leading slash.
    return {
      cmd: this.opts.referenceBin,
      cwd: '/',
      args: [
        '--node-id', this.nodeId, '--endpoint', `unix://${this.socketPath}`, '--data-root', this.dataRoot.replace(/^\/+/, ''),
        '--kubeconfig', kubeconfig, '--metrics-bind-address', '0', '-v', '1',
      ],
    }
  }

  /** Starts the driver and resolves once it serves and Probe says ready; returns ms from spawn to ready. */
  async start(timeoutMs = 60_000): Promise<number> {
    const t0 = performance.now()
    mkdirSync(this.dataRoot, { recursive: true })
    await rm(this.socketPath, { force: true })
    const { cmd, args, cwd } = this.command()
    const fd = openSync(this.logFile, 'a')
    try {
      this.proc = spawn(cmd, args, { cwd, stdio: ['ignore', fd, fd] })
    } finally {
      closeSync(fd)
    }
    const proc = this.proc
    this.exited = new Promise(resolve => proc.once('exit', () => resolve()))
    this.starts++
    this.client?.close()
    this.client = undefined
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${this.opts.kind} driver exited (${proc.exitCode ?? proc.signalCode}) before serving; log ${this.logFile}:\n${this.tail()}`)
      if (existsSync(this.socketPath)) {
        this.client ??= new CsiTestClient(this.socketPath)
        const ready = await this.client.call('Probe', {}, 1_000).then(
          r => r.ready === null || r.ready === undefined || r.ready.value === true,
          () => false,
        )
        if (ready) return performance.now() - t0
      }
      if (Date.now() > deadline) throw new Error(`${this.opts.kind} driver not ready after ${timeoutMs} ms; log ${this.logFile}:\n${this.tail()}`)
      await sleep(20)
    }
  }

  tail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
    } catch {
      return '(no log)'
    }
  }

  /** Sends a signal and waits for the process to be gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<void> {
    const proc = this.proc
    if (!proc) return
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal)
      const done = await Promise.race([this.exited!.then(() => true), sleep(graceMs).then(() => false)])
      if (!done) {
        proc.kill('SIGKILL')
        await this.exited
      }
    }
    this.client?.close()
    this.client = undefined
    this.proc = undefined
  }

  /** A volume of a Pod in the API on this node (a new Pod every volumesPerPod volumes) and its kubelet directory. */
  async newVolume(): Promise<Volume> {
    if (!this.currentPod || this.currentPod.used >= this.perPod) {
      const ns = this.opts.cluster.namespace
      const name = `${this.nodeId}-${randomBytes(3).toString('hex')}`
      const pod = await this.core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name, namespace: ns, labels: { 'csi-bench/node': this.nodeId } },
          spec: { nodeName: this.nodeId, containers: [{ name: 'app', image: 'busybox' }] },
        },
      })
      const uid = pod.metadata!.uid!
      this.podUids.add(uid)
      this.currentPod = { ref: { name, namespace: ns, uid, serviceAccountName: 'default' }, used: 0 }
    }
    const pod = this.currentPod.ref
    const index = this.currentPod.used++
    const parent = join(this.root, 'kubelet/pods', pod.uid, 'volumes/kubernetes.io~csi', `tls-${index}`)
    mkdirSync(parent, { recursive: true })
    return { volumeId: `csi-${randomBytes(32).toString('hex')}`, targetPath: join(parent, 'mount'), pod }
  }

  publish(v: Volume, attributes: Record<string, string>, timeoutMs = 120_000): Promise<unknown> {
    return this.client!.publish({ volumeId: v.volumeId, targetPath: v.targetPath, attributes, pod: v.pod }, timeoutMs)
  }

  /** One timed NodePublishVolume that must succeed; ms. */
  async timedPublish(v: Volume, attributes: Record<string, string>): Promise<number> {
    const t0 = performance.now()
    await this.publish(v, attributes)
    return performance.now() - t0
  }

  /**
   * Publishes like the kubelet: on an error, retries after 500 ms doubling
   * (its operation backoff) until success or the deadline. Resolves with
   * the number of attempts.
   */
  async publishUntilReady(v: Volume, attributes: Record<string, string>, deadline: number): Promise<number> {
    let backoff = 500
    for (let attempt = 1; ; attempt++) {
      try {
        await this.publish(v, attributes, Math.max(1_000, Math.min(120_000, deadline - Date.now())))
        return attempt
      } catch (err) {
        if (Date.now() + backoff > deadline) throw new Error(`publish of ${v.volumeId} still failing at the deadline: ${String((err as { details?: string }).details ?? err)}`)
        await sleep(backoff)
        backoff = Math.min(backoff * 2, 122_000)
      }
    }
  }

  unpublish(v: Volume, timeoutMs = 120_000): Promise<unknown> {
    return this.client!.unpublish(v.volumeId, v.targetPath, timeoutMs)
  }

  isMounted(path: string): boolean {
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some(l => l.split(' ')[4] === path)
  }

  /** This node's CertificateRequests in the API. */
  requests(): Promise<CrObject[]> {
    return requestsOwnedBy(this.opts.cluster.kc, this.opts.cluster.namespace, this.podUids)
  }

  /** Kills the driver, unmounts everything under the node's root, deletes its requests and Pods. */
  async cleanup(): Promise<void> {
    this.unregister()
    await this.stop('SIGKILL')
    unmountUnder(this.root)
    await rm(this.root, { recursive: true, force: true }).catch(() => undefined)
    const { kc, namespace } = this.opts.cluster
    try {
      const crs = await this.requests()
      await deleteRequests(kc, namespace, crs.map(cr => cr.metadata.name))
      // No kubelet confirms a graceful deletion here: delete at once.
      await this.core.deleteCollectionNamespacedPod({ namespace, labelSelector: `csi-bench/node=${this.nodeId}`, gracePeriodSeconds: 0 })
    } catch (err) {
      log(`cleanup of ${this.nodeId}'s API objects failed: ${String(err)}`)
    }
  }
}
