// Many nodes, one apiserver (issue 14, goal P9): what N nodes running one
// driver kind cost the control plane, measured from the apiserver's own
// /metrics (requests by verb and resource, open watches, watch events) and
// from /proc (its CPU seconds and RSS), while idle and during a rolling
// restart of every driver, at two or more node counts, so it shows whether
// the cost per node is flat. Prints a markdown table. See bench/README.md,
// "Many nodes, one apiserver".
//
//   node --import tsx bench/many-nodes.ts [--nodes 100] [--volumes-per-node 10] [--idle-seconds 660]
//        [--drivers ours,reference] [--reference-max-nodes N] [--node-counts 10,100] [--out file.md] ...
import { parseArgs } from 'node:util'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { kubectl } from '../test/cluster/control-plane.js'
import {
  NodeUnderTest, cpuSeconds, deleteRequests, log, median, onCleanup, pool, prepareOurs, referenceBinary, requestsOwnedBy, rssKiB, runCleanups, sh, startCluster,
  type Cluster, type DriverKind, type OursRuntime, type Volume,
} from './harness.js'

// ---- options ---------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    nodes: { type: 'string', default: '100' },
    'node-counts': { type: 'string' },
    'volumes-per-node': { type: 'string', default: '10' },
    'idle-seconds': { type: 'string', default: '660' },
    'baseline-seconds': { type: 'string' },
    'sample-seconds': { type: 'string', default: '30' },
    'settle-seconds': { type: 'string', default: '15' },
    'start-concurrency': { type: 'string', default: '4' },
    'publish-concurrency': { type: 'string', default: '16' },
    drivers: { type: 'string', default: 'ours,reference' },
    'reference-max-nodes': { type: 'string' },
    'ours-runtime': { type: 'string', default: 'compiled' },
    'bin-dir': { type: 'string' },
    out: { type: 'string' },
  },
})

