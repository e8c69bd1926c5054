// Our driver against the reference driver (cert-manager's csi-driver, pinned
// in test/tools/reference), side by side on one local control plane, plus the
// floor (one CertificateRequest through cert-manager with no driver at all)
// and a breakdown of our publish latency. Prints a markdown table and writes
// it to bench/results/<date>.md. See bench/README.md.
//
//   node --import tsx bench/run.ts [--quick] [--volumes 1000] [--samples 50] [--idle-seconds 60] ...
import { parseArgs } from 'node:util'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node'
import { ROOT } from '../test/helpers/csi-client.js'
import { buildCsrPem } from '../src/pki/csr.js'
import { parseVolumeAttributes } from '../src/volume/spec.js'
import { buildCertificateRequest } from '../src/kube/certificate-request.js'
import {
  CrWatcher, NodeUnderTest, cpuSeconds, deleteRequests, log, median, onCleanup, percentile, pool, requestsOwnedBy, rssKiB,
  prepareOurs, referenceBinary, runCleanups, sh, startCluster, type Cluster, type DriverKind, type OursRuntime, type Volume,
} from './harness.js'
import { goalFor } from './goals.js'
import { summarizeCpuProfile, breakdownFromLogs, keyAndCsrCost, type Breakdown } from './profile.js'

// ---- options ---------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    volumes: { type: 'string' },
    samples: { type: 'string' },
    'idle-seconds': { type: 'string' },
    burst: { type: 'string' },
    'p8-samples': { type: 'string' },
    'idle-profile-seconds': { type: 'string' },
    'profile-samples': { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    drivers: { type: 'string', default: 'ours,reference' },
    phases: { type: 'string', default: 'floor,latency,burst,scale,profile,idle-profile,restart-profile' },
    'bin-dir': { type: 'string' },
    'ours-runtime': { type: 'string', default: 'compiled' },
    out: { type: 'string' },
  },
})

