// Counts CertificateRequest calls from the apiserver's own /metrics
// (apiserver_request_total, resource="certificaterequests", by verb),
// scraped with the admin client certificate of the control plane's
// kubeconfig. Counters restart at zero with a new apiserver process
// (process_start_time_seconds changes): totals are carried across restarts.
//
// What the numbers include: every client's calls. On a fault tier cluster
// those are this node's driver, cert-manager's one CertificateRequest
// informer (a WATCH, re-established every few minutes and after an outage)
// and its status writes (UPDATE/PATCH on the status subresource, left out
// here), and calls the test itself makes (noted with ownCall and subtracted).
// A WATCH is counted when it ends, not when it starts.
import type { KubeConfig } from '@kubernetes/client-node'
import { httpsGet, tlsFrom, type Tls } from './https.js'

export const VERBS = ['LIST', 'WATCH', 'GET', 'CREATE', 'DELETE', 'UPDATE', 'PATCH'] as const
export type Verb = (typeof VERBS)[number]
export type Counts = Record<Verb, number>

const zero = (): Counts => ({ LIST: 0, WATCH: 0, GET: 0, CREATE: 0, DELETE: 0, UPDATE: 0, PATCH: 0 })

// The metric names writes by HTTP method: a create is POST, an update PUT.
const METRIC_VERBS: Record<string, Verb> = { POST: 'CREATE', PUT: 'UPDATE' }

interface Scrape { startTime: number; counts: Counts; statusWrites: number; openWatches: number }

export function parseMetrics(text: string): Scrape {
  const counts = zero()
  let statusWrites = 0
  let startTime = 0
  let openWatches = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('process_start_time_seconds ')) startTime = Number(line.split(' ')[1])
    const longRunning = line.startsWith('apiserver_longrunning_requests{')
    if (!line.startsWith('apiserver_request_total{') && !longRunning) continue
    const close = line.lastIndexOf('}')
    const labels = Object.fromEntries([...line.slice(0, close).matchAll(/(\w+)="([^"]*)"/g)].map(m => [m[1], m[2]]))
    if (labels.resource !== 'certificaterequests') continue
    const value = Number(line.slice(close + 1).trim())
    if (longRunning) {
      if (labels.verb === 'WATCH') openWatches += value
      continue
    }
    if (labels.subresource === 'status') {
      statusWrites += value
      continue
    }
    const verb = (METRIC_VERBS[labels.verb ?? ''] ?? labels.verb) as Verb
    if (verb in counts) counts[verb] += value
  }
  return { startTime, counts, statusWrites, openWatches }
}

export interface Mark { label: string; at: number; counts: Counts; openWatches: number }

export interface WindowRate {
  phase: string
  seconds: number
  /** Calls per minute in the window, by verb, the test's own calls taken out. */
  perMinute: Counts
  total: Counts
  /** CertificateRequest watches open at the window's end. */
  openWatches: number
}

export class ApiCallCounter {
  private readonly tls: Tls
  private readonly url: string
  private carried = zero()
  private last?: Scrape
  private readonly own: { at: number; verb: Verb }[] = []
  readonly marks: Mark[] = []
  /** Scrapes that found a new apiserver process. */
  restartsSeen = 0

  constructor(kc: KubeConfig, server: string) {
    this.tls = tlsFrom(kc)
    this.url = `${server}/metrics`
  }

  /** Cumulative counts since the first scrape, across apiserver restarts. */
  async sample(timeoutMs = 5_000): Promise<Counts> {
    return (await this.scrape(timeoutMs)).counts
  }

  private async scrape(timeoutMs: number): Promise<{ counts: Counts; openWatches: number }> {
    const res = await httpsGet(this.url, this.tls, timeoutMs)
    if (res.status !== 200) throw new Error(`GET ${this.url}: HTTP ${res.status}`)
    const s = parseMetrics(res.body)
    if (this.last && s.startTime !== this.last.startTime) {
      // A new process: what the old one counted up to its last scrape is kept.
      this.restartsSeen++
      for (const v of VERBS) this.carried[v] += this.last.counts[v]
    }
    this.last = s
    const out = zero()
    for (const v of VERBS) out[v] = this.carried[v] + s.counts[v]
    return { counts: out, openWatches: s.openWatches }
  }

  /** Records the counts now; retries while the apiserver does not answer, up to timeoutMs. */
  async mark(label: string, timeoutMs = 60_000): Promise<Mark> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      try {
        const s = await this.scrape(5_000)
        const m = { label, at: Date.now(), counts: s.counts, openWatches: s.openWatches }
        this.marks.push(m)
        return m
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`could not scrape ${this.url} for mark ${label}`, { cause: err })
        await new Promise(r => setTimeout(r, 250))
      }
    }
  }

  /** A CertificateRequest call the test made itself, so it is not counted as the driver's. */
  ownCall(verb: Verb, n = 1): void {
    for (let i = 0; i < n; i++) this.own.push({ at: Date.now(), verb })
  }

  rate(phase: string, from: Mark, to: Mark): WindowRate {
    const seconds = Math.max(0.001, (to.at - from.at) / 1000)
    const total = zero()
    const perMinute = zero()
    for (const v of VERBS) {
      const mine = this.own.filter(o => o.verb === v && o.at >= from.at && o.at <= to.at).length
      total[v] = Math.max(0, to.counts[v] - from.counts[v] - mine)
      perMinute[v] = Math.round((total[v] / seconds) * 60 * 10) / 10
    }
    return { phase, seconds: Math.round(seconds), perMinute, total, openWatches: to.openWatches }
  }
}
