// The driver's own API client against small HTTPS and HTTP servers: one TLS
// handshake for many calls, client-certificate and token authentication (a
// token file read again as it rotates), HTTP errors with their status and
// body, a deadline that covers a slow body too, and watch streams split at
// any byte.
import t from 'tap'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { ApiClient, ApiError, ApiTimeoutError, microTime } from '../../src/kube/api-client.js'
import { apiMessage, apiStatus } from '../../src/kube/errors.js'
import { makeAuthority, issueLeaf } from '../cluster/pki.js'

const ca = await makeAuthority('test-ca')
const serving = await issueLeaf(ca, { commonName: 'localhost', ips: ['127.0.0.1'], server: true })
const clientCert = await issueLeaf(ca, { commonName: 'csi-driver', organizations: ['nodes'], client: true })

interface Seen { method: string; url: string; auth: string | undefined; peer: string | undefined; body: string }

async function serve(t: { teardown(fn: () => unknown): void }, handler: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void, tls = true) {
  const seen: Seen[] = []
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const socket = req.socket as TLSSocket
      const peer = tls ? (socket.getPeerCertificate?.().subject as { CN?: string } | undefined)?.CN : undefined
      const s = { method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, peer, body }
      seen.push(s)
      handler(req, res, s)
    })
  }
  const server = tls
    ? createHttpsServer({ cert: serving.certPem, key: serving.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false }, onRequest)
    : createHttpServer(onRequest)
  let handshakes = 0
  server.on('secureConnection', () => handshakes++)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>(r => { server.closeAllConnections(); server.close(() => r()) }))
  const { port } = server.address() as { port: number }
  return { seen, server: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, handshakes: () => handshakes }
}

const json = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

t.test('five calls over TLS share one connection, authenticated by the client certificate', async t => {
  const api = await serve(t, (_req, res) => json(res, 200, { kind: 'Pod' }))
  const client = new ApiClient({ server: api.server, ca: Buffer.from(ca.certPem), clientCert: Buffer.from(clientCert.certPem), clientKey: Buffer.from(clientCert.keyPem) })
  t.teardown(() => client.close())
  for (let i = 0; i < 5; i++) t.same(await client.request('get', { method: 'GET', path: '/api/v1/namespaces/default/pods/p' }), { kind: 'Pod' })
  t.equal(api.handshakes(), 1)
  t.equal(api.seen[0]?.peer, 'csi-driver')
  t.equal(api.seen[0]?.auth, undefined, 'no bearer token was sent')
})

t.test('a server whose certificate is not from the CA is refused', async t => {
  const other = await makeAuthority('other-ca')
  const api = await serve(t, (_req, res) => json(res, 200, {}))
  const client = new ApiClient({ server: api.server, ca: Buffer.from(other.certPem) })
  t.teardown(() => client.close())
  const err = await client.request('get', { method: 'GET', path: '/x' }).catch((e: unknown) => e)
  t.match((err as { code?: string }).code, /^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/)
  t.equal(api.seen.length, 0)
})

t.test('query, body and method reach the server; an empty answer is undefined', async t => {
  const api = await serve(t, (_req, res) => { res.writeHead(200); res.end() }, false)
  const client = new ApiClient({ server: api.server, token: 'tok' })
  t.teardown(() => client.close())
  t.equal(await client.request('delete', { method: 'DELETE', path: '/apis/g/v1/namespaces/n/x/a%2Fb', query: { labelSelector: 'a=b,c', skip: undefined }, body: { preconditions: { uid: 'u1' } } }), undefined)
  t.same(api.seen[0], { method: 'DELETE', url: '/apis/g/v1/namespaces/n/x/a%2Fb?labelSelector=a%3Db%2Cc', auth: 'Bearer tok', peer: undefined, body: '{"preconditions":{"uid":"u1"}}' })
})