const quick = flags.quick
const int = (name: string, v: string | undefined, def: number): number => {
  if (v === undefined) return def
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`)
  return n
}
const opt = {
  volumes: int('volumes', flags.volumes, quick ? 60 : 1000),
  samples: int('samples', flags.samples, quick ? 10 : 50),
  idleSeconds: int('idle-seconds', flags['idle-seconds'], quick ? 10 : 60),
  burst: int('burst', flags.burst, quick ? 20 : 100),
  p8Samples: int('p8-samples', flags['p8-samples'], quick ? 5 : 20),
  // One full resync period of our driver (--resync-period, default 2m): every volume is re-checked once in it.
  idleProfileSeconds: int('idle-profile-seconds', flags['idle-profile-seconds'], quick ? 20 : 120),
  profileSamples: int('profile-samples', flags['profile-samples'], quick ? 5 : 20),
  concurrency: int('concurrency', flags.concurrency, 16),
  drivers: flags.drivers.split(',').map(s => s.trim()).filter(Boolean) as DriverKind[],
  phases: new Set(flags.phases.split(',').map(s => s.trim())),
}
const oursRuntime = flags['ours-runtime'] as OursRuntime
if (oursRuntime !== 'compiled' && oursRuntime !== 'tsx') throw new Error('--ours-runtime must be compiled or tsx')
let oursCommand: string[] = []
for (const d of opt.drivers as string[]) if (d !== 'ours' && d !== 'reference') throw new Error(`--drivers: unknown driver ${d}`)

// ---- results ----------------------------------------------------------------

type Cell = number | string | undefined
interface Row { label: string; unit: string; values: Partial<Record<DriverKind, Cell>>; note?: string; shared?: boolean }
const rows = new Map<string, Row>()
function put(key: string, label: string, unit: string, driver: DriverKind, value: Cell, note?: string): void {
  let r = rows.get(key)
  if (!r) rows.set(key, (r = { label, unit, values: {} }))
  r.values[driver] = value
  if (note) r.note = note
}
const floorRows: { label: string; value: string }[] = []
const notes: string[] = []
let breakdown: Breakdown | undefined
let cpuProfileTable: string | undefined
let idleProfileTable: string | undefined
let restartProfileTable: string | undefined

const fmt = (v: Cell, unit: string): string => {
  if (v === undefined) return 'n/a'
  if (typeof v === 'string') return v
  if (!Number.isFinite(v)) return 'n/a'
  if (unit === '%') return v.toFixed(v < 10 ? 2 : 1)
  if (unit === 'MiB') return v.toFixed(1)
  if (unit === 'count') return String(Math.round(v))
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)
}

function table(): string {
  const lines = ['| measurement | ours | reference | ours / reference | goal (issue 14) |', '|---|---:|---:|---:|---|']
  for (const [key, r] of rows) {
    const o = r.values.ours
    const ref = r.values.reference
    const ratio = r.shared ? '— (same for both)' : typeof o === 'number' && typeof ref === 'number' && ref !== 0 && Number.isFinite(o) && Number.isFinite(ref) ? `${(o / ref).toFixed(2)}×` : '—'
    const goal = goalFor(key, opt.volumes, opt.burst)
    const met = goal && typeof o === 'number' ? goal.met(o, typeof ref === 'number' ? ref : undefined) : undefined
    const verdict = goal ? `${goal.text}${met === undefined ? '' : met ? ': met' : ': **missed**'}` : ''
    lines.push(`| ${r.label} (${r.unit}) | ${fmt(o, r.unit)} | ${fmt(ref, r.unit)} | ${ratio} | ${verdict} |`)
  }
  return lines.join('\n')
}

// ---- volume attributes ------------------------------------------------------

function attributes(cluster: Cluster, key: 'ECDSA' | 'RSA'): Record<string, string> {
  return {
    'csi.cert-manager.io/issuer-name': cluster.issuerName,
    'csi.cert-manager.io/dns-names': '${POD_NAME}.${POD_NAMESPACE}.svc,${POD_NAME}.${POD_NAMESPACE}.svc.cluster.local',
    'csi.cert-manager.io/key-usages': 'digital signature,key encipherment,server auth,client auth',
    // Both drivers accept PKCS8 for both key types; the reference refuses PKCS1 for ECDSA.
    ...(key === 'ECDSA'
      ? { 'csi.cert-manager.io/key-algorithm': 'ECDSA', 'csi.cert-manager.io/key-size': '256', 'csi.cert-manager.io/key-encoding': 'PKCS8' }
      : { 'csi.cert-manager.io/key-algorithm': 'RSA', 'csi.cert-manager.io/key-size': '2048' }),
  }
}

// ---- phases -------------------------------------------------------------------

async function floor(cluster: Cluster, watcher: CrWatcher): Promise<void> {
  log(`floor: ${opt.samples} CertificateRequests, one at a time, no driver`)
  const { kc, namespace } = cluster
  const core = kc.makeApiClient(CoreV1Api)
  const custom = kc.makeApiClient(CustomObjectsApi)
  const podName = `bench-floor-${randomBytes(3).toString('hex')}`
  const pod = await core.createNamespacedPod({ namespace, body: { metadata: { name: podName, namespace }, spec: { containers: [{ name: 'app', image: 'busybox' }] } } })
  const uid = pod.metadata!.uid!
  onCleanup(async () => {
    const crs = await requestsOwnedBy(kc, namespace, new Set([uid]))
    await deleteRequests(kc, namespace, crs.map(c => c.metadata.name))
    await core.deleteNamespacedPod({ name: podName, namespace, gracePeriodSeconds: 0 }).catch(() => undefined)
  })
  const podInfo = { name: podName, namespace, uid, serviceAccountName: 'default' }
  const parsed = parseVolumeAttributes(attributes(cluster, 'ECDSA'), podInfo)
  if (!parsed.ok) throw new Error(`floor spec invalid: ${JSON.stringify(parsed.issues)}`)
  const total: number[] = []
  const create: number[] = []
  const approve: number[] = []
  const sign: number[] = []
  for (let i = 0; i <= opt.samples; i++) {
    // Key and CSR are made before the clock starts: the floor is the API and cert-manager alone.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const csrPem = await buildCsrPem(parsed.spec, privateKey)
    const volumeId = `csi-${randomBytes(32).toString('hex')}`
    const name = `${podName}-${i}`
    const body = buildCertificateRequest({ name, volumeId, nodeId: 'bench-floor', pod: podInfo, spec: parsed.spec, csrPem })
    const t0 = performance.now()
    await custom.createNamespacedCustomObject({ group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests', namespace, body })
    const t1 = performance.now()
    const t = await watcher.waitReady(name)
    if (t.readyReason !== 'Issued') throw new Error(`floor request ${name} ended ${t.readyReason}`)
    if (i === 0) continue // warm-up: connections, caches
    total.push(t.ready! - t0)
    create.push(t1 - t0)
    if (t.approved !== undefined) {
      approve.push(t.approved - t1)
      sign.push(t.ready! - t.approved)
    }
  }
  const ms = (s: number[]): string => `${fmt(median(s), 'ms')} / ${fmt(percentile(s, 99), 'ms')}`
  floorRows.push(
    { label: `create → Ready observed through the watch, ECDSA P-256 (${total.length} requests)`, value: ms(total) },
    { label: 'create call (POST round trip)', value: ms(create) },
    { label: 'created → Approved seen (cert-manager approver)', value: ms(approve) },
    { label: 'Approved → Ready=Issued seen (CA issuer signs)', value: ms(sign) },
  )
  for (const [key, label, v] of [['floor-med', 'median', median(total)], ['floor-p99', 'p99', percentile(total, 99)]] as const) {
    for (const d of ['ours', 'reference'] as const) put(key, `Floor: one CertificateRequest, no driver, create → signed, seen by a watch, ${label}`, 'ms', d, v)
    rows.get(key)!.shared = true
  }
}

function newNode(cluster: Cluster, kind: DriverKind, referenceBin: string | undefined, extra: Partial<ConstructorParameters<typeof NodeUnderTest>[0]> = {}): NodeUnderTest {
  return new NodeUnderTest({ kind, cluster, ...(oursCommand.length > 0 ? { oursCommand } : {}), ...(referenceBin ? { referenceBin } : {}), ...extra })
}

async function latency(cluster: Cluster, kind: DriverKind, referenceBin?: string): Promise<void> {
  const node = newNode(cluster, kind, referenceBin)
  try {
    await node.start()
    const ecdsa = attributes(cluster, 'ECDSA')
    const rsa = attributes(cluster, 'RSA')
    await node.timedPublish(await node.newVolume(), ecdsa) // warm-up
    log(`${kind}: P1 ${opt.samples} ECDSA publishes, one at a time`)
    const p1: number[] = []
    const ready: Volume[] = []
    for (let i = 0; i < opt.samples; i++) {
      const v = await node.newVolume()
      p1.push(await node.timedPublish(v, ecdsa))
      ready.push(v)
    }
    put('p1-med', 'P1 publish, ECDSA P-256, one at a time, median', 'ms', kind, median(p1))
    const floorMedian = rows.get('floor-med')?.values[kind]
    if (typeof floorMedian === 'number') put('p1-over-floor', 'P1 median above the floor (cert-manager alone)', 'ms', kind, median(p1) - floorMedian)
    put('p1-p99', 'P1 publish, ECDSA P-256, one at a time, p99', 'ms', kind, percentile(p1, 99))

    log(`${kind}: P2 ${opt.samples} RSA-2048 publishes, one at a time`)
    const p2: number[] = []
    for (let i = 0; i < opt.samples; i++) p2.push(await node.timedPublish(await node.newVolume(), rsa))
    put('p2-med', 'P2 publish, RSA-2048, one at a time, median', 'ms', kind, median(p2))
    put('p2-p99', 'P2 publish, RSA-2048, one at a time, p99', 'ms', kind, percentile(p2, 99))

    log(`${kind}: P7 ${opt.samples} republishes of ready volumes`)
    const p7: number[] = []
    for (let i = 0; i < opt.samples; i++) p7.push(await node.timedPublish(ready[i % ready.length]!, ecdsa))
    put('p7-med', 'P7 republish of a ready volume, median', 'ms', kind, median(p7))
    put('p7-p99', 'P7 republish of a ready volume, p99', 'ms', kind, percentile(p7, 99))

    const crs = await node.requests()
    put('crs-per-vol', 'CertificateRequests left in the API per published volume', 'per volume', kind, crs.length / (1 + 2 * opt.samples))
  } finally {
    await node.cleanup()
  }
}

async function burst(cluster: Cluster, kind: DriverKind, referenceBin?: string): Promise<void> {
  const node = newNode(cluster, kind, referenceBin)
  try {
    await node.start()
    const ecdsa = attributes(cluster, 'ECDSA')
    await node.timedPublish(await node.newVolume(), ecdsa) // warm-up
    const vols: Volume[] = []
    for (let i = 0; i < opt.burst; i++) vols.push(await node.newVolume())
    log(`${kind}: P3 ${opt.burst} publishes at once`)
    const t0 = performance.now()
    const deadline = Date.now() + 10 * 60_000
    const done: number[] = []
    const attempts = await Promise.all(vols.map(async v => {
      const a = await node.publishUntilReady(v, ecdsa, deadline)
      done.push(performance.now() - t0)
      return a
    }))
    const all = performance.now() - t0
    const retries = attempts.reduce((s, a) => s + a - 1, 0)
    put('p3-all', `P3 ${opt.burst} volumes published at once: all ready`, 'ms', kind, all)
    put('p3-med', `P3 ${opt.burst} at once: median volume ready`, 'ms', kind, median(done))
    put('p3-retries', `P3 ${opt.burst} at once: failed publish calls retried (kubelet-style)`, 'count', kind, retries)
  } finally {
    await node.cleanup()
  }
}

async function scale(cluster: Cluster, watcher: CrWatcher, kind: DriverKind, referenceBin?: string): Promise<void> {
  const node = newNode(cluster, kind, referenceBin)
  const M = opt.volumes
  const ecdsa = attributes(cluster, 'ECDSA')
  const managed: Volume[] = []
  const fillTo = async (n: number): Promise<number> => {
    const fresh: Volume[] = []
    while (managed.length + fresh.length < n) fresh.push(await node.newVolume())
    const t0 = performance.now()
    const deadline = Date.now() + 20 * 60_000
    await pool(fresh, opt.concurrency, v => node.publishUntilReady(v, ecdsa, deadline))
    managed.push(...fresh)
    return performance.now() - t0
  }
  const rssMiB = async (): Promise<number> => {
    await sleep(3_000) // let the burst's garbage go and timers settle
    return rssKiB(node.pid) / 1024
  }
  const p8 = async (): Promise<number[]> => {
    const out: number[] = []
    for (let i = 0; i < opt.p8Samples; i++) {
      const v = await node.newVolume()
      out.push(await node.timedPublish(v, ecdsa))
      await node.unpublish(v) // keep the managed count where it is
    }
    return out
  }
  try {
    await node.start()
    put('rss-0', 'P5 resident memory, started, no volumes', 'MiB', kind, await rssMiB())
    const points = [...new Set([10, 100, M])].filter(n => n <= M).sort((a, b) => a - b)
    let p8At10: number[] | undefined
    for (const n of points) {
      log(`${kind}: filling to ${n} volumes (${opt.concurrency} publishes at a time)`)
      const before = managed.length
      const ms = await fillTo(n)
      if (n === M) put('fill-rate', `Fill ${before} → ${M} volumes, ${opt.concurrency} publishes at a time`, 'volumes/s', kind, (M - before) / (ms / 1000))
      put(`rss-${n}`, `P5 resident memory with ${n} volumes`, 'MiB', kind, await rssMiB())
      if (n === 10) {
        log(`${kind}: P8 ${opt.p8Samples} publishes at 10 volumes`)
        p8At10 = await p8()
      }
    }
    log(`${kind}: P4 CPU over ${opt.idleSeconds}s idle with ${M} volumes`)
    const c0 = cpuSeconds(node.pid)
    const w0 = performance.now()
    await sleep(opt.idleSeconds * 1000)
    const cpu = cpuSeconds(node.pid) - c0
    const wall = (performance.now() - w0) / 1000
    put('p4-cpu', `P4 CPU while ${M} volumes idle, over ${opt.idleSeconds} s`, '% of a core', kind, (cpu / wall) * 100)
    if (kind === 'ours') notes.push(`P4: our driver checks every volume once per --resync-period (2 min: the pod's files against the digest recorded at render, and the mount), one volume after another, and re-lists its CertificateRequests every 5 min; a ${opt.idleSeconds} s window holds ${Math.floor(opt.idleSeconds / 120)} to ${Math.ceil(opt.idleSeconds / 120)} passes and ${Math.floor(opt.idleSeconds / 300)} to ${Math.ceil(opt.idleSeconds / 300)} re-lists. The reference wakes one goroutine per volume every second, so any window sees the same load.`)
    put('p4-rss', `P5 resident memory with ${M} volumes, after the idle period`, 'MiB', kind, rssKiB(node.pid) / 1024)

    log(`${kind}: P8 ${opt.p8Samples} publishes at ${M} volumes`)
    const p8AtM = await p8()
    if (p8At10) {
      put('p8-10', 'P8 publish at 10 volumes, median', 'ms', kind, median(p8At10))
    }
    put('p8-M', `P8 publish at ${M} volumes, median`, 'ms', kind, median(p8AtM))
    if (p8At10) put('p8-ratio', `P8 publish median at ${M} ÷ at 10 volumes`, '×', kind, median(p8AtM) / median(p8At10))

    log(`${kind}: P6 kill -9 with ${M} volumes, restart, republish all`)
    const crsBefore = (await node.requests()).length
    const mark = watcher.added.length
    await node.stop('SIGKILL')
    const t0 = performance.now()
    const serving = await node.start(5 * 60_000)
    const deadline = Date.now() + 20 * 60_000
    const attempts = await pool(managed, opt.concurrency, v => node.publishUntilReady(v, ecdsa, deadline))
    const allReady = performance.now() - t0
    await sleep(3_000) // a request made just after the last answer still counts
    const created = watcher.addedSince(mark, node.podUids)
    const crsAfter = (await node.requests()).length
    const mountinfo = new Set(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map(l => l.split(' ')[4]))
    const lost = managed.filter(v => !mountinfo.has(v.targetPath)).length
    put('p6-serving', `P6 restart with ${M} volumes: spawn → Probe ready`, 'ms', kind, serving)
    put('p6-all', `P6 restart with ${M} volumes: spawn → all ${M} republished`, 'ms', kind, allReady)
    put('p6-after-socket', `P6 restart with ${M} volumes: Probe ready → all ${M} republished`, 'ms', kind, allReady - serving)
    put('p6-retries', 'P6 republish calls that failed and were retried', 'count', kind, attempts.reduce((s, a) => s + a - 1, 0))
    put('p6-crs', 'P6 CertificateRequests created during recovery', 'count', kind, created)
    put('p6-lost', 'P6 volumes not mounted after recovery', 'count', kind, lost)
    put('p6-rss', `P5 resident memory with ${M} volumes, after the restart`, 'MiB', kind, await rssMiB())
    if (crsAfter !== crsBefore + created) notes.push(`${kind}: P6 requests in the API went ${crsBefore} → ${crsAfter} (${created} created)`)
  } finally {
    await node.cleanup()
  }
}

