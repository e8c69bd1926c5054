import t from 'tap'
import { execFile } from 'node:child_process'
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describeKey, encodePrivateKeyPem, generatePrivateKey, keyMatchesSpec, parsePrivateKeyPem, publicKeyMatches } from '../../src/pki/keys.js'
import type { KeyEncoding, KeySpec } from '../../src/volume/types.js'

const run = promisify(execFile)
const dir = await mkdtemp(join(tmpdir(), 'csi-keys-test-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

async function openssl(args: string[], input?: { name: string; data: string }): Promise<{ stdout: Buffer; stderr: string }> {
  if (input) await writeFile(join(dir, input.name), input.data)
  const { stdout, stderr } = await run('openssl', args, { cwd: dir, encoding: 'buffer' })
  return { stdout, stderr: stderr.toString() }
}

const spki = (k: KeyObject) => createPublicKey(k).export({ type: 'spki', format: 'der' })

const kinds: Array<{ name: string; spec: Omit<KeySpec, 'encoding'>; pkcs1Label?: string; opensslType: RegExp }> = [
  // RSA keygen takes ~250 ms here: one RSA case only.
  { name: 'RSA-2048', spec: { algorithm: 'RSA', size: 2048 }, pkcs1Label: 'RSA PRIVATE KEY', opensslType: /Private-Key: \(2048 bit, 2 primes\)/ },
  { name: 'ECDSA P-256', spec: { algorithm: 'ECDSA', size: 256 }, pkcs1Label: 'EC PRIVATE KEY', opensslType: /NIST CURVE: P-256/ },
  { name: 'ECDSA P-384', spec: { algorithm: 'ECDSA', size: 384 }, pkcs1Label: 'EC PRIVATE KEY', opensslType: /NIST CURVE: P-384/ },
  { name: 'ECDSA P-521', spec: { algorithm: 'ECDSA', size: 521 }, pkcs1Label: 'EC PRIVATE KEY', opensslType: /NIST CURVE: P-521/ },
  { name: 'Ed25519', spec: { algorithm: 'Ed25519', size: 0 }, opensslType: /ED25519 Private-Key/ },
]

for (const kind of kinds) {
  t.test(kind.name, async (t) => {
    const key = await generatePrivateKey({ ...kind.spec, encoding: 'PKCS8' })
    t.equal(key.type, 'private')
    t.same(describeKey(key), kind.spec, 'the key is what was asked for')
    if (kind.spec.algorithm === 'RSA') t.equal(key.asymmetricKeyDetails?.publicExponent, 65537n, 'public exponent 65537')

    const encodings: KeyEncoding[] = ['PKCS1', 'PKCS8']
    for (const encoding of encodings) {
      if (encoding === 'PKCS1' && !kind.pkcs1Label) {
        t.throws(() => encodePrivateKeyPem(key, encoding), /PKCS8/, 'PKCS1 is refused for Ed25519')
        continue
      }
      const pem = encodePrivateKeyPem(key, encoding)
      const label = encoding === 'PKCS1' ? kind.pkcs1Label : 'PRIVATE KEY'
      t.match(pem, new RegExp(`^-----BEGIN ${label}-----\n[A-Za-z0-9+/=\n]+-----END ${label}-----\n$`), `${encoding}: PEM label ${label}`)

      const back = parsePrivateKeyPem(pem)
      t.ok(back.equals(key), `${encoding}: parses back to the same key`)

      // Independent reader: OpenSSL must see the same key and derive the same public key.
      const file = `${kind.name}-${encoding}.pem`
      const text = await openssl(['pkey', '-in', file, '-noout', '-text'], { name: file, data: pem })
      t.match(text.stdout.toString(), kind.opensslType, `${encoding}: openssl reads the key type`)
      const pub = await openssl(['pkey', '-in', file, '-pubout', '-outform', 'DER'])
      t.ok(pub.stdout.equals(spki(key)), `${encoding}: openssl derives the same public key`)
    }
  })
}

t.test('invalid key specs are refused', async (t) => {
  await t.rejects(generatePrivateKey({ algorithm: 'RSA', size: 1024, encoding: 'PKCS1' }), RangeError)
  await t.rejects(generatePrivateKey({ algorithm: 'RSA', size: 2048.5, encoding: 'PKCS1' }), RangeError)
  await t.rejects(generatePrivateKey({ algorithm: 'ECDSA', size: 224, encoding: 'PKCS1' }), RangeError)
  await t.rejects(generatePrivateKey({ algorithm: 'DSA' as never, size: 2048, encoding: 'PKCS1' }), TypeError)
})

t.test('encoding refuses public keys, parsing refuses garbage', async (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  t.throws(() => encodePrivateKeyPem(publicKey, 'PKCS8'), /not a private key/)
  t.throws(() => parsePrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'))
  t.throws(() => parsePrivateKeyPem('not a key'))
  t.throws(() => parsePrivateKeyPem(publicKey.export({ type: 'spki', format: 'pem' }) as string))
})

t.test('keyMatchesSpec compares algorithm and size, not encoding', async (t) => {
  const ec = await generatePrivateKey({ algorithm: 'ECDSA', size: 384, encoding: 'PKCS1' })
  t.ok(keyMatchesSpec(ec, { algorithm: 'ECDSA', size: 384, encoding: 'PKCS8' }))
  t.notOk(keyMatchesSpec(ec, { algorithm: 'ECDSA', size: 256, encoding: 'PKCS1' }))
  t.notOk(keyMatchesSpec(ec, { algorithm: 'RSA', size: 384, encoding: 'PKCS1' }))
  const ed = await generatePrivateKey({ algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' })
  t.ok(keyMatchesSpec(ed, { algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' }))
  t.notOk(keyMatchesSpec(ed, { algorithm: 'ECDSA', size: 256, encoding: 'PKCS8' }))
  t.equal(describeKey(generateKeyPairSync('x25519').privateKey), undefined, 'a key type we never make is undescribed')
})

t.test('publicKeyMatches tells a certificate of this key from one of another', async (t) => {
  const mine = await generatePrivateKey({ algorithm: 'ECDSA', size: 256, encoding: 'PKCS8' })
  const other = await generatePrivateKey({ algorithm: 'ECDSA', size: 256, encoding: 'PKCS8' })
  const ed = await generatePrivateKey({ algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' })
  // The certificate comes from OpenSSL, not from our own code.
  await writeFile(join(dir, 'mine.pem'), encodePrivateKeyPem(mine, 'PKCS8'))
  const cert = await openssl(['req', '-x509', '-key', 'mine.pem', '-subj', '/CN=match-test', '-days', '1'])
  const certPem = cert.stdout.toString()
  t.ok(publicKeyMatches(mine, certPem), 'own key matches')
  t.ok(publicKeyMatches(createPublicKey(mine), certPem), 'its public half matches too')
  t.notOk(publicKeyMatches(other, certPem), 'another key of the same type does not')
  t.notOk(publicKeyMatches(ed, certPem), 'a key of another type does not')
  t.throws(() => publicKeyMatches(mine, 'not a certificate'))
})
