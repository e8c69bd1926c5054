import t from 'tap'
import * as A from '../../src/volume/attributes.js'
import { IssueCode } from '../../src/volume/attributes.js'
import { parseVolumeAttributes } from '../../src/volume/spec.js'
import type { AttributeIssue, PodInfo, VolumeSpec } from '../../src/volume/types.js'

const pod: PodInfo = { name: 'web-0', namespace: 'shop', uid: '4f1c2a9e-0b7d-4c1e-9a57-2d3f6b8e1c90', serviceAccountName: 'web-sa' }
const base = { [A.ISSUER_NAME]: 'ca-issuer', [A.DNS_NAMES]: 'web.example.com' }
const H = 3_600_000
/** Just enough of a tap test to record a failure from a helper. */
type Failer = Pick<typeof t, 'fail'>

function mustParse(t: Failer, attrs: Record<string, string>): VolumeSpec {
  const result = parseVolumeAttributes(attrs, pod)
  if (!result.ok) {
    t.fail(`expected a spec, got issues: ${JSON.stringify(result.issues, null, 1)}`)
    throw new Error('parse failed')
  }
  return result.spec
}

function mustFail(t: Failer, attrs: Record<string, string>): AttributeIssue[] {
  const result = parseVolumeAttributes(attrs, pod)
  if (result.ok) {
    t.fail(`expected issues, got a spec: ${JSON.stringify(result.spec)}`)
    return []
  }
  return result.issues
}

t.test('defaults: the smallest valid volume', async (t) => {
  const spec = mustParse(t, base)
  t.same(spec, {
    issuer: { name: 'ca-issuer', kind: 'Issuer', group: 'cert-manager.io' },
    subject: { organizations: [], organizationalUnits: [], countries: [], provinces: [], localities: [], streetAddresses: [], postalCodes: [] },
    dnsNames: ['web.example.com'],
    ipAddresses: [],
    uris: [],
    emailAddresses: [],
    usages: ['digital signature', 'key encipherment'],
    durationMs: 720 * H,
    isCA: false,
    key: { algorithm: 'RSA', size: 2048, encoding: 'PKCS1' },
    files: { certificate: 'crt.pem', privateKey: 'key.pem', ca: 'ca.pem' },
    reusePrivateKey: false,
    disableAutoRenew: false,
    annotations: {},
  })
  t.equal(spec.renewBeforeMs, undefined, 'renew-before defaults to a third of the lifetime (left to the reconciler)')
  t.equal(spec.pkcs12, undefined, 'no keystore by default')
  t.equal(spec.fsGroup, undefined, 'no fs-group by default')
  t.notOk('renewBeforeMs' in spec || 'pkcs12' in spec || 'fsGroup' in spec, 'optional fields are absent, not undefined-valued')
})

interface ValidCase {
  name: string
  attrs: Record<string, string>
  expect: (spec: VolumeSpec) => unknown
  want: unknown
  /** Start from nothing instead of the base attributes. */
  bare?: boolean
  /** The node's --annotation-prefixes, when the case is about them. */
  annotationPrefixes?: readonly string[]
}

