// What every fault case starts with: its context (seed, form, folders), its
// own control plane, one node running the real driver, and the etcd
// observer of that node's CertificateRequests; plus the few steps the cases
// share (publish a batch of volumes, count a phase's API calls).
import { CustomObjectsApi } from '@kubernetes/client-node'
import { caseContext, type CaseContext } from './params.js'
import { privateControlPlane, type Bed } from './fixture.js'
import { FaultNode } from './fault-node.js'
import { RequestMonitor } from './request-monitor.js'
import { volumeAttributes, type KeyKind } from './served.js'
import type { Item } from './sampler.js'
import { pool } from './wait.js'
import type { WindowRate, Mark } from './api-metrics.js'
import { writeFigures } from './figures.js'

interface Tap {
  teardown(fn: () => unknown): void
  comment(...args: unknown[]): void
}

export interface FaultCase extends Bed {
  ctx: CaseContext
  node: FaultNode
  monitor: RequestMonitor
  started: number
  windows: WindowRate[]
  notes: string[]
  /** Publishes n new volumes (retrying until OK), `inFlight` at a time. */
  publishMany(n: number, prefix: string, opts?: { extra?: Record<string, string>; keys?: KeyKind[]; inFlight?: number }): Promise<Item[]>
  /** A new volume and its attributes, not published yet. */
  newItem(dnsName: string, key?: KeyKind, extra?: Record<string, string>): Promise<Item>
  /** Records the calls per minute between two marks as a phase of the figures. */
  phase(name: string, from: Mark, to: Mark): WindowRate
  /** Deletes CertificateRequests through the API, as someone else would (not counted as the driver's). */
  deleteRequests(names: { namespace: string; name: string }[]): Promise<void>
  /** Writes the case's row of the table: what only the case knows, the rest from the node, monitor and faults. */
  writeRow(row: string, requests: { created: number; expected: string }, notes?: string[]): void
}

export async function startCase(t: Tap, name: string, opts: { driverArgs?: string[]; beforeStart?: (node: FaultNode) => Promise<void> } = {}): Promise<FaultCase> {
  const log = (m: string): void => t.comment(m)
  const ctx = caseContext(name, log)
  const started = Date.now()
  const bed = await privateControlPlane(t, ctx)
  const node = new FaultNode(bed.cp, t, ctx.outDir, ['--publish-timeout', '10s', ...(opts.driverArgs ?? [])], log)
  const monitor = new RequestMonitor(bed.faults.etcd, node.nodeId, log)
  await monitor.start()
  t.teardown(() => monitor.stop())
  await opts.beforeStart?.(node)
  await node.start()
  const keyRng = ctx.rng.fork('keys')
  const windows: WindowRate[] = []
  const notes: string[] = []
  const custom = bed.cp.kc.makeApiClient(CustomObjectsApi)

  const newItem = async (dnsName: string, key: KeyKind = 'ECDSA-256', extra: Record<string, string> = {}): Promise<Item> => ({
    v: await node.newVolume(),
    attrs: volumeAttributes(dnsName, key, extra),
    expected: { dnsName, key },
  })

  return {
    ...bed, ctx, node, monitor, started, windows, notes, newItem,
    async publishMany(n, prefix, o = {}) {
      const keys = Array.from({ length: n }, () => keyRng.pick<KeyKind>(o.keys ?? ['ECDSA-256', 'Ed25519']))
      const items: Item[] = []
      await pool(keys, o.inFlight ?? 8, async (key, i) => {
        const it = await newItem(`${prefix}${i}.${name}.example.com`, key, o.extra)
        await node.publishUntilOk(it.v, it.attrs, it.expected, { deadlineMs: 120_000 })
        items[i] = it
      })
      return items
    },
    phase(phaseName, from, to) {
      const w = bed.api.rate(phaseName, from, to)
      windows.push(w)
      return w
    },
    async deleteRequests(names) {
      for (const r of names) {
        bed.api.ownCall('DELETE')
        await custom.deleteNamespacedCustomObject({ group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests', namespace: r.namespace, name: r.name })
      }
      bed.faults.note('api', `deleted ${names.length} CertificateRequest(s) behind the driver's back`)
    },
    writeRow(row, requests, rowNotes) {
      writeFigures(ctx, {
        row,
        seconds: Math.round((Date.now() - started) / 1000),
        faults: bed.faults.injected.length,
        volumes: node.checked.size,
        requestsCreated: requests.created,
        requestsExpected: requests.expected,
        maxLivePerVolume: monitor.maxLive(),
        expiredServed: node.expiredServed.size,
        badOks: node.badOks.length,
        driverCrashes: node.unexpectedExits.length,
        api: windows,
        notes: rowNotes ?? notes,
      })
    },
  }
}

/** Short-lived certificate attributes: due every (duration - renew-before), up to 10% of renew-before earlier. */
export function shortLived(durationS: number, renewBeforeS: number): Record<string, string> {
  return { 'csi.cert-manager.io/duration': `${durationS}s`, 'csi.cert-manager.io/renew-before': `${renewBeforeS}s` }
}
