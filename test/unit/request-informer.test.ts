// The CertificateRequest cache: its indexes over a fake ListWatch, then the
// real adapter (LIST, WATCH on our ApiClient) against a small fake apiserver
// over HTTP, where the bugs of the makeInformer wrapper showed; and the deadline
// every API call gets (requests.ts, events.ts, the cache's LIST).
import t from 'tap'
import fc from 'fast-check'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { RequestInformer } from '../../src/kube/request-informer.js'
import { KubeRequestClient } from '../../src/kube/requests.js'
import { KubeEventRecorder } from '../../src/kube/events.js'
import { ApiClient, ApiTimeoutError } from '../../src/kube/api-client.js'
import { ANNOTATION_VOLUME_ID, LABEL_NODE, type CertificateRequest } from '../../src/kube/certificate-request.js'
import type { ListResult, ListWatch, ObjectWithMeta, WatchRequest } from '../../src/kube/reflector.js'

type KubernetesObject = ObjectWithMeta & { metadata?: { annotations?: Record<string, string> } }
import { createLogger } from '../../src/log/logger.js'

const tick = (): Promise<void> => new Promise<void>(r => setImmediate(r))

function cr(name: string, rv: string, volumeId: string | undefined, namespace = 'ns'): KubernetesObject & CertificateRequest {
  return {
    apiVersion: 'cert-manager.io/v1', kind: 'CertificateRequest',
    metadata: {
      name, namespace, resourceVersion: rv, labels: { [LABEL_NODE]: 'node-1' },
      ...(volumeId ? { annotations: { [ANNOTATION_VOLUME_ID]: volumeId }, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: 'app', uid: podUidOf(volumeId) }] } : {}),
    },
    spec: { issuerRef: { name: 'ca-issuer' }, request: 'Q1NS' },
  }
}

const podUidOf = (volumeId: string): string => `pod-${volumeId}`

/** The volumes the tests' informers keep requests for: each a pod in namespace ns. */
function trackVolumes(informer: RequestInformer, volumeIds = ['vol-1', 'vol-2', 'vol-3']): void {
  for (const volumeId of volumeIds) informer.track({ volumeId, namespace: 'ns', podUid: podUidOf(volumeId) })
}

function capture(level: 'debug' | 'warn' = 'debug') {
  const lines: Array<Record<string, unknown>> = []
  const logger = createLogger({ level, format: 'json', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } })
  return { logger, lines, warnings: () => lines.filter(l => l.level === 'warn') }
}

// ---- the indexes, over a fake ListWatch --------------------------------

class FakeListWatch implements ListWatch<KubernetesObject> {
  items: KubernetesObject[] = []
  rv = 1
  lists = 0
  req?: WatchRequest
  private closeWatch?: () => void
  async list(): Promise<ListResult<KubernetesObject>> {
    this.lists++
    return { items: [...this.items], resourceVersion: String(this.rv) }
  }
  watch(req: WatchRequest): Promise<void> {
    this.req = req
    req.onOpen()
    return new Promise<void>(resolve => {
      this.closeWatch = resolve
      req.signal.addEventListener('abort', () => resolve())
    })
  }
  /** The server ends the watch with 410: the reflector re-lists. */
  expire(): void {
    this.req?.onEvent('ERROR', { kind: 'Status', code: 410, reason: 'Expired' })
    this.closeWatch?.()
  }
}

function informerOver(lw: FakeListWatch) {
  const { logger, lines } = capture()
  const changes: string[] = []
  const informer = new RequestInformer({
    nodeId: 'node-1', logger,
    onChange: (volumeId, c) => void changes.push(`${volumeId} ${c.metadata.name}@${c.metadata.resourceVersion}`),
    listWatch: lw,
    random: () => 0.5,
  })
  trackVolumes(informer)
  return { informer, changes, lines }
}