const valid: ValidCase[] = [
  { name: 'issuer-kind ClusterIssuer', attrs: { [A.ISSUER_KIND]: 'ClusterIssuer' }, expect: (s) => s.issuer.kind, want: 'ClusterIssuer' },
  { name: 'issuer-group of an external issuer', attrs: { [A.ISSUER_GROUP]: 'awspca.cert-manager.io', [A.ISSUER_KIND]: 'AWSPCAClusterIssuer' }, expect: (s) => s.issuer, want: { name: 'ca-issuer', kind: 'AWSPCAClusterIssuer', group: 'awspca.cert-manager.io' } },
  { name: 'issuer-name is trimmed', attrs: { [A.ISSUER_NAME]: '  vault.issuer ' }, expect: (s) => s.issuer.name, want: 'vault.issuer' },
  { name: 'common-name', attrs: { [A.COMMON_NAME]: 'web' }, expect: (s) => s.subject.commonName, want: 'web' },
  { name: 'common-name of 64 characters', attrs: { [A.COMMON_NAME]: 'x'.repeat(64) }, expect: (s) => s.subject.commonName?.length, want: 64 },
  { name: 'common-name alone is an identity', bare: true, attrs: { [A.ISSUER_NAME]: 'ca', [A.COMMON_NAME]: 'only-cn' }, expect: (s) => [s.dnsNames, s.subject.commonName], want: [[], 'only-cn'] },
  { name: 'dns-names list, trimmed, wildcard', attrs: { [A.DNS_NAMES]: ' a.example.com , *.b.example.com,localhost' }, expect: (s) => s.dnsNames, want: ['a.example.com', '*.b.example.com', 'localhost'] },
  { name: 'ip-sans v4 and v6', attrs: { [A.IP_SANS]: '10.0.0.1, ::1,2001:db8::7,::ffff:192.0.2.1' }, expect: (s) => s.ipAddresses, want: ['10.0.0.1', '::1', '2001:db8::7', '::ffff:192.0.2.1'] },
  { name: 'ip-sans alone is an identity', bare: true, attrs: { [A.ISSUER_NAME]: 'ca', [A.IP_SANS]: '10.1.2.3' }, expect: (s) => s.ipAddresses, want: ['10.1.2.3'] },
  { name: 'uri-sans spiffe and https', attrs: { [A.URI_SANS]: 'spiffe://cluster.local/ns/shop/sa/web,https://x.example/a?b=c' }, expect: (s) => s.uris, want: ['spiffe://cluster.local/ns/shop/sa/web', 'https://x.example/a?b=c'] },
  { name: 'uri-sans alone is an identity', bare: true, attrs: { [A.ISSUER_NAME]: 'ca', [A.URI_SANS]: 'urn:example:a' }, expect: (s) => s.uris, want: ['urn:example:a'] },
  { name: 'email-sans', attrs: { [A.EMAIL_SANS]: 'ops@example.com, a.b+c@mail.example.org' }, expect: (s) => s.emailAddresses, want: ['ops@example.com', 'a.b+c@mail.example.org'] },
  { name: 'email-sans alone is an identity', bare: true, attrs: { [A.ISSUER_NAME]: 'ca', [A.EMAIL_SANS]: 'a@b.example' }, expect: (s) => s.emailAddresses, want: ['a@b.example'] },
  { name: 'key-usages keep order and normalise case', attrs: { [A.KEY_USAGES]: 'Server Auth, digital signature,client auth' }, expect: (s) => s.usages, want: ['server auth', 'digital signature', 'client auth'] },
  { name: 'key-usages: every cert-manager name', attrs: { [A.KEY_USAGES]: A.KEY_USAGE_NAMES.filter((u) => !(u in A.KEY_USAGE_SYNONYMS)).join(',') }, expect: (s) => s.usages.length, want: A.KEY_USAGE_NAMES.length - 2 },
  { name: 'duration 1h30m', attrs: { [A.DURATION]: '1h30m' }, expect: (s) => s.durationMs, want: 1.5 * H },
  { name: 'duration at the 1m minimum', attrs: { [A.DURATION]: '1m' }, expect: (s) => s.durationMs, want: 60_000 },
  { name: 'renew-before', attrs: { [A.DURATION]: '24h', [A.RENEW_BEFORE]: '8h' }, expect: (s) => s.renewBeforeMs, want: 8 * H },
  { name: 'renew-before just under the duration', attrs: { [A.DURATION]: '2m', [A.RENEW_BEFORE]: '1m59s' }, expect: (s) => s.renewBeforeMs, want: 119_000 },
  { name: 'is-ca true', attrs: { [A.IS_CA]: 'true' }, expect: (s) => s.isCA, want: true },
  { name: 'is-ca with no cert sign usage is fine', attrs: { [A.IS_CA]: 'TRUE', [A.KEY_USAGES]: 'digital signature' }, expect: (s) => [s.isCA, s.usages], want: [true, ['digital signature']] },
  { name: 'disable-auto-renew', attrs: { [A.DISABLE_AUTO_RENEW]: 'True' }, expect: (s) => s.disableAutoRenew, want: true },
  { name: 'reuse-private-key', attrs: { [A.REUSE_PRIVATE_KEY]: 'true' }, expect: (s) => s.reusePrivateKey, want: true },
  { name: 'booleans accept false', attrs: { [A.IS_CA]: 'false', [A.REUSE_PRIVATE_KEY]: 'FALSE' }, expect: (s) => [s.isCA, s.reusePrivateKey], want: [false, false] },
  { name: 'file names', attrs: { [A.CERTIFICATE_FILE]: 'tls.crt', [A.PRIVATE_KEY_FILE]: 'tls.key', [A.CA_FILE]: 'ca.crt' }, expect: (s) => s.files, want: { certificate: 'tls.crt', privateKey: 'tls.key', ca: 'ca.crt' } },
  { name: 'credential-bundle-file', attrs: { [A.CREDENTIAL_BUNDLE_FILE]: 'tls-combined.pem' }, expect: (s) => s.files, want: { certificate: 'crt.pem', privateKey: 'key.pem', ca: 'ca.pem', credentialBundle: 'tls-combined.pem' } },
  { name: 'no credential bundle unless asked', attrs: {}, expect: (s) => 'credentialBundle' in s.files, want: false },
  { name: 'file name of 255 bytes', attrs: { [A.CA_FILE]: 'c'.repeat(255) }, expect: (s) => s.files.ca.length, want: 255 },
  { name: 'key-algorithm ECDSA defaults to P-256', attrs: { [A.KEY_ALGORITHM]: 'ecdsa' }, expect: (s) => s.key, want: { algorithm: 'ECDSA', size: 256, encoding: 'PKCS1' } },
  { name: 'ECDSA 384 PKCS8', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '384', [A.KEY_ENCODING]: 'pkcs8' }, expect: (s) => s.key, want: { algorithm: 'ECDSA', size: 384, encoding: 'PKCS8' } },
  { name: 'ECDSA 521', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '521' }, expect: (s) => s.key.size, want: 521 },
  { name: 'Ed25519 defaults to PKCS8', attrs: { [A.KEY_ALGORITHM]: 'ED25519' }, expect: (s) => s.key, want: { algorithm: 'Ed25519', size: 0, encoding: 'PKCS8' } },
  { name: 'Ed25519 with explicit PKCS8', attrs: { [A.KEY_ALGORITHM]: 'Ed25519', [A.KEY_ENCODING]: 'PKCS8' }, expect: (s) => s.key.encoding, want: 'PKCS8' },
  { name: 'RSA 4096', attrs: { [A.KEY_ALGORITHM]: 'rsa', [A.KEY_SIZE]: '4096' }, expect: (s) => s.key, want: { algorithm: 'RSA', size: 4096, encoding: 'PKCS1' } },
  { name: 'RSA bounds 2048 and 8192', attrs: { [A.KEY_SIZE]: '8192' }, expect: (s) => s.key.size, want: 8192 },
  { name: 'structured subject', attrs: { [A.ORGANIZATIONS]: 'Acme,Acme Labs', [A.ORGANIZATIONAL_UNITS]: 'Web', [A.COUNTRIES]: 'US,de', [A.PROVINCES]: 'CA', [A.LOCALITIES]: 'San Francisco', [A.STREET_ADDRESSES]: '1 Main St', [A.POSTAL_CODES]: '94105', [A.SERIAL_NUMBER]: 'SN-42' }, expect: (s) => s.subject, want: { organizations: ['Acme', 'Acme Labs'], organizationalUnits: ['Web'], countries: ['US', 'de'], provinces: ['CA'], localities: ['San Francisco'], streetAddresses: ['1 Main St'], postalCodes: ['94105'], serialNumber: 'SN-42' } },
  { name: 'unicode organization', attrs: { [A.ORGANIZATIONS]: 'Müller GmbH' }, expect: (s) => s.subject.organizations, want: ['Müller GmbH'] },
  { name: 'literal-subject', attrs: { [A.LITERAL_SUBJECT]: 'CN=web, O=Acme\\, Inc., C=US' }, expect: (s) => s.subject, want: { organizations: [], organizationalUnits: [], countries: [], provinces: [], localities: [], streetAddresses: [], postalCodes: [], literal: 'CN=web, O=Acme\\, Inc., C=US' } },
  { name: 'literal-subject with a CN is an identity', bare: true, attrs: { [A.ISSUER_NAME]: 'ca', [A.LITERAL_SUBJECT]: 'CN=only,O=x' }, expect: (s) => s.subject.literal, want: 'CN=only,O=x' },
  { name: 'literal-subject: OIDs, multi-valued RDNs, hex and escapes', attrs: { [A.LITERAL_SUBJECT]: '2.5.4.3=a\\2Bb+UID=u1,DC=example,DC=com,1.2.3.4=#0c03616263,emailAddress=a@b.c,STREET=x\\;y,SERIALNUMBER=7,POSTALCODE=1,L=l,ST=s,OU=\\#1' }, expect: (s) => typeof s.subject.literal, want: 'string' },
  { name: 'literal-subject keeps an escaped trailing space', attrs: { [A.LITERAL_SUBJECT]: 'CN=a\\ ' }, expect: (s) => s.subject.literal, want: 'CN=a\\ ' },
  { name: 'fs-group', attrs: { [A.FS_GROUP]: '2000' }, expect: (s) => s.fsGroup, want: 2000 },
  { name: 'fs-group 0 and the maximum', attrs: { [A.FS_GROUP]: '2147483647' }, expect: (s) => s.fsGroup, want: 2_147_483_647 },
  { name: 'fs-group 0', attrs: { [A.FS_GROUP]: '0' }, expect: (s) => s.fsGroup, want: 0 },
  { name: 'pkcs12 with defaults', attrs: { [A.PKCS12_ENABLE]: 'true', [A.PKCS12_PASSWORD]: ' s3cret ' }, expect: (s) => [s.pkcs12, s.files.pkcs12], want: [{ filename: 'keystore.p12', password: ' s3cret ' }, 'keystore.p12'] },
  { name: 'pkcs12 with a file name', attrs: { [A.PKCS12_ENABLE]: 'true', [A.PKCS12_PASSWORD]: 'p', [A.PKCS12_FILENAME]: 'app.p12' }, expect: (s) => [s.pkcs12?.filename, s.files.pkcs12], want: ['app.p12', 'app.p12'] },
  { name: 'pkcs12-enable false alone', attrs: { [A.PKCS12_ENABLE]: 'false' }, expect: (s) => [s.pkcs12, s.files.pkcs12], want: [undefined, undefined] },
]