async function profile(cluster: Cluster, watcher: CrWatcher): Promise<void> {
  const profDir = mkdtempSync(join(tmpdir(), 'csi-bench-prof-'))
  onCleanup(() => execFileSync('rm', ['-rf', profDir]))
  const node = newNode(cluster, 'ours', undefined, { logLevel: 'debug', nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] })
  try {
    await node.start()
    const ecdsa = attributes(cluster, 'ECDSA')
    await node.timedPublish(await node.newVolume(), ecdsa) // warm-up
    await sleep(500)
    log(`profile: ${opt.profileSamples} ECDSA publishes of our driver at --log-level debug with --cpu-prof`)
    const calls: { volumeId: string; start: number; end: number }[] = []
    const h0 = process.hrtime.bigint()
    for (let i = 0; i < opt.profileSamples; i++) {
      const v = await node.newVolume()
      const start = performance.timeOrigin + performance.now()
      await node.publish(v, ecdsa)
      calls.push({ volumeId: v.volumeId, start, end: performance.timeOrigin + performance.now() })
    }
    const h1 = process.hrtime.bigint()
    await node.stop('SIGTERM') // the profile is written at a clean exit
    breakdown = breakdownFromLogs(readFileSync(node.logFile, 'utf8'), calls, watcher, performance.timeOrigin)
    const cost = await keyAndCsrCost(ecdsa, 50)
    breakdown.table += `\n\nThe same key and CSR made in the bench process (no other load): P-256 key generation ${cost.keygenMs.toFixed(2)} ms, CSR build and signature ${cost.csrMs.toFixed(2)} ms (medians of 50).`
    const prof = readdirSync(profDir).find(f => f.endsWith('.cpuprofile'))
    const summary = prof ? summarizeCpuProfile(JSON.parse(readFileSync(join(profDir, prof), 'utf8')), h0, h1, opt.profileSamples, 'publish') : undefined
    if (summary) {
      cpuProfileTable = `Main thread only (key generation runs on libuv's thread pool and is not in it): ${summary.busyMs.toFixed(0)} ms busy and ${summary.idleMs.toFixed(0)} ms idle over ${opt.profileSamples} publishes, so **${(summary.busyMs / opt.profileSamples).toFixed(1)} ms of main-thread CPU per publish**. ${summary.table}`
    } else notes.push(`profile: ${prof ? 'no profile sample fell in the measured window' : 'no .cpuprofile was written (the driver did not exit cleanly)'}`)
  } finally {
    await node.cleanup()
  }
}

