// Each attribute's effect on what the pod finds in its volume, with the
// certificate signed by the real cert-manager CA issuer.
import t from 'tap'
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness } from '../helpers/node-harness.js'

const cp = await controlPlane(t)
const node = new NodeHarness(cp, t, ['--resync-period', '2s', '--annotation-prefixes', 'example.com'])
await node.start()
const root = new X509Certificate(readFileSync(cp.issuerCaFile))
const A = (name: string): string => `csi.cert-manager.io/${name}`

const spki = (pem: string): string => createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('base64')
const certSpki = (c: X509Certificate): string => c.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
const opensslText = (pem: string): string => {
  const f = join(mkdtempSync(join(tmpdir(), 'crt-')), 'c.pem')
  writeFileSync(f, pem)
  return execFileSync('openssl', ['x509', '-in', f, '-noout', '-text'], { encoding: 'utf8' })
}

t.test('subject, SANs, usages, duration, is-ca and file names', async t => {
  const v = await node.newVolume()
  await node.publish(v, {
    [A('issuer-name')]: 'ca-issuer',
    [A('common-name')]: '${POD_NAME}.${POD_NAMESPACE}',
    [A('dns-names')]: '${POD_NAME}.sandbox.svc,alt.example.com',
    [A('ip-sans')]: '10.1.2.3,::1',
    [A('uri-sans')]: 'spiffe://cluster.local/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}',
    [A('organizations')]: 'Acme',
    [A('key-usages')]: 'digital signature,key encipherment,server auth,client auth',
    [A('duration')]: '2h',
    [A('is-ca')]: 'true',
    [A('certificate-file')]: 'tls.crt',
    [A('privatekey-file')]: 'tls.key',
    [A('ca-file')]: 'root.crt',
    'example.com/team': 'payments',
  })
  const cert = new X509Certificate(node.read(v, 'tls.crt'))
  t.match(cert.subject, `CN=${v.pod.name}.sandbox`, 'CN with pod variables expanded')
  t.match(cert.subject, 'O=Acme')
  t.match(cert.subjectAltName ?? '', `DNS:${v.pod.name}.sandbox.svc`)
  t.match(cert.subjectAltName ?? '', 'DNS:alt.example.com')
  t.match(cert.subjectAltName ?? '', 'IP Address:10.1.2.3')
  t.match(cert.subjectAltName ?? '', 'URI:spiffe://cluster.local/ns/sandbox/sa/default')
  const text = opensslText(cert.toString())
  t.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/, 'extended key usages')
  t.match(text, /CA:TRUE/, 'is-ca gives a CA certificate')
  const lifetimeH = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 3600_000
  t.ok(lifetimeH > 1.9 && lifetimeH <= 2.01, `duration 2h honoured (${lifetimeH.toFixed(2)}h)`)
  t.equal(spki(node.read(v, 'tls.key')), certSpki(cert), 'tls.key matches tls.crt')
  t.equal(node.read(v, 'root.crt').trim(), root.toString().trim(), 'CA under its own name')
  const crs = await node.requests()
  const mine = crs.filter(r => r.volumeId === v.volumeId)
  t.equal(mine.length, 1)
  t.equal(mine[0]?.annotations['example.com/team'], 'payments', 'an attribute with an allowed prefix (--annotation-prefixes example.com) is a request annotation')
})

t.test('credential-bundle-file: the key and its chain in one file', async t => {
  const v = await node.newVolume()
  await node.publish(v, {
    [A('issuer-name')]: 'ca-issuer',
    [A('dns-names')]: 'bundle.example.com',
    [A('key-algorithm')]: 'ECDSA',
    [A('credential-bundle-file')]: 'tls-combined.pem',
  })
  const bundle = node.read(v, 'tls-combined.pem')
  const blocks = bundle.match(/-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----\n/g) ?? []
  t.equal(blocks.join(''), bundle, 'nothing but PEM blocks')
  t.match(blocks[0], /^-----BEGIN EC PRIVATE KEY-----/, 'the key first, in the encoding asked for (PKCS1/SEC1)')
  t.equal(bundle, node.read(v, 'key.pem') + node.read(v, 'crt.pem'), 'key.pem then crt.pem, byte for byte')
  const leaf = new X509Certificate(blocks[1]!)
  t.equal(spki(blocks[0]!), certSpki(leaf), 'the key belongs to the certificate that follows it')
  t.ok(leaf.verify(root.publicKey), 'signed by the issuer')
})

t.test('ECDSA P-384 in PKCS#8 from the ClusterIssuer', async t => {
  const v = await node.newVolume()
  await node.publish(v, {
    [A('issuer-name')]: cp.clusterIssuer.name,
    [A('issuer-kind')]: 'ClusterIssuer',
    [A('issuer-group')]: 'cert-manager.io',
    [A('dns-names')]: 'ec.example.com',
    [A('key-algorithm')]: 'ECDSA',
    [A('key-size')]: '384',
    [A('key-encoding')]: 'PKCS8',
  })
  const keyPem = node.read(v, 'key.pem')
  t.match(keyPem, /^-----BEGIN PRIVATE KEY-----/, 'PKCS#8')
  const key = createPrivateKey(keyPem)
  t.equal(key.asymmetricKeyType, 'ec')
  t.equal(key.asymmetricKeyDetails?.namedCurve, 'secp384r1')
  const cert = new X509Certificate(node.read(v, 'crt.pem'))
  t.ok(cert.verify(root.publicKey), 'signed through the ClusterIssuer')
  t.equal(spki(keyPem), certSpki(cert))
})

