import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { createPublicKey } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import * as asn1js from 'asn1js'
import * as A from '../../src/volume/attributes.js'
import { parseVolumeAttributes } from '../../src/volume/spec.js'
import type { VolumeSpec } from '../../src/volume/types.js'
import { generatePrivateKey } from '../../src/pki/keys.js'
import { EXTENDED_KEY_USAGE_OIDS, buildCsrPem, canonicalIp, subjectName, usagesToExtensions } from '../../src/pki/csr.js'

const run = promisify(execFile)
const dir = await mkdtemp(join(tmpdir(), 'csi-csr-test-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const pod = { name: 'web-0', namespace: 'shop', uid: '4f1c2a9e-0b7d-4c1e-9a57-2d3f6b8e1c90', serviceAccountName: 'web-sa' }

let files = 0
/** Runs `openssl req` on the CSR; resolves with its output whether or not it succeeded. */
async function opensslReq(csrPem: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = join(dir, `req-${files++}.csr`)
  await writeFile(file, csrPem)
  try {
    const { stdout, stderr } = await run('openssl', ['req', '-in', file, '-noout', ...args])
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

/**
 * -text -verify: the request parses, the self-signature verifies, and the
 * text comes back. The "verify OK" message is the real check: OpenSSL 3.0
 * exits 0 after "verify failure" too.
 */
async function verified(t: Pick<Test, 'equal' | 'match'>, csrPem: string): Promise<string> {
  const out = await opensslReq(csrPem, ['-text', '-verify'])
  t.equal(out.code, 0, 'openssl req -verify exits 0')
  t.match(out.stderr + out.stdout, /verify OK/, 'the signature verifies')
  return out.stdout
}

function spec(attrs: Record<string, string>): VolumeSpec {
  const result = parseVolumeAttributes({ [A.ISSUER_NAME]: 'ca', ...attrs }, pod)
  if (!result.ok) throw new Error(JSON.stringify(result.issues))
  return result.spec
}

t.test('usagesToExtensions maps every cert-manager name', async (t) => {
  for (const name of A.KEY_USAGE_NAMES) {
    const { keyUsage, extendedKeyUsages } = usagesToExtensions([name])
    t.ok((keyUsage !== 0) !== (extendedKeyUsages.length === 1), `${name} is exactly one key usage bit or one EKU`)
  }
  t.same(usagesToExtensions(['digital signature', 'key encipherment']), { keyUsage: 1 | 4, extendedKeyUsages: [] })
  t.same(usagesToExtensions(['signing', 'content commitment', 'key agreement', 'data encipherment', 'cert sign', 'crl sign', 'encipher only', 'decipher only']), { keyUsage: 1 | 2 | 16 | 8 | 32 | 64 | 128 | 256, extendedKeyUsages: [] })
  t.same(usagesToExtensions(['client auth', 'server auth', 'digital signature']), { keyUsage: 1, extendedKeyUsages: ['1.3.6.1.5.5.7.3.2', '1.3.6.1.5.5.7.3.1'] }, 'EKUs keep the given order')
  t.same(usagesToExtensions(['s/mime', 'email protection']).extendedKeyUsages, ['1.3.6.1.5.5.7.3.4'], 'synonyms give one OID')
  t.equal(EXTENDED_KEY_USAGE_OIDS['microsoft sgc'], '1.3.6.1.4.1.311.10.3.3')
  t.equal(EXTENDED_KEY_USAGE_OIDS['netscape sgc'], '2.16.840.1.113730.4.1')
  t.equal(EXTENDED_KEY_USAGE_OIDS.any, '2.5.29.37.0')
  t.throws(() => usagesToExtensions(['serverauth']), /unknown key usage/)
})

t.test('canonicalIp spells IPv6 as eight hex groups', async (t) => {
  const cases: Array<[string, string]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['::1', '0:0:0:0:0:0:0:1'],
    ['::', '0:0:0:0:0:0:0:0'],
    ['2001:db8::7', '2001:db8:0:0:0:0:0:7'],
    ['fe80::', 'fe80:0:0:0:0:0:0:0'],
    ['::ffff:192.0.2.1', '0:0:0:0:0:ffff:c000:201'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8:0:0:0:0:0:1'],
  ]
  for (const [input, want] of cases) t.equal(canonicalIp(input), want, input)
  t.throws(() => canonicalIp('example.com'))
})

t.test('subjectName: structured fields in Go order, literals reversed from string order', async (t) => {
  const structured = spec({ [A.COMMON_NAME]: 'web', [A.ORGANIZATIONS]: 'Acme,Acme Labs', [A.COUNTRIES]: 'US', [A.LOCALITIES]: 'SF', [A.PROVINCES]: 'CA', [A.ORGANIZATIONAL_UNITS]: 'Ops', [A.STREET_ADDRESSES]: '1 Main', [A.POSTAL_CODES]: '94105', [A.SERIAL_NUMBER]: '42' })
  t.equal(subjectName(structured.subject).toString(), 'C=US, ST=CA, L=SF, 2.5.4.9=1 Main, 2.5.4.17=94105, O=Acme, O=Acme Labs, OU=Ops, CN=web, 2.5.4.5=42')
  const literal = spec({ [A.LITERAL_SUBJECT]: 'CN=web,O=Acme,C=US' })
  t.equal(subjectName(literal.subject).toString(), 'C=US, O=Acme, CN=web')
  t.equal(subjectName(spec({ [A.DNS_NAMES]: 'a.example.com' }).subject).toJSON().length, 0, 'no subject fields, empty name')
})

const keyTypes: Array<{ name: string; attrs: Record<string, string>; sig: RegExp; pub: RegExp }> = [
  { name: 'RSA-2048', attrs: { [A.KEY_ALGORITHM]: 'RSA' }, sig: /sha256WithRSAEncryption/, pub: /Public-Key: \(2048 bit\)/ },
  { name: 'ECDSA P-256', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '256' }, sig: /ecdsa-with-SHA256/, pub: /NIST CURVE: P-256/ },
  { name: 'ECDSA P-384', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '384' }, sig: /ecdsa-with-SHA384/, pub: /NIST CURVE: P-384/ },
  { name: 'ECDSA P-521', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '521' }, sig: /ecdsa-with-SHA512/, pub: /NIST CURVE: P-521/ },
  { name: 'Ed25519', attrs: { [A.KEY_ALGORITHM]: 'Ed25519' }, sig: /Signature Algorithm: ED25519/, pub: /ED25519 Public-Key/ },
]

for (const kt of keyTypes) {
  t.test(`CSR for ${kt.name}, checked by openssl`, async (t) => {
    const s = spec({
      ...kt.attrs,
      [A.COMMON_NAME]: '${POD_NAME}',
      [A.ORGANIZATIONS]: 'Acme',
      [A.COUNTRIES]: 'US',
      [A.DNS_NAMES]: '${POD_NAME}.${POD_NAMESPACE}.svc,*.web.example.com',
      [A.IP_SANS]: '10.0.0.7,2001:db8::7,::ffff:192.0.2.1',
      [A.URI_SANS]: 'spiffe://cluster.local/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}',
      [A.EMAIL_SANS]: 'ops@example.com',
      [A.KEY_USAGES]: 'digital signature,key encipherment,server auth,client auth',
      [A.IS_CA]: 'true',
    })
    const key = await generatePrivateKey(s.key)
    const pem = await buildCsrPem(s, key)
    t.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE REQUEST-----\n?$/)

    const text = await verified(t, pem)
    t.match(text, /Subject: C = US, O = Acme, CN = web-0\n/, 'subject in conventional order')
    t.match(text, kt.pub, 'public key type')
    t.match(text, kt.sig, 'signature algorithm')
    t.match(text, /X509v3 Subject Alternative Name: \n\s+DNS:web-0\.shop\.svc, DNS:\*\.web\.example\.com, IP Address:10\.0\.0\.7, IP Address:2001:DB8:0:0:0:0:0:7, IP Address:0:0:0:0:0:FFFF:C000:201, URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web-sa, email:ops@example\.com\n/, 'all SANs')
    t.match(text, /X509v3 Key Usage: critical\n\s+Digital Signature, Key Encipherment, Certificate Sign\n/, 'key usage, critical, with cert sign for a CA (cert-manager expects it)')
    t.match(text, /X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/, 'extended key usage')
    t.match(text, /X509v3 Basic Constraints: critical\n\s+CA:TRUE\n/, 'CA basic constraints, critical')

    const pub = await opensslReq(pem, ['-pubkey'])
    t.equal(pub.stdout, createPublicKey(key).export({ type: 'spki', format: 'pem' }), 'the CSR carries our public key')
  })
}