async function idleProfile(cluster: Cluster): Promise<void> {
  const profDir = mkdtempSync(join(tmpdir(), 'csi-bench-prof-'))
  onCleanup(() => execFileSync('rm', ['-rf', profDir]))
  const node = newNode(cluster, 'ours', undefined, { nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] })
  const M = opt.volumes
  const s = opt.idleProfileSeconds
  try {
    await node.start()
    const ecdsa = attributes(cluster, 'ECDSA')
    log(`idle profile: filling our driver (--cpu-prof) to ${M} volumes`)
    const vols: Volume[] = []
    for (let i = 0; i < M; i++) vols.push(await node.newVolume())
    const deadline = Date.now() + 20 * 60_000
    await pool(vols, opt.concurrency, v => node.publishUntilReady(v, ecdsa, deadline))
    await sleep(2_000)
    log(`idle profile: ${s} s idle with ${M} volumes`)
    const c0 = cpuSeconds(node.pid)
    const h0 = process.hrtime.bigint()
    await sleep(s * 1000)
    const h1 = process.hrtime.bigint()
    const cpu = cpuSeconds(node.pid) - c0
    await node.stop('SIGTERM', 120_000)
    const prof = readdirSync(profDir).find(f => f.endsWith('.cpuprofile'))
    const summary = prof ? summarizeCpuProfile(JSON.parse(readFileSync(join(profDir, prof), 'utf8')), h0, h1, s, 'second') : undefined
    if (!summary) {
      notes.push(`idle profile: ${prof ? 'no profile sample fell in the measured window' : 'no .cpuprofile was written'}`)
      return
    }
    idleProfileTable = `${M} volumes idle for ${s} s with --cpu-prof: the process used ${((cpu / s) * 100).toFixed(1)}% of a core (/proc: all threads and children, the profiler's own sampling thread included, about 3% of a core when nothing runs); the main thread was busy ${(summary.busyMs / s).toFixed(0)} ms per second. ${summary.table}`
  } finally {
    await node.cleanup()
  }
}