t.test('the kubelet\'s mount group is the files\' group unless fs-group says otherwise', async (t) => {
  const spec = (attrs: Record<string, string>, mountGroup?: number) => {
    const r = parseVolumeAttributes({ ...base, ...attrs }, pod, mountGroup === undefined ? { annotationPrefixes: '*' } : { annotationPrefixes: '*', mountGroup })
    return r.ok ? r.spec.fsGroup : r.issues
  }
  t.equal(spec({}, 3000), 3000, 'from the kubelet')
  t.equal(spec({}, 0), 0, 'group 0 from the kubelet')
  t.equal(spec({ [A.FS_GROUP]: '2000' }, 3000), 2000, 'the attribute wins')
  t.equal(spec({}), undefined, 'neither: root only')
  t.match(spec({ [A.FS_GROUP]: 'x' }, 3000), [{ attribute: A.FS_GROUP, code: IssueCode.invalidFsGroup }], 'a bad attribute is not papered over by the kubelet\'s group')
})

t.test('every attribute, one valid case at a time', async (t) => {
  for (const c of valid) {
    const attrs = c.bare ? c.attrs : { ...base, ...c.attrs }
    const result = parseVolumeAttributes(attrs, pod)
    if (!result.ok) {
      t.fail(c.name, { issues: result.issues })
      continue
    }
    t.same(c.expect(result.spec), c.want, c.name)
  }
})

interface InvalidCase {
  name: string
  attrs: Record<string, string>
  /** [attribute, code] of every issue, in order. */
  want: Array<[string, IssueCode]>
  /** The message of the first issue matches. */
  message?: RegExp
  /** Start from nothing instead of the base attributes. */
  bare?: boolean
  /** The node's --annotation-prefixes, when the case is about them. */
  annotationPrefixes?: readonly string[]
}