const int = (name: string, v: string | undefined, def: number, min = 1): number => {
  if (v === undefined) return def
  const n = Number(v)
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`)
  return n
}
const nodes = int('nodes', flags.nodes, 100)
const idleSeconds = int('idle-seconds', flags['idle-seconds'], 660)
const opt = {
  nodes,
  volumesPerNode: int('volumes-per-node', flags['volumes-per-node'], 10),
  idleSeconds,
  baselineSeconds: int('baseline-seconds', flags['baseline-seconds'], idleSeconds),
  sampleSeconds: int('sample-seconds', flags['sample-seconds'], 30),
  settleSeconds: int('settle-seconds', flags['settle-seconds'], 15, 0),
  startConcurrency: int('start-concurrency', flags['start-concurrency'], 4),
  publishConcurrency: int('publish-concurrency', flags['publish-concurrency'], 16),
  referenceMaxNodes: flags['reference-max-nodes'] === undefined ? undefined : int('reference-max-nodes', flags['reference-max-nodes'], 1),
  drivers: flags.drivers.split(',').map(s => s.trim()).filter(Boolean) as DriverKind[],
  /** The node counts measured, ascending: the fleet grows from one to the next. */
  counts: defaultCounts(nodes),
}
for (const d of opt.drivers as string[]) if (d !== 'ours' && d !== 'reference') throw new Error(`--drivers: unknown driver ${d}`)
if (flags['node-counts'] !== undefined) {
  opt.counts = [...new Set(flags['node-counts'].split(',').map(s => int('node-counts', s.trim(), 1)))].sort((a, b) => a - b)
}
const oursRuntime = flags['ours-runtime'] as OursRuntime
if (oursRuntime !== 'compiled' && oursRuntime !== 'tsx') throw new Error('--ours-runtime must be compiled or tsx')

/** 10 and N when N > 10; half of N and N for smaller N (at least two counts whenever N ≥ 2). */
function defaultCounts(n: number): number[] {
  if (n > 10) return [10, n]
  if (n >= 2) return [Math.floor(n / 2), n]
  return [n]
}

function countsFor(kind: DriverKind): number[] {
  if (kind !== 'reference' || opt.referenceMaxNodes === undefined) return opt.counts
  const max = opt.referenceMaxNodes
  return [...new Set(opt.counts.map(c => Math.min(c, max)))].sort((a, b) => a - b)
}

// A second Ctrl-C is the harness's (it exits at once); the first also stops
// this script from starting anything new while the cleanups run.
let aborted = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => { aborted = true })
const checkAborted = (): void => {
  if (aborted) throw new Error('interrupted')
}

// ---- the apiserver's /metrics -------------------------------------------------

/** Requests by `<group>/<resource>[/<subresource>] <VERB>`, e.g. `cert-manager.io/certificaterequests LIST`. */
type Counts = Map<string, number>

interface Snapshot {
  /** performance.now() ms when the scrape was answered. */
  at: number
  requests: Counts
  /** The drivers' own requests: apiserver_flowcontrol_dispatched_requests_total of the bench's FlowSchemas, by `<category> <VERB>`. */
  drivers: Counts
  /** Open WATCH requests (apiserver_longrunning_requests) by `<group>/<resource>`. */
  watches: Counts
  /** apiserver_watch_events_total by `<group>/<resource>`: events sent to watchers. */
  watchEvents: Counts
  apiserverCpu: number
  etcdCpu: number
  apiserverRssMiB: number
}

function labels(s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!
  return out
}

/** The sample lines of `names` in Prometheus text format, as [name, labels, value]. */
function* samples(text: string, names: ReadonlySet<string>): Generator<[string, Record<string, string>, number]> {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const brace = line.indexOf('{')
    if (brace < 0) continue
    const name = line.slice(0, brace)
    if (!names.has(name)) continue
    const close = line.lastIndexOf('}')
    const value = Number(line.slice(close + 1).trim().split(' ')[0])
    if (Number.isFinite(value)) yield [name, labels(line.slice(brace + 1, close)), value]
  }
}

const METRIC_NAMES = new Set([
  'apiserver_request_total', 'apiserver_longrunning_requests', 'apiserver_registered_watchers', 'apiserver_watch_events_total',
  'apiserver_flowcontrol_dispatched_requests_total',
])

const resourceKey = (l: Record<string, string>): string =>
  `${l.group ? `${l.group}/` : ''}${l.resource || '(non-resource)'}${l.subresource ? `/${l.subresource}` : ''}`

class ApiserverMetrics {
  private readonly url: string
  private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }
  private readonly apiserverPid: number
  private readonly etcdPid: number | undefined
  /** FlowSchema name → `<category> <VERB>`: set by DriverIdentity. */
  flowSchemas = new Map<string, string>()
  scrapes = 0

  constructor(cluster: Cluster) {
    const c = cluster.kc.getCurrentCluster()
    const u = cluster.kc.getCurrentUser()
    if (!c) throw new Error('the admin kubeconfig names no cluster')
    const b64 = (s?: string): Buffer | undefined => (s ? Buffer.from(s, 'base64') : undefined)
    const file = (path?: string): Buffer | undefined => (path ? readFileSync(path) : undefined)
    this.url = `${c.server.replace(/\/+$/, '')}/metrics`
    const ca = b64(c.caData) ?? file(c.caFile)
    const cert = b64(u?.certData) ?? file(u?.certFile)
    const key = b64(u?.keyData) ?? file(u?.keyFile)
    this.tls = { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) }
    const pid = (name: string): number | undefined => cluster.state.processes.find(p => p.name === name)?.pid
    const api = pid('kube-apiserver')
    if (api === undefined) throw new Error('the control plane state names no kube-apiserver process')
    this.apiserverPid = api
    this.etcdPid = pid('etcd')
  }

  private get(): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(this.url, { ...this.tls, agent: false, timeout: 30_000 }, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode === 200) resolve(body)
          else reject(new Error(`GET /metrics: HTTP ${res.statusCode}: ${body.slice(0, 200)}`))
        })
        res.on('error', reject)
      })
      req.on('timeout', () => req.destroy(new Error('GET /metrics timed out')))
      req.on('error', reject)
      req.end()
    })
  }

  async snapshot(): Promise<Snapshot> {
    let text: string | undefined
    for (let attempt = 1; text === undefined; attempt++) {
      try {
        text = await this.get()
      } catch (err) {
        if (attempt >= 3) throw err
        await sleep(1_000)
      }
    }
    this.scrapes++
    const at = performance.now()
    const requests: Counts = new Map()
    const drivers: Counts = new Map()
    const watches: Counts = new Map()
    const registered: Counts = new Map()
    const watchEvents: Counts = new Map()
    for (const [name, l, v] of samples(text, METRIC_NAMES)) {
      if (name === 'apiserver_request_total') {
        // The bench's own scrapes (not counted by this apiserver version, but in case).
        if (l.subresource === '/metrics') continue
        const k = `${resourceKey(l)} ${l.verb ?? '?'}`
        requests.set(k, (requests.get(k) ?? 0) + v)
      } else if (name === 'apiserver_flowcontrol_dispatched_requests_total') {
        const k = this.flowSchemas.get(l.flow_schema ?? '')
        if (k !== undefined) drivers.set(k, (drivers.get(k) ?? 0) + v)
      } else if (name === 'apiserver_longrunning_requests') {
        if (l.verb !== 'WATCH') continue
        const k = `${l.group ? `${l.group}/` : ''}${l.resource ?? '?'}`
        watches.set(k, (watches.get(k) ?? 0) + v)
      } else if (name === 'apiserver_registered_watchers') {
        const k = `${l.group ? `${l.group}/` : ''}${l.resource ?? l.kind ?? '?'}`
        registered.set(k, (registered.get(k) ?? 0) + v)
      } else {
        const k = `${l.group ? `${l.group}/` : ''}${l.resource ?? l.kind ?? '?'}`
        watchEvents.set(k, (watchEvents.get(k) ?? 0) + v)
      }
    }
    return {
      at,
      requests,
      drivers,
      // Older apiservers (before apiserver_longrunning_requests) had registered_watchers.
      watches: watches.size > 0 ? watches : registered,
      watchEvents,
      apiserverCpu: cpuSeconds(this.apiserverPid),
      etcdCpu: this.etcdPid === undefined ? NaN : cpuSeconds(this.etcdPid),
      apiserverRssMiB: rssKiB(this.apiserverPid) / 1024,
    }
  }
}

function delta(a: Counts, b: Counts): Counts {
  const out: Counts = new Map()
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0)
    if (d !== 0) out.set(k, d)
  }
  return out
}

const sum = (m: Counts | undefined, pick: (k: string) => boolean = () => true): number =>
  [...(m ?? new Map<string, number>()).entries()].filter(([k]) => pick(k)).reduce((s, [, v]) => s + v, 0)

/** The summary categories of the table: certificaterequests, events, others. */
function category(key: string): 'certificaterequests' | 'events' | 'others' {
  const resource = key.split(' ')[0]!.split('/')
  // `<group>/<resource>[/<sub>]` or `<resource>[/<sub>]` (core group).
  const name = resource.length >= 2 && resource[0]!.includes('.') ? resource[1] : resource[0]
  if (name === 'certificaterequests') return 'certificaterequests'
  if (name === 'events') return 'events'
  return 'others'
}

// ---- the drivers' identity: who made a request ---------------------------------

// apiserver_request_total has no user label, and the apiserver's own loopback
// clients and cert-manager make requests too (their internal watches re-open
// every few minutes, which at short windows is more than a node's idle
// traffic). So the drivers run as a ServiceAccount of their own, with a token
// as a real node's driver has, and one FlowSchema per (category, verb)
// matching only that account sends its requests to the exempt priority level
// (no queuing, as the admin identity had): the apiserver then counts exactly
// the drivers' requests in apiserver_flowcontrol_dispatched_requests_total
// {flow_schema}. APF counts a request when it is dispatched, so a WATCH is
// counted when it is opened.

const APF_VERBS: [string, string][] = [
  ['list', 'LIST'], ['watch', 'WATCH'], ['get', 'GET'], ['create', 'POST'], ['update', 'PUT'], ['patch', 'PATCH'],
  ['delete', 'DELETE'], ['deletecollection', 'DELETECOLLECTION'],
]

class DriverIdentity {
  readonly id = randomBytes(3).toString('hex')
  readonly name = `csi-bench-driver-${this.id}`
  readonly dir = mkdtempSync(join(tmpdir(), 'csi-bench-identity-'))
  readonly kubeconfig = join(this.dir, 'kubeconfig')
  /** FlowSchema name → `<category> <VERB>`. */
  readonly flowSchemas = new Map<string, string>()
  private readonly objects: object[]

  constructor(readonly cluster: Cluster) {
    const ns = cluster.namespace
    const subject = { kind: 'ServiceAccount', serviceAccount: { name: this.name, namespace: ns } }
    const schemas: object[] = []
    const schema = (suffix: string, key: string, precedence: number, rule: object): void => {
      const fsName = `${this.name}-${suffix}`
      this.flowSchemas.set(fsName, key)
      schemas.push({
        apiVersion: 'flowcontrol.apiserver.k8s.io/v1', kind: 'FlowSchema', metadata: { name: fsName },
        spec: { priorityLevelConfiguration: { name: 'exempt' }, matchingPrecedence: precedence, rules: [{ subjects: [subject], ...rule }] },
      })
    }
    for (const [verb, VERB] of APF_VERBS) {
      const res = (apiGroups: string[], resources: string[]): object => ({ resourceRules: [{ verbs: [verb], apiGroups, resources, namespaces: ['*'], clusterScope: true }] })
      schema(`cr-${verb}`, `certificaterequests ${VERB}`, 500, res(['cert-manager.io'], ['certificaterequests', 'certificaterequests/status']))
      schema(`ev-${verb}`, `events ${VERB}`, 500, res(['', 'events.k8s.io'], ['events']))
      schema(`other-${verb}`, `others ${VERB}`, 501, res(['*'], ['*']))
    }
    schema('other-nonresource', 'others GET (non-resource)', 501, { nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }] })
    schema('other-any', 'others (other verbs)', 502, { resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*'], clusterScope: true }] })
    this.objects = [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: this.name, namespace: ns } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: this.name },
        // The admin identity the harness would give them could do anything too: what is measured is traffic, not RBAC.
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        subjects: [{ kind: 'ServiceAccount', name: this.name, namespace: ns }],
      },
      ...schemas,
    ]
  }

  private list(): string {
    return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: this.objects })
  }

  /** Creates the account, its binding and FlowSchemas, and a token kubeconfig; returns the Cluster the drivers get. */
  async create(): Promise<Cluster> {
    onCleanup(async () => {
      await kubectl(this.cluster.state, ['delete', '--ignore-not-found', '--wait=false', '-f', '-'], this.list()).catch(err => log(`deleting the drivers' identity failed: ${String(err)}`))
      rmSync(this.dir, { recursive: true, force: true })
    })
    await kubectl(this.cluster.state, ['apply', '-f', '-'], this.list())
    const token = (await kubectl(this.cluster.state, ['create', 'token', this.name, '-n', this.cluster.namespace, '--duration', '48h'])).trim()
    const c = this.cluster.kc.getCurrentCluster()
    if (!c) throw new Error('the admin kubeconfig names no cluster')
    const ca = c.caData ?? (c.caFile ? readFileSync(c.caFile).toString('base64') : undefined)
    writeFileSync(this.kubeconfig, JSON.stringify({
      apiVersion: 'v1', kind: 'Config',
      clusters: [{ name: 'local', cluster: { server: c.server, ...(ca ? { 'certificate-authority-data': ca } : {}) } }],
      users: [{ name: this.name, user: { token } }],
      contexts: [{ name: 'local', context: { cluster: 'local', user: this.name } }],
      'current-context': 'local',
    }, null, 2), { mode: 0o600 })
    // The bench's own calls (Pods, cleanup) stay on the admin client; only the drivers' command line changes.
    return { ...this.cluster, state: { ...this.cluster.state, kubeconfig: this.kubeconfig } }
  }
}