/**
 * P6 under the profiler: fill our driver to M volumes, kill -9, start it
 * again (with --cpu-prof) and republish every volume; the profile covers
 * spawn → all republished, so it shows what the restart spends its time on.
 */
async function restartProfile(cluster: Cluster): Promise<void> {
  const profDir = mkdtempSync(join(tmpdir(), 'csi-bench-prof-'))
  onCleanup(() => execFileSync('rm', ['-rf', profDir]))
  const node = newNode(cluster, 'ours', undefined, { nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] })
  const M = opt.volumes
  try {
    await node.start()
    const ecdsa = attributes(cluster, 'ECDSA')
    log(`restart profile: filling our driver to ${M} volumes`)
    const vols: Volume[] = []
    for (let i = 0; i < M; i++) vols.push(await node.newVolume())
    const deadline = Date.now() + 20 * 60_000
    await pool(vols, opt.concurrency, v => node.publishUntilReady(v, ecdsa, deadline))
    await node.stop('SIGKILL') // no profile from this process: only the restarted one writes
    log(`restart profile: kill -9, start again with --cpu-prof, republish all ${M}`)
    const h0 = process.hrtime.bigint()
    const serving = await node.start(5 * 60_000)
    const h1 = process.hrtime.bigint()
    await pool(vols, opt.concurrency, v => node.publishUntilReady(v, ecdsa, deadline))
    const h2 = process.hrtime.bigint()
    await node.stop('SIGTERM', 120_000)
    const prof = readdirSync(profDir).find(f => f.endsWith('.cpuprofile'))
    const cpuProfile = prof ? JSON.parse(readFileSync(join(profDir, prof), 'utf8')) as Parameters<typeof summarizeCpuProfile>[0] : undefined
    const startup = cpuProfile && summarizeCpuProfile(cpuProfile, h0, h1, 1, 'start-up')
    const republish = cpuProfile && summarizeCpuProfile(cpuProfile, h1, h2, M, 'republish')
    if (!startup || !republish) {
      notes.push(`restart profile: ${prof ? 'no profile sample fell in the measured window' : 'no .cpuprofile was written'}`)
      return
    }
    const wall = (a: bigint, b: bigint): string => (Number(b - a) / 1e6).toFixed(0)
    restartProfileTable = [
      `Spawn → Probe ready: ${serving.toFixed(0)} ms, main thread busy ${startup.busyMs.toFixed(0)} ms. ${startup.table}`,
      '',
      `Probe ready → all ${M} republished (${opt.concurrency} at a time): ${wall(h1, h2)} ms, main thread busy ${republish.busyMs.toFixed(0)} ms and idle ${republish.idleMs.toFixed(0)} ms. ${republish.table}`,
    ].join('\n')
  } finally {
    await node.cleanup()
  }
}