t.test('an HTTP error carries its status and the Status message', async t => {
  const api = await serve(t, (_req, res) => json(res, 409, { kind: 'Status', code: 409, reason: 'AlreadyExists', message: 'certificaterequests "x" already exists' }), false)
  const client = new ApiClient({ server: api.server })
  t.teardown(() => client.close())
  const err = await client.request('CertificateRequest create', { method: 'POST', path: '/x', body: {} }).catch((e: unknown) => e)
  t.type(err, ApiError)
  t.equal(apiStatus(err), 409)
  t.equal(apiMessage(err), 'certificaterequests "x" already exists')
  t.equal((err as Error).message, 'CertificateRequest create: HTTP 409: certificaterequests "x" already exists')
})

t.test('the deadline covers a body that never ends, and the connection is dropped', async t => {
  let closed = false
  const api = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"items": [')
    res.on('close', () => (closed = true))
  }, false)
  const client = new ApiClient({ server: api.server }, { timeoutMs: 150 })
  t.teardown(() => client.close())
  const started = Date.now()
  const err = await client.request('CertificateRequest list', { method: 'GET', path: '/x' }).catch((e: unknown) => e)
  t.type(err, ApiTimeoutError)
  t.equal((err as Error).message, 'CertificateRequest list timed out after 150ms')
  t.ok(Date.now() - started < 2000)
  while (!closed) await new Promise(r => setTimeout(r, 10))
  t.ok(closed)
})

t.test('--kube-api-qps/--kube-api-burst: past the burst, calls and watch connects reach the server at qps', async t => {
  const arrived: number[] = []
  const api = await serve(t, (req, res) => {
    arrived.push(performance.now())
    if (req.url?.includes('watch=true')) { res.writeHead(200); res.end() } else json(res, 200, {})
  }, false)
  const waits: number[] = []
  const client = new ApiClient({ server: api.server }, { timeoutMs: 200, rateLimit: { qps: 20, burst: 3 }, onThrottled: ms => waits.push(ms) })
  t.teardown(() => client.close())
  const start = performance.now()
  await Promise.all([
    ...Array.from({ length: 5 }, () => client.request('get', { method: 'GET', path: '/x' })),
    client.watch('watch', '/x', {}, { signal: new AbortController().signal, onOpen() {}, onEvent() {} }),
  ])
  t.equal(arrived.length, 6)
  t.ok(arrived.slice(0, 3).every(at => at - start < 45), 'the burst goes at once')
  const last = Math.max(...arrived) - start
  t.ok(last >= 145, `the sixth waited three tokens at 20/s (${last.toFixed(0)} ms)`)
  t.equal(waits.length, 3, 'three calls were throttled')
  waits.forEach((ms, i) => t.ok(ms > 50 * (i + 1) - 15 && ms <= 50 * (i + 1), `call ${i + 4} reports its wait, about ${50 * (i + 1)} ms (${ms})`))
  // The 200 ms deadline starts after the token: a 150 ms wait is no timeout.

  const stop = new AbortController()
  const queued = client.request('get', { method: 'GET', path: '/x', signal: stop.signal }).catch((e: unknown) => e)
  stop.abort()
  t.equal(((await queued) as Error).name, 'AbortError', 'an abort while waiting for a token ends the call')
  t.equal(arrived.length, 6, 'and it never reached the server')
})

t.test('a caller\'s abort is not a timeout', async t => {
  const api = await serve(t, () => { /* never answers */ }, false)
  const client = new ApiClient({ server: api.server }, { timeoutMs: 5_000 })
  t.teardown(() => client.close())
  const stop = new AbortController()
  setTimeout(() => stop.abort(), 50)
  const err = await client.request('get', { method: 'GET', path: '/x', signal: stop.signal }).catch((e: unknown) => e)
  t.notOk(err instanceof ApiTimeoutError)
  t.equal((err as Error).name, 'AbortError')
})

t.test('a token file is read again after a minute, and a missing one keeps the last token', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'token-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'token')
  writeFileSync(file, 'first\n')
  const api = await serve(t, (_req, res) => json(res, 200, {}), false)
  let now = 0
  const client = new ApiClient({ server: api.server, tokenFile: file }, { now: () => now })
  t.teardown(() => client.close())
  const call = () => client.request('get', { method: 'GET', path: '/x' })
  await call()
  writeFileSync(file, 'second\n')
  now = 59_000
  await call()
  now = 60_000
  await call()
  rmSync(file)
  now = 200_000
  await call()
  t.same(api.seen.map(s => s.auth), ['Bearer first', 'Bearer first', 'Bearer second', 'Bearer second'])
})

