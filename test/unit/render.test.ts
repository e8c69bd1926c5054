import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { credentialBundle, isFresh, renderDeterministic } from '../../src/reconcile/render.js'
import { parseVolumeAttributes } from '../../src/volume/spec.js'
import type { VolumeSpec } from '../../src/volume/types.js'

const pod = { name: 'web-0', namespace: 'shop', uid: 'u-1', serviceAccountName: 'web' }
const specOf = (extra: Record<string, string> = {}): VolumeSpec => {
  const parsed = parseVolumeAttributes({ 'csi.cert-manager.io/issuer-name': 'ca', 'csi.cert-manager.io/dns-names': 'a.example', ...extra }, pod)
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues))
  return parsed.spec
}
const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
const chain = '-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nINTERMEDIATE\n-----END CERTIFICATE-----\n'
const stored = { keyPem, certificatePem: chain, caPem: '-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n' }

t.test('the credential bundle is the key in its encoding, then the chain', async t => {
  const spec = specOf({ 'csi.cert-manager.io/credential-bundle-file': 'tls-combined.pem', 'csi.cert-manager.io/key-encoding': 'PKCS8', 'csi.cert-manager.io/fs-group': '2000' })
  const files = renderDeterministic(spec, stored)
  const byName = new Map(files.map(f => [f.name, f]))
  t.same([...byName.keys()].sort(), ['ca.pem', 'crt.pem', 'key.pem', 'tls-combined.pem'])
  const bundle = byName.get('tls-combined.pem')!
  t.equal(bundle.data.toString(), byName.get('key.pem')!.data.toString() + chain, 'key.pem followed by crt.pem, byte for byte')
  t.notMatch(bundle.data.toString(), /ROOT/, 'the CA is not part of the bundle')
  t.equal(bundle.mode, 0o440, 'the same mode as the other files')
  t.equal(renderDeterministic(specOf(), stored).length, 3, 'no bundle unless asked for')
})

t.test('a key without a final newline still starts the chain on its own line', async t => {
  t.equal(credentialBundle('KEY', 'CERT\n'), 'KEY\nCERT\n')
  t.equal(credentialBundle('KEY\n', 'CERT\n'), 'KEY\nCERT\n')
})

t.test('a folder missing its bundle, or with another one, is not fresh', async t => {
  const spec = specOf({ 'csi.cert-manager.io/credential-bundle-file': 'bundle.pem' })
  const published = new Map(renderDeterministic(spec, stored).map(f => [f.name, f.data]))
  t.ok(isFresh(spec, stored, published, undefined), 'as rendered')
  const without = new Map(published)
  without.delete('bundle.pem')
  t.notOk(isFresh(spec, stored, without, undefined), 'bundle missing')
  t.notOk(isFresh(spec, stored, new Map([...published, ['bundle.pem', Buffer.from('stale')]]), undefined), 'bundle stale')
  t.notOk(isFresh(specOf(), stored, published, undefined), 'a bundle the spec no longer asks for')
})
