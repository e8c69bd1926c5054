// The metrics and health server, for real on 127.0.0.1 with an ephemeral port.

import { createServer, request, Agent } from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { startHttpServer, type RunningHttpServer } from '../../src/http/server.js'
import { createLogger } from '../../src/log/logger.js'
import { DriverMetrics } from '../../src/metrics/metrics.js'


interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function call(port: number, method: string, path: string, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, ...(agent ? { agent } : {}) }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

const quiet = () => createLogger({ level: 'error', format: 'json', destination: { write: () => {} } })

async function start(t: { teardown: (fn: () => unknown) => void }, ready: () => Promise<boolean> = async () => true, metrics = new DriverMetrics({ defaultMetrics: false })) {
  let logs = ''
  const logger = createLogger({ level: 'debug', format: 'json', destination: { write: (s: string) => void (logs += s) } })
  const server = (await startHttpServer({ bindAddress: { host: '127.0.0.1', port: 0 }, metrics, ready, logger }))!
  t.teardown(() => server.close())
  return { server, metrics, port: server.address.port, logs: () => logs }
}

t.test('listens where asked, on an ephemeral port', async (t) => {
  const { server, logs } = await start(t)
  t.equal(server.address.host, '127.0.0.1')
  t.ok(server.address.port > 0)
  t.match(logs(), /metrics and health server listening/)
})

t.test('GET /metrics: the registry in Prometheus text format', async (t) => {
  const metrics = new DriverMetrics({ defaultMetrics: false })
  const { port } = await start(t, undefined, metrics)
  metrics.issued('issue', 0.2)
  metrics.volumeState('v1', { ready: true, notAfter: 1_700_000_000_000 })
  const r = await call(port, 'GET', '/metrics')
  t.equal(r.status, 200)
  t.equal(r.headers['content-type'], metrics.registry.contentType)
  t.match(r.body, /^certmanager_csi_issuances_total\{kind="issue"\} 1$/m)
  t.match(r.body, /^certmanager_csi_certificate_expiration_timestamp_seconds 1700000000$/m)
  t.match(r.body, /^certmanager_csi_ready_volumes 1$/m)
  t.equal(Number(r.headers['content-length']), Buffer.byteLength(r.body))

  const q = await call(port, 'GET', '/metrics?name[]=x')
  t.equal(q.status, 200, 'query string ignored')
  t.match(q.body, /certmanager_csi_issuances_total/)

  const head = await call(port, 'HEAD', '/metrics')
  t.equal(head.status, 200)
  t.equal(head.body, '', 'HEAD: headers only')
})

t.test('GET /healthz: ok while the process runs, whatever readiness says', async (t) => {
  const { port } = await start(t, async () => false)
  const r = await call(port, 'GET', '/healthz')
  t.equal(r.status, 200)
  t.equal(r.body, 'ok')
  t.match(r.headers['content-type'], /^text\/plain/)
})

t.test('GET /readyz follows ready()', async (t) => {
  let state: boolean | Error = false
  const { port, logs } = await start(t, async () => {
    if (state instanceof Error) throw state
    return state
  })
  let r = await call(port, 'GET', '/readyz')
  t.equal(r.status, 503)
  t.equal(r.body, 'not ready')
  state = true
  r = await call(port, 'GET', '/readyz')
  t.equal(r.status, 200)
  t.equal(r.body, 'ok')
  state = new Error('informer down')
  r = await call(port, 'GET', '/readyz')
  t.equal(r.status, 503, 'a throwing check is not ready')
  t.equal(r.body, 'not ready')
  t.match(logs(), /readiness check failed.*informer down|informer down.*readiness check failed/)
})

t.test('404 for unknown paths, 405 for other methods', async (t) => {
  const { port } = await start(t)
  for (const path of ['/', '/metricsx', '/metrics/', '/healthz/extra', '/constructor', '/__proto__', '/toString']) {
    const r = await call(port, 'GET', path)
    t.equal(r.status, 404, path)
    t.equal(r.body, 'not found')
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    const r = await call(port, method, '/metrics')
    t.equal(r.status, 405, method)
    t.equal(r.headers.allow, 'GET, HEAD')
    t.equal(r.body, 'method not allowed')
  }
  t.equal((await call(port, 'POST', '/nope')).status, 404, 'an unknown path is 404 whatever the method')
})

t.test('a failing metrics collection answers 500 and keeps serving', async (t) => {
  const metrics = new DriverMetrics({ defaultMetrics: false })
  metrics.setQueueDepth(() => {
    throw new Error('queue exploded')
  })
  const { port, logs } = await start(t, undefined, metrics)
  const r = await call(port, 'GET', '/metrics')
  t.equal(r.status, 500)
  t.equal(r.body, 'internal error')
  t.match(logs(), /queue exploded/)
  t.equal((await call(port, 'GET', '/healthz')).status, 200)
})

t.test('"0" or null disables: no server', async (t) => {
  const s = await startHttpServer({ bindAddress: null, metrics: new DriverMetrics({ defaultMetrics: false }), ready: async () => true, logger: quiet() })
  t.equal(s, null)
  const parsed = await startHttpServer({ bindAddress: null, metrics: new DriverMetrics({ defaultMetrics: false }), ready: async () => true, logger: quiet() })
  t.equal(parsed, null, 'null, as flags.ts gives for "0"')
})

t.test('an already-parsed address is accepted (as flags.ts produces it)', async (t) => {
  const s = (await startHttpServer({ bindAddress: { host: '127.0.0.1', port: 0 }, metrics: new DriverMetrics({ defaultMetrics: false }), ready: async () => true, logger: quiet() }))!
  t.teardown(() => s.close())
  t.equal((await call(s.address.port, 'GET', '/healthz')).status, 200)
})

t.test('a port in use rejects with a clear error', async (t) => {
  const metrics = new DriverMetrics({ defaultMetrics: false })
  const blocker = createServer()
  blocker.listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())))
  const { port } = blocker.address() as { port: number }
  await t.rejects(
    startHttpServer({ bindAddress: { host: '127.0.0.1', port }, metrics, ready: async () => true, logger: quiet() }),
    { message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`) },
  )
})

t.test('close(): stops listening, drops idle keep-alive connections, is idempotent', async (t) => {
  const server: RunningHttpServer = (await startHttpServer({ bindAddress: { host: '127.0.0.1', port: 0 }, metrics: new DriverMetrics({ defaultMetrics: false }), ready: async () => true, logger: quiet() }))!
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  t.equal((await call(server.address.port, 'GET', '/healthz', agent)).status, 200)
  const started = Date.now()
  await Promise.all([server.close(), server.close()])
  t.ok(Date.now() - started < 1_000, 'an idle keep-alive connection does not hold close() up')
  await t.rejects(call(server.address.port, 'GET', '/healthz'), { code: 'ECONNREFUSED' })
})
