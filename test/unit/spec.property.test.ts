import t from 'tap'
import fc from 'fast-check'
import * as A from '../../src/volume/attributes.js'
import { IssueCode } from '../../src/volume/attributes.js'
import { parseVolumeAttributes } from '../../src/volume/spec.js'
import { checkFileName } from '../../src/volume/shapes.js'
import { commonNames, escapeDnValue, parseRfc4514 } from '../../src/volume/dn.js'
import type { PodInfo, VolumeSpec } from '../../src/volume/types.js'

const pod: PodInfo = { name: 'web-0', namespace: 'shop', uid: '4f1c2a9e-0b7d-4c1e-9a57-2d3f6b8e1c90', serviceAccountName: 'web-sa' }
const codes = new Set<string>(Object.values(IssueCode))
// CSI_FUZZ_RUNS=100000 is the long form (test/README.md has its figures).
const FUZZ_RUNS = Number(process.env.CSI_FUZZ_RUNS ?? 2000)
const runs = { numRuns: FUZZ_RUNS }

// Values that are sometimes right for some key: the generator mixes them so
// that both valid specs and every kind of issue come up.
const plausibleValue = fc.constantFrom(
  '', ' ', 'true', 'false', 'TRUE', 'yes', '0', '1', '2048', '256', '384', '521', '4096', '1024',
  'RSA', 'ecdsa', 'Ed25519', 'PKCS1', 'PKCS8', '720h', '1h', '30m', '59s', '-1h', '10',
  'ca', 'Issuer', 'ClusterIssuer', 'cert-manager.io', 'a.example.com', '*.example.com', 'a,,b',
  'a.example.com,a.example.com', '10.0.0.1', '::1', 'spiffe://td/ns/x', 'a@b.example', 'crt.pem',
  'key.pem', 'ca.pem', '../x', '.hidden', 'keystore.p12', 'CN=x,O=y', 'O=y', 'CN=a"b', 'US', 'USA',
  'server auth,client auth', 'signing,digital signature', '${POD_NAME}', '${NOPE}', '$POD_NAME', '${POD_UID',
  'x'.repeat(70), 'Acme\u0007',
)
const value = fc.oneof({ weight: 4, arbitrary: plausibleValue }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) })
const junkKey = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom('example.com/team', 'csi.storage.k8s.io/pod.name', 'csi.storage.k8s.io/ephemeral', 'csi.cert-manager.io/dns-name', 'csi.cert-manger.io/is-ca', 'duration', 'a/b/c', '__proto__', 'constructor', 'toString'),
  fc.string({ maxLength: 20 }).map((s) => `${A.ATTRIBUTE_PREFIX}${s}`),
  fc.string({ maxLength: 20 }).map((s) => `example.com/${s}`),
)
const key = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...A.KNOWN_ATTRIBUTES) }, { weight: 1, arbitrary: junkKey })
// Half of the maps start from a valid core, so valid specs come up too.
const attributeMap = fc
  .tuple(fc.boolean(), fc.dictionary(key, value, { maxKeys: 10 }))
  .map(([withCore, extra]) => (withCore ? { [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: 'a.example.com', ...extra } : extra))

t.test('property: any attribute map gives a spec or a non-empty list of issues, and never throws', async (t) => {
  let specs = 0
  let failures = 0
  fc.assert(
    fc.property(attributeMap, (attrs) => {
      const result = parseVolumeAttributes(attrs, pod)
      if (result.ok) {
        specs++
        return true
      }
      failures++
      const present = new Set(Object.keys(attrs))
      return (
        result.issues.length > 0 &&
        result.issues.every((i) => (present.has(i.attribute) || A.REQUIRED_ATTRIBUTES.includes(i.attribute)) && codes.has(i.code) && i.message.length > 0)
      )
    }),
    runs,
  )
  t.ok(failures > 0, `invalid maps were generated (${failures})`)
  t.ok(specs > 0, `valid maps were generated (${specs})`)
})

t.test('property: parsing is deterministic and does not change its input', async (t) => {
  fc.assert(
    fc.property(attributeMap, (attrs) => {
      const before = JSON.stringify(attrs)
      const a = parseVolumeAttributes(attrs, pod)
      const b = parseVolumeAttributes(attrs, pod)
      return JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(attrs) === before
    }),
    { numRuns: 500 },
  )
  t.pass('no counterexample')
})

// Valid attribute maps built from parts that are each valid, so that the
// invariants of a successful parse get exercised many times.
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/)
const dnsName = fc.tuple(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 4 })).map(([wild, labels]) => `${wild ? '*.' : ''}${labels.join('.')}`)
const fileName = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,20}$/)
const keyChoice = fc.oneof(
  fc.record({ [A.KEY_ALGORITHM]: fc.constantFrom('RSA', 'rsa'), [A.KEY_SIZE]: fc.integer({ min: 2048, max: 8192 }).map(String), [A.KEY_ENCODING]: fc.constantFrom('PKCS1', 'PKCS8') }, { requiredKeys: [A.KEY_ALGORITHM] }),
  fc.record({ [A.KEY_ALGORITHM]: fc.constantFrom('ECDSA', 'ecdsa'), [A.KEY_SIZE]: fc.constantFrom('256', '384', '521'), [A.KEY_ENCODING]: fc.constantFrom('PKCS1', 'PKCS8') }, { requiredKeys: [A.KEY_ALGORITHM] }),
  fc.record({ [A.KEY_ALGORITHM]: fc.constantFrom('Ed25519', 'ED25519'), [A.KEY_ENCODING]: fc.constant('PKCS8') }, { requiredKeys: [A.KEY_ALGORITHM] }),
)
const validMap = fc
  .tuple(
    fc.record(
      {
        [A.ISSUER_NAME]: label,
        [A.DNS_NAMES]: fc.uniqueArray(dnsName, { minLength: 1, maxLength: 4, selector: (s) => s.toLowerCase() }).map((a) => a.join(',')),
        [A.COMMON_NAME]: fc.string({ minLength: 1, maxLength: 64, unit: fc.constantFrom(...'abcxyz-. ${}POD_NAME'.split('')) }).filter((s) => s.trim() !== '' && !s.includes('$')),
        [A.DURATION]: fc.integer({ min: 2, max: 9000 }).map((m) => `${m}m`),
        [A.CERTIFICATE_FILE]: fileName,
        [A.PRIVATE_KEY_FILE]: fileName,
        [A.CA_FILE]: fileName,
        [A.IS_CA]: fc.constantFrom('true', 'false', 'True'),
        [A.FS_GROUP]: fc.integer({ min: 0, max: A.FS_GROUP_MAX }).map(String),
        [A.KEY_USAGES]: fc.shuffledSubarray(['digital signature', 'key encipherment', 'server auth', 'client auth', 'cert sign'], { minLength: 1 }).map((a) => a.join(', ')),
      },
      { requiredKeys: [A.ISSUER_NAME, A.DNS_NAMES] },
    ),
    keyChoice,
  )
  .map(([a, k]) => ({ ...a, ...k }))