t.test('add, update and delete reach onChange and both indexes', async t => {
  const lw = new FakeListWatch()
  lw.items = [cr('a', '1', 'vol-1'), cr('b', '2', 'vol-1'), cr('c', '3', 'vol-2')]
  const { informer, changes } = informerOver(lw)
  t.equal(informer.synced, false)
  await informer.start()
  t.equal(informer.synced, true)
  t.same(changes, ['vol-1 a@1', 'vol-1 b@2', 'vol-2 c@3'])
  t.same(informer.forVolume('vol-1').map(c => c.metadata.name).sort(), ['a', 'b'])
  t.equal(informer.get('ns', 'c')?.metadata.resourceVersion, '3')
  lw.req!.onEvent('MODIFIED', cr('a', '4', 'vol-1'))
  lw.req!.onEvent('DELETED', cr('c', '5', 'vol-2'))
  t.same(changes.slice(3), ['vol-1 a@4', 'vol-2 c@3'], 'a delete reports the last state we held')
  t.same(informer.forVolume('vol-2'), [])
  t.same(informer.size, { requests: 2, volumes: 1 }, 'no empty set left for vol-2')
  await informer.stop()
})

t.test('a delete found by a re-list reaches onChange and leaves no trace (the gap bug)', async t => {
  const lw = new FakeListWatch()
  lw.items = [cr('a', '1', 'vol-1'), cr('b', '2', 'vol-2')]
  const { informer, changes } = informerOver(lw)
  await informer.start()
  // Deleted while no watch was looking; the watch then expires.
  lw.items = [cr('a', '1', 'vol-1')]
  lw.rv = 9
  lw.expire()
  for (let i = 0; i < 5; i++) await tick()
  t.equal(lw.lists, 2)
  t.same(changes.slice(2), ['vol-2 b@2'])
  t.equal(informer.get('ns', 'b'), undefined)
  t.same(informer.forVolume('vol-2'), [])
  t.same(informer.size, { requests: 1, volumes: 1 })
  await informer.stop()
})

t.test('an edited volume annotation moves the request; both volumes hear of it', async t => {
  const lw = new FakeListWatch()
  lw.items = [cr('a', '1', 'vol-1')]
  const { informer, changes } = informerOver(lw)
  await informer.start()
  lw.req!.onEvent('MODIFIED', cr('a', '2', 'vol-2'))
  t.same(changes, ['vol-1 a@1', 'vol-1 a@1', 'vol-2 a@2'])
  t.same(informer.forVolume('vol-1'), [])
  t.equal(informer.forVolume('vol-2')[0]?.metadata.resourceVersion, '2')
  lw.req!.onEvent('MODIFIED', cr('a', '3', undefined))
  t.same(informer.size, { requests: 0, volumes: 0 }, 'without the annotation it is not ours to track')
  await informer.stop()
})

t.test("labelled copies from anyone else are not kept: another namespace, another owner, an untracked volume (the forged-ownership bug)", async t => {
  const lw = new FakeListWatch()
  const forged = (name: string, patch: (c: CertificateRequest) => void): CertificateRequest => {
    const c = structuredClone(cr(name, '1', 'vol-1'))
    patch(c)
    return c
  }
  lw.items = [cr('ours', '1', 'vol-1')]
  // What a user who may create requests in their own namespace can make.
  for (let i = 0; i < 500; i++) lw.items.push(forged(`other-ns-${i}`, c => void (c.metadata.namespace = 'attacker')))
  lw.items.push(forged('no-owner', c => void delete c.metadata.ownerReferences))
  lw.items.push(forged('other-pod', c => void (c.metadata.ownerReferences![0]!.uid = 'someone-else')))
  lw.items.push(cr('untracked', '1', 'vol-99'))
  const { informer, changes } = informerOver(lw)
  await informer.start()
  t.same(informer.size, { requests: 1, volumes: 1 }, 'only the tracked pod\'s own request is kept')
  t.same(informer.forVolume('vol-1').map(c => c.metadata.name), ['ours'])
  t.same(changes, ['vol-1 ours@1'], 'nothing else woke a volume')
  // A kept request whose owner is edited away is no longer ours.
  lw.req!.onEvent('MODIFIED', forged('ours', c => void (c.metadata.ownerReferences = [], c.metadata.resourceVersion = '2')))
  t.same(informer.size, { requests: 0, volumes: 0 })
  lw.req!.onEvent('MODIFIED', cr('ours', '3', 'vol-1'))
  t.equal(informer.forVolume('vol-1').length, 1)
  informer.untrack('vol-1')
  t.same(informer.size, { requests: 0, volumes: 0 }, 'an untracked volume takes its requests with it')
  t.equal(informer.tracked, 2)
  await informer.stop()
})