t.test('a tampered CSR fails openssl verification (the check above can fail)', async (t) => {
  const s = spec({ [A.KEY_ALGORITHM]: 'ECDSA', [A.COMMON_NAME]: 'tamper-me' })
  const key = await generatePrivateKey(s.key)
  const der = Buffer.from((await buildCsrPem(s, key)).replace(/-----[A-Z ]+-----|\s/g, ''), 'base64')
  const at = der.indexOf(Buffer.from('tamper-me'))
  t.ok(at > 0, 'found the common name in the DER')
  der[at] = 'T'.charCodeAt(0)
  const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`
  // OpenSSL 3.0 exits 0 even when the signature is bad: only its message tells.
  const out = await opensslReq(pem, ['-verify'])
  t.match(out.stderr + out.stdout, /verify failure/, 'openssl reports a verify failure')
  t.notMatch(out.stderr + out.stdout, /verify OK/, 'and not a success')
})

t.test('extensions are left out when there is nothing to say', async (t) => {
  const key = await generatePrivateKey({ algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' })
  const ekuOnly = await verified(t, await buildCsrPem(spec({ [A.KEY_ALGORITHM]: 'Ed25519', [A.DNS_NAMES]: 'a.example.com', [A.KEY_USAGES]: 'client auth' }), key))
  t.notMatch(ekuOnly, /X509v3 Key Usage/, 'no key usage extension without key usage bits')
  t.notMatch(ekuOnly, /Basic Constraints/, 'no basic constraints for a non-CA')
  t.match(ekuOnly, /X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication\n/)
  t.match(ekuOnly, /X509v3 Subject Alternative Name: critical\n/, 'SANs are critical when the subject is empty (RFC 5280 4.2.1.6)')

  const cnOnly = await verified(t, await buildCsrPem(spec({ [A.KEY_ALGORITHM]: 'Ed25519', [A.COMMON_NAME]: 'only-cn' }), key))
  t.notMatch(cnOnly, /Subject Alternative Name/, 'no SAN extension without SANs')
  t.notMatch(cnOnly, /Extended Key Usage/, 'no EKU extension without EKUs')
  t.match(cnOnly, /X509v3 Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/, 'default key usages')

  const withSubject = await verified(t, await buildCsrPem(spec({ [A.KEY_ALGORITHM]: 'Ed25519', [A.COMMON_NAME]: 'x', [A.DNS_NAMES]: 'x.example.com' }), key))
  t.match(withSubject, /X509v3 Subject Alternative Name: \n/, 'SANs are not critical next to a subject')
})

t.test('literal subjects: escapes, multi-valued RDNs, OIDs and hex values survive', async (t) => {
  const key = await generatePrivateKey({ algorithm: 'ECDSA', size: 256, encoding: 'PKCS1' })
  const literal = 'CN=web\\+1+UID=u-1,OU=a\\,b,O=Acme\\, Inc.,DC=example,DC=com,1.2.3.4=#0c03616263,C=DE'
  const pem = await buildCsrPem(spec({ [A.KEY_ALGORITHM]: 'ECDSA', [A.LITERAL_SUBJECT]: literal }), key)
  await verified(t, pem)
  const rfc = await opensslReq(pem, ['-subject', '-nameopt', 'RFC2253'])
  // The members of a multi-valued RDN are a SET: their order is OpenSSL's to choose.
  t.match(rfc.stdout.trim(), /^subject=(CN=web\\\+1\+UID=u-1|UID=u-1\+CN=web\\\+1),OU=a\\,b,O=Acme\\, Inc\.,DC=example,DC=com,1\.2\.3\.4=#0C03616263,C=DE$/, 'RFC 2253 printing gives the literal back')
  const oneline = await opensslReq(pem, ['-subject', '-nameopt', 'oneline'])
  t.match(oneline.stdout, /^subject=C = DE, 1\.2\.3\.4 = abc, DC = com, DC = example, O = "Acme, Inc\.", OU = "a,b", (CN = "web\+1" \+ UID = u-1|UID = u-1 \+ CN = "web\+1")\n$/, 'ASN.1 order is the reverse')

  const unicode = await buildCsrPem(spec({ [A.KEY_ALGORITHM]: 'ECDSA', [A.LITERAL_SUBJECT]: 'CN=M\\C3\\BCller,O=Caf\u00e9' }), key)
  const u = await opensslReq(unicode, ['-subject', '-nameopt', 'RFC2253,-esc_msb,utf8'])
  t.equal(u.stdout.trim(), 'subject=CN=Müller,O=Café', 'escaped UTF-8 bytes and raw UTF-8 both become UTF8String text')
})

t.test('multi-valued RDNs are DER: members sorted by encoding, whatever the input order', async (t) => {
  for (const literal of ['UID=u-1+CN=web', 'O=zzzz+OU=a+O=b,CN=x', 'CN=b+CN=a']) {
    const der = subjectName(spec({ [A.LITERAL_SUBJECT]: literal }).subject).toArrayBuffer()
    const name = asn1js.fromBER(der).result as asn1js.Sequence
    for (const set of name.valueBlock.value as asn1js.Set[]) {
      const members = set.valueBlock.value.map((m) => Buffer.from(m.toBER()))
      const sorted = [...members].sort((a, b) => Buffer.compare(a, b))
      t.same(members.map((m) => m.toString('hex')), sorted.map((m) => m.toString('hex')), `${literal}: SET members in DER order`)
    }
    t.equal(name.valueBlock.value.length, literal.split(',').length, `${literal}: one SET per RDN`)
  }
  // And the subject still reads back as written.
  const rdn = subjectName(spec({ [A.LITERAL_SUBJECT]: 'O=zzzz+OU=a+O=b,CN=x' }).subject).toJSON()
  t.same(rdn.map((r) => Object.keys(r).sort()), [['CN'], ['O', 'OU']])
})

t.test('string types: PrintableString when possible, else UTF8String; IA5String for DC and email', async (t) => {
  const key = await generatePrivateKey({ algorithm: 'ECDSA', size: 256, encoding: 'PKCS1' })
  const pem = await buildCsrPem(spec({ [A.KEY_ALGORITHM]: 'ECDSA', [A.LITERAL_SUBJECT]: 'CN=plain,O=Ünïcode,DC=example,emailAddress=a@b.example' }), key)
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64')
  const find = (tag: number, text: string) => der.includes(Buffer.concat([Buffer.from([tag, Buffer.byteLength(text)]), Buffer.from(text)]))
  t.ok(find(0x13, 'plain'), 'CN as PrintableString')
  t.ok(find(0x0c, 'Ünïcode'), 'O as UTF8String')
  t.ok(find(0x16, 'example'), 'DC as IA5String')
  t.ok(find(0x16, 'a@b.example'), 'emailAddress as IA5String')
})

t.test('buildCsrPem refuses a public key', async (t) => {
  const key = await generatePrivateKey({ algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' })
  await t.rejects(buildCsrPem(spec({ [A.DNS_NAMES]: 'a.example.com' }), createPublicKey(key)), /private key/)
})
