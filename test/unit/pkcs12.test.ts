// PKCS#12 keystores, checked with independent readers: the openssl CLI
// (OpenSSL 3), Java's keytool when it is on PATH, and a MAC check written here
// from RFC 7292 with node:crypto (not pkijs).

import { execFile } from 'node:child_process'
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  X509Certificate,
  type KeyObject,
} from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import * as asn1js from 'asn1js'
import t, { type Test } from 'tap'
import { buildPkcs12, KeystoreError, PKCS12_ITERATIONS, type KeystoreInput } from '../../src/pki/pkcs12.js'

const run = promisify(execFile)
const genKeyPair = promisify(generateKeyPair)

interface Run {
  code: number
  stdout: string
  stderr: string
}

async function exec(cmd: string, args: string[], cwd?: string): Promise<Run> {
  try {
    const { stdout, stderr } = await run(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 16 << 20 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string; code?: number | string }
    if (e.code === 'ENOENT') throw err
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

const keytoolAvailable = exec('keytool', ['-help']).then(
  () => true,
  () => false,
)

// Subtests run two at a time: most of the time goes to openssl and JVM starts.
t.jobs = 2

const dir = await mkdtemp(join(tmpdir(), 'pkcs12-test-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
let seq = 0
const tmp = (name: string) => join(dir, `${++seq}-${name}`)

type KeyKind = 'rsa-2048' | 'p-256' | 'p-384' | 'p-521' | 'ed25519'

async function makeKey(kind: KeyKind): Promise<KeyObject> {
  switch (kind) {
    case 'rsa-2048':
      return (await genKeyPair('rsa', { modulusLength: 2048 })).privateKey
    case 'p-256':
    case 'p-384':
    case 'p-521':
      return (await genKeyPair('ec', { namedCurve: kind.toUpperCase() })).privateKey
    case 'ed25519':
      return (await genKeyPair('ed25519')).privateKey
  }
}

/** PEM in the given encoding: PKCS#8, or the type-specific PKCS#1 (RSA) / SEC1 (EC). */
function keyPem(key: KeyObject, type: 'pkcs8' | 'pkcs1' | 'sec1' = 'pkcs8'): string {
  return key.export({ type, format: 'pem' }).toString()
}

/** A self-signed certificate made by the openssl CLI for the key. */
async function selfSigned(key: KeyObject, cn: string, ca = false): Promise<string> {
  const keyFile = tmp('key.pem')
  await writeFile(keyFile, keyPem(key))
  const args = ['req', '-x509', '-key', keyFile, '-subj', `/CN=${cn}`, '-days', '2']
  if (ca) args.push('-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign')
  const r = await exec('openssl', args)
  if (r.code !== 0) throw new Error(`openssl req: ${r.stderr}`)
  return r.stdout
}

/** A leaf for `key` signed by the CA (openssl x509 -req). */
async function signedBy(key: KeyObject, cn: string, caKey: KeyObject, caCert: string): Promise<string> {
  const keyFile = tmp('leaf.key'), csrFile = tmp('leaf.csr'), caKeyFile = tmp('ca.key'), caFile = tmp('ca.crt')
  await Promise.all([
    writeFile(keyFile, keyPem(key)),
    writeFile(caKeyFile, keyPem(caKey)),
    writeFile(caFile, caCert),
  ])
  let r = await exec('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${cn}`, '-out', csrFile])
  if (r.code !== 0) throw new Error(`openssl req -new: ${r.stderr}`)
  r = await exec('openssl', ['x509', '-req', '-in', csrFile, '-CA', caFile, '-CAkey', caKeyFile, '-set_serial', '7', '-days', '2'])
  if (r.code !== 0) throw new Error(`openssl x509 -req: ${r.stderr}`)
  return r.stdout
}

function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g')
  return text.match(re) ?? []
}

const spki = (k: KeyObject) => (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' })
const pkcs8 = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'der' })
const derOf = (pem: string) => new X509Certificate(pem).raw

async function writeP12(input: KeystoreInput): Promise<string> {
  const file = tmp('keystore.p12')
  await writeFile(file, await buildPkcs12(input))
  return file
}

async function opensslRead(file: string, password: string, info = false): Promise<Run> {
  return exec('openssl', ['pkcs12', '-in', file, '-passin', `pass:${password}`, '-nodes', ...(info ? ['-info'] : [])])
}

/**
 * openssl reads the keystore with the password, without falling back to its
 * "broken algorithm" compatibility path (which would mean a wrongly encoded
 * MAC password), and with the modern profile's algorithms.
 */
async function checkWithOpenssl(
  t: Test,
  file: string,
  password: string,
  key: KeyObject,
  certs: string[],
): Promise<void> {
  const r = await opensslRead(file, password, true)
  t.equal(r.code, 0, 'openssl pkcs12 reads it', { stderr: r.stderr })
  t.notMatch(r.stderr, /warning|broken|error/i, 'no warnings, no password-encoding fallback')
  t.match(r.stderr, `MAC: sha256, Iteration ${PKCS12_ITERATIONS}`, 'HMAC-SHA256 MAC')
  t.match(
    r.stderr,
    `PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration ${PKCS12_ITERATIONS}, PRF hmacWithSHA256`,
    'certificates in a PBES2/AES-256-CBC encrypted safe',
  )
  t.match(
    r.stderr,
    `Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration ${PKCS12_ITERATIONS}, PRF hmacWithSHA256`,
    'key in a PBES2/AES-256-CBC shrouded key bag',
  )

  const keys = pemBlocks(r.stdout, 'PRIVATE KEY')
  t.equal(keys.length, 1, 'one private key')
  const got = createPrivateKey(keys[0] ?? '')
  const gotCerts = pemBlocks(r.stdout, 'CERTIFICATE')
  t.same(gotCerts.map(derOf), certs.map(derOf), 'the certificates come back, in order')
  const leaf = new X509Certificate(gotCerts[0] ?? '')
  t.ok(spki(got).equals(spki(leaf.publicKey)), "extracted key's public key is the certificate's")
  t.ok(pkcs8(got).equals(pkcs8(key)), 'extracted key is the input key')

  // The key bag and the leaf's CertBag carry the same localKeyID: SHA-1 of the leaf.
  const keyIds = [...r.stdout.matchAll(/localKeyID: ([0-9A-F ]+)/g)].map((m) => (m[1] ?? '').replace(/ /g, ''))
  const leafId = createHash('sha1').update(leaf.raw).digest('hex').toUpperCase()
  t.same(keyIds, [leafId, leafId], 'localKeyID on the leaf and the key, and nowhere else')

  const wrong = await opensslRead(file, password + 'x')
  t.not(wrong.code, 0, 'openssl rejects a wrong password')
  t.match(wrong.stderr, /mac verify error/i)
}

// keytool is a JVM start per call: C1 only and the serial GC halve that.
const JVM_FAST_START = ['-J-XX:TieredStopAtLevel=1', '-J-XX:+UseSerialGC']

async function checkWithKeytool(t: Test, file: string, password: string, alias?: string, chainLength = 1): Promise<void> {
  if (!(await keytoolAvailable)) {
    t.comment('keytool not on PATH: Java check skipped')
    return
  }
  const list = (pw: string) => exec('keytool', [...JVM_FAST_START, '-list', '-v', '-storetype', 'PKCS12', '-keystore', file, '-storepass', pw])
  const [r, wrong] = await Promise.all([list(password), list(password + 'x')])
  // Java's PKCS12 keystore (through 17 at least) turns every password into a
  // "PBE" SecretKey, which takes printable ASCII only: it cannot write or read
  // any PKCS#12 file under a non-ASCII password, its own included.
  if (!/^[\x20-\x7e]*$/.test(password) && /Password is not ASCII/.test(r.stdout + r.stderr)) {
    t.comment('keytool: this Java takes only printable-ASCII PKCS#12 passwords; Java check skipped')
    return
  }
  t.equal(r.code, 0, 'keytool lists it', { stdout: r.stdout, stderr: r.stderr })
  t.match(r.stdout, 'Your keystore contains 1 entry')
  t.equal(r.stdout.match(/Entry type: PrivateKeyEntry/g)?.length, 1, 'one PrivateKeyEntry')
  t.match(r.stdout, `Certificate chain length: ${chainLength}`)
  if (alias !== undefined) t.match(r.stdout, `Alias name: ${alias}\n`, 'friendlyName is the alias')
  t.not(wrong.code, 0, 'keytool rejects a wrong password')
}

/** RFC 7292 B.2 KDF (SHA-256, one output block) and the MAC, with node:crypto. */
function checkMac(t: Test, p12: Buffer, password: string): void {
  const pfx = asn1js.fromBER(p12)
  t.equal(pfx.offset, p12.length, 'one DER object, no trailing bytes')
  const [version, authSafe, macData] = (pfx.result as asn1js.Sequence).valueBlock.value as [
    asn1js.Integer,
    asn1js.Sequence,
    asn1js.Sequence,
  ]
  t.equal(version.valueBlock.valueDec, 3)
  const content = ((authSafe.valueBlock.value[1] as asn1js.Constructed).valueBlock.value[0] as asn1js.OctetString).getValue()
  const [digestInfo, salt, iterations] = macData.valueBlock.value as [asn1js.Sequence, asn1js.OctetString, asn1js.Integer]
  const mac = Buffer.from((digestInfo.valueBlock.value[1] as asn1js.OctetString).getValue())

  const bmp = Buffer.concat([Buffer.from(password, 'utf16le').swap16(), Buffer.alloc(2)])
  const v = 64
  const fill = (b: Buffer) => (b.length === 0 ? b : Buffer.alloc(v * Math.ceil(b.length / v), b))
  let a = Buffer.concat([Buffer.alloc(v, 3), fill(Buffer.from(salt.getValue())), fill(bmp)])
  for (let i = 0; i < iterations.valueBlock.valueDec; i++) a = createHash('sha256').update(a).digest()
  const expected = createHmac('sha256', a).update(Buffer.from(content)).digest()
  t.ok(mac.equals(expected), 'MAC = HMAC-SHA256 keyed from the BMPString password with a trailing NUL')
}

const kinds: KeyKind[] = ['rsa-2048', 'p-256', 'p-384', 'p-521', 'ed25519']

for (const kind of kinds) {
  t.test(`${kind}: self-signed, read by openssl and keytool`, async (t) => {
    const key = await makeKey(kind)
    const cert = await selfSigned(key, `${kind}.example.com`)
    const password = 'changeit-42'
    const p12 = await buildPkcs12({ keyPem: keyPem(key), certificatePem: cert, password, friendlyName: 'tls' })
    const file = tmp(`${kind}.p12`)
    await writeFile(file, p12)
    checkMac(t, p12, password)
    await Promise.all([checkWithOpenssl(t, file, password, key, [cert]), checkWithKeytool(t, file, password, 'tls')])
  })
}

t.test('non-ASCII passwords', async (t) => {
  const key = await makeKey('p-256')
  const cert = await selfSigned(key, 'unicode.example.com')
  for (const password of ['pä55wörd', 'пароль-日本語', 'emoji-🔑-outside-the-BMP', 'ä'.repeat(100)]) {
    await t.test(password, async (t) => {
      const p12 = await buildPkcs12({ keyPem: keyPem(key), certificatePem: cert, password, friendlyName: 'tls' })
      const file = tmp('unicode.p12')
      await writeFile(file, p12)
      checkMac(t, p12, password)
      await Promise.all([checkWithOpenssl(t, file, password, key, [cert]), checkWithKeytool(t, file, password, 'tls')])
      // The same characters, read as Latin-1 bytes (what a wrongly encoded
      // MAC password would match), must not open it.
      const latin1 = Buffer.from(password, 'utf8').toString('latin1')
      const r = await opensslRead(file, latin1)
      t.not(r.code, 0, 'the password read as Latin-1 is wrong')
    })
  }
})

t.test('empty password: openssl -passin pass: reads it', async (t) => {
  const key = await makeKey('ed25519')
  const cert = await selfSigned(key, 'empty.example.com')
  const p12 = await buildPkcs12({ keyPem: keyPem(key), certificatePem: cert, password: '' })
  const file = tmp('empty.p12')
  await writeFile(file, p12)
  checkMac(t, p12, '')
  await checkWithOpenssl(t, file, '', key, [cert])
})

t.test('a long ASCII password (longer than one 64-byte KDF block as BMPString)', async (t) => {
  const key = await makeKey('p-256')
  const cert = await selfSigned(key, 'long.example.com')
  const password = 'A-long-passphrase:0123456789abcdefghijklmnopqrstuvwxyz!@#$%^&*()_+'
  const file = await writeP12({ keyPem: keyPem(key), certificatePem: cert, password, friendlyName: 'tls' })
  await Promise.all([checkWithOpenssl(t, file, password, key, [cert]), checkWithKeytool(t, file, password, 'tls')])
})

t.test('with a CA certificate', async (t) => {
  const caKey = await makeKey('p-384')
  const ca = await selfSigned(caKey, 'Test CA', true)
  for (const kind of ['rsa-2048', 'p-256', 'ed25519'] as const) {
    await t.test(kind, async (t) => {
      const key = await makeKey(kind)
      const leaf = await signedBy(key, `${kind}.svc`, caKey, ca)
      const password = 'changeit'

      // ca.crt given separately: two certificates come back, leaf first.
      let file = await writeP12({ keyPem: keyPem(key), certificatePem: leaf, caPem: ca, password, friendlyName: 'tls' })
      await Promise.all([checkWithOpenssl(t, file, password, key, [leaf, ca]), checkWithKeytool(t, file, password, 'tls', 2)])

      // The CA also at the end of the chain (as cert-manager often returns it): kept once.
      file = await writeP12({ keyPem: keyPem(key), certificatePem: leaf + ca, caPem: ca, password })
      await Promise.all([checkWithOpenssl(t, file, password, key, [leaf, ca]), checkWithKeytool(t, file, password, undefined, 2)])
    })
  }
})

t.test('a self-signed leaf that is also ca.crt is stored once', async (t) => {
  const key = await makeKey('p-256')
  const cert = await selfSigned(key, 'self.example.com')
  const file = await writeP12({ keyPem: keyPem(key), certificatePem: cert, caPem: cert, password: 'pw' })
  await checkWithOpenssl(t, file, 'pw', key, [cert])
})

t.test('PKCS#1 and SEC1 key PEMs', async (t) => {
  for (const [kind, type] of [
    ['rsa-2048', 'pkcs1'],
    ['p-256', 'sec1'],
    ['p-521', 'sec1'],
  ] as const) {
    await t.test(`${kind} ${type}`, async (t) => {
      const key = await makeKey(kind)
      const cert = await selfSigned(key, `${type}.example.com`)
      const pem = keyPem(key, type)
      t.match(pem, type === 'pkcs1' ? 'BEGIN RSA PRIVATE KEY' : 'BEGIN EC PRIVATE KEY')
      const file = await writeP12({ keyPem: pem, certificatePem: cert, password: 'pw' })
      await checkWithOpenssl(t, file, 'pw', key, [cert])
    })
  }
})

t.test('without friendlyName keytool still finds one PrivateKeyEntry', async (t) => {
  const key = await makeKey('p-256')
  const cert = await selfSigned(key, 'noname.example.com')
  const file = await writeP12({ keyPem: keyPem(key), certificatePem: cert, password: 'changeit' })
  const r = await opensslRead(file, 'changeit')
  t.notMatch(r.stdout, 'friendlyName')
  await checkWithKeytool(t, file, 'changeit')
})

t.test('every keystore is fresh: random salts and IVs', async (t) => {
  const key = await makeKey('p-256')
  const cert = await selfSigned(key, 'salt.example.com')
  const input = { keyPem: keyPem(key), certificatePem: cert, password: 'pw' }
  const [a, b] = await Promise.all([buildPkcs12(input), buildPkcs12(input)])
  t.notOk(a.equals(b))
  t.equal(a.length, b.length)
})

t.test('bad input is rejected', async (t) => {
  const key = await makeKey('p-256')
  const other = await makeKey('p-256')
  const cert = await selfSigned(key, 'bad.example.com')
  const ok = { keyPem: keyPem(key), certificatePem: cert, password: 'pw' }

  await t.rejects(buildPkcs12({ ...ok, keyPem: keyPem(other) }), { name: 'KeystoreError', message: /does not match/ })
  await t.rejects(buildPkcs12({ ...ok, certificatePem: '' }), { message: /no certificate/ })
  await t.rejects(buildPkcs12({ ...ok, keyPem: 'nope' }), KeystoreError)
  await t.rejects(
    buildPkcs12({ ...ok, keyPem: key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }) as string }),
    { message: /unencrypted private key/ },
  )
  const dsa = (await genKeyPair('x25519')).privateKey
  await t.rejects(buildPkcs12({ ...ok, keyPem: keyPem(dsa) }), { message: /unsupported private key type x25519/ })
  await t.rejects(
    buildPkcs12({ ...ok, certificatePem: cert.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!') }),
    { message: /malformed base64/ },
  )
  await t.rejects(
    buildPkcs12({ ...ok, certificatePem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }),
    { message: /certificatePem: certificate 1 is not valid/ },
  )
  await t.rejects(buildPkcs12({ ...ok, password: 'a\ud800b' }), { message: /not well-formed/ })
  await t.rejects(buildPkcs12({ ...ok, password: 'a\0b' }), { message: /NUL/ })
})