t.test('objects we cannot read are ignored, and drop what we held of them', async t => {
  const lw = new FakeListWatch()
  lw.items = [cr('a', '1', 'vol-1')]
  const { informer, changes, lines } = informerOver(lw)
  await informer.start()
  lw.req!.onEvent('ADDED', { metadata: { name: 'junk', namespace: 'ns', resourceVersion: '2' } })
  t.same(informer.size, { requests: 1, volumes: 1 })
  lw.req!.onEvent('MODIFIED', { metadata: { name: 'a', namespace: 'ns', resourceVersion: '3', annotations: { [ANNOTATION_VOLUME_ID]: 'vol-1' } } })
  t.same(informer.size, { requests: 0, volumes: 0 })
  t.same(changes, ['vol-1 a@1', 'vol-1 a@1'])
  t.ok(lines.some(l => l.msg === 'ignoring a CertificateRequest we cannot read'))
  await informer.stop()
})

t.test('property: after any sequence of events and re-lists the index matches the cache, with no empty set', async t => {
  const names = ['a', 'b', 'c', 'd']
  const volumes = ['vol-1', 'vol-2', 'vol-3', undefined]
  const op = fc.oneof(
    fc.record({ kind: fc.constant('put' as const), name: fc.constantFrom(...names), volume: fc.constantFrom(...volumes) }),
    fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom(...names) }),
    fc.record({ kind: fc.constant('silentDelete' as const), name: fc.constantFrom(...names) }),
    fc.record({ kind: fc.constant('relist' as const) }),
  )
  await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 30 }), async ops => {
    const lw = new FakeListWatch()
    const { informer } = informerOver(lw)
    await informer.start()
    const server = new Map<string, KubernetesObject>()
    let rv = 10
    for (const o of ops) {
      if (o.kind === 'put') {
        const obj = cr(o.name, String(++rv), o.volume)
        const type = server.has(o.name) ? 'MODIFIED' : 'ADDED'
        server.set(o.name, obj)
        lw.req!.onEvent(type, obj)
      } else if (o.kind === 'delete') {
        const had = server.get(o.name)
        server.delete(o.name)
        if (had) lw.req!.onEvent('DELETED', had)
      } else if (o.kind === 'silentDelete') {
        server.delete(o.name)
      } else {
        lw.items = [...server.values()]
        lw.rv = ++rv
        lw.expire()
        for (let i = 0; i < 5; i++) await tick()
      }
    }
    lw.items = [...server.values()]
    lw.expire()
    for (let i = 0; i < 5; i++) await tick()
    await informer.stop()
    // After a final re-list the cache is exactly the server's readable, annotated objects.
    const want = new Map<string, string[]>()
    for (const obj of server.values()) {
      const v = obj.metadata?.annotations?.[ANNOTATION_VOLUME_ID]
      if (v) want.set(v, [...(want.get(v) ?? []), obj.metadata!.name!].sort())
    }
    for (const v of volumes) {
      if (!v) continue
      const got = informer.forVolume(v).map(c => c.metadata.name).sort()
      if (JSON.stringify(got) !== JSON.stringify(want.get(v) ?? [])) return false
    }
    return informer.size.volumes === want.size && informer.size.requests === [...want.values()].flat().length
  }), { numRuns: 60 })
  t.pass('index consistent')
})

// ---- the real adapter against a fake apiserver ---------------------------

interface Seen { method: string; path: string; query: URLSearchParams; at: number; closed: boolean }

/** Just enough of an apiserver: LIST and WATCH of certificaterequests, and modes that misbehave. */
class FakeApiServer {
  readonly server = createServer((req, res) => this.handle(req, res))
  objects = new Map<string, KubernetesObject>()
  rv = 100
  seen: Seen[] = []
  listMode: 'ok' | 'hang' | 'fail' = 'ok'
  watchMode: 'ok' | 'hang' = 'ok'
  /** The next this many WATCHes are refused with a 500. */
  watchFailures = 0
  /** Everything that is not a cluster-wide LIST or WATCH. */
  otherMode: 'hang' | 'ok' = 'hang'
  readonly watches = new Set<ServerResponse>()
  port = 0