// ---- volume attributes (as bench/run.ts, ECDSA) ---------------------------------

function attributes(cluster: Cluster): Record<string, string> {
  return {
    'csi.cert-manager.io/issuer-name': cluster.issuerName,
    'csi.cert-manager.io/dns-names': '${POD_NAME}.${POD_NAMESPACE}.svc,${POD_NAME}.${POD_NAMESPACE}.svc.cluster.local',
    'csi.cert-manager.io/key-usages': 'digital signature,key encipherment,server auth,client auth',
    // Both drivers accept PKCS8 for both key types; the reference refuses PKCS1 for ECDSA.
    'csi.cert-manager.io/key-algorithm': 'ECDSA', 'csi.cert-manager.io/key-size': '256', 'csi.cert-manager.io/key-encoding': 'PKCS8',
  }
}

// ---- results ------------------------------------------------------------------

interface Baseline {
  seconds: number
  /** Requests per second by resource key, the whole apiserver with no node running. */
  rate: Counts
  watches: Counts
  /** Watch events sent per second by resource. */
  watchEventRate: Counts
  apiserverCpuPct: number
  etcdCpuPct: number
  apiserverRssMiB: number
}

interface Grow {
  newNodes: number
  seconds: number
  /** The drivers' own requests per new node, by `<category> <VERB>` (FlowSchemas). */
  perNewNode: Counts
  /** All requests the apiserver served per new node, by resource key, the bench's own Pod creates left out (cert-manager's work for the new volumes included). */
  wholePerNewNode: Counts
}

