// Where our publish time goes: a breakdown from our driver's debug log (the
// reconciler logs each step with its volume id), the bench's own watch on
// CertificateRequests (when cert-manager approved and signed) and the client's
// call times; and a summary of a --cpu-prof profile of the same publishes.
import { performance } from 'node:perf_hooks'
import { existsSync, readFileSync } from 'node:fs'
import { SourceMap } from 'node:module'
import { fileURLToPath } from 'node:url'
import { generatePrivateKey } from '../src/pki/keys.js'
import { buildCsrPem } from '../src/pki/csr.js'
import { parseVolumeAttributes } from '../src/volume/spec.js'
import { median, type CrWatcher } from './harness.js'

export interface Breakdown { table: string; totalMedianMs: number }

interface LogLine { time: number; msg?: string; step?: string; volumeId?: string; request?: string }
interface RawLine extends Omit<LogLine, 'time'> { time: string | number }

function parseLog(text: string): LogLine[] {
  const out: LogLine[] = []
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const raw = JSON.parse(line) as RawLine
      // Our logger writes ISO times (ms resolution).
      out.push({ ...raw, time: typeof raw.time === 'number' ? raw.time : Date.parse(raw.time) })
    } catch { /* a partial last line */ }
  }
  return out
}

/**
 * Segments of each publish, in epoch ms: client call → reconciler steps
 * (debug log) → cert-manager (bench watch) → files, mount → answer.
 */
export function breakdownFromLogs(
  logText: string,
  calls: { volumeId: string; start: number; end: number }[],
  watcher: CrWatcher,
  timeOrigin: number,
): Breakdown {
  const lines = parseLog(logText)
  const byVolume = new Map<string, LogLine[]>()
  for (const l of lines) {
    if (!l.volumeId) continue
    let list = byVolume.get(l.volumeId)
    if (!list) byVolume.set(l.volumeId, (list = []))
    list.push(l)
  }
  const segments: { label: string; samples: number[] }[] = [
    { label: 'publish call → reconciler starts (gRPC, attribute validation, record saved, queued, first observation)', samples: [] },
    { label: 'key generated (P-256) and written to tmpfs as the pending key, volume observed again', samples: [] },
    { label: 'CSR built and signed, record saved, CertificateRequest POST answered', samples: [] },
    { label: 'cert-manager approver: created → Approved (seen by the bench\'s watch)', samples: [] },
    { label: 'cert-manager CA issuer: Approved → Ready=Issued (seen by the bench\'s watch)', samples: [] },
    { label: 'our informer delivers the update → reconcile picks it up, observes', samples: [] },
    { label: 'certificate checked against the key, stored (atomic dir), record saved, observed', samples: [] },
    { label: 'volume files rendered and written (atomic dir)', samples: [] },
    { label: 'observed again → bind mount step starts', samples: [] },
    { label: 'bind mount (mount --bind, then remount ro: two mount(8) processes)', samples: [] },
    { label: 'ready status → NodePublishVolume answer reaches the client', samples: [] },
  ]
  const totals: number[] = []
  let complete = 0
  for (const c of calls) {
    const ls = byVolume.get(c.volumeId) ?? []
    const step = (kind: string): number | undefined => ls.find(l => l.step === kind)?.time
    const msg = (m: string): LogLine | undefined => ls.find(l => l.msg === m)
    const gk = step('generateKey')
    const cr = step('createRequest')
    const createdLine = msg('CertificateRequest created')
    const acc = step('acceptCertificate')
    const render = step('render')
    const written = msg('volume files written')?.time
    const mountStep = step('mount')
    const mounted = msg('volume mounted')?.time
    const t = createdLine?.request ? watcher.times.get(createdLine.request) : undefined
    const approved = t?.approved !== undefined ? timeOrigin + t.approved : undefined
    const ready = t?.ready !== undefined ? timeOrigin + t.ready : undefined
    const points = [c.start, gk, cr, createdLine?.time, approved, ready, acc, render, written, mountStep, mounted, c.end]
    if (points.some(p => p === undefined)) continue
    complete++
    const p = points as number[]
    for (let i = 0; i < segments.length; i++) segments[i]!.samples.push(p[i + 1]! - p[i]!)
    totals.push(c.end - c.start)
  }
  const total = median(totals)
  const rows = segments.map(s => {
    const m = median(s.samples)
    return `| ${s.label} | ${m.toFixed(0)} | ${total > 0 ? ((m / total) * 100).toFixed(0) : '?'}% |`
  })
  return {
    totalMedianMs: total,
    table: [
      `${complete} of ${calls.length} publishes (ECDSA P-256, one at a time) had every step in the log. Medians per segment (log times have 1 ms resolution; medians need not add up to the total):`,
      '',
      '| segment | median ms | share of the median publish |',
      '|---|---:|---:|',
      ...rows,
      `| **whole publish, client side** | **${total.toFixed(0)}** | 100% |`,
    ].join('\n'),
  }
}