  async listen(): Promise<void> {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.port = (this.server.address() as { port: number }).port
  }
  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(r => this.server.close(() => r()))
  }
  client(timeoutMs?: number): ApiClient {
    return new ApiClient({ server: `http://127.0.0.1:${this.port}`, token: 't' }, timeoutMs ? { timeoutMs } : {})
  }
  count(kind: 'LIST' | 'WATCH', since = 0): number {
    return this.seen.filter(s => s.at >= since && s.path === '/apis/cert-manager.io/v1/certificaterequests' && (s.query.get('watch') === 'true') === (kind === 'WATCH')).length
  }
  put(o: KubernetesObject): void {
    this.objects.set(`${o.metadata!.namespace}/${o.metadata!.name}`, o)
  }
  send(type: string, object: unknown): void {
    for (const w of this.watches) w.write(`${JSON.stringify({ type, object })}\n`)
  }
  endWatches(): void {
    for (const w of this.watches) w.end()
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x')
    const seen: Seen = { method: req.method ?? '', path: url.pathname, query: url.searchParams, at: Date.now(), closed: false }
    this.seen.push(seen)
    res.on('close', () => (seen.closed = true))
    req.resume()
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    if (url.pathname !== '/apis/cert-manager.io/v1/certificaterequests') {
      if (this.otherMode === 'hang') return
      return json(200, { metadata: { name: 'x', namespace: 'ns' }, spec: { issuerRef: { name: 'i' } } })
    }
    if (url.searchParams.get('watch') === 'true') {
      if (this.watchMode === 'hang') return
      if (this.watchFailures > 0) {
        this.watchFailures--
        return json(500, { kind: 'Status', code: 500, message: 'etcd leader changed' })
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      this.watches.add(res)
      res.on('close', () => this.watches.delete(res))
      return
    }
    if (this.listMode === 'hang') return
    if (this.listMode === 'fail') return json(503, { kind: 'Status', code: 503, message: 'apiserver is shutting down' })
    json(200, { apiVersion: 'cert-manager.io/v1', kind: 'CertificateRequestList', metadata: { resourceVersion: String(this.rv) }, items: [...this.objects.values()] })
  }
}

async function fakeApi(t: { teardown(fn: () => unknown): void }): Promise<FakeApiServer> {
  const api = new FakeApiServer()
  await api.listen()
  t.teardown(() => api.close())
  return api
}

