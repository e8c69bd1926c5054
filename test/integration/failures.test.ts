// Bad input and issuers that cannot sign: a clear error, no request for
// invalid input, exactly one request however often the kubelet retries,
// and nothing left behind after unpublish.
import t from 'tap'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness } from '../helpers/node-harness.js'

const cp = await controlPlane(t)
const node = new NodeHarness(cp, t, ['--publish-timeout', '3s'])
await node.start()
const A = (name: string): string => `csi.cert-manager.io/${name}`
const volumeDirs = (): string[] => (existsSync(join(node.dataRoot, 'volumes')) ? readdirSync(join(node.dataRoot, 'volumes')) : [])

const invalid: Array<{ name: string; attributes: Record<string, string>; details: RegExp }> = [
  { name: 'no issuer', attributes: { [A('dns-names')]: 'a.example.com' }, details: /csi\.cert-manager\.io\/issuer-name/ },
  { name: 'bad duration', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('duration')]: '30 days' }, details: /csi\.cert-manager\.io\/duration/ },
  { name: 'renew-before not shorter than duration', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('duration')]: '1h', [A('renew-before')]: '2h' }, details: /csi\.cert-manager\.io\/renew-before/ },
  { name: 'path in a file name', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('certificate-file')]: '../crt.pem' }, details: /csi\.cert-manager\.io\/certificate-file/ },
  { name: 'typo in a key', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-name')]: 'a.example.com' }, details: /csi\.cert-manager\.io\/dns-name.*did you mean/ },
  { name: 'bad key size', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('key-algorithm')]: 'ECDSA', [A('key-size')]: '123' }, details: /csi\.cert-manager\.io\/key-size/ },
  { name: 'bad fs-group', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('fs-group')]: 'staff' }, details: /csi\.cert-manager\.io\/fs-group/ },
  { name: 'pkcs12 without password', attributes: { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('pkcs12-enable')]: 'true' }, details: /csi\.cert-manager\.io\/pkcs12-password/ },
  { name: 'bad IP', attributes: { [A('issuer-name')]: 'ca-issuer', [A('ip-sans')]: '10.0.0.300' }, details: /csi\.cert-manager\.io\/ip-sans/ },
]

t.test('invalid attributes: INVALID_ARGUMENT naming the attribute, nothing created', async t => {
  for (const c of invalid) {
    const v = await node.newVolume()
    await t.rejects(node.publish(v, c.attributes), { code: 3, details: c.details }, c.name)
    t.same(await node.requestsFor(v), [], `${c.name}: no CertificateRequest`)
    t.notOk(node.isMounted(v.targetPath), `${c.name}: nothing mounted`)
  }
  t.same(volumeDirs(), [], 'no volume recorded in the store')
})

t.test('several problems are reported at once', async t => {
  const v = await node.newVolume()
  const err = await node.publish(v, { [A('issuer-name')]: 'ca-issuer', [A('duration')]: 'x', [A('is-ca')]: 'yes', [A('dns-names')]: 'ok.example.com' }).catch((e: { details: string }) => e)
  t.match((err as { details: string }).details, /duration/)
  t.match((err as { details: string }).details, /is-ca/)
})

t.test('a missing issuer: the error says so, retries make no second request', async t => {
  const v = await node.newVolume()
  const attrs = { [A('issuer-name')]: 'no-such-issuer', [A('dns-names')]: 'a.example.com', [A('key-algorithm')]: 'ECDSA' }
  for (let i = 0; i < 3; i++) {
    await t.rejects(node.publish(v, attrs), { code: 4, details: /Issuer "no-such-issuer" not found in namespace "sandbox"/ }, `attempt ${i + 1}`)
  }
  t.equal((await node.requestsFor(v)).length, 1, 'one CertificateRequest across three publishes')
  t.notOk(node.isMounted(v.targetPath), 'never mounted without files')
  await node.unpublish(v)
  t.same(await node.requestsAfterUnpublish(v), [], 'unpublish deletes the pending request')
  t.same(volumeDirs().filter(d => d === v.volumeId), [], 'and forgets the volume')
})