// ---- main --------------------------------------------------------------------

async function main(): Promise<void> {
  const started = new Date()
  // Read before the run: by its end HEAD may be another commit than the one built.
  const head = sh('git', ['rev-parse', '--short', 'HEAD'])
  const dirty = sh('git', ['status', '--porcelain', '--', 'src']) === '' ? '' : ' (src/ has uncommitted changes)'
  const loadStart = sh('uptime', [])
  const needReference = opt.drivers.includes('reference')
  let referenceBin: string | undefined
  if (needReference) referenceBin = referenceBinary()
  if (opt.drivers.includes('ours')) oursCommand = prepareOurs(oursRuntime)
  const cluster = await startCluster(flags['bin-dir'] ?? process.env.CSI_TOOLS_BIN)
  const watcher = new CrWatcher(cluster.kc, cluster.namespace)
  await watcher.start()
  onCleanup(() => watcher.stop())

  const t0 = performance.now()
  if (opt.phases.has('floor')) await floor(cluster, watcher)
  // Drivers take turns within each phase, so a change in the machine's load
  // falls on both rather than on one.
  if (opt.phases.has('latency')) for (const d of opt.drivers) await latency(cluster, d, referenceBin)
  if (opt.phases.has('burst')) for (const d of opt.drivers) await burst(cluster, d, referenceBin)
  if (opt.phases.has('scale')) for (const d of opt.drivers) await scale(cluster, watcher, d, referenceBin)
  if (opt.phases.has('profile') && opt.drivers.includes('ours')) await profile(cluster, watcher)
  if (opt.phases.has('idle-profile') && opt.drivers.includes('ours')) await idleProfile(cluster)
  if (opt.phases.has('restart-profile') && opt.drivers.includes('ours')) await restartProfile(cluster)
  const minutes = (performance.now() - t0) / 60_000

  const loadEnd = sh('uptime', [])
  const refVersion = sh('bash', ['-c', "cd test/tools/reference && go list -m -f '{{.Version}}' github.com/cert-manager/csi-driver"])
  const md = [
    `# Benchmark ${started.toISOString()}`,
    '',
    `- machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory; Node ${process.version}`,
    `- load: at start \`${loadStart}\`; at end \`${loadEnd}\` (1/5/15-minute load averages: other work on the machine shows here)`,
    `- ours: ${head}${dirty}, run ${oursRuntime === 'compiled' ? 'bundled (scripts/bundle.ts, plain node, as the image runs it)' : 'from source with tsx'}; reference: github.com/cert-manager/csi-driver ${refVersion}`,
    `- sizes: --volumes ${opt.volumes} --samples ${opt.samples} --idle-seconds ${opt.idleSeconds} --burst ${opt.burst} --p8-samples ${opt.p8Samples} --idle-profile-seconds ${opt.idleProfileSeconds} --concurrency ${opt.concurrency}${quick ? ' (--quick)' : ''}; ${minutes.toFixed(1)} minutes of measuring`,
    '- volumes: ECDSA P-256 (PKCS8) unless the row says RSA-2048; 10 volumes per Pod; both drivers against one control plane, one at a time, each on its own fresh node directory and data root',
    '- p99 is nearest-rank: with 50 samples it is the slowest but one',
    '',
    table(),
    '',
    ...(floorRows.length > 0 ? ['## Floor: cert-manager alone (median / p99, ms)', '', '| step | ms |', '|---|---:|', ...floorRows.map(r => `| ${r.label} | ${r.value} |`), ''] : []),
    ...(breakdown ? ['## Where our publish time goes', '', breakdown.table, ''] : []),
    ...(cpuProfileTable ? ['## Our CPU during those publishes (--cpu-prof)', '', cpuProfileTable, ''] : []),
    ...(idleProfileTable ? [`## Our CPU with ${opt.volumes} idle volumes, over one resync period (--cpu-prof)`, '', idleProfileTable, ''] : []),
    ...(restartProfileTable ? [`## Our CPU restarting with ${opt.volumes} volumes (--cpu-prof)`, '', restartProfileTable, ''] : []),
    ...(notes.length > 0 ? ['## Notes', '', ...notes.map(n => `- ${n}`), ''] : []),
  ].join('\n')
  process.stdout.write(`${md}\n`)
  const outFile = flags.out ?? join(ROOT, 'bench/results', `${started.toISOString().slice(0, 16).replace(/:/g, '')}.md`)
  mkdirSync(join(outFile, '..'), { recursive: true })
  writeFileSync(outFile, `${md}\n`)
  log(`written to ${outFile}`)
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