t.test('watch: events split across chunks arrive whole and in order; the end of the stream resolves', async t => {
  const api = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    const text = ['ADDED', 'MODIFIED', 'BOOKMARK'].map((type, i) => JSON.stringify({ type, object: { metadata: { name: `o${i}`, resourceVersion: String(i) } } })).join('\n') + '\n\n'
    // One byte at a time: no line boundary lines up with a chunk.
    let i = 0
    const tick = (): void => {
      if (i >= text.length) return void res.end()
      res.write(text[i++]!)
      setImmediate(tick)
    }
    tick()
  }, false)
  const client = new ApiClient({ server: api.server })
  t.teardown(() => client.close())
  const got: string[] = []
  let opened = 0
  await client.watch('watch', '/apis/x', { resourceVersion: '7', timeoutSeconds: 60 }, {
    signal: new AbortController().signal,
    onOpen: () => opened++,
    onEvent: (type, obj) => got.push(`${type} ${(obj as { metadata: { name: string } }).metadata.name}`),
  })
  t.equal(opened, 1)
  t.same(got, ['ADDED o0', 'MODIFIED o1', 'BOOKMARK o2'])
  t.equal(api.seen[0]?.url, '/apis/x?resourceVersion=7&timeoutSeconds=60&watch=true')
})

t.test('watch: a refusal rejects with its status, a line that is not JSON rejects, an abort resolves', async t => {
  let mode: 'refuse' | 'garbage' | 'hang' = 'refuse'
  const api = await serve(t, (_req, res) => {
    if (mode === 'refuse') return json(res, 410, { kind: 'Status', code: 410, message: 'too old resource version' })
    res.writeHead(200, { 'content-type': 'application/json' })
    if (mode === 'garbage') res.end('{"type":"ADDED"\n')
    else res.flushHeaders()
  }, false)
  const client = new ApiClient({ server: api.server })
  t.teardown(() => client.close())
  const handlers = (signal = new AbortController().signal) => ({ signal, onOpen: () => {}, onEvent: () => {} })
  const refused = await client.watch('watch', '/w', {}, handlers()).catch((e: unknown) => e)
  t.equal(apiStatus(refused), 410)
  mode = 'garbage'
  await t.rejects(client.watch('watch', '/w', {}, handlers()), SyntaxError)
  mode = 'hang'
  const stop = new AbortController()
  let opened = false
  const watching = client.watch('watch', '/w', {}, { ...handlers(stop.signal), onOpen: () => (opened = true) })
  while (!opened) await new Promise(r => setTimeout(r, 5))
  stop.abort()
  await t.resolves(watching)
})

t.test('watch: a connect that gets no answer times out', async t => {
  const api = await serve(t, () => { /* no headers, ever */ }, false)
  const client = new ApiClient({ server: api.server }, { timeoutMs: 100 })
  t.teardown(() => client.close())
  const err = await client.watch('CertificateRequest watch', '/w', {}, { signal: new AbortController().signal, onOpen: () => {}, onEvent: () => {} }).catch((e: unknown) => e)
  t.type(err, ApiTimeoutError)
  t.equal((err as Error).message, 'CertificateRequest watch timed out after 100ms')
})

t.test('microTime has six fractional digits', async t => {
  t.equal(microTime(new Date(Date.UTC(2026, 11, 2, 19, 53, 47, 123))), '2026-12-02T19:53:47.123000Z')
})

t.test('watch: a handler that aborts its own watch ends it quietly (the reflector does on an ERROR event)', async t => {
  const api = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410 } })}\n${JSON.stringify({ type: 'ADDED', object: {} })}\n`)
  }, false)
  const client = new ApiClient({ server: api.server })
  t.teardown(() => client.close())
  const stop = new AbortController()
  const got: string[] = []
  await client.watch('watch', '/w', {}, { signal: stop.signal, onOpen: () => {}, onEvent: type => { got.push(type); stop.abort() } })
  await new Promise(r => setTimeout(r, 50))
  t.same(got, ['ERROR'], 'nothing after the abort')
})