interface Idle {
  seconds: number
  /** The drivers' own requests per node per minute, by `<category> <VERB>`. */
  perNodePerMin: Counts
  /** All requests per node per minute above the no-nodes baseline, by resource key. */
  wholePerNodePerMin: Counts
  watchesPerNode: number
  crWatchesPerNode: number
  /** Watch events sent per node per minute above the baseline, by resource. */
  watchEventsPerNodePerMin: Counts
  apiserverCpuPct: number
  apiserverCpuPerNodePct: number
  etcdCpuPct: number
  apiserverRssMiB: number
  driverCpuPct: number
  driverRssMedian: number
  driverRssMax: number
}

interface Roll {
  seconds: number
  restartMedianS: number
  restartMaxS: number
  /** The drivers' own requests per node (counts, not a rate), by `<category> <VERB>`. */
  perNode: Counts
  /** All requests per node above the baseline, by resource key. */
  wholePerNode: Counts
  apiserverCpuPct: number
  retries: number
  lost: number
  driverRssMedian: number
  driverRssMax: number
}

interface Column { kind: DriverKind; count: number; grow?: Grow; idle?: Idle; roll?: Roll }

const columns: Column[] = []
let baseline: Baseline | undefined
const notes: string[] = []

/**
 * Waits `seconds`, scraping every sampleSeconds for the open-watch gauge;
 * returns the first and last snapshot and the mean open watches over all
 * scrapes (start and end included).
 */
async function observe(metrics: ApiserverMetrics, seconds: number): Promise<{ s0: Snapshot; s1: Snapshot; watches: Counts }> {
  const s0 = await metrics.snapshot()
  const samplesTaken: Snapshot[] = [s0]
  const end = s0.at + seconds * 1000
  let s1 = s0
  while (s1.at < end - 1) {
    checkAborted()
    await sleep(Math.max(0, Math.min(opt.sampleSeconds * 1000, end - performance.now())))
    s1 = await metrics.snapshot()
    samplesTaken.push(s1)
  }
  const watches: Counts = new Map()
  for (const s of samplesTaken) for (const [k, v] of s.watches) watches.set(k, (watches.get(k) ?? 0) + v / samplesTaken.length)
  return { s0, s1, watches }
}

async function measureBaseline(metrics: ApiserverMetrics): Promise<void> {
  log(`baseline: ${opt.baselineSeconds} s with no node running`)
  const { s0, s1, watches } = await observe(metrics, opt.baselineSeconds)
  const sec = (s1.at - s0.at) / 1000
  const rate: Counts = new Map()
  for (const [k, v] of delta(s0.requests, s1.requests)) rate.set(k, v / sec)
  baseline = {
    seconds: sec,
    rate,
    watches,
    watchEventRate: new Map([...delta(s0.watchEvents, s1.watchEvents)].map(([k, v]) => [k, v / sec])),
    apiserverCpuPct: ((s1.apiserverCpu - s0.apiserverCpu) / sec) * 100,
    etcdCpuPct: ((s1.etcdCpu - s0.etcdCpu) / sec) * 100,
    apiserverRssMiB: s1.apiserverRssMiB,
  }
}

/** Requests of a window above what the baseline rate predicts for its length, per node. */
function aboveBaselinePerNode(d: Counts, seconds: number, n: number, rate: Counts | undefined = baseline?.rate): Counts {
  const out: Counts = new Map()
  const keys = new Set([...d.keys(), ...(rate?.keys() ?? [])])
  for (const k of keys) {
    const v = ((d.get(k) ?? 0) - (rate?.get(k) ?? 0) * seconds) / n
    if (Math.abs(v) > 1e-9) out.set(k, v)
  }
  return out
}

// ---- the fleet ------------------------------------------------------------------

interface FleetNode { node: NodeUnderTest; volumes: Volume[] }

class Fleet {
  readonly members: FleetNode[] = []
  private readonly attrs: Record<string, string>

  constructor(readonly cluster: Cluster, readonly kind: DriverKind, readonly oursCommand: string[], readonly referenceBin: string | undefined) {
    this.attrs = attributes(cluster)
  }

