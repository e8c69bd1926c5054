// The product description's example, end to end through the real socket:
// five pods of my-csi-app each get their own key and certificate from
// ca-issuer; republish is a no-op; unpublish leaves nothing behind.
import t from 'tap'
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness, type Volume } from '../helpers/node-harness.js'

const cp = await controlPlane(t)
const node = new NodeHarness(cp, t)
await node.start()

const attributes = {
  'csi.cert-manager.io/issuer-name': 'ca-issuer',
  'csi.cert-manager.io/dns-names': 'my-service.sandbox.svc.cluster.local',
}
const root = new X509Certificate(readFileSync(cp.issuerCaFile))
const spki = (pem: string): string => createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('base64')

const volumes: Volume[] = []

t.test('five pods of my-csi-app each get their own key and certificate', async t => {
  for (let i = 0; i < 5; i++) volumes.push(await node.newVolume('sandbox', `my-csi-app-${Date.now().toString(36)}-${i}`))
  await Promise.all(volumes.map(v => node.publish(v, attributes)))
  const keys = new Set<string>()
  for (const v of volumes) {
    const keyPem = node.read(v, 'key.pem')
    const cert = new X509Certificate(node.read(v, 'crt.pem'))
    t.match(keyPem, /^-----BEGIN RSA PRIVATE KEY-----/, 'PKCS#1 RSA key by default')
    t.equal(createPrivateKey(keyPem).asymmetricKeyDetails?.modulusLength, 2048, 'RSA-2048')
    t.equal(spki(keyPem), cert.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), 'key matches certificate')
    t.match(cert.subjectAltName, 'DNS:my-service.sandbox.svc.cluster.local')
    t.ok(cert.verify(root.publicKey), 'signed by the CA behind ca-issuer')
    t.equal(node.read(v, 'ca.pem').trim(), root.toString().trim(), 'ca.pem is the issuer CA')
    t.ok(node.isMounted(v.targetPath), 'target is a mount point')
    t.equal(statSync(`${v.targetPath}/key.pem`).mode & 0o777, 0o400, 'key is 0400')
    t.equal((await node.requestsFor(v)).length, 1, 'exactly one CertificateRequest')
    keys.add(spki(keyPem))
  }
  t.equal(keys.size, 5, 'five distinct keys')
})

t.test('republish of a ready volume is a no-op', async t => {
  const v = volumes[0]!
  const before = node.read(v, 'crt.pem')
  const started = process.hrtime.bigint()
  for (let i = 0; i < 20; i++) await node.publish(v, attributes)
  const ms = Number(process.hrtime.bigint() - started) / 1e6 / 20
  t.comment(`republish: ${ms.toFixed(2)} ms per call`)
  t.equal(node.read(v, 'crt.pem'), before, 'same certificate')
  t.equal((await node.requestsFor(v)).length, 1, 'no new CertificateRequest')
})

t.test('a writable mount is refused with a message that says how to fix the pod', async t => {
  const v = await node.newVolume()
  const req = node.client!.publishRequest({ volumeId: v.volumeId, targetPath: v.targetPath, attributes, pod: v.pod })
  await t.rejects(node.client!.call('NodePublishVolume', { ...req, readonly: false }), { code: 3, details: /readOnly: true/ })
  t.same(await node.requestsFor(v), [], 'no CertificateRequest for a refused volume')
})

t.test('unpublish removes the mount, the files and the requests; twice is fine', async t => {
  const v = volumes[1]!
  await node.unpublish(v)
  t.notOk(node.isMounted(v.targetPath), 'unmounted')
  t.notOk(existsSync(`${v.targetPath}/key.pem`), 'no key left at the target')
  t.same(await node.requestsAfterUnpublish(v), [], 'CertificateRequests deleted')
  await node.unpublish(v)
  t.pass('second unpublish succeeds')
  await node.client!.unpublish('csi-never-seen', `${node.root}/nowhere/mount`)
  t.pass('unknown volume succeeds')
})

t.test('a change to the store made from outside the process is reconciled', async t => {
  const v = volumes[2]!
  const recordPath = join(node.dataRoot, 'volumes', v.volumeId, 'record.json')
  const record = JSON.parse(readFileSync(recordPath, 'utf8')) as { desired: string }
  // As an operator might, by hand: mark the volume unpublished.
  writeFileSync(recordPath, JSON.stringify({ ...record, desired: 'unpublished' }))
  const deadline = Date.now() + 10_000
  while (node.isMounted(v.targetPath) && Date.now() < deadline) await sleep(100)
  t.notOk(node.isMounted(v.targetPath), 'the file watcher brought the reconciler, which tore the volume down')
  t.same(await node.requestsAfterUnpublish(v), [], 'and deleted its CertificateRequest')
})

t.test('metrics and health endpoints tell the same story', async t => {
  const port = /"address":\{"host":"127\.0\.0\.1","port":(\d+)\}/.exec(node.driver!.logs())?.[1]
  t.ok(port, 'the driver logged its metrics address')
  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`)
    return { status: res.status, body: await res.text() }
  }
  t.equal((await get('/healthz')).status, 200, '/healthz')
  t.equal((await get('/readyz')).status, 200, '/readyz: informer synced, data root ready')
  const metrics = (await get('/metrics')).body
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN)
  t.ok(value('certmanager_csi_issuances_total\\{kind="issue"\\}') >= 5, 'the five example certificates are counted')
  t.ok(value('certmanager_csi_managed_volumes') >= 3, 'managed volumes')
  t.ok(value('certmanager_csi_certificate_expiration_timestamp_seconds') > Date.now() / 1000, 'earliest expiry is in the future')
  t.match(metrics, /certmanager_csi_issuance_duration_seconds_bucket\{le="[^"]+",kind="issue"\}/, 'issuance latency histogram')
  t.notMatch(metrics, /volume_id=/, 'no per-volume labels unless asked for')
})