async function until(what: string, fn: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

function liveInformer(api: FakeApiServer, opts: { relistPeriodMs?: number; apiTimeoutMs?: number; backoffBaseMs?: number } = {}) {
  const { logger, lines, warnings } = capture()
  const changes: string[] = []
  const period = opts.relistPeriodMs ?? 60_000
  const informer = new RequestInformer({
    api: api.client(opts.apiTimeoutMs), nodeId: 'node-1', logger,
    onChange: (volumeId, c) => void changes.push(`${volumeId} ${c.metadata.name}`),
    relistPeriodMs: period,
    // What the makeInformer wrapper called the same knob.
    resyncMs: period,
    ...(opts.backoffBaseMs ? { backoff: { baseMs: opts.backoffBaseMs, maxMs: 60_000, jitter: 0.2 } } : {}),
  })
  trackVolumes(informer)
  return { informer, changes, lines, warnings }
}

t.test('LIST with our node selector, then one WATCH from its resourceVersion with bookmarks and a server timeout', async t => {
  const api = await fakeApi(t)
  api.put(cr('a', '7', 'vol-1'))
  const { informer, changes, warnings } = liveInformer(api)
  await informer.start()
  await until('a watch', () => api.watches.size === 1)
  const list = api.seen.find(s => s.query.get('watch') !== 'true')!
  t.equal(list.query.get('labelSelector'), `${LABEL_NODE}=node-1`)
  const watch = api.seen.find(s => s.query.get('watch') === 'true')!
  t.equal(watch.query.get('resourceVersion'), '100')
  t.equal(watch.query.get('allowWatchBookmarks'), 'true')
  t.equal(watch.query.get('labelSelector'), `${LABEL_NODE}=node-1`)
  const timeout = Number(watch.query.get('timeoutSeconds'))
  t.ok(timeout >= 300 && timeout < 600, `timeoutSeconds ${timeout} in [300, 600)`)
  t.same(changes, ['vol-1 a'])
  api.send('ADDED', cr('b', '101', 'vol-2'))
  await until('the event', () => informer.get('ns', 'b') !== undefined)
  await informer.stop()
  await until('the watch to close', () => api.watches.size === 0)
  t.same(warnings(), [], 'our own stop logs no failure')
})

t.test('idle: one LIST and one WATCH per re-list period, not one per second', async t => {
  const api = await fakeApi(t)
  api.put(cr('a', '7', 'vol-1'))
  const { informer, warnings } = liveInformer(api, { relistPeriodMs: 250 })
  await informer.start()
  const since = Date.now()
  await sleep(1_400)
  const lists = api.count('LIST', since)
  const watches = api.count('WATCH', since)
  await informer.stop()
  t.ok(lists >= 4 && lists <= 6, `${lists} LISTs in 1.4 s at a 250 ms period`)
  t.ok(watches >= 4 && watches <= 6, `${watches} WATCHes`)
  t.same(warnings(), [], 'a re-list is not an error')
})

t.test('a normal close of the watch re-opens it from the last resourceVersion, without a LIST', async t => {
  const api = await fakeApi(t)
  const { informer } = liveInformer(api)
  await informer.start()
  await until('a watch', () => api.watches.size === 1)
  api.send('BOOKMARK', { kind: 'CertificateRequest', metadata: { resourceVersion: '555' } })
  await sleep(1_100)
  api.endWatches()
  await until('a second watch', () => api.count('WATCH') === 2)
  t.equal(api.count('LIST'), 1)
  t.equal(api.seen.filter(s => s.query.get('watch') === 'true')[1]!.query.get('resourceVersion'), '555')
  await informer.stop()
})

t.test('deleted while the watch was away (410): reported, and gone from both indexes', async t => {
  const api = await fakeApi(t)
  api.put(cr('a', '7', 'vol-1'))
  api.put(cr('b', '8', 'vol-2'))
  const { informer, changes } = liveInformer(api)
  await informer.start()
  await until('a watch', () => api.watches.size === 1)
  api.objects.delete('ns/b')
  api.rv = 200
  api.send('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired', message: 'too old resource version' })
  api.endWatches()
  await until('the re-list', () => api.count('LIST') === 2 && api.watches.size === 1)
  t.same(changes, ['vol-1 a', 'vol-2 b', 'vol-2 b'], 'onChange for the delete')
  t.equal(informer.get('ns', 'b'), undefined)
  t.same(informer.forVolume('vol-2'), [])
  t.equal(api.seen.filter(s => s.query.get('watch') === 'true')[1]!.query.get('resourceVersion'), '200')
  await informer.stop()
})

t.test('deleted during a gap after a watch error: reported, and gone from both indexes', async t => {
  const api = await fakeApi(t)
  api.put(cr('a', '7', 'vol-1'))
  api.put(cr('b', '8', 'vol-2'))
  const { informer, changes } = liveInformer(api, { backoffBaseMs: 50 })
  await informer.start()
  await until('a watch', () => api.watches.size === 1)
  // The watch drops, re-opening it fails, and b is deleted meanwhile.
  api.objects.delete('ns/b')
  api.rv = 300
  api.watchFailures = 1
  await sleep(1_100)
  api.endWatches()
  await until('a re-list after the failed watch', () => api.count('LIST') === 2 && api.watches.size === 1)
  t.same(changes, ['vol-1 a', 'vol-2 b', 'vol-2 b'], 'onChange for the delete')
  t.equal(informer.get('ns', 'b'), undefined, 'not cached forever')
  t.same(informer.forVolume('vol-2'), [])
  t.equal(informer.get('ns', 'a')?.metadata.resourceVersion, '7', 'the rest is kept')
  await informer.stop()
})

t.test('an apiserver refusing LISTs: not synced, retries further and further apart', async t => {
  const api = await fakeApi(t)
  api.listMode = 'fail'
  const { informer, warnings } = liveInformer(api, { backoffBaseMs: 60 })
  let started = false
  void informer.start().then(() => (started = true))
  await sleep(1_200)
  t.equal(informer.synced, false, 'a failed LIST is not a sync')
  t.equal(started, false)
  const at = api.seen.filter(s => s.query.get('watch') !== 'true').map(s => s.at)
  const gaps = at.slice(1).map((x, i) => x - at[i]!)
  t.ok(at.length >= 4 && at.length <= 6, `${at.length} LISTs in 1.2 s (60, 120, 240, 480 ms apart)`)
  for (let i = 1; i < gaps.length; i++) t.ok(gaps[i]! > gaps[i - 1]! * 1.2, `gap ${i}: ${gaps[i]} ms after ${gaps[i - 1]} ms`)
  t.equal(api.count('WATCH'), 0, 'no watch without a LIST')
  const w = warnings()[0]!
  t.match(w, { op: 'list', err: { message: /./ } }, 'the error logged as an object')
  t.type(w.err, 'object')
  api.listMode = 'ok'
  await until('synced', () => informer.synced, 3_000)
  t.ok(started || (await sleep(20), started), 'start() resolved once synced')
  await informer.stop()
})