  /** Starts nodes until there are `n` (startConcurrency at a time, each until its Probe is ready), then publishes V volumes on each new one. */
  async growTo(n: number): Promise<FleetNode[]> {
    const fresh: FleetNode[] = []
    while (this.members.length + fresh.length < n) {
      const node = new NodeUnderTest({
        kind: this.kind, cluster: this.cluster,
        ...(this.oursCommand.length > 0 ? { oursCommand: this.oursCommand } : {}),
        ...(this.referenceBin ? { referenceBin: this.referenceBin } : {}),
      })
      fresh.push({ node, volumes: [] })
    }
    this.members.push(...fresh)
    log(`${this.kind}: starting ${fresh.length} node(s), ${opt.startConcurrency} at a time`)
    let started = 0
    await pool(fresh, opt.startConcurrency, async m => {
      checkAborted()
      await this.startNode(m)
      if (++started % 10 === 0 || started === fresh.length) log(`${this.kind}: ${this.members.length - fresh.length + started} of ${n} node(s) ready`)
    })
    log(`${this.kind}: creating Pods and publishing ${opt.volumesPerNode} volume(s) on each of ${fresh.length} node(s), ${opt.publishConcurrency} at a time`)
    // Volumes (and their Pods) one node at a time each: newVolume() is not safe to run twice at once on one node.
    await pool(fresh, 8, async m => {
      for (let i = 0; i < opt.volumesPerNode; i++) m.volumes.push(await m.node.newVolume())
    })
    // Round-robin over the nodes, so every node has publishes in flight.
    const all: { m: FleetNode; v: Volume }[] = []
    for (let i = 0; i < opt.volumesPerNode; i++) for (const m of fresh) all.push({ m, v: m.volumes[i]! })
    const deadline = Date.now() + 30 * 60_000
    let done = 0
    await pool(all, opt.publishConcurrency, async ({ m, v }) => {
      checkAborted()
      await m.node.publishUntilReady(v, this.attrs, deadline)
      if (++done % 100 === 0) log(`${this.kind}: ${done} of ${all.length} volume(s) ready`)
    })
    return fresh
  }

  private async startNode(m: FleetNode, timeoutMs = 120_000): Promise<void> {
    try {
      await m.node.start(timeoutMs)
    } finally {
      // Ctrl-C while this one was starting: its cleanup may have run before the spawn.
      if (aborted) await m.node.stop('SIGKILL')
    }
  }

  /** Every driver in turn: SIGTERM, start, republish all its volumes, next. */
  async roll(): Promise<{ seconds: number[]; retries: number; lost: number }> {
    const seconds: number[] = []
    let retries = 0
    for (const [i, m] of this.members.entries()) {
      checkAborted()
      const t0 = performance.now()
      await m.node.stop('SIGTERM', 30_000)
      await this.startNode(m)
      const deadline = Date.now() + 10 * 60_000
      const attempts = await pool(m.volumes, 10, v => m.node.publishUntilReady(v, this.attrs, deadline))
      retries += attempts.reduce((s, a) => s + a - 1, 0)
      seconds.push((performance.now() - t0) / 1000)
      if ((i + 1) % 10 === 0 || i + 1 === this.members.length) log(`${this.kind}: rolled ${i + 1} of ${this.members.length}`)
    }
    const mounted = new Set(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map(l => l.split(' ')[4]))
    const lost = this.members.reduce((s, m) => s + m.volumes.filter(v => !mounted.has(v.targetPath)).length, 0)
    return { seconds, retries, lost }
  }

  rssMiB(): number[] {
    return this.members.map(m => rssKiB(m.node.pid) / 1024)
  }

  cpu(): number[] {
    return this.members.map(m => cpuSeconds(m.node.pid))
  }

  /**
   * Stops every driver first (so none re-issues what is deleted), deletes all
   * the fleet's CertificateRequests with one LIST, then each node's own
   * cleanup (mounts, folders, Pods).
   */
  async teardown(): Promise<void> {
    log(`${this.kind}: tearing down ${this.members.length} node(s)`)
    await pool(this.members, 16, m => m.node.stop('SIGKILL'))
    const { kc, namespace } = this.cluster
    const uids = new Set(this.members.flatMap(m => [...m.node.podUids]))
    try {
      const crs = await requestsOwnedBy(kc, namespace, uids)
      await deleteRequests(kc, namespace, crs.map(cr => cr.metadata.name))
    } catch (err) {
      log(`bulk delete of the fleet's CertificateRequests failed (each node's cleanup tries again): ${String(err)}`)
    }
    await pool(this.members, 8, m => m.node.cleanup())
    this.members.length = 0
  }
}

