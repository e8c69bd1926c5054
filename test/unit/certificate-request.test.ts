import t from 'tap'
import fc from 'fast-check'
import * as A from '../../src/volume/attributes.js'
import { parseVolumeAttributes } from '../../src/volume/spec.js'
import type { PodInfo, VolumeSpec } from '../../src/volume/types.js'
import {
  ANNOTATION_NODE_ID,
  ANNOTATION_VOLUME_ID,
  LABEL_NODE,
  LABEL_VOLUME,
  buildCertificateRequest,
  parseCertificateRequest,
  readCertificateRequest,
  goDuration,
  nodeLabelValue,
  requestName,
  requestState,
  volumeLabelValue,
  type CertificateRequest,
  type RequestState,
} from '../../src/kube/certificate-request.js'

// The request body as the apiserver gets it: walked by key in the checks below.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>

// Kubernetes' own rules (apimachinery validation), written out here rather
// than imported, so the test does not share a mistake with the code.
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/
const isLabelValue = (s: string): boolean => s.length <= 63 && LABEL_VALUE.test(s)
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const isDnsSubdomain = (s: string): boolean => s.length <= 253 && DNS_SUBDOMAIN.test(s)

const pod: PodInfo = { name: 'web-0', namespace: 'shop', uid: '4f1c2a9e-0b7d-4c1e-9a57-2d3f6b8e1c90', serviceAccountName: 'web-sa' }
const volumeId = 'csi-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
const otherVolumeId = 'csi-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210'
const runs = { numRuns: 2000 }

// ---- label values -----------------------------------------------------

t.test('nodeLabelValue: valid names are kept, the rest become a valid stable hash', async (t) => {
  const cases: Array<{ name: string; nodeId: string; kept: boolean }> = [
    { name: 'short name', nodeId: 'node-a', kept: true },
    { name: 'EC2-style FQDN', nodeId: 'ip-10-0-0-1.eu-west-1.compute.internal', kept: true },
    { name: 'exactly 63 characters', nodeId: 'n'.repeat(63), kept: true },
    { name: 'upper case and underscore are label-valid', nodeId: 'Node_A.1', kept: true },
    { name: '64 characters', nodeId: 'n'.repeat(64), kept: false },
    { name: 'a 253-character DNS name', nodeId: `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.example.com`.slice(0, 253), kept: false },
    { name: 'leading hyphen', nodeId: '-node', kept: false },
    { name: 'trailing dot', nodeId: 'node.', kept: false },
    { name: 'space', nodeId: 'my node', kept: false },
    { name: 'slash', nodeId: 'rack/1', kept: false },
    { name: 'colon', nodeId: 'node:1', kept: false },
    { name: 'non-ASCII', nodeId: 'nöde', kept: false },
  ]
  for (const c of cases) {
    const v = nodeLabelValue(c.nodeId)
    t.ok(isLabelValue(v), `${c.name}: "${v}" is a valid label value`)
    if (c.kept) t.equal(v, c.nodeId, `${c.name}: kept as is`)
    else t.match(v, /^h-[0-9a-f]{40}$/, `${c.name}: hashed`)
    t.equal(nodeLabelValue(c.nodeId), v, `${c.name}: deterministic`)
  }
  t.not(nodeLabelValue('n'.repeat(64)), nodeLabelValue('n'.repeat(65)), 'different long names, different values')
})

t.test('volumeLabelValue: kubelet volume ids become 32 hex characters', async (t) => {
  t.ok(volumeId.length > 63, 'a kubelet volume id is itself too long for a label')
  for (const id of [volumeId, otherVolumeId, 'v', 'csi-' + 'f'.repeat(64) + '-extra']) {
    const v = volumeLabelValue(id)
    t.match(v, /^[0-9a-f]{32}$/, id)
    t.ok(isLabelValue(v), `${id}: valid label value`)
    t.equal(volumeLabelValue(id), v, `${id}: deterministic`)
  }
  t.not(volumeLabelValue(volumeId), volumeLabelValue(otherVolumeId), 'different volumes, different values')
})

t.test('property: label values are always valid, whatever the input', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,252}$/)), (s) => {
      const n = nodeLabelValue(s)
      const kept = n === s
      return isLabelValue(n) && isLabelValue(volumeLabelValue(s)) && kept === isLabelValue(s)
    }),
    runs,
  )
  t.pass()
})

