// Event rate limits: the pure bucket, then the recorder against a small HTTP
// server that counts the Events it is sent.
import t from 'tap'
import { createServer } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { ApiClient } from '../../src/kube/api-client.js'
import pino from 'pino'
import { EventLimiter } from '../../src/kube/event-limiter.js'
import { KubeEventRecorder } from '../../src/kube/events.js'

t.test('burst, then one per interval, with what was held back counted into the next', async t => {
  const l = new EventLimiter({ burst: 3, refillMs: 1000 })
  const sent = (now: number): number | false => { const d = l.decide('k', now); return d.send ? d.suppressedBefore : false }
  t.same([sent(0), sent(1), sent(2)], [0, 0, 0], 'the burst')
  t.same([sent(3), sent(500), sent(999)], [false, false, false], 'then held back')
  t.equal(sent(1000), 3, 'a token after the interval, saying how many were held back')
  t.equal(sent(1001), false)
  t.equal(sent(10_000), 1, 'refilled, never beyond the burst')
  t.same([sent(10_001), sent(10_002), sent(10_003)], [0, 0, false])
  t.equal(l.decide('other', 10_003).send, true, 'keys are independent')
})

t.test('the key table is bounded', async t => {
  const l = new EventLimiter({ maxKeys: 100 })
  for (let i = 0; i < 10_000; i++) l.decide(`pod-${i}`, i)
  t.equal(l.size, 100)
})

t.test('a failure Event repeated 100 times reaches the apiserver 5 times', async t => {
  let posts = 0
  const notes: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', c => (body += c))
    req.on('end', () => {
      if (req.method === 'POST') { posts++; notes.push((JSON.parse(body) as { note: string }).note) }
      res.writeHead(201, { 'content-type': 'application/json' }).end(body)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>(r => server.close(() => r())))
  const api = new ApiClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
  let now = 0
  const rec = new KubeEventRecorder(api, 'node-1', pino({ level: 'silent' }), { now: () => now })
  const pod = { apiVersion: 'v1', kind: 'Pod', name: 'app', namespace: 'ns', uid: 'u' }
  for (let i = 0; i < 100; i++) rec.record(pod, 'Warning', 'IssuanceFailed', 'Issue', 'denied')
  rec.record(pod, 'Normal', 'Issued', 'Issue', 'ok')
  const deadline = Date.now() + 5000
  while (posts < 6 && Date.now() < deadline) await new Promise(r => setTimeout(r, 10))
  await new Promise(r => setTimeout(r, 100))
  t.equal(posts, 6, '5 failures and the other reason')
  now = 5 * 60_000
  rec.record(pod, 'Warning', 'IssuanceFailed', 'Issue', 'denied')
  while (posts < 7 && Date.now() < deadline) await new Promise(r => setTimeout(r, 10))
  t.equal(notes.at(-1), 'denied (95 similar Events held back)')
})