async function measureDriver(cluster: Cluster, metrics: ApiserverMetrics, kind: DriverKind, oursCommand: string[], referenceBin: string | undefined): Promise<void> {
  const fleet = new Fleet(cluster, kind, oursCommand, referenceBin)
  // Every node registered its own cleanup (NodeUnderTest); teardown() does the
  // same work faster (one LIST for all the fleet's requests) on the normal
  // path and on an error. On Ctrl-C the nodes' own cleanups run as well.
  try {
    for (const count of countsFor(kind)) {
      checkAborted()
      const col: Column = { kind, count }
      columns.push(col)

      // Grow.
      const g0 = await metrics.snapshot()
      const before = fleet.members.length
      await fleet.growTo(count)
      const g1 = await metrics.snapshot()
      const gd = delta(g0.requests, g1.requests)
      const newNodes = count - before
      // The bench's own Pod creates (one per 10 volumes) are not the driver's.
      gd.delete('pods POST')
      const perNew = (m: Counts): Counts => new Map([...m].map(([k, v]) => [k, v / newNodes]))
      col.grow = {
        newNodes,
        seconds: (g1.at - g0.at) / 1000,
        perNewNode: perNew(delta(g0.drivers, g1.drivers)),
        wholePerNewNode: perNew(gd),
      }
      if (sum(col.grow.perNewNode) === 0) throw new Error('the apiserver counted no request under the drivers\' FlowSchemas: attribution does not work here')
      log(`${kind} × ${count}: settling ${opt.settleSeconds} s`)
      await sleep(opt.settleSeconds * 1000)

      // Idle.
      log(`${kind} × ${count}: idle window, ${opt.idleSeconds} s`)
      const c0 = fleet.cpu()
      const { s0, s1, watches } = await observe(metrics, opt.idleSeconds)
      const c1 = fleet.cpu()
      const sec = (s1.at - s0.at) / 1000
      const perMinute = (m: Counts): Counts => new Map([...m].map(([k, v]) => [k, v / (sec / 60)]))
      const perNodePerMin = perMinute(new Map([...delta(s0.drivers, s1.drivers)].map(([k, v]) => [k, v / count])))
      const wholePerNodePerMin = perMinute(aboveBaselinePerNode(delta(s0.requests, s1.requests), sec, count))
      const baseWatches = baseline?.watches ?? new Map<string, number>()
      const isCr = (k: string): boolean => category(k) === 'certificaterequests'
      const apiserverCpuPct = ((s1.apiserverCpu - s0.apiserverCpu) / sec) * 100
      const rss = fleet.rssMiB()
      col.idle = {
        seconds: sec,
        perNodePerMin,
        wholePerNodePerMin,
        watchesPerNode: (sum(watches) - sum(baseWatches)) / count,
        crWatchesPerNode: (sum(watches, isCr) - sum(baseWatches, isCr)) / count,
        watchEventsPerNodePerMin: new Map([...aboveBaselinePerNode(delta(s0.watchEvents, s1.watchEvents), sec, count, baseline?.watchEventRate)].map(([k, v]) => [k, v / (sec / 60)])),
        apiserverCpuPct,
        apiserverCpuPerNodePct: (apiserverCpuPct - (baseline?.apiserverCpuPct ?? 0)) / count,
        etcdCpuPct: ((s1.etcdCpu - s0.etcdCpu) / sec) * 100,
        apiserverRssMiB: s1.apiserverRssMiB,
        driverCpuPct: (c1.reduce((s, c, i) => s + c - c0[i]!, 0) / count / sec) * 100,
        driverRssMedian: median(rss),
        driverRssMax: Math.max(...rss),
      }

      // Rolling restart.
      log(`${kind} × ${count}: rolling restart of every driver`)
      const r0 = await metrics.snapshot()
      const rolled = await fleet.roll()
      const r1 = await metrics.snapshot()
      const rsec = (r1.at - r0.at) / 1000
      await sleep(3_000) // let garbage from the republishes go before reading RSS
      const rssAfter = fleet.rssMiB()
      col.roll = {
        seconds: rsec,
        restartMedianS: median(rolled.seconds),
        restartMaxS: Math.max(...rolled.seconds),
        perNode: new Map([...delta(r0.drivers, r1.drivers)].map(([k, v]) => [k, v / count])),
        wholePerNode: aboveBaselinePerNode(delta(r0.requests, r1.requests), rsec, count),
        apiserverCpuPct: ((r1.apiserverCpu - r0.apiserverCpu) / rsec) * 100,
        retries: rolled.retries,
        lost: rolled.lost,
        driverRssMedian: median(rssAfter),
        driverRssMax: Math.max(...rssAfter),
      }
      if (rolled.lost > 0) notes.push(`${kind} × ${count}: ${rolled.lost} volume(s) not mounted after the rolling restart`)
    }
  } finally {
    await fleet.teardown()
  }
}

// ---- the table --------------------------------------------------------------------

type Cell = number | string | undefined

function fmt(v: Cell, digits?: number): string {
  if (v === undefined) return '—'
  if (typeof v === 'string') return v
  if (!Number.isFinite(v)) return 'n/a'
  if (digits !== undefined) return v.toFixed(digits)
  const a = Math.abs(v)
  if (a === 0) return '0'
  if (a < 0.01) return v.toFixed(4)
  if (a < 1) return v.toFixed(3)
  if (a < 10) return v.toFixed(2)
  if (a < 100) return v.toFixed(1)
  return v.toFixed(0)
}

const VERB_ORDER = ['LIST', 'WATCH', 'GET', 'POST', 'PUT', 'PATCH', 'APPLY', 'DELETE', 'DELETECOLLECTION', 'CONNECT']
const CATEGORY_ORDER = ['certificaterequests', 'events', 'others']
function orderKeys(keys: Iterable<string>, byCategory: boolean): string[] {
  const rank = (k: string): [number, string, number] => {
    const [res, verb] = k.split(' ') as [string, string]
    const v = VERB_ORDER.indexOf(verb)
    return [byCategory ? CATEGORY_ORDER.indexOf(res) : category(k) === 'others' ? 2 : category(k) === 'events' ? 1 : 0, res, v < 0 ? 99 : v]
  }
  return [...new Set(keys)].sort((a, b) => {
    const [a1, a2, a3] = rank(a)
    const [b1, b2, b3] = rank(b)
    return a1 - b1 || a2.localeCompare(b2) || a3 - b3
  })
}

/** Keys with a magnitude of at least `min` in some column (baseline included). */
function significant(keys: string[], values: (k: string) => number[], min: number): string[] {
  return keys.filter(k => values(k).some(v => Math.abs(v) >= min))
}