// ---- request names ----------------------------------------------------

t.test('requestName', async (t) => {
  const name = requestName(pod, volumeId, 1)
  t.match(name, /^web-0-[0-9a-f]{12}-1$/, 'pod name, volume hash, generation')
  t.equal(requestName(pod, volumeId, 1), name, 'deterministic')
  t.ok(isDnsSubdomain(name), 'a DNS subdomain')
  t.not(requestName(pod, volumeId, 2), name, 'differs by generation')
  t.not(requestName(pod, otherVolumeId, 1), name, 'differs by volume')
  t.not(requestName(pod, volumeId, 1), requestName(pod, volumeId, 11), 'generation 1 and 11 differ')
  t.equal(requestName({ ...pod, namespace: 'other', uid: 'x' }, volumeId, 1), name, 'only the pod name matters, not namespace or uid')

  const cases: Array<{ name: string; podName: string; generation: number }> = [
    { name: 'a 253-character pod name', podName: 'p'.repeat(253), generation: 1 },
    { name: 'a 253-character pod name, huge generation', podName: 'p'.repeat(253), generation: 2_000_000_000 },
    { name: 'cut lands right after a hyphen', podName: `${'a'.repeat(237)}-${'b'.repeat(15)}`, generation: 1 },
    { name: 'cut lands right after a dot', podName: `${'a'.repeat(237)}.${'b'.repeat(15)}`, generation: 1 },
    { name: 'cut lands after several hyphens', podName: `${'a'.repeat(235)}---${'b'.repeat(15)}`, generation: 1 },
    { name: 'dotted StatefulSet-style name', podName: `${'x'.repeat(62)}.${'y'.repeat(62)}.${'z'.repeat(62)}.${'w'.repeat(62)}`, generation: 7 },
  ]
  for (const c of cases) {
    const n = requestName({ ...pod, name: c.podName }, volumeId, c.generation)
    t.ok(n.length <= 253, `${c.name}: ${n.length} ≤ 253 characters`)
    t.ok(isDnsSubdomain(n), `${c.name}: a DNS subdomain`)
    t.ok(n.endsWith(`-${c.generation}`), `${c.name}: ends with the generation`)
    t.not(requestName({ ...pod, name: c.podName }, volumeId, c.generation + 1), n, `${c.name}: differs by generation`)
  }
})

const dnsLabel = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/)
const podName = fc.array(dnsLabel, { minLength: 1, maxLength: 6 }).map((ls) => ls.join('.')).filter((s) => s.length <= 253)

t.test('property: requestName is a valid, deterministic DNS subdomain, distinct per generation and volume', async (t) => {
  fc.assert(
    fc.property(podName, fc.string({ minLength: 1, maxLength: 80 }), fc.string({ minLength: 1, maxLength: 80 }), fc.nat({ max: 1_000_000_000 }), (name, v1, v2, g) => {
      const p = { ...pod, name }
      const n = requestName(p, v1, g)
      return (
        isDnsSubdomain(n) &&
        n === requestName(p, v1, g) &&
        n !== requestName(p, v1, g + 1) &&
        (v1 === v2 || n !== requestName(p, v2, g))
      )
    }),
    runs,
  )
  t.pass()
})

// ---- durations ----------------------------------------------------------

t.test('goDuration: whole seconds in Go syntax, at least one', async (t) => {
  const cases: Array<[number, string]> = [
    [0, '1s'],
    [499, '1s'],
    [1000, '1s'],
    [1499, '1s'],
    [1500, '2s'],
    [60_000, '60s'],
    [3_600_000, '3600s'],
    [90 * 86_400_000, '7776000s'],
  ]
  for (const [ms, want] of cases) t.equal(goDuration(ms), want, `${ms} ms`)
  fc.assert(fc.property(fc.nat({ max: 10 * 365 * 86_400_000 }), (ms) => /^[1-9][0-9]*s$/.test(goDuration(ms))), runs)
})

// ---- the request body ---------------------------------------------------

function spec(attrs: Record<string, string>): VolumeSpec {
  const result = parseVolumeAttributes(attrs, pod)
  if (!result.ok) throw new Error(JSON.stringify(result.issues))
  return result.spec
}

const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIBtest\n-----END CERTIFICATE REQUEST-----\n'

