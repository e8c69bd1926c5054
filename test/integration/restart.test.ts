// kill -9 at every stage of an issuance, then restart: each volume converges
// with exactly one live CertificateRequest and valid files; nothing leaks.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CustomObjectsApi } from '@kubernetes/client-node'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness, type Volume } from '../helpers/node-harness.js'

const cp = await controlPlane(t)
const node = new NodeHarness(cp, t, ['--publish-timeout', '5s', '--resync-period', '2s'])
await node.start()
const A = (name: string): string => `csi.cert-manager.io/${name}`
const ecdsa = (issuer = 'ca-issuer'): Record<string, string> => ({ [A('issuer-name')]: issuer, [A('dns-names')]: 'restart.example.com', [A('key-algorithm')]: 'ECDSA' })

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(200)
  }
}

const publishEventually = (v: Volume, attrs: Record<string, string>): Promise<true> =>
  until(`publish of ${v.volumeId}`, async () => (await node.publish(v, attrs, 10_000), true as const), 30_000)

t.test('killed while keys are being made, before any request exists', async t => {
  const v = await node.newVolume()
  // RSA-4096 takes a second or more to generate: time enough to kill mid-way.
  const attrs = { ...ecdsa(), [A('key-algorithm')]: 'RSA', [A('key-size')]: '4096' }
  const pending = node.publish(v, attrs, 30_000).catch(() => undefined)
  await until('the record', async () => (existsSync(join(node.dataRoot, 'volumes', v.volumeId, 'record.json')) ? true : undefined), 5_000)
  await node.kill()
  await pending
  const before = await node.requestsFor(v)
  t.comment(`requests at the kill: ${before.length}`)
  await node.start()
  await publishEventually(v, attrs)
  t.equal((await node.requestsFor(v)).length, 1, 'exactly one CertificateRequest')
  t.ok(new X509Certificate(node.read(v, 'crt.pem')), 'files in place')
})

t.test('killed while the request is pending: the same request is resumed', async t => {
  const issuer = `late-issuer-${Date.now().toString(36)}`
  const v = await node.newVolume()
  await t.rejects(node.publish(v, ecdsa(issuer)), { code: 4, details: /not found/ })
  const [name] = await node.requestsFor(v)
  t.ok(name, 'a request is pending')
  await node.kill()
  // The issuer appears while the driver is down.
  await cp.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'cert-manager.io', version: 'v1', plural: 'issuers', namespace: 'sandbox',
    body: { apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: { name: issuer, namespace: 'sandbox' }, spec: { ca: { secretName: 'ca-key-pair' } } },
  })
  await node.start()
  await publishEventually(v, ecdsa(issuer))
  t.same(await node.requestsFor(v), [name], 'the request made before the kill, and no other')
  t.ok(new X509Certificate(node.read(v, 'crt.pem')), 'files in place')
})

t.test('killed after issuance: files stay, nothing is re-issued', async t => {
  const v = await node.newVolume()
  await node.publish(v, ecdsa())
  const cert = node.read(v, 'crt.pem')
  const names = await node.requestsFor(v)
  await node.kill()
  t.equal(node.read(v, 'crt.pem'), cert, 'the pod keeps its files while the driver is down')
  await node.start()
  await node.publish(v, ecdsa())
  t.equal(node.read(v, 'crt.pem'), cert, 'same certificate after the restart')
  t.same(await node.requestsFor(v), names, 'no new CertificateRequest')
})

t.test('a mount lost while the driver was down is restored', async t => {
  const v = await node.newVolume()
  await node.publish(v, ecdsa())
  await node.kill()
  execFileSync('umount', [v.targetPath])
  t.notOk(node.isMounted(v.targetPath), 'unmounted behind the driver\'s back')
  await node.start()
  await until('the mount', async () => (node.isMounted(v.targetPath) ? true : undefined))
  t.ok(new X509Certificate(node.read(v, 'crt.pem')), 'files visible at the target again')
})

t.test('a pod that went away while the driver was down is garbage-collected', async t => {
  const v = await node.newVolume()
  await node.publish(v, ecdsa())
  t.equal((await node.requestsFor(v)).length, 1)
  await node.kill()
  // What the kubelet does when it cleans up a deleted pod's directory.
  execFileSync('umount', [v.targetPath])
  rmSync(dirname(v.targetPath), { recursive: true })
  await node.start()
  await until('the garbage collection', async () => ((await node.requestsFor(v)).length === 0 ? true : undefined))
  t.pass('its CertificateRequests are deleted')
  t.notOk(existsSync(join(node.dataRoot, 'volumes', v.volumeId)), 'its record and keys are gone')
})

t.test('a corrupt record is set aside, not a crash loop', async t => {
  const v = await node.newVolume()
  await node.publish(v, ecdsa())
  await node.kill()
  execFileSync('sh', ['-c', `echo '{not json' > ${join(node.dataRoot, 'volumes', v.volumeId, 'record.json')}`])
  await node.start()
  await node.driver!.waitForLog(/corrupt volume record set aside/, 10_000)
  const left = readdirSync(join(node.dataRoot, 'volumes', v.volumeId))
  t.ok(left.some(f => f.startsWith('record.json.corrupt-')), 'the corrupt record is kept for inspection')
  // The kubelet's next publish records the volume again and it converges.
  await publishEventually(v, ecdsa())
  t.ok(new X509Certificate(node.read(v, 'crt.pem')), 'served again')
})

t.test('unpublish of a volume whose record was lost still releases its mount', async t => {
  const v = await node.newVolume()
  await node.publish(v, ecdsa())
  await node.kill()
  execFileSync('sh', ['-c', `echo garbage > ${join(node.dataRoot, 'volumes', v.volumeId, 'record.json')}`])
  await node.start()
  await node.driver!.waitForLog(/corrupt volume record set aside/, 10_000)
  t.ok(node.isMounted(v.targetPath), 'still mounted: the driver does not know it any more')
  await node.unpublish(v)
  t.notOk(node.isMounted(v.targetPath), 'unmounted by unpublish all the same')
  t.notOk(existsSync(join(node.dataRoot, 'volumes', v.volumeId)), 'its folder, key included, is removed: nothing would ever reconcile it')
  // Without its record nothing proves the request is this volume's (labels
  // and annotations are anyone's to copy, issue 12), so the driver leaves it
  // alone; its owner reference to the pod hands it to the garbage collector.
  t.equal((await node.requestsFor(v)).length, 1, 'its CertificateRequest is left to the garbage collector, not deleted on a label')
})

t.test('unpublish of an unknown volume leaves a mount that is not from this driver alone', async t => {
  const v = await node.newVolume()
  const hostDir = mkdtempSync(join(tmpdir(), 'not-ours-'))
  mkdirSync(v.targetPath, { recursive: true })
  execFileSync('mount', ['--bind', hostDir, v.targetPath])
  t.teardown(() => {
    try { execFileSync('umount', [v.targetPath]) } catch { /* already gone */ }
    rmSync(hostDir, { recursive: true, force: true })
  })
  await node.unpublish(v)
  t.ok(node.isMounted(v.targetPath), 'a bind of a host folder at a target the driver never served is not unmounted')
  await node.driver!.waitForLog(/not from this driver; left alone/, 10_000)
  t.pass('and the driver says why')
})

t.test('no request leaked across all of the above', async t => {
  const all = await node.requests()
  const perVolume = new Map<string, number>()
  for (const r of all) perVolume.set(r.volumeId, (perVolume.get(r.volumeId) ?? 0) + 1)
  t.ok([...perVolume.values()].every(n => n === 1), `one request per live volume (${JSON.stringify([...perVolume.values()])})`)
})