t.test('property: valid generated maps parse, and the spec keeps its invariants', async (t) => {
  let parsed = 0
  let collisions = 0
  fc.assert(
    fc.property(validMap, (attrs) => {
      const result = parseVolumeAttributes(attrs, pod)
      if (!result.ok) {
        // The only way these maps can fail is file names colliding: that must be the one issue code.
        collisions++
        return result.issues.every((i) => i.code === IssueCode.duplicateFileName)
      }
      parsed++
      const s: VolumeSpec = result.spec
      const files = [s.files.certificate, s.files.privateKey, s.files.ca, ...(s.files.pkcs12 ? [s.files.pkcs12] : [])]
      const keyOk =
        (s.key.algorithm === 'RSA' && s.key.size >= 2048 && s.key.size <= 8192) ||
        (s.key.algorithm === 'ECDSA' && [256, 384, 521].includes(s.key.size)) ||
        (s.key.algorithm === 'Ed25519' && s.key.size === 0 && s.key.encoding === 'PKCS8')
      return (
        new Set(files).size === files.length &&
        files.every((f) => checkFileName(f) === undefined) &&
        s.durationMs >= A.MIN_DURATION_MS &&
        (s.renewBeforeMs === undefined || (s.renewBeforeMs > 0 && s.renewBeforeMs < s.durationMs)) &&
        keyOk &&
        s.dnsNames.join(',') === attrs[A.DNS_NAMES] &&
        new Set(s.usages).size === s.usages.length &&
        s.usages.every((u) => A.KEY_USAGE_NAMES.includes(u)) &&
        s.issuer.name === attrs[A.ISSUER_NAME] &&
        Object.keys(s.annotations).length === 0
      )
    }),
    runs,
  )
  t.ok(parsed > collisions, `most generated maps parse (${parsed} parsed, ${collisions} file-name collisions)`)
})