t.test('buildCertificateRequest', async (t) => {
  const s = spec({
    [A.ISSUER_NAME]: 'ca',
    [A.ISSUER_KIND]: 'ClusterIssuer',
    [A.DNS_NAMES]: 'web.shop.svc',
    [A.DURATION]: '2160h',
    [A.IS_CA]: 'true',
    [A.KEY_USAGES]: 'server auth,client auth',
    'example.com/team': 'payments',
    'csi.storage.k8s.io/pod.name': 'web-0',
    'csi.storage.k8s.io/serviceAccount.tokens': '{"secret":"token"}',
  })
  const nodeId = 'n'.repeat(70)
  const name = requestName(pod, volumeId, 3)
  const body = buildCertificateRequest({ name, volumeId, nodeId, pod, spec: s, csrPem: CSR }) as Json

  t.equal(body.apiVersion, 'cert-manager.io/v1')
  t.equal(body.kind, 'CertificateRequest')
  t.equal(body.metadata.name, name)
  t.equal(body.metadata.namespace, 'shop')
  t.strictSame(body.metadata.labels, { [LABEL_NODE]: nodeLabelValue(nodeId), [LABEL_VOLUME]: volumeLabelValue(volumeId) }, 'node and volume labels')
  for (const v of Object.values(body.metadata.labels as Record<string, string>)) t.ok(isLabelValue(v), `label value ${v} is valid`)
  t.strictSame(
    body.metadata.annotations,
    { 'example.com/team': 'payments', [ANNOTATION_VOLUME_ID]: volumeId, [ANNOTATION_NODE_ID]: nodeId },
    'passthrough annotations plus the full volume and node ids; no kubelet attributes',
  )
  t.strictSame(body.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Pod', name: 'web-0', uid: pod.uid, controller: false, blockOwnerDeletion: false }], 'owned by the pod, by uid')
  t.strictSame(body.spec.issuerRef, { name: 'ca', kind: 'ClusterIssuer', group: 'cert-manager.io' })
  t.equal(body.spec.duration, '7776000s', 'duration in Go syntax')
  t.equal(body.spec.isCA, true)
  t.strictSame(body.spec.usages, s.usages)
  t.ok(s.usages.includes('server auth') && s.usages.includes('client auth'), 'the usages asked for')
  t.match(body.spec.request, /^[A-Za-z0-9+/]+=*$/, 'the CSR is base64')
  t.equal(Buffer.from(body.spec.request, 'base64').toString('utf8'), CSR, 'and decodes to the PEM')
  t.notOk(JSON.stringify(body).includes('token'), 'no service account token anywhere')
  t.ok(readCertificateRequest(body) !== undefined, 'reads back through the schema')
})

t.test('buildCertificateRequest: defaults and our annotations win', async (t) => {
  const s = spec({ [A.ISSUER_NAME]: 'ca', [A.DNS_NAMES]: 'web.shop.svc' })
  const withClash = { ...s, annotations: { [ANNOTATION_VOLUME_ID]: 'forged', [ANNOTATION_NODE_ID]: 'forged', 'example.com/x': 'y' } }
  const body = buildCertificateRequest({ name: 'n', volumeId, nodeId: 'node-a', pod, spec: withClash, csrPem: CSR }) as Json
  t.strictSame(body.metadata.annotations, { 'example.com/x': 'y', [ANNOTATION_VOLUME_ID]: volumeId, [ANNOTATION_NODE_ID]: 'node-a' })
  t.equal(body.metadata.labels[LABEL_NODE], 'node-a', 'a valid node name is the label value')
  t.strictSame(body.spec.issuerRef, { name: 'ca', kind: s.issuer.kind, group: s.issuer.group })
  t.equal(body.spec.isCA, false)
  t.equal(body.spec.duration, goDuration(s.durationMs))
})

// ---- reading a request back --------------------------------------------

interface Condition { type: string; status: string; reason?: string; message?: string }

function cr(opts: { conditions?: Condition[]; certificate?: string; ca?: string; issuerKind?: string; namespace?: string } = {}): CertificateRequest {
  return parseCertificateRequest({
    metadata: { name: 'web-0-abc-1', namespace: opts.namespace ?? 'ns' },
    spec: { issuerRef: { name: 'x', ...(opts.issuerKind ? { kind: opts.issuerKind } : {}), group: 'cert-manager.io' }, request: 'Zm9v' },
    status: {
      ...(opts.conditions ? { conditions: opts.conditions } : {}),
      ...(opts.certificate ? { certificate: opts.certificate } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    },
  })
}

const approved: Condition = { type: 'Approved', status: 'True', reason: 'cert-manager.io', message: 'Certificate request has been approved by cert-manager.io' }
const CERT = '-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n'
const CA = '-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n'
const b64 = (s: string): string => Buffer.from(s).toString('base64')
const issuedReady: Condition = { type: 'Ready', status: 'True', reason: 'Issued', message: 'Certificate fetched from issuer successfully' }

t.test('requestState table', async (t) => {
  const cases: Array<{ name: string; cr: CertificateRequest; want: RequestState }> = [
    { name: 'no status at all: awaiting approval', cr: parseCertificateRequest({ metadata: { name: 'a', namespace: 'ns' }, spec: { issuerRef: { name: 'x' } } }), want: { phase: 'awaiting-approval', terminal: false, message: 'waiting for approval of the CertificateRequest' } },
    { name: 'no conditions: awaiting approval', cr: cr(), want: { phase: 'awaiting-approval', terminal: false, message: 'waiting for approval of the CertificateRequest' } },
    { name: 'Ready False Pending but not approved: awaiting approval', cr: cr({ conditions: [{ type: 'Ready', status: 'False', reason: 'Pending', message: 'Waiting on certificate issuance' }] }), want: { phase: 'awaiting-approval', terminal: false, message: 'waiting for approval of the CertificateRequest' } },
    {
      name: 'approved, Issuer not found',
      cr: cr({ conditions: [approved, { type: 'Ready', status: 'False', reason: 'Pending', message: 'Referenced "Issuer" not found: issuer.cert-manager.io "x" not found' }] }),
      want: { phase: 'pending', terminal: false, message: 'waiting for signature: Issuer "x" not found in namespace "ns"' },
    },
    {
      name: 'approved, ClusterIssuer not found: no namespace',
      cr: cr({ issuerKind: 'ClusterIssuer', conditions: [approved, { type: 'Ready', status: 'False', reason: 'Pending', message: 'Referenced "ClusterIssuer" not found: clusterissuer.cert-manager.io "x" not found' }] }),
      want: { phase: 'pending', terminal: false, message: 'waiting for signature: ClusterIssuer "x" not found' },
    },
    {
      name: 'approved, pending with another message',
      cr: cr({ conditions: [approved, { type: 'Ready', status: 'False', reason: 'Pending', message: 'Referenced issuer does not have a Ready status condition' }] }),
      want: { phase: 'pending', terminal: false, message: 'waiting for signature: Referenced issuer does not have a Ready status condition' },
    },
    { name: 'approved, no Ready condition yet', cr: cr({ conditions: [approved] }), want: { phase: 'pending', terminal: false, message: 'waiting for signature from Issuer "x"' } },
    { name: 'approved, no Ready condition yet, ClusterIssuer', cr: cr({ issuerKind: 'ClusterIssuer', conditions: [approved] }), want: { phase: 'pending', terminal: false, message: 'waiting for signature from ClusterIssuer "x"' } },
    {
      name: 'Ready True with certificate and CA: issued, PEMs decoded',
      cr: cr({ conditions: [approved, issuedReady], certificate: b64(CERT), ca: b64(CA) }),
      want: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT, caPem: CA },
    },
    {
      name: 'Ready True with certificate, no CA: issued without caPem',
      cr: cr({ conditions: [approved, issuedReady], certificate: b64(CERT) }),
      want: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT },
    },
    {
      name: 'Ready True without a certificate is not issued',
      cr: cr({ conditions: [approved, issuedReady] }),
      want: { phase: 'pending', terminal: false, message: 'waiting for signature: Certificate fetched from issuer successfully' },
    },
    {
      name: 'Denied',
      cr: cr({ conditions: [{ type: 'Denied', status: 'True', reason: 'policy.cert-manager.io', message: 'no policy allows it' }, { type: 'Ready', status: 'False', reason: 'Denied', message: 'The CertificateRequest was denied by an approval controller' }] }),
      want: { phase: 'denied', terminal: true, message: 'request denied (policy.cert-manager.io): no policy allows it' },
    },
    { name: 'Denied without reason or message', cr: cr({ conditions: [{ type: 'Denied', status: 'True' }] }), want: { phase: 'denied', terminal: true, message: 'request denied: no reason given' } },
    {
      name: 'InvalidRequest',
      cr: cr({ conditions: [approved, { type: 'InvalidRequest', status: 'True', reason: 'BadConfig', message: 'CSR is not valid' }, { type: 'Ready', status: 'False', reason: 'Failed', message: 'CSR is not valid' }] }),
      want: { phase: 'invalid', terminal: true, message: 'request invalid: CSR is not valid' },
    },
    { name: 'InvalidRequest with only a reason', cr: cr({ conditions: [{ type: 'InvalidRequest', status: 'True', reason: 'BadConfig' }] }), want: { phase: 'invalid', terminal: true, message: 'request invalid: BadConfig' } },
    { name: 'InvalidRequest False is ignored', cr: cr({ conditions: [approved, { type: 'InvalidRequest', status: 'False' }] }), want: { phase: 'pending', terminal: false, message: 'waiting for signature from Issuer "x"' } },
    {
      name: 'Ready False reason Failed',
      cr: cr({ conditions: [approved, { type: 'Ready', status: 'False', reason: 'Failed', message: 'Failed to sign certificate: boom' }] }),
      want: { phase: 'failed', terminal: true, message: 'request failed: Failed to sign certificate: boom' },
    },
    { name: 'Ready False reason Failed without a message', cr: cr({ conditions: [approved, { type: 'Ready', status: 'False', reason: 'Failed' }] }), want: { phase: 'failed', terminal: true, message: 'request failed: no reason given' } },
  ]
  for (const c of cases) t.strictSame(requestState(c.cr), c.want, c.name)
})