t.test('Ed25519', async t => {
  const v = await node.newVolume()
  await node.publish(v, { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'ed.example.com', [A('key-algorithm')]: 'Ed25519' })
  const key = createPrivateKey(node.read(v, 'key.pem'))
  t.equal(key.asymmetricKeyType, 'ed25519')
  t.equal(spki(node.read(v, 'key.pem')), certSpki(new X509Certificate(node.read(v, 'crt.pem'))))
})

t.test('fs-group makes the files 0440 with that group', async t => {
  const v = await node.newVolume()
  await node.publish(v, { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'fs.example.com', [A('fs-group')]: '2000', [A('key-algorithm')]: 'ECDSA' })
  for (const f of ['key.pem', 'crt.pem', 'ca.pem']) {
    const st = statSync(join(v.targetPath, f))
    t.equal(st.mode & 0o777, 0o440, `${f} is 0440`)
    t.equal(st.gid, 2000, `${f} group is 2000`)
  }
})

t.test('the pod\'s fsGroup from the kubelet (volume_mount_group) is the files\' group; fs-group wins over it', async t => {
  const groupOf = (v: { targetPath: string }): Array<[number, number]> =>
    ['key.pem', 'crt.pem', 'ca.pem'].map(f => statSync(join(v.targetPath, f))).map(st => [st.gid, st.mode & 0o777])
  const fromKubelet = await node.newVolume()
  await node.publish(fromKubelet, { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'mg.example.com', [A('key-algorithm')]: 'ECDSA' }, 60_000, { mountGroup: '3000' })
  t.same(groupOf(fromKubelet), [[3000, 0o440], [3000, 0o440], [3000, 0o440]], 'group 3000, mode 0440, with no attribute')

  const both = await node.newVolume()
  await node.publish(both, { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'mg2.example.com', [A('key-algorithm')]: 'ECDSA', [A('fs-group')]: '2000' }, 60_000, { mountGroup: '3000' })
  t.same(groupOf(both), [[2000, 0o440], [2000, 0o440], [2000, 0o440]], 'the attribute wins')

  // Rendered again later from the record alone (the resync heals a deleted
  // file): the kubelet's group must have been kept with it.
  execFileSync('rm', ['-f', join(node.dataRoot, 'volumes', fromKubelet.volumeId, 'published', 'crt.pem')])
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    try { statSync(join(fromKubelet.targetPath, 'crt.pem')); break } catch { await new Promise(r => setTimeout(r, 100)) }
  }
  t.same(groupOf(fromKubelet), [[3000, 0o440], [3000, 0o440], [3000, 0o440]], 'the healed files keep the kubelet\'s group')
})

t.test('PKCS#12 keystore opens with the password and holds the same key', async t => {
  const v = await node.newVolume()
  await node.publish(v, {
    [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'p12.example.com', [A('key-algorithm')]: 'ECDSA',
    [A('pkcs12-enable')]: 'true', [A('pkcs12-filename')]: 'keystore.p12', [A('pkcs12-password')]: 's3cret',
  })
  const out = execFileSync('openssl', ['pkcs12', '-in', join(v.targetPath, 'keystore.p12'), '-passin', 'pass:s3cret', '-nodes'], { encoding: 'utf8' })
  const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(out)?.[0] ?? ''
  t.equal(spki(keyPem), spki(node.read(v, 'key.pem')), 'same key as key.pem')
  t.match(out, new X509Certificate(node.read(v, 'crt.pem')).toString().split('\n')[1]!, 'holds the certificate')
  t.throws(() => execFileSync('openssl', ['pkcs12', '-in', join(v.targetPath, 'keystore.p12'), '-passin', 'pass:wrong', '-nodes'], { stdio: 'pipe' }), 'wrong password fails')
  t.notMatch(node.driver!.logs(), /s3cret/, 'the password never reaches the log')
})

t.test('deleted or altered files heal themselves', async t => {
  const v = await node.newVolume()
  await node.publish(v, { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'heal.example.com', [A('key-algorithm')]: 'ECDSA' })
  const before = node.read(v, 'crt.pem')
  const published = join(node.dataRoot, 'volumes', v.volumeId, 'published')
  execFileSync('rm', ['-f', join(published, 'crt.pem')])
  t.throws(() => node.read(v, 'crt.pem'), 'the pod has lost its certificate')
  // Nothing tells the driver: the periodic resync (2s here) finds it.
  const deadline = Date.now() + 15_000
  let after = ''
  while (Date.now() < deadline) {
    try { after = node.read(v, 'crt.pem'); break } catch { await new Promise(r => setTimeout(r, 100)) }
  }
  t.equal(after, before, 'the same certificate is back')
  t.equal((await node.requestsFor(v)).length, 1, 'without a new CertificateRequest')
})