const invalid: InvalidCase[] = [
  { name: 'no issuer-name', attrs: { [A.DNS_NAMES]: 'a.example.com' }, bare: true, want: [[A.ISSUER_NAME, IssueCode.required]], message: /required/ },
  { name: 'no attributes at all', attrs: {}, bare: true, want: [[A.ISSUER_NAME, IssueCode.required], [A.DNS_NAMES, IssueCode.missingIdentity]] },
  { name: 'no identity', attrs: { [A.ISSUER_NAME]: 'ca', [A.ORGANIZATIONS]: 'Acme' }, bare: true, want: [[A.DNS_NAMES, IssueCode.missingIdentity]], message: /at least one of .*dns-names.*ip-sans.*uri-sans.*email-sans.*common-name/ },
  { name: 'literal-subject without a CN is no identity', attrs: { [A.ISSUER_NAME]: 'ca', [A.LITERAL_SUBJECT]: 'O=Acme' }, bare: true, want: [[A.DNS_NAMES, IssueCode.missingIdentity]] },
  { name: 'empty value', attrs: { [A.ISSUER_KIND]: '  ' }, want: [[A.ISSUER_KIND, IssueCode.emptyValue]], message: /empty/ },
  { name: 'empty issuer-name is not also "required"', attrs: { [A.ISSUER_NAME]: '' }, want: [[A.ISSUER_NAME, IssueCode.emptyValue]] },
  { name: 'empty list item', attrs: { [A.DNS_NAMES]: 'a.example.com,,b.example.com' }, want: [[A.DNS_NAMES, IssueCode.emptyItem]], message: /item 2/ },
  { name: 'trailing comma', attrs: { [A.IP_SANS]: '10.0.0.1,' }, want: [[A.IP_SANS, IssueCode.emptyItem]] },
  { name: 'duplicate dns name, any case', attrs: { [A.DNS_NAMES]: 'a.example.com,A.example.com' }, want: [[A.DNS_NAMES, IssueCode.duplicateItem]], message: /more than once/ },
  { name: 'duplicate usage', attrs: { [A.KEY_USAGES]: 'server auth,Server Auth' }, want: [[A.KEY_USAGES, IssueCode.duplicateItem]] },
  { name: 'synonym usages are duplicates', attrs: { [A.KEY_USAGES]: 'signing,digital signature,s/mime,email protection' }, want: [[A.KEY_USAGES, IssueCode.duplicateItem], [A.KEY_USAGES, IssueCode.duplicateItem]] },
  { name: 'unknown attribute with suggestion', attrs: { 'csi.cert-manager.io/dns-name': 'x' }, want: [[`${A.ATTRIBUTE_PREFIX}dns-name`, IssueCode.unknownAttribute]], message: /did you mean "csi\.cert-manager\.io\/dns-names"\?/ },
  { name: 'unknown attribute without suggestion', attrs: { 'csi.cert-manager.io/colour': 'blue' }, want: [[`${A.ATTRIBUTE_PREFIX}colour`, IssueCode.unknownAttribute]], message: /^unknown attribute$/ },
  { name: 'misspelled prefix', attrs: { 'csi.cert-manger.io/is-ca': 'true' }, want: [['csi.cert-manger.io/is-ca', IssueCode.unknownAttribute]], message: /misspelled.*did you mean "csi\.cert-manager\.io\/is-ca"/ },
  { name: 'key without prefix', attrs: { team: 'web' }, want: [['team', IssueCode.invalidAttributeKey]], message: /prefix\/name/ },
  { name: 'bare known name suggests the full key', attrs: { 'duration': '1h' }, want: [['duration', IssueCode.invalidAttributeKey]], message: /did you mean "csi\.cert-manager\.io\/duration"/ },
  { name: 'annotation prefix not a DNS subdomain', attrs: { 'Example.com/team': 'web' }, want: [['Example.com/team', IssueCode.invalidAttributeKey]] },
  { name: 'annotation name too long', attrs: { [`example.com/${'n'.repeat(64)}`]: 'x' }, want: [[`example.com/${'n'.repeat(64)}`, IssueCode.invalidAttributeKey]] },
  { name: 'annotation key with two slashes', attrs: { 'example.com/a/b': 'x' }, want: [['example.com/a/b', IssueCode.invalidAttributeKey]] },
  { name: 'unknown pod variable', attrs: { [A.DNS_NAMES]: '${POD_IP}.example.com' }, want: [[A.DNS_NAMES, IssueCode.unknownVariable]], message: /\$\{POD_IP\}/ },
  { name: 'unterminated pod variable', attrs: { [A.COMMON_NAME]: 'x-${POD_NAME' }, want: [[A.COMMON_NAME, IssueCode.unterminatedVariable]] },
  { name: 'a value over 16 KiB is refused before it is read', attrs: { [A.DNS_NAMES]: '${'.repeat(300_000) }, want: [[A.DNS_NAMES, IssueCode.limitExceeded]], message: /600000 characters long; at most 16384/ },
  { name: 'a key over 317 characters, cut short in the issue', attrs: { [`example.com/${'k'.repeat(1 << 20)}`]: 'x' }, want: [[`example.com/${'k'.repeat(52)}…`, IssueCode.limitExceeded]], message: /1048588 characters long; at most 317/ },
  { name: 'more than 128 attributes', attrs: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`example.com/a${i}`, 'x'])), want: [['(volume attributes)', IssueCode.limitExceeded]], message: /20\d attributes given; at most 128/ },
  { name: 'more than 64 KiB in all', attrs: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`example.com/a${i}`, 'x'.repeat(16_000)])), want: [['(volume attributes)', IssueCode.limitExceeded]], message: /at most 65536/ },
  { name: 'more than 100 DNS names', attrs: { [A.DNS_NAMES]: Array.from({ length: 101 }, (_, i) => `h${i}.example.com`).join(',') }, want: [[A.DNS_NAMES, IssueCode.limitExceeded]], message: /lists 101 items; at most 100/ },
  { name: 'thousands of "${" within the limit: one unterminated issue', attrs: { [A.COMMON_NAME]: '${'.repeat(8000) }, want: [[A.COMMON_NAME, IssueCode.unterminatedVariable]] },
  { name: 'a NUL in the keystore password is refused at publish, not after issuance', attrs: { [A.PKCS12_ENABLE]: 'true', [A.PKCS12_PASSWORD]: 'secret\u0000tail' }, want: [[A.PKCS12_PASSWORD, IssueCode.invalidPkcs12Password]], message: /^the password contains a NUL character/ },
  { name: 'an annotation prefix the node does not allow', annotationPrefixes: [], attrs: { 'example.com/team': 'payments' }, want: [['example.com/team', IssueCode.annotationNotAllowed]], message: /no annotations with prefix "example\.com" \(--annotation-prefixes: none\)/ },
  { name: 'only the listed prefixes pass, not their subdomains', annotationPrefixes: ['example.com'], attrs: { 'example.com/team': 'a', 'policy.example.com/tier': 'b' }, want: [['policy.example.com/tier', IssueCode.annotationNotAllowed]], message: /--annotation-prefixes: example\.com\)/ },
  { name: 'unbraced pod variable', attrs: { [A.URI_SANS]: 'spiffe://td/ns/$POD_NAMESPACE' }, want: [[A.URI_SANS, IssueCode.unbracedVariable]], message: /\$\{POD_NAMESPACE\}/ },
  { name: 'boolean "yes"', attrs: { [A.IS_CA]: 'yes' }, want: [[A.IS_CA, IssueCode.invalidBoolean]], message: /"true" or "false"/ },
  { name: 'boolean "1"', attrs: { [A.DISABLE_AUTO_RENEW]: '1' }, want: [[A.DISABLE_AUTO_RENEW, IssueCode.invalidBoolean]] },
  { name: 'boolean reuse-private-key', attrs: { [A.REUSE_PRIVATE_KEY]: 'on' }, want: [[A.REUSE_PRIVATE_KEY, IssueCode.invalidBoolean]] },
  { name: 'duration without unit', attrs: { [A.DURATION]: '10' }, want: [[A.DURATION, IssueCode.invalidDuration]], message: /Go syntax/ },
  { name: 'negative duration', attrs: { [A.DURATION]: '-1h' }, want: [[A.DURATION, IssueCode.invalidDuration]], message: /negative/ },
  { name: 'duration below a minute', attrs: { [A.DURATION]: '59s' }, want: [[A.DURATION, IssueCode.durationTooShort]], message: /minimum of 1m/ },
  { name: 'renew-before not a duration', attrs: { [A.RENEW_BEFORE]: 'soon' }, want: [[A.RENEW_BEFORE, IssueCode.invalidDuration]] },
  { name: 'renew-before equal to duration', attrs: { [A.DURATION]: '1h', [A.RENEW_BEFORE]: '60m' }, want: [[A.RENEW_BEFORE, IssueCode.invalidRenewBefore]], message: /less than the duration \(1h\)/ },
  { name: 'renew-before longer than default duration', attrs: { [A.RENEW_BEFORE]: '721h' }, want: [[A.RENEW_BEFORE, IssueCode.invalidRenewBefore]] },
  { name: 'renew-before zero', attrs: { [A.RENEW_BEFORE]: '0s' }, want: [[A.RENEW_BEFORE, IssueCode.invalidRenewBefore]], message: /more than 0/ },
  { name: 'issuer-name not a DNS subdomain', attrs: { [A.ISSUER_NAME]: 'My_Issuer' }, want: [[A.ISSUER_NAME, IssueCode.invalidIssuerName]], message: /DNS-1123/ },
  { name: 'issuer-kind lower case', attrs: { [A.ISSUER_KIND]: 'issuer' }, want: [[A.ISSUER_KIND, IssueCode.invalidIssuerKind]], message: /CamelCase/ },
  { name: 'issuer-group with a slash', attrs: { [A.ISSUER_GROUP]: 'cert-manager.io/v1' }, want: [[A.ISSUER_GROUP, IssueCode.invalidIssuerGroup]] },
  { name: 'key-algorithm DSA', attrs: { [A.KEY_ALGORITHM]: 'DSA' }, want: [[A.KEY_ALGORITHM, IssueCode.invalidKeyAlgorithm]], message: /RSA, ECDSA or Ed25519/ },
  { name: 'RSA 1024', attrs: { [A.KEY_SIZE]: '1024' }, want: [[A.KEY_SIZE, IssueCode.invalidKeySize]], message: /2048 to 8192/ },
  { name: 'RSA 16384', attrs: { [A.KEY_SIZE]: '16384' }, want: [[A.KEY_SIZE, IssueCode.invalidKeySize]] },
  { name: 'key-size not a number', attrs: { [A.KEY_SIZE]: '2k' }, want: [[A.KEY_SIZE, IssueCode.invalidKeySize]] },
  { name: 'ECDSA 2048', attrs: { [A.KEY_ALGORITHM]: 'ECDSA', [A.KEY_SIZE]: '2048' }, want: [[A.KEY_SIZE, IssueCode.invalidKeySize]], message: /256, 384, 521/ },
  { name: 'Ed25519 with a key-size', attrs: { [A.KEY_ALGORITHM]: 'Ed25519', [A.KEY_SIZE]: '256' }, want: [[A.KEY_SIZE, IssueCode.invalidKeySize]], message: /Ed25519/ },
  { name: 'Ed25519 with PKCS1', attrs: { [A.KEY_ALGORITHM]: 'Ed25519', [A.KEY_ENCODING]: 'PKCS1' }, want: [[A.KEY_ENCODING, IssueCode.invalidKeyEncoding]], message: /PKCS8/ },
  { name: 'key-encoding DER', attrs: { [A.KEY_ENCODING]: 'DER' }, want: [[A.KEY_ENCODING, IssueCode.invalidKeyEncoding]] },
  { name: 'unknown key usage', attrs: { [A.KEY_USAGES]: 'digital signature,serverauth' }, want: [[A.KEY_USAGES, IssueCode.invalidKeyUsage]], message: /"serverauth".*server auth/ },
  { name: 'bad DNS names', attrs: { [A.DNS_NAMES]: 'under_score.example.com,-a.example.com,a.*.example.com,a..b' }, want: [[A.DNS_NAMES, IssueCode.invalidDnsName], [A.DNS_NAMES, IssueCode.invalidDnsName], [A.DNS_NAMES, IssueCode.invalidDnsName], [A.DNS_NAMES, IssueCode.invalidDnsName]] },
  { name: 'DNS label of 64', attrs: { [A.DNS_NAMES]: `${'a'.repeat(64)}.example.com` }, want: [[A.DNS_NAMES, IssueCode.invalidDnsName]] },
  { name: 'bad IPs', attrs: { [A.IP_SANS]: '10.0.0.256,10.0.0.0/8,fe80::1%eth0,localhost' }, want: [[A.IP_SANS, IssueCode.invalidIpAddress], [A.IP_SANS, IssueCode.invalidIpAddress], [A.IP_SANS, IssueCode.invalidIpAddress], [A.IP_SANS, IssueCode.invalidIpAddress]] },
  { name: 'bad URIs', attrs: { [A.URI_SANS]: '/relative/path,no-scheme.example.com,http://[bad' }, want: [[A.URI_SANS, IssueCode.invalidUri], [A.URI_SANS, IssueCode.invalidUri], [A.URI_SANS, IssueCode.invalidUri]] },
  { name: 'bad emails', attrs: { [A.EMAIL_SANS]: 'no-at-sign,@example.com,a@,a b@example.com,a@b@c.example' }, want: Array(5).fill([A.EMAIL_SANS, IssueCode.invalidEmail]) },
  { name: 'control character in organization', attrs: { [A.ORGANIZATIONS]: 'Acme\u0007' }, want: [[A.ORGANIZATIONS, IssueCode.invalidSubjectValue]], message: /control/ },
  { name: 'control character in common-name', attrs: { [A.COMMON_NAME]: 'a\u0000b' }, want: [[A.COMMON_NAME, IssueCode.invalidSubjectValue]] },
  { name: 'country of three letters', attrs: { [A.COUNTRIES]: 'USA' }, want: [[A.COUNTRIES, IssueCode.invalidCountry]], message: /two-letter/ },
  { name: 'serial-number with non-printable characters', attrs: { [A.SERIAL_NUMBER]: 'sn_1' }, want: [[A.SERIAL_NUMBER, IssueCode.invalidSerialNumber]] },
  { name: 'common-name over 64', attrs: { [A.COMMON_NAME]: 'x'.repeat(65) }, want: [[A.COMMON_NAME, IssueCode.tooLong]], message: /64/ },
  { name: 'literal-subject with unknown type', attrs: { [A.LITERAL_SUBJECT]: 'CN=a,FOO=b' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]], message: /unknown attribute type "FOO"/ },
  { name: 'literal-subject with unescaped quote', attrs: { [A.LITERAL_SUBJECT]: 'CN=a"b' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]], message: /unescaped/ },
  { name: 'literal-subject with bad escape', attrs: { [A.LITERAL_SUBJECT]: 'CN=a\\qb' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]], message: /bad escape/ },
  { name: 'literal-subject dangling comma', attrs: { [A.LITERAL_SUBJECT]: 'CN=a,' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]], message: /dangling/ },
  { name: 'literal-subject with no "="', attrs: { [A.LITERAL_SUBJECT]: 'just text' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]] },
  { name: 'literal-subject with bad hex', attrs: { [A.LITERAL_SUBJECT]: 'CN=a,1.2.3=#0c0' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]] },
  { name: 'literal-subject with hex that is not BER', attrs: { [A.LITERAL_SUBJECT]: 'CN=a,1.2.3=#0c05ab' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]], message: /BER/ },
  { name: 'literal-subject with an OID arc with a leading zero', attrs: { [A.LITERAL_SUBJECT]: 'CN=a,2.05.4=x' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]] },
  { name: 'literal-subject with escaped invalid UTF-8', attrs: { [A.LITERAL_SUBJECT]: 'CN=a\\C3' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]], message: /UTF-8/ },
  { name: 'literal-subject with a bad country', attrs: { [A.LITERAL_SUBJECT]: 'CN=a,C=USA' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]] },
  { name: 'literal-subject with an empty value', attrs: { [A.LITERAL_SUBJECT]: 'CN=,O=x' }, want: [[A.LITERAL_SUBJECT, IssueCode.invalidLiteralSubject]] },
  { name: 'literal-subject with structured fields', attrs: { [A.LITERAL_SUBJECT]: 'CN=a', [A.COMMON_NAME]: 'a', [A.ORGANIZATIONS]: 'o' }, want: [[A.COMMON_NAME, IssueCode.conflictsWithLiteralSubject], [A.ORGANIZATIONS, IssueCode.conflictsWithLiteralSubject]], message: /literal-subject/ },
  { name: 'file name with a slash', attrs: { [A.CERTIFICATE_FILE]: '../crt.pem' }, want: [[A.CERTIFICATE_FILE, IssueCode.invalidFileName]], message: /"\/"/ },
  { name: 'file name ..', attrs: { [A.PRIVATE_KEY_FILE]: '..' }, want: [[A.PRIVATE_KEY_FILE, IssueCode.invalidFileName]] },
  { name: 'file name dot-file', attrs: { [A.CA_FILE]: '.ca.pem' }, want: [[A.CA_FILE, IssueCode.invalidFileName]], message: /"\."/ },
  { name: 'file name with NUL', attrs: { [A.CA_FILE]: 'a\u0000b' }, want: [[A.CA_FILE, IssueCode.invalidFileName]] },
  { name: 'file name over 255 bytes', attrs: { [A.CA_FILE]: 'é'.repeat(128) }, want: [[A.CA_FILE, IssueCode.invalidFileName]], message: /255 bytes/ },
  { name: 'file name shared with a default', attrs: { [A.CA_FILE]: 'crt.pem' }, want: [[A.CA_FILE, IssueCode.duplicateFileName]], message: /certificate-file/ },
  { name: 'two given file names collide', attrs: { [A.CERTIFICATE_FILE]: 'x.pem', [A.PRIVATE_KEY_FILE]: 'x.pem' }, want: [[A.PRIVATE_KEY_FILE, IssueCode.duplicateFileName]] },
  { name: 'credential bundle shares a default name', attrs: { [A.CREDENTIAL_BUNDLE_FILE]: 'key.pem' }, want: [[A.CREDENTIAL_BUNDLE_FILE, IssueCode.duplicateFileName]], message: /privatekey-file/ },
  { name: 'credential bundle name with a slash', attrs: { [A.CREDENTIAL_BUNDLE_FILE]: 'a/b.pem' }, want: [[A.CREDENTIAL_BUNDLE_FILE, IssueCode.invalidFileName]] },
  { name: 'credential bundle empty', attrs: { [A.CREDENTIAL_BUNDLE_FILE]: ' ' }, want: [[A.CREDENTIAL_BUNDLE_FILE, IssueCode.emptyValue]] },
  { name: 'keystore shares a name', attrs: { [A.PKCS12_ENABLE]: 'true', [A.PKCS12_PASSWORD]: 'p', [A.CERTIFICATE_FILE]: 'keystore.p12' }, want: [[A.CERTIFICATE_FILE, IssueCode.duplicateFileName]] },
  { name: 'bad keystore name is checked even without a password', attrs: { [A.PKCS12_ENABLE]: 'true', [A.PKCS12_FILENAME]: 'a/b' }, want: [[A.PKCS12_PASSWORD, IssueCode.required], [A.PKCS12_FILENAME, IssueCode.invalidFileName]] },
  { name: 'fs-group negative', attrs: { [A.FS_GROUP]: '-1' }, want: [[A.FS_GROUP, IssueCode.invalidFsGroup]], message: /0 to 2147483647/ },
  { name: 'fs-group too large', attrs: { [A.FS_GROUP]: '2147483648' }, want: [[A.FS_GROUP, IssueCode.invalidFsGroup]] },
  { name: 'fs-group with leading zero', attrs: { [A.FS_GROUP]: '0100' }, want: [[A.FS_GROUP, IssueCode.invalidFsGroup]] },
  { name: 'pkcs12 without password', attrs: { [A.PKCS12_ENABLE]: 'true' }, want: [[A.PKCS12_PASSWORD, IssueCode.required]] },
  { name: 'pkcs12 with an empty password', attrs: { [A.PKCS12_ENABLE]: 'true', [A.PKCS12_PASSWORD]: '' }, want: [[A.PKCS12_PASSWORD, IssueCode.emptyValue]] },
  { name: 'pkcs12 filename and password without enable', attrs: { [A.PKCS12_FILENAME]: 'k.p12', [A.PKCS12_PASSWORD]: 'hunter2' }, want: [[A.PKCS12_FILENAME, IssueCode.requiresPkcs12Enable], [A.PKCS12_PASSWORD, IssueCode.requiresPkcs12Enable]] },
  { name: 'pkcs12 password with enable false', attrs: { [A.PKCS12_ENABLE]: 'false', [A.PKCS12_PASSWORD]: 'hunter2' }, want: [[A.PKCS12_PASSWORD, IssueCode.requiresPkcs12Enable]] },
  { name: 'pkcs12-enable not a boolean', attrs: { [A.PKCS12_ENABLE]: 'enabled', [A.PKCS12_PASSWORD]: 'hunter2' }, want: [[A.PKCS12_ENABLE, IssueCode.invalidBoolean]] },
  { name: 'pod variable empty for this pod', attrs: { [A.COMMON_NAME]: '${SERVICE_ACCOUNT_NAME}' }, want: [[A.COMMON_NAME, IssueCode.emptyVariable]], message: /podInfoOnMount/ },
]