// cert-manager's CA signer reports a missing CA Secret as Pending with
// 'Referenced secret <ns>/<name> not found: secrets "<name>" not found'
// (pkg/controller/certificaterequests/ca/ca.go): the Issuer exists.
t.test('approved, pending on a missing Secret: the Issuer is not reported missing', async (t) => {
  const state = requestState(cr({ conditions: [approved, { type: 'Ready', status: 'False', reason: 'Pending', message: 'Referenced secret ns/ca-key-pair not found: secrets "ca-key-pair" not found' }] }))
  t.equal(state.phase, 'pending')
  t.equal(state.message, 'waiting for signature: Referenced secret ns/ca-key-pair not found: secrets "ca-key-pair" not found')
})

// ---- the schema ----------------------------------------------------------

t.test('parseCertificateRequest and readCertificateRequest', async (t) => {
  const good = { metadata: { name: 'a', namespace: 'ns' }, spec: { issuerRef: { name: 'x' } } }
  t.ok(readCertificateRequest(good) !== undefined, 'the minimum')
  const rejects: Array<[string, unknown]> = [
    ['no metadata.name', { metadata: { namespace: 'ns' }, spec: { issuerRef: { name: 'x' } } }],
    ['metadata.name not a string', { metadata: { name: 1, namespace: 'ns' }, spec: { issuerRef: { name: 'x' } } }],
    ['no metadata', { spec: { issuerRef: { name: 'x' } } }],
    ['no metadata.namespace', { metadata: { name: 'a' }, spec: { issuerRef: { name: 'x' } } }],
    ['no spec.issuerRef', { metadata: { name: 'a', namespace: 'ns' }, spec: {} }],
    ['conditions not a list', { ...good, status: { conditions: {} } }],
    ['not an object', null],
  ]
  for (const [name, x] of rejects) t.equal(readCertificateRequest(x), undefined, `rejects: ${name}`)
  t.throws(() => parseCertificateRequest(rejects[1]![1]), /not a CertificateRequest: metadata\.name: /, 'the error names the field')

  // The client hands timestamps back as Date objects, and more fields than we read.
  const created = new Date('2025-06-01T00:00:00Z')
  const parsed = parseCertificateRequest({ ...good, apiVersion: 'cert-manager.io/v1', metadata: { ...good.metadata, creationTimestamp: created, deletionTimestamp: '2025-06-02T00:00:00Z' }, spec: { ...good.spec, request: 'Zm9v' } }) as Json
  t.equal(parsed.apiVersion, 'cert-manager.io/v1', 'unknown top-level fields pass through')
  t.equal(parsed.spec.request, 'Zm9v', 'unknown spec fields pass through')
  t.equal(parsed.metadata.creationTimestamp, created)
})
