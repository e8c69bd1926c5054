// Renewal with short-lived certificates: replaced in place before expiry,
// a new key unless reuse-private-key, nothing with disable-auto-renew.
import t from 'tap'
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { EventsV1Api } from '@kubernetes/client-node'
import { setTimeout as sleep } from 'node:timers/promises'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness, type Volume } from '../helpers/node-harness.js'

const cp = await controlPlane(t)
const node = new NodeHarness(cp, t)
await node.start()
const A = (name: string): string => `csi.cert-manager.io/${name}`

// 1m lifetime, renew 45s before expiry: the first renewal is due ~15s in.
const short = {
  [A('issuer-name')]: 'ca-issuer',
  [A('dns-names')]: 'renew.example.com',
  [A('key-algorithm')]: 'ECDSA',
  [A('duration')]: '1m',
  [A('renew-before')]: '45s',
}
const spki = (pem: string): string => createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('base64')
const serial = (v: Volume): string => new X509Certificate(node.read(v, 'crt.pem')).serialNumber

async function waitForNewSerial(v: Volume, old: string, timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const now = serial(v)
    if (now !== old) return now
    await sleep(250)
  }
  return undefined
}

async function podEventReasons(v: Volume): Promise<string[]> {
  const api = cp.kc.makeApiClient(EventsV1Api)
  const list = await api.listNamespacedEvent({ namespace: v.pod.namespace, fieldSelector: `regarding.name=${v.pod.name}` })
  return list.items.map(e => e.reason ?? '')
}

const [fresh, reuse, frozen] = [await node.newVolume(), await node.newVolume(), await node.newVolume()]
await Promise.all([
  node.publish(fresh, short),
  node.publish(reuse, { ...short, [A('reuse-private-key')]: 'true' }),
  node.publish(frozen, { ...short, [A('disable-auto-renew')]: 'true' }),
])
const before = new Map([fresh, reuse, frozen].map(v => [v, { serial: serial(v), key: spki(node.read(v, 'key.pem')) }]))

t.test('renewed in place with a new key', async t => {
  const renewed = await waitForNewSerial(fresh, before.get(fresh)!.serial, 40_000)
  t.ok(renewed, 'a new certificate appeared at the target before the old one expired')
  const cert = new X509Certificate(node.read(fresh, 'crt.pem'))
  t.equal(spki(node.read(fresh, 'key.pem')), cert.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), 'key and certificate match')
  t.not(spki(node.read(fresh, 'key.pem')), before.get(fresh)!.key, 'the key changed')
  // The superseded request is deleted once the new one has issued.
  const deadline = Date.now() + 10_000
  while ((await node.requestsFor(fresh)).length > 1 && Date.now() < deadline) await sleep(200)
  t.equal((await node.requestsFor(fresh)).length, 1, 'one CertificateRequest left')
  const reasons = await podEventReasons(fresh)
  t.ok(reasons.includes('Issued'), 'Issued event on the pod')
  t.ok(reasons.includes('Renewed'), 'Renewed event on the pod')
})

t.test('reuse-private-key keeps the key', async t => {
  t.ok(await waitForNewSerial(reuse, before.get(reuse)!.serial, 40_000), 'renewed')
  t.equal(spki(node.read(reuse, 'key.pem')), before.get(reuse)!.key, 'same key')
})

t.test('disable-auto-renew leaves the certificate alone', async t => {
  // By now the other two have renewed: this one was due at the same time.
  t.equal(serial(frozen), before.get(frozen)!.serial, 'not renewed')
  t.equal((await node.requestsFor(frozen)).length, 1, 'no second request')
})