t.test('every error code, one case at a time', async (t) => {
  for (const c of invalid) {
    const attrs = c.bare ? c.attrs : { ...base, ...c.attrs }
    const podFor = c.name === 'pod variable empty for this pod' ? { ...pod, serviceAccountName: '' } : pod
    const result = parseVolumeAttributes(attrs, podFor, c.annotationPrefixes ? { annotationPrefixes: c.annotationPrefixes } : undefined)
    if (result.ok) {
      t.fail(`${c.name}: expected issues, got a spec`)
      continue
    }
    t.same(result.issues.map((i) => [i.attribute, i.code]), c.want, c.name)
    if (c.message) t.match(result.issues[0]?.message, c.message, `${c.name}: message`)
    for (const issue of result.issues) {
      t.ok(issue.message.length > 10, `${c.name}: ${issue.code} has a message`)
      t.notMatch(issue.message, /hunter2/, `${c.name}: the password is never quoted`)
    }
  }
})

t.test('the tables cover every issue code', async (t) => {
  const covered = new Set(invalid.flatMap((c) => c.want.map(([, code]) => code)))
  for (const code of Object.values(IssueCode)) t.ok(covered.has(code), `code ${code} is tested`)
})

t.test('many errors at once are all reported, in a stable order', async (t) => {
  const attrs = {
    [A.DNS_NAMES]: 'bad_name',
    [A.IP_SANS]: '300.1.1.1',
    [A.DURATION]: 'forever',
    [A.KEY_ALGORITHM]: 'DSA',
    [A.IS_CA]: 'maybe',
    [A.FS_GROUP]: 'root',
    [A.CERTIFICATE_FILE]: '/etc/passwd',
    'csi.cert-manager.io/dns-nmes': 'x',
    nope: 'x',
  }
  const issues = mustFail(t, attrs)
  t.same(issues.map((i) => [i.attribute, i.code]), [
    ['csi.cert-manager.io/dns-nmes', IssueCode.unknownAttribute],
    ['nope', IssueCode.invalidAttributeKey],
    [A.ISSUER_NAME, IssueCode.required],
    [A.DURATION, IssueCode.invalidDuration],
    [A.KEY_ALGORITHM, IssueCode.invalidKeyAlgorithm],
    [A.DNS_NAMES, IssueCode.invalidDnsName],
    [A.IP_SANS, IssueCode.invalidIpAddress],
    [A.IS_CA, IssueCode.invalidBoolean],
    [A.CERTIFICATE_FILE, IssueCode.invalidFileName],
    [A.FS_GROUP, IssueCode.invalidFsGroup],
  ])
  t.same(mustFail(t, attrs), issues, 'the same input gives the same issues')
})