t.test('property: annotations are exactly the well-formed foreign keys', async (t) => {
  const annotationKey = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?$/)).map(([p, n]) => `${p.join('.')}/${n}`)
  fc.assert(
    fc.property(fc.dictionary(annotationKey, fc.string({ maxLength: 20 }), { maxKeys: 6 }), (extra) => {
      const foreign = Object.fromEntries(Object.entries(extra).filter(([k]) => !k.startsWith(A.ATTRIBUTE_PREFIX) && !k.startsWith(A.KUBELET_PREFIX)))
      const result = parseVolumeAttributes({ [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: 'a.example.com', ...extra }, pod)
      // A prefix within edit distance 2 of ours is reported as a typo instead.
      if (!result.ok) return result.issues.every((i) => i.code === IssueCode.unknownAttribute)
      return JSON.stringify(result.spec.annotations) === JSON.stringify(foreign)
    }),
    { numRuns: 500 },
  )
  t.pass('no counterexample')
})

t.test('property: escaped literal subjects parse back to the same values', async (t) => {
  const types = ['CN', 'O', 'OU', 'L', 'ST', 'STREET', 'POSTALCODE', 'UID', '1.2.3.4'] as const
  const text = fc.string({ minLength: 1, maxLength: 20, unit: fc.oneof(fc.constantFrom(...' #\\"+,;<>=é€'.split('')), fc.string({ minLength: 1, maxLength: 1, unit: 'binary' })) }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s) && s.trim() !== '' && [...s].length <= 64)
  const rdns = fc.array(fc.array(fc.tuple(fc.constantFrom(...types), text), { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 4 })
  fc.assert(
    fc.property(rdns, fc.constantFrom(',', ', '), (sequence, comma) => {
      const literal = sequence.map((rdn) => rdn.map(([type, v]) => `${type}=${escapeDnValue(v)}`).join('+')).join(comma)
      const parsed = parseRfc4514(literal)
      if (!parsed.ok) return false
      const values = parsed.rdns.map((rdn) => rdn.map((a) => ('value' in a ? a.value : null)))
      return JSON.stringify(values) === JSON.stringify(sequence.map((rdn) => rdn.map(([, v]) => v))) &&
        commonNames(parsed.rdns).length === sequence.flat().filter(([type]) => type === 'CN').length
    }),
    { numRuns: 1000 },
  )
  t.pass('no counterexample')
})

// What a hostile pod author writes: the characters the scanners look for,
// repeated, in keys and values up to and past every limit.
const hostileText = (maxLength: number) =>
  fc.oneof(
    fc.string({ unit: fc.constantFrom('${', '}', '$', '{', 'POD_NAME', ',', '\\', '=', '+', '"', '#', '.', '-', '*', '/', '@', ':', 'a', ' ', '\u0000'), maxLength }),
    fc.tuple(fc.constantFrom('${', 'a', ',', '\\,', '*.', 'CN=x,'), fc.integer({ min: 1, max: 40_000 })).map(([unit, n]) => unit.repeat(n)),
  )
const hostileKey = fc.oneof(
  fc.constantFrom(...A.KNOWN_ATTRIBUTES),
  hostileText(400).map(s => `example.com/${s}`),
  hostileText(400),
)
const hostileMap = fc
  .tuple(fc.boolean(), fc.dictionary(hostileKey, hostileText(2_000), { maxKeys: 8 }))
  .map(([withCore, extra]) => (withCore ? { [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: 'a.example.com', ...extra } : extra))

t.test('property: hostile maps never throw, and every issue names a given attribute or the limit broken', async (t) => {
  let refused = 0
  fc.assert(
    fc.property(hostileMap, (attrs) => {
      const result = parseVolumeAttributes(attrs, pod)
      if (result.ok) return true
      refused++
      const keys = Object.keys(attrs)
      return result.issues.length > 0 && result.issues.every(i =>
        codes.has(i.code) && i.message.length > 0 && i.message.length < 2_000 &&
        (keys.includes(i.attribute) || A.REQUIRED_ATTRIBUTES.includes(i.attribute) || i.attribute === '(volume attributes)' ||
          (i.attribute.endsWith('…') && keys.some(k => k.startsWith(i.attribute.slice(0, -1))))))
    }),
    { numRuns: Math.max(200, Math.round(FUZZ_RUNS / 10)) },
  )
  t.ok(refused > 0, `hostile maps were refused (${refused})`)
})