t.test('stop(): the watch closes, no failure is logged, nothing more is asked', async t => {
  const api = await fakeApi(t)
  const { informer, warnings } = liveInformer(api)
  await informer.start()
  await until('a watch', () => api.watches.size === 1)
  await informer.stop()
  await until('the watch to close', () => api.watches.size === 0)
  const before = api.seen.length
  await sleep(1_500)
  t.equal(api.seen.length, before, 'no request after stop (the old wrapper restarted ~1 s later)')
  t.same(warnings(), [])
})

t.test('a LIST that hangs times out, names the operation, and is really aborted', async t => {
  const api = await fakeApi(t)
  api.listMode = 'hang'
  const { informer, warnings } = liveInformer(api, { apiTimeoutMs: 150, backoffBaseMs: 10_000 })
  void informer.start()
  await until('a warning', () => warnings().length > 0)
  const err = warnings()[0]!.err as { message: string; type: string }
  t.match(err.message, 'CertificateRequest list timed out after 150ms')
  await until('the server to see the LIST closed', () => api.seen[0]!.closed)
  t.ok(api.seen[0]!.closed)
  await informer.stop()
})

t.test('a watch whose headers never come is given up after the API timeout', async t => {
  const api = await fakeApi(t)
  api.watchMode = 'hang'
  const { informer, warnings } = liveInformer(api, { apiTimeoutMs: 150, backoffBaseMs: 10_000 })
  await informer.start()
  await until('a warning', () => warnings().length > 0)
  t.match(warnings()[0], { op: 'watch', err: { message: 'CertificateRequest watch timed out after 150ms' } })
  const watch = api.seen.find(s => s.query.get('watch') === 'true')!
  await until('the server to see the WATCH closed', () => watch.closed)
  t.ok(watch.closed)
  await informer.stop()
})

// ---- deadlines on the other API calls -----------------------------------

t.test('every CertificateRequest call times out with its name and aborts the HTTP request', async t => {
  const api = await fakeApi(t)
  const client = new KubeRequestClient(api.client(120))
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['CertificateRequest create', () => client.create('ns', { metadata: { name: 'x' } }, () => undefined)],
    ['CertificateRequest get', () => client.get('ns', 'x')],
    ['CertificateRequest delete', () => client.delete('ns', 'x')],
    ['CertificateRequest list', () => client.listForVolume('ns', 'vol-1')],
  ]
  for (const [name, call] of calls) {
    const before = api.seen.length
    const started = Date.now()
    const err = await call().then(() => undefined, (e: unknown) => e)
    t.type(err, ApiTimeoutError, name)
    t.equal((err as Error).message, `${name} timed out after 120ms`)
    t.equal((err as ApiTimeoutError).code, 'UNAVAILABLE', 'retried like any unavailable dependency')
    t.ok(Date.now() - started < 2_000, `${name}: answered in ${Date.now() - started} ms`)
    const seen = api.seen[before]!
    await until(`${name} closed at the server`, () => seen.closed)
    t.ok(seen.closed, `${name}: the HTTP request was aborted`)
  }
  api.otherMode = 'ok'
  t.equal((await client.get('ns', 'x'))?.metadata.name, 'x', 'a prompt answer is unaffected')
})

t.test('an Event that hangs is given up after the timeout and logged as an object', async t => {
  const api = await fakeApi(t)
  const { logger, warnings } = capture('warn')
  const events = new KubeEventRecorder(api.client(100), 'node-1', logger)
  events.record({ apiVersion: 'v1', kind: 'Pod', name: 'p', namespace: 'ns' }, 'Normal', 'Issued', 'Issue', 'ok')
  await until('a warning', () => warnings().length > 0)
  t.match(warnings()[0], { msg: 'could not record an Event', err: { message: 'Event create timed out after 100ms' } })
  await until('the server to see it closed', () => api.seen[0]?.closed === true)
})