function table(): string {
  const head = ['measurement', 'no nodes (whole apiserver)', ...columns.map(c => `${c.kind}, ${c.count} node${c.count === 1 ? '' : 's'}`)]
  const lines = [`| ${head.join(' | ')} |`, `|---|${head.slice(1).map(() => '---:').join('|')}|`]
  const row = (label: string, base: Cell, cell: (c: Column) => Cell, digits?: number): void => {
    lines.push(`| ${label} | ${fmt(base, digits)} | ${columns.map(c => fmt(cell(c), digits)).join(' | ')} |`)
  }
  /** One row per `<category> <VERB>` the drivers used in some column. */
  const verbRows = (prefix: string, unit: string, pick: (c: Column) => Counts | undefined, min: number): void => {
    const keys = orderKeys(columns.flatMap(c => [...(pick(c)?.keys() ?? [])]), true)
    for (const k of significant(keys, k => columns.map(c => pick(c)?.get(k) ?? 0), min)) {
      row(`${prefix}, ${k} (${unit})`, undefined, c => (pick(c) ? pick(c)!.get(k) ?? 0 : undefined))
    }
  }
  const b = baseline
  const isCr = (k: string): boolean => category(k) === 'certificaterequests'

  row('Start: nodes started and their volumes all ready (s)', undefined, c => c.grow?.seconds)
  row('Start: the drivers\' requests per new node, all (count)', undefined, c => (c.grow ? sum(c.grow.perNewNode) : undefined))
  verbRows('Start: the drivers\' requests per new node', 'count', c => c.grow?.perNewNode, 0.05)
  row('Start: all requests at the apiserver per new node, cert-manager\'s included, the bench\'s Pods left out (count)', undefined, c => (c.grow ? sum(c.grow.wholePerNewNode) : undefined))

  row('Idle: window (s)', b?.seconds, c => c.idle?.seconds, 0)
  row('Idle: the drivers\' requests per node per minute, all', undefined, c => (c.idle ? sum(c.idle.perNodePerMin) : undefined))
  verbRows('Idle: the drivers\' requests per node per minute', 'per minute', c => c.idle?.perNodePerMin, 0.0005)
  row('Idle: all requests at the apiserver per node per minute above the no-nodes rate (no-nodes column: its rate)', b ? sum(b.rate) * 60 : undefined, c => (c.idle ? sum(c.idle.wholePerNodePerMin) : undefined))
  row('Idle: open watches per node, all (mean of the scrapes; no-nodes column: the apiserver\'s total)', b ? sum(b.watches) : undefined, c => c.idle?.watchesPerNode)
  row('Idle: open watches per node, certificaterequests', b ? sum(b.watches, isCr) : undefined, c => c.idle?.crWatchesPerNode)
  // Watch events cannot be told apart by client; certificaterequests is what the drivers watch (bookmarks included).
  row('Idle: watch events sent per node per minute above the no-nodes rate, certificaterequests', b ? sum(b.watchEventRate, isCr) * 60 : undefined, c => (c.idle ? sum(c.idle.watchEventsPerNodePerMin, isCr) : undefined))
  row('Idle: apiserver CPU, whole (% of a core)', b?.apiserverCpuPct, c => c.idle?.apiserverCpuPct)
  row('Idle: apiserver CPU above the no-nodes baseline, per node (% of a core)', undefined, c => c.idle?.apiserverCpuPerNodePct)
  row('Idle: etcd CPU, whole (% of a core)', b?.etcdCpuPct, c => c.idle?.etcdCpuPct)
  row('Idle: apiserver RSS at the end of the window (MiB)', b?.apiserverRssMiB, c => c.idle?.apiserverRssMiB, 0)
  row('Idle: driver CPU per node, mean (% of a core)', undefined, c => c.idle?.driverCpuPct)
  row('Idle: driver RSS per node, median / max (MiB)', undefined, c => (c.idle ? `${fmt(c.idle.driverRssMedian, 1)} / ${fmt(c.idle.driverRssMax, 1)}` : undefined))

  row('Rolling restart: whole roll, one node after another (s)', undefined, c => c.roll?.seconds)
  row('Rolling restart: one node, SIGTERM → all its volumes republished, median / max (s)', undefined, c => (c.roll ? `${fmt(c.roll.restartMedianS)} / ${fmt(c.roll.restartMaxS)}` : undefined))
  row('Rolling restart: the drivers\' requests per node, all (count)', undefined, c => (c.roll ? sum(c.roll.perNode) : undefined))
  verbRows('Rolling restart: the drivers\' requests per node', 'count', c => c.roll?.perNode, 0.05)
  row('Rolling restart: all requests at the apiserver per node above the no-nodes rate (count)', undefined, c => (c.roll ? sum(c.roll.wholePerNode) : undefined))
  row('Rolling restart: apiserver CPU during the roll, whole (% of a core)', b?.apiserverCpuPct, c => c.roll?.apiserverCpuPct)
  row('Rolling restart: republish calls that failed and were retried (count)', undefined, c => c.roll?.retries, 0)
  row('Rolling restart: volumes not mounted afterwards (count)', undefined, c => c.roll?.lost, 0)
  row('Rolling restart: driver RSS per node after it, median / max (MiB)', undefined, c => (c.roll ? `${fmt(c.roll.driverRssMedian, 1)} / ${fmt(c.roll.driverRssMax, 1)}` : undefined))
  return lines.join('\n')
}

/**
 * Everything the apiserver served (apiserver_request_total, so cert-manager's
 * and the apiserver's own requests too) by resource and verb, per node above
 * the no-nodes rate: at start, idle (per minute) and during the roll; and the
 * watch events it sent, idle.
 */
