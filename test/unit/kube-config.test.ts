// API calls reuse TLS connections: one handshake for many requests.
import t from 'tap'
import { createServer } from 'node:https'
import { once } from 'node:events'
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { reuseConnections } from '../../src/kube/config.js'
import { makeAuthority, issueLeaf } from '../cluster/pki.js'

const ca = await makeAuthority('test-ca')
const serving = await issueLeaf(ca, { commonName: 'localhost', ips: ['127.0.0.1'], server: true })
const server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' } }))
})
let handshakes = 0
server.on('secureConnection', () => handshakes++)
server.listen(0, '127.0.0.1')
await once(server, 'listening')
t.teardown(() => new Promise<void>(r => { server.closeAllConnections(); server.close(() => r()) }))
const { port } = server.address() as { port: number }

function kubeconfig(): KubeConfig {
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `https://127.0.0.1:${port}`, caData: Buffer.from(ca.certPem).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  return kc
}

async function handshakesFor(kc: KubeConfig, calls: number): Promise<number> {
  const before = handshakes
  const api = kc.makeApiClient(CoreV1Api)
  for (let i = 0; i < calls; i++) await api.readNamespacedPod({ name: 'p', namespace: 'default' })
  return handshakes - before
}

t.test('the stock client handshakes on every call (the bug this works around)', async t => {
  t.equal(await handshakesFor(kubeconfig(), 5), 5)
})

t.test('with reuseConnections, five calls share one connection', async t => {
  const kc = kubeconfig()
  reuseConnections(kc)
  t.equal(await handshakesFor(kc, 5), 1)
})
