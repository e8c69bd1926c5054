// The CertificateRequest cache against a real apiserver, counted by the
// apiserver itself (/metrics apiserver_request_total): an idle driver makes
// one LIST per --cache-relist-period and keeps one watch open (the old
// makeInformer wrapper made one LIST and one WATCH per second after its first
// re-list), and a request deleted by someone else leaves the cache.
//
// A private control plane without cert-manager's CertificateRequest
// controllers: then the driver is the only client listing or watching
// CertificateRequests, and nobody approves our requests (they stay pending).
import t from 'tap'
import { request } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import { CustomObjectsApi } from '@kubernetes/client-node'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness } from '../helpers/node-harness.js'

// The long form, by hand: CSI_CACHE_IDLE_PERIOD_S=300 CSI_CACHE_IDLE_WINDOW_S=660
// (the default period, over 11 minutes: two re-lists).
const PERIOD_S = Number(process.env.CSI_CACHE_IDLE_PERIOD_S ?? 20)
const WINDOW_S = Number(process.env.CSI_CACHE_IDLE_WINDOW_S ?? 3 * PERIOD_S)
const PERIODS = Math.floor(WINDOW_S / PERIOD_S)
t.setTimeout((WINDOW_S + 600) * 1000)
const cp = await controlPlane(t, { controllers: ['issuers', 'clusterissuers'] })
const custom = cp.kc.makeApiClient(CustomObjectsApi)
const crApi = { group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests' }

/** The apiserver's /metrics, read with the kubeconfig's client certificate. */
async function scrape(): Promise<string> {
  const opts: Parameters<typeof request>[1] = { method: 'GET', timeout: 10_000 }
  await cp.kc.applyToHTTPSOptions(opts)
  return new Promise((resolve, reject) => {
    const req = request(`${cp.server}/metrics`, opts, res => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics: HTTP ${res.statusCode}: ${body.slice(0, 200)}`))))
    })
    req.on('timeout', () => req.destroy(new Error('/metrics timed out')))
    req.on('error', reject)
    req.end()
  })
}

/** Sum of a metric over its series whose labels include all of `labels`. */
function sum(metrics: string, name: string, labels: Record<string, string>): number {
  let total = 0
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    const m = /^[^{]+\{(.*)\} (\S+)$/.exec(line)
    if (!m) continue
    const have = Object.fromEntries([...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(x => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[2])
  }
  return total
}

interface Counts { list: number; watch: number; openWatches: number }
async function counts(): Promise<Counts> {
  const m = await scrape()
  const cr = { group: 'cert-manager.io', resource: 'certificaterequests' }
  return {
    // The cache lists cluster-wide; namespaced LISTs (the harness, listForVolume) are not its.
    list: sum(m, 'apiserver_request_total', { ...cr, verb: 'LIST', scope: 'cluster' }),
    // Counted when a watch ends.
    watch: sum(m, 'apiserver_request_total', { ...cr, verb: 'WATCH' }),
    openWatches: sum(m, 'apiserver_longrunning_requests', { ...cr, verb: 'WATCH' }),
  }
}

const node = new NodeHarness(cp, t, ['--cache-relist-period', `${PERIOD_S}s`, '--publish-timeout', '3s'])

t.test(`idle for ${WINDOW_S} s (${PERIODS} re-list periods of ${PERIOD_S} s): at most one LIST per period, one watch open`, async t => {
  const before = await counts()
  t.equal(before.list + before.openWatches, 0, 'nothing else lists or watches CertificateRequests here')
  await node.start()
  await sleep(2_000)
  const start = await counts()
  // A control plane just up may refuse the first LIST (429 while the CRD's storage initialises): only the idle window counts.
  const logsBefore = node.driver!.logs().length
  t.equal(start.openWatches, 1, 'one watch open after start')
  await sleep(WINDOW_S * 1000)
  const end = await counts()
  const lists = end.list - start.list
  const watches = end.watch - start.watch
  t.comment(`over ${WINDOW_S} s: ${lists} LISTs, ${watches} WATCHes ended, ${end.openWatches} open`)
  t.ok(lists >= PERIODS - 1, `the safety re-list runs (${lists} LISTs)`)
  t.ok(lists <= PERIODS + 1, `at most one LIST per period (${lists} in ${PERIODS} periods)`)
  t.ok(watches <= PERIODS + 1, `one watch per period, re-opened after each re-list (${watches} ended)`)
  t.equal(end.openWatches, 1, 'exactly one watch open')
  t.notMatch(node.driver!.logs().slice(logsBefore), /"level":"(warn|error)"/, 'nothing went wrong while idle')
})

t.test('a CertificateRequest deleted by someone else is dropped from the cache', async t => {
  const v = await node.newVolume()
  const attributes = { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'a.example.com', 'csi.cert-manager.io/key-algorithm': 'ECDSA' }
  await t.rejects(node.publish(v, attributes), { code: 4, details: /waiting for approval/ }, 'no approver runs here: pending')
  const [name] = await node.requestsFor(v)
  t.ok(name, 'the driver made a request')
  const key = `${v.pod.namespace}/${name}`
  await node.driver!.waitForLog(new RegExp(`"request":"${key}"[^\\n]*"change":"add"`), 10_000)
  const uid = ((await custom.getNamespacedCustomObject({ ...crApi, namespace: v.pod.namespace, name: name! })) as { metadata: { uid: string } }).metadata.uid
  await custom.deleteNamespacedCustomObject({ ...crApi, namespace: v.pod.namespace, name: name! })
  await node.driver!.waitForLog(new RegExp(`"request":"${key}"[^\\n]*"change":"delete"`), 10_000)
  t.pass('the cache reported the delete')
  // The reconciler, told by the cache, finds the request missing and makes it again.
  const deadline = Date.now() + 20_000
  let again: string | undefined
  while (Date.now() < deadline && !again) {
    const list = (await custom.listNamespacedCustomObject({ ...crApi, namespace: v.pod.namespace, labelSelector: `csi.cert-manager.io/node=${node.nodeId}` })) as { items: { metadata: { uid: string; annotations?: Record<string, string> } }[] }
    again = list.items.find(i => i.metadata.annotations?.['csi.cert-manager.io/volume-id'] === v.volumeId && i.metadata.uid !== uid)?.metadata.uid
    if (!again) await sleep(250)
  }
  t.ok(again, 'a new request for the volume, not the deleted one')
  await node.unpublish(v)
  t.same(await node.requestsFor(v), [], 'unpublish cleans up')
})