function detail(): string {
  const head = ['all requests (and watch events) by resource and verb', 'no nodes (whole apiserver, per minute)', ...columns.map(c => `${c.kind}, ${c.count}`)]
  const lines = [`| ${head.join(' | ')} |`, `|---|${head.slice(1).map(() => '---:').join('|')}|`]
  const perMin = (m: Counts | undefined): Counts => new Map([...(m ?? new Map<string, number>())].map(([k, v]) => [k, v * 60]))
  const section = (label: string, base: Counts | undefined, pick: (c: Column) => Counts | undefined, min: number, byResource = false): void => {
    const all = [...(base?.keys() ?? []), ...columns.flatMap(c => [...(pick(c)?.keys() ?? [])])]
    const keys = byResource ? [...new Set(all)].sort() : orderKeys(all, false)
    for (const k of significant(keys, k => [base?.get(k) ?? 0, ...columns.map(c => pick(c)?.get(k) ?? 0)], min)) {
      lines.push(`| ${label}: ${k} | ${base ? fmt(base.get(k) ?? 0) : '—'} | ${columns.map(c => fmt(pick(c) ? pick(c)!.get(k) ?? 0 : undefined)).join(' | ')} |`)
    }
  }
  section('start, per new node', undefined, c => c.grow?.wholePerNewNode, 0.05)
  section('idle, per node per minute', perMin(baseline?.rate), c => c.idle?.wholePerNodePerMin, 0.005)
  section('rolling restart, per node', undefined, c => c.roll?.wholePerNode, 0.05)
  section('idle, watch events sent per node per minute', perMin(baseline?.watchEventRate), c => c.idle?.watchEventsPerNodePerMin, 0.005, true)
  return lines.join('\n')
}

// ---- main ----------------------------------------------------------------------

async function main(): Promise<void> {
  const started = new Date()
  const loadStart = sh('uptime', [])
  // Read before the run: an hour later HEAD may be another commit than the one built.
  const head = sh('git', ['rev-parse', '--short', 'HEAD'])
  const dirty = sh('git', ['status', '--porcelain', '--', 'src']) === '' ? '' : ' (src/ has uncommitted changes)'
  let referenceBin: string | undefined
  if (opt.drivers.includes('reference')) referenceBin = referenceBinary()
  const oursCommand = opt.drivers.includes('ours') ? prepareOurs(oursRuntime) : []
  const cluster = await startCluster(flags['bin-dir'] ?? process.env.CSI_TOOLS_BIN)
  const metrics = new ApiserverMetrics(cluster)
  const identity = new DriverIdentity(cluster)
  const driverCluster = await identity.create()
  metrics.flowSchemas = identity.flowSchemas
  if (!cluster.owned) notes.push('the control plane was shared (CSI_CLUSTER_DIR): anything else using it is in every figure')

  const t0 = performance.now()
  await sleep(opt.settleSeconds * 1000) // the control plane's own start-up work
  await measureBaseline(metrics)
  for (const kind of opt.drivers) {
    checkAborted()
    await measureDriver(driverCluster, metrics, kind, oursCommand, referenceBin)
  }
  const minutes = (performance.now() - t0) / 60_000

  const loadEnd = sh('uptime', [])
  const refVersion = sh('bash', ['-c', "cd test/tools/reference && go list -m -f '{{.Version}}' github.com/cert-manager/csi-driver"])
  const md = [
    `# Many nodes, one apiserver ${started.toISOString()}`,
    '',
    `- machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory; Node ${process.version}`,
    `- load: at start \`${loadStart}\`; at end \`${loadEnd}\``,
    `- ours: ${head}${dirty}, ${oursRuntime === 'compiled' ? 'built by the harness\'s prepareOurs as the image runs it, plain node' : 'from source with tsx'}; reference: github.com/cert-manager/csi-driver ${refVersion}`,
    `- sizes: node counts ${opt.drivers.map(d => `${d} ${countsFor(d).join(', ')}`).join('; ')}; --volumes-per-node ${opt.volumesPerNode} (ECDSA P-256, 10 volumes per Pod); --idle-seconds ${opt.idleSeconds} --baseline-seconds ${opt.baselineSeconds} --sample-seconds ${opt.sampleSeconds} --start-concurrency ${opt.startConcurrency} --publish-concurrency ${opt.publishConcurrency}; ${minutes.toFixed(1)} minutes of measuring`,
    '- "the drivers\' requests": counted by the apiserver itself under FlowSchemas that match only the drivers\' ServiceAccount (exact; a WATCH counts when opened), ÷ nodes. "all requests" and watch events: apiserver_request_total (a WATCH counts when it ends) and apiserver_watch_events_total, minus the no-nodes rate × the window\'s length, ÷ nodes (cert-manager\'s and the apiserver\'s own traffic included: noisy in short windows)',
    '- the fleet grows from one node count to the next: the larger count includes the smaller one\'s nodes, already rolled once',
    '',
    table(),
    '',
    '## Every resource and verb',
    '',
    detail(),
    '',
    ...(notes.length > 0 ? ['## Notes', '', ...notes.map(n => `- ${n}`), ''] : []),
  ].join('\n')
  process.stdout.write(`${md}\n`)
  if (flags.out) {
    mkdirSync(dirname(flags.out), { recursive: true })
    writeFileSync(flags.out, `${md}\n`)
    log(`written to ${flags.out}`)
  }
}

let code = 0
try {
  await main()
} catch (err) {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  code = 1
} finally {
  await runCleanups()
}
process.exit(code)
