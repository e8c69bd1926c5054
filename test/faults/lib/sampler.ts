// Reads every published volume's files on a fixed period, as a pod would,
// and keeps what it saw: each certificate served (serial, validity, when
// first and last seen), every sample with missing or mismatched files, and
// every expired certificate served.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Volume } from '../../helpers/node-harness.js'
import type { FaultNode } from './fault-node.js'
import type { Expected } from './served.js'

export interface Item {
  v: Volume
  attrs: Record<string, string>
  expected: Expected
}

export interface SeenCertificate {
  serial: string
  notBefore: number
  notAfter: number
  firstSeen: number
  lastSeen: number
}

export class ServedSampler {
  readonly seen = new Map<string, SeenCertificate[]>()
  readonly problems: { at: string; volumeId: string; problems: string[] }[] = []
  sweeps = 0
  /** The longest a sweep of every volume took: a sweep slower than the period means gaps. */
  slowestSweepMs = 0
  private running?: Promise<void>
  private stopped = false

  constructor(private readonly node: FaultNode, private readonly items: () => Item[], private readonly everyMs: number) {}

  start(): void {
    this.stopped = false
    this.running = (async () => {
      while (!this.stopped) {
        const t0 = Date.now()
        await this.sweep()
        this.slowestSweepMs = Math.max(this.slowestSweepMs, Date.now() - t0)
        await sleep(Math.max(0, this.everyMs - (Date.now() - t0)))
      }
    })()
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.running
  }

  async sweep(): Promise<void> {
    this.sweeps++
    for (const it of this.items()) {
      const s = await this.node.check(it.v, it.expected)
      const now = Date.now()
      if (s.problems.length > 0) this.problems.push({ at: new Date(now).toISOString(), volumeId: it.v.volumeId, problems: s.problems })
      if (!s.serial) continue
      let list = this.seen.get(it.v.volumeId)
      if (!list) this.seen.set(it.v.volumeId, (list = []))
      const last = list.at(-1)
      if (last?.serial === s.serial) last.lastSeen = now
      else list.push({ serial: s.serial, notBefore: s.notBefore!, notAfter: s.notAfter!, firstSeen: now, lastSeen: now })
    }
  }

  latest(volumeId: string): SeenCertificate | undefined {
    return this.seen.get(volumeId)?.at(-1)
  }

  /** Certificate changes seen at the targets. */
  renewals(): number {
    let n = 0
    for (const list of this.seen.values()) n += Math.max(0, list.length - 1)
    return n
  }
}

/** What each volume served at this moment, to compare with later. */
export function snapshot(sampler: ServedSampler, items: readonly Item[]): Map<string, SeenCertificate | undefined> {
  return new Map(items.map(it => [it.v.volumeId, sampler.latest(it.v.volumeId)]))
}

/**
 * Waits until every item serves a newer certificate than in `before`, first
 * seen after `since`. Returns the ones that took longer than boundMs after
 * `from` (or never came within boundMs plus a grace period), and the slowest.
 */
export async function waitRenewed(sampler: ServedSampler, items: readonly Item[], before: Map<string, SeenCertificate | undefined>, since: number, from: number, boundMs: number): Promise<{ late: string[]; slowestMs: number }> {
  const late: string[] = []
  let slowestMs = 0
  const deadline = from + boundMs + 30_000
  await Promise.all(items.map(async it => {
    const old = before.get(it.v.volumeId)
    for (;;) {
      const now = sampler.latest(it.v.volumeId)
      if (now && now.serial !== old?.serial && (!old || now.notAfter > old.notAfter) && now.firstSeen >= since) {
        const took = now.firstSeen - from
        slowestMs = Math.max(slowestMs, took)
        if (took > boundMs) late.push(`${it.v.volumeId.slice(0, 16)} renewed ${Math.round(took / 1000)}s after`)
        return
      }
      if (Date.now() > deadline) {
        late.push(`${it.v.volumeId.slice(0, 16)} not renewed`)
        return
      }
      await new Promise(r => setTimeout(r, 250))
    }
  }))
  return { late, slowestMs }
}