t.test('pod variables are expanded in names and subjects', async (t) => {
  const spec = mustParse(t, {
    [A.ISSUER_NAME]: 'ca',
    [A.COMMON_NAME]: '${POD_NAME}',
    [A.DNS_NAMES]: '${POD_NAME}.${POD_NAMESPACE}.svc,${POD_NAME}.${POD_NAMESPACE}.svc.cluster.local',
    [A.IP_SANS]: '10.0.0.1',
    [A.URI_SANS]: 'spiffe://cluster.local/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}',
    [A.EMAIL_SANS]: '${POD_NAME}@${POD_NAMESPACE}.example.com',
    [A.ORGANIZATIONAL_UNITS]: '${POD_NAMESPACE}',
    [A.SERIAL_NUMBER]: '${POD_UID}',
    [A.ORGANIZATIONS]: 'Cost $5',
  })
  t.equal(spec.subject.commonName, 'web-0')
  t.same(spec.dnsNames, ['web-0.shop.svc', 'web-0.shop.svc.cluster.local'])
  t.same(spec.uris, ['spiffe://cluster.local/ns/shop/sa/web-sa'])
  t.same(spec.emailAddresses, ['web-0@shop.example.com'])
  t.same(spec.subject.organizationalUnits, ['shop'])
  t.equal(spec.subject.serialNumber, pod.uid)
  t.same(spec.subject.organizations, ['Cost $5'], 'a "$" that is not a variable stays')

  const literal = mustParse(t, { [A.ISSUER_NAME]: 'ca', [A.LITERAL_SUBJECT]: 'CN=${POD_NAME},OU=${POD_NAMESPACE}' })
  t.equal(literal.subject.literal, 'CN=web-0,OU=shop')

  const notExpanded = mustParse(t, { ...base, [A.ISSUER_NAME]: 'ca', [A.CA_FILE]: 'x${POD_NAME}', 'example.com/owner': '${POD_NAME}' })
  t.equal(notExpanded.files.ca, 'x${POD_NAME}', 'file names are not expanded')
  t.equal(notExpanded.annotations['example.com/owner'], '${POD_NAME}', 'annotation values are not expanded')

  const issues = mustFail(t, { ...base, [A.DNS_NAMES]: '${POD_NAME}.${NODE_NAME}.${CLUSTER}' })
  t.same(issues.map((i) => i.message.match(/\$\{\w+\}/)?.[0]), ['${NODE_NAME}', '${CLUSTER}'], 'each unknown variable is named')
})