/** In-process cost of our key generation and CSR for the same attributes, to split the segments above. */
export async function keyAndCsrCost(attributes: Record<string, string>, n: number): Promise<{ keygenMs: number; csrMs: number }> {
  const parsed = parseVolumeAttributes(attributes, { name: 'bench-0', namespace: 'sandbox', uid: '00000000-0000-4000-8000-000000000000', serviceAccountName: 'default' })
  if (!parsed.ok) throw new Error('invalid attributes')
  await buildCsrPem(parsed.spec, await generatePrivateKey(parsed.spec.key))
  const k: number[] = []
  const c: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const key = await generatePrivateKey(parsed.spec.key)
    const t1 = performance.now()
    await buildCsrPem(parsed.spec, key)
    k.push(t1 - t0)
    c.push(performance.now() - t1)
  }
  return { keygenMs: median(k), csrMs: median(c) }
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[]
  startTime: number
  samples: number[]
  timeDeltas: number[]
}

interface CallFrame { functionName: string; url: string; lineNumber?: number; columnNumber?: number }

/**
 * The bundle the image runs is one file: its source map (scripts/bundle.ts
 * writes one beside it) says which source or package each frame came from.
 */
function sourceMapper(): (f: CallFrame) => CallFrame {
  const maps = new Map<string, SourceMap | undefined>()
  const mapOf = (url: string): SourceMap | undefined => {
    if (!maps.has(url)) {
      const file = url.startsWith('file://') ? `${fileURLToPath(url)}.map` : undefined
      maps.set(url, file && existsSync(file) ? new SourceMap(JSON.parse(readFileSync(file, 'utf8')) as ConstructorParameters<typeof SourceMap>[0]) : undefined)
    }
    return maps.get(url)
  }
  return f => {
    const map = f.url ? mapOf(f.url) : undefined
    if (!map || f.lineNumber === undefined) return f
    const entry = map.findEntry(f.lineNumber, f.columnNumber ?? 0) as { originalSource?: string }
    return entry.originalSource ? { ...f, url: entry.originalSource } : f
  }
}

function category(functionName: string, url: string): string {
  if (functionName === '(garbage collector)') return 'V8 garbage collector'
  if (functionName === '(program)') return 'V8 and native code outside JS ("(program)")'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return `npm: ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`
  }
  if (url.startsWith('node:')) return `Node.js: ${url.split('/').slice(0, 2).join('/')}`
  const src = url.indexOf('/src/')
  if (src >= 0) return `ours: ${url.slice(src + 1)}`
  if (url === '') return `native: ${functionName || '(anonymous)'}`
  return url
}

/**
 * Self time per package / module over the window [h0, h1] (process.hrtime
 * of the bench; V8's profile clock is the same CLOCK_MONOTONIC).
 */
export function summarizeCpuProfile(p: CpuProfile, h0: bigint, h1: bigint, per: number, unit: string): { busyMs: number; idleMs: number; table: string } | undefined {
  const resolveFrame = sourceMapper()
  const byId = new Map(p.nodes.map(n => [n.id, resolveFrame(n.callFrame)]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // Inclusive time of our own functions: what each part of the driver costs with everything it calls.
  const inclusive = new Map<string, number>()
  const from = Number(h0 / 1000n)
  const to = Number(h1 / 1000n)
  const self = new Map<string, number>()
  let t = p.startTime
  let inWindow = 0
  let idle = 0
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    if (t < from || t > to) continue
    const frame = byId.get(p.samples[i]!)
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000
    if (!frame) continue
    inWindow++
    if (frame.functionName === '(idle)') {
      idle += dt
      continue
    }
    const cat = category(frame.functionName, frame.url)
    self.set(cat, (self.get(cat) ?? 0) + dt)
    const seen = new Set<string>()
    for (let id: number | undefined = p.samples[i]; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)
      const at = f ? f.url.indexOf('/src/') : -1
      if (!f || at < 0 || f.url.includes('/node_modules/')) continue
      // Compiled file names map back to their sources; anonymous callbacks merge per file.
      const name = `${f.functionName || '(anonymous)'} (${f.url.slice(at + 1).replace(/\.js$/, '.ts')})`
      if (seen.has(name)) continue
      seen.add(name)
      inclusive.set(name, (inclusive.get(name) ?? 0) + dt)
    }
  }
  if (inWindow === 0) return undefined
  const busy = [...self.values()].reduce((a, b) => a + b, 0)
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)
  const row = (k: string, v: number): string => `| ${k.replace(/\|/g, '\\|')} | ${(v / per).toFixed(2)} | ${((v / busy) * 100).toFixed(0)}% |`
  return {
    busyMs: busy,
    idleMs: idle,
    table: [
      `Self time by where the code lives (top 15):`,
      '',
      `| code | ms per ${unit} | share of busy |`,
      '|---|---:|---:|',
      ...top.map(([k, v]) => row(k, v)),
      '',
      'Our functions with everything they call synchronously (inclusive main-thread time; nested functions count in each; work after an `await` is not attributed to the caller):',
      '',
      `| function | ms per ${unit} | share of busy |`,
      '|---|---:|---:|',
      ...[...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([k, v]) => row(k, v)),
    ].join('\n'),
  }
}