t.test('annotations: other prefixes pass through, kubelet keys are dropped', async (t) => {
  const spec = mustParse(t, {
    ...base,
    'example.com/team': 'payments',
    'app.kubernetes.io/part-of': 'shop',
    'a.b/x_y.z-1': '',
    'csi.storage.k8s.io/pod.name': 'web-0',
    'csi.storage.k8s.io/pod.namespace': 'shop',
    'csi.storage.k8s.io/pod.uid': pod.uid,
    'csi.storage.k8s.io/serviceAccount.name': 'web-sa',
    'csi.storage.k8s.io/ephemeral': 'true',
    'csi.storage.k8s.io/serviceAccount.tokens': '{"api":{"token":"secret-token"}}',
  })
  t.same(spec.annotations, { 'example.com/team': 'payments', 'app.kubernetes.io/part-of': 'shop', 'a.b/x_y.z-1': '' })
  t.notMatch(JSON.stringify(spec), /secret-token/, 'the service account token is nowhere in the spec')
})

t.test('the only secret in a spec is the keystore password', async (t) => {
  const spec = mustParse(t, { ...base, [A.PKCS12_ENABLE]: 'true', [A.PKCS12_PASSWORD]: 'hunter2' })
  const { pkcs12, ...rest } = spec
  t.equal(pkcs12?.password, 'hunter2')
  t.notMatch(JSON.stringify(rest), /hunter2/)
})

t.test('the input is not modified', async (t) => {
  const attrs = { ...base, [A.DNS_NAMES]: ' ${POD_NAME}.svc ' }
  const copy = { ...attrs }
  mustParse(t, attrs)
  t.same(attrs, copy)
})

t.test('defaults are fresh copies', async (t) => {
  const a = mustParse(t, base)
  a.usages.push('any')
  const b = mustParse(t, base)
  t.same(b.usages, ['digital signature', 'key encipherment'])
})

t.test('annotations pass for allowed prefixes, and for any with "*"', async (t) => {
  const attrs = { ...base, 'example.com/team': 'payments', 'other.org/x': 'y' }
  const some = parseVolumeAttributes({ ...base, 'example.com/team': 'payments' }, pod, { annotationPrefixes: ['example.com'] })
  t.same(some.ok && some.spec.annotations, { 'example.com/team': 'payments' })
  const any = parseVolumeAttributes(attrs, pod, { annotationPrefixes: '*' })
  t.same(any.ok && any.spec.annotations, { 'example.com/team': 'payments', 'other.org/x': 'y' })
})
