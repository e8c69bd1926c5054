import t from 'tap'
import fc from 'fast-check'
import { nextStep, type Observation, type Step } from '../../src/reconcile/plan.js'
import type { VolumeRecord } from '../../src/reconcile/record.js'
import type { RequestState } from '../../src/kube/certificate-request.js'

const SECOND = 1000
const DAY = 86_400_000
const NOW = Date.parse('2025-06-01T00:00:00.000Z')
const iso = (ms: number): string => new Date(ms).toISOString()
const TARGET = '/var/lib/kubelet/pods/4f1c2a9e-0b7d-4c1e-9a57-2d3f6b8e1c90/volumes/kubernetes.io~csi/tls/mount'

function record(over: Partial<VolumeRecord> = {}): VolumeRecord {
  return {
    version: 1,
    volumeId: 'csi-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    targetPath: TARGET,
    nodeId: 'node-a',
    pod: { name: 'web-0', namespace: 'shop', uid: '4f1c2a9e-0b7d-4c1e-9a57-2d3f6b8e1c90', serviceAccountName: 'web-sa' },
    attributes: { 'csi.cert-manager.io/issuer-name': 'ca', 'csi.cert-manager.io/dns-names': 'web.shop.svc' },
    desired: 'published',
    createdAt: iso(NOW - 30 * DAY),
    generation: 1,
    issued: { requestName: 'web-0-aaaaaaaaaaaa-1', notBefore: iso(NOW - 10 * DAY), notAfter: iso(NOW + 20 * DAY), renewAt: iso(NOW + 10 * DAY), serial: '01', issuedAt: iso(NOW - 10 * DAY) },
    ...over,
  }
}

/** A published, mounted volume with a good certificate that is not yet due for renewal. */
function observation(over: Partial<Observation> = {}): Observation {
  return {
    now: NOW,
    record: record(),
    disableAutoRenew: false,
    hasPendingKey: false,
    current: { notBefore: NOW - 10 * DAY, notAfter: NOW + 20 * DAY, keyMatches: true },
    staleRequests: [],
    publishedFresh: true,
    mounted: true,
    targetParentExists: true,
    ...over,
  }
}

/** First issuance: no certificate yet, nothing recorded as issued. */
function fresh(over: Partial<Observation> = {}): Observation {
  const { issued: _issued, ...r } = record()
  const { current: _current, ...o } = observation({ publishedFresh: false, mounted: false, record: r })
  return { ...o, ...over }
}

const inFlight = (over: Partial<VolumeRecord> = {}): VolumeRecord =>
  record({ generation: 2, request: { name: 'web-0-aaaaaaaaaaaa-2', generation: 2, renewal: true }, ...over })

const pending: RequestState = { phase: 'pending', terminal: false, message: 'waiting for signature from Issuer "ca"' }
const awaiting: RequestState = { phase: 'awaiting-approval', terminal: false, message: 'waiting for approval of the CertificateRequest' }
const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
const CA = '-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n'

interface Case {
  name: string
  obs: Observation
  want: Step
}

const cases: Case[] = [
  // ---- leaving
  { name: 'unpublished → teardown', obs: observation({ record: record({ desired: 'unpublished' }) }), want: { kind: 'teardown', reason: 'unpublished' } },
  { name: 'unpublished wins over a gone target parent', obs: observation({ record: record({ desired: 'unpublished' }), targetParentExists: false }), want: { kind: 'teardown', reason: 'unpublished' } },
  { name: 'unpublished wins over an invalid spec and a request in flight', obs: observation({ record: inFlight({ desired: 'unpublished' }), invalidSpec: 'bad', hasPendingKey: true, request: pending }), want: { kind: 'teardown', reason: 'unpublished' } },
  {
    name: "target parent gone → teardown naming the pod's directory",
    obs: observation({ targetParentExists: false }),
    want: { kind: 'teardown', reason: `the pod's volume directory above ${TARGET} is gone` },
  },
  { name: 'target parent gone wins over an invalid spec', obs: observation({ targetParentExists: false, invalidSpec: 'bad' }), want: { kind: 'teardown', reason: `the pod's volume directory above ${TARGET} is gone` } },

  // ---- invalid spec
  {
    name: 'invalid spec → wait, not ready, with the message, even with a good certificate',
    obs: observation({ invalidSpec: 'invalid attributes: csi.cert-manager.io/duration: too short' }),
    want: { kind: 'wait', ready: false, message: 'invalid attributes: csi.cert-manager.io/duration: too short' },
  },
  { name: 'invalid spec wins over stale files and a request in flight', obs: observation({ invalidSpec: 'bad', publishedFresh: false, record: inFlight(), request: 'missing' }), want: { kind: 'wait', ready: false, message: 'bad' } },
  { name: 'an empty invalidSpec string is no invalid spec', obs: observation({ invalidSpec: '' }), want: { kind: 'wait', ready: true, message: 'ready', requeueAfterMs: 10 * DAY } },

  // ---- serving what we have
  { name: 'certificate but stale files → render', obs: observation({ publishedFresh: false }), want: { kind: 'render' } },
  { name: 'certificate, stale files and not mounted → render first', obs: observation({ publishedFresh: false, mounted: false }), want: { kind: 'render' } },
  { name: 'certificate, fresh files, not mounted → mount', obs: observation({ mounted: false }), want: { kind: 'mount' } },
  { name: 'render comes before handling the request in flight', obs: observation({ publishedFresh: false, record: inFlight(), hasPendingKey: true, request: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT } }), want: { kind: 'render' } },
  { name: 'mount comes before a due renewal', obs: observation({ mounted: false, now: NOW + 15 * DAY }), want: { kind: 'mount' } },
  {
    name: 'a certificate for another key is no certificate: no render, a new key',
    obs: observation({ publishedFresh: false, mounted: false, current: { notBefore: NOW - DAY, notAfter: NOW + DAY, keyMatches: false } }),
    want: { kind: 'generateKey' },
  },

  // ---- request in flight
  { name: 'in flight, pending key gone → abandonRequest', obs: observation({ record: inFlight(), hasPendingKey: false, request: pending }), want: { kind: 'abandonRequest', reason: 'the key for the request in flight is gone' } },
  { name: 'in flight, pending key gone → abandonRequest even before the cache syncs', obs: observation({ record: inFlight(), hasPendingKey: false }), want: { kind: 'abandonRequest', reason: 'the key for the request in flight is gone' } },
  { name: 'in flight, cache unsynced, with a certificate → wait ready', obs: observation({ record: inFlight(), hasPendingKey: true }), want: { kind: 'wait', ready: true, message: 'waiting for the CertificateRequest cache to sync' } },
  { name: 'in flight, cache unsynced, no certificate → wait not ready', obs: fresh({ record: inFlight({ issued: undefined }), hasPendingKey: true }), want: { kind: 'wait', ready: false, message: 'waiting for the CertificateRequest cache to sync' } },
  { name: 'in flight, request missing → createRequest (same name again)', obs: observation({ record: inFlight(), hasPendingKey: true, request: 'missing' }), want: { kind: 'createRequest' } },
  {
    name: 'in flight, issued with a CA → acceptCertificate with caPem',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT, caPem: CA } }),
    want: { kind: 'acceptCertificate', certificatePem: CERT, caPem: CA },
  },
  {
    name: 'in flight, issued without a CA → acceptCertificate without a caPem key',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT } }),
    want: { kind: 'acceptCertificate', certificatePem: CERT },
  },
  {
    name: 'in flight, issued with an empty CA → no caPem key',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT, caPem: '' } }),
    want: { kind: 'acceptCertificate', certificatePem: CERT },
  },
  {
    name: 'in flight, issued wins over stale requests',
    obs: observation({ record: inFlight(), hasPendingKey: true, staleRequests: ['old-1'], request: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT } }),
    want: { kind: 'acceptCertificate', certificatePem: CERT },
  },
  {
    name: 'in flight, denied → recordFailure',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: { phase: 'denied', terminal: true, message: 'request denied (Policy): no' } }),
    want: { kind: 'recordFailure', reason: 'denied', message: 'request denied (Policy): no' },
  },
  {
    name: 'in flight, failed → recordFailure',
    obs: fresh({ record: inFlight({ issued: undefined }), hasPendingKey: true, request: { phase: 'failed', terminal: true, message: 'request failed: boom' } }),
    want: { kind: 'recordFailure', reason: 'failed', message: 'request failed: boom' },
  },
  {
    name: 'in flight, invalid → recordFailure, before deleting stale requests',
    obs: observation({ record: inFlight(), hasPendingKey: true, staleRequests: ['old-1'], request: { phase: 'invalid', terminal: true, message: 'request invalid: bad csr' } }),
    want: { kind: 'recordFailure', reason: 'invalid', message: 'request invalid: bad csr' },
  },
  {
    name: 'in flight, pending, no certificate → wait not ready with the request message',
    obs: fresh({ record: inFlight({ issued: undefined }), hasPendingKey: true, request: pending }),
    want: { kind: 'wait', ready: false, message: pending.message },
  },
  {
    name: 'in flight, pending, with a certificate → wait ready, "renewing:" prefix',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: pending }),
    want: { kind: 'wait', ready: true, message: `renewing: ${pending.message}` },
  },
  {
    name: 'in flight, awaiting approval, with a certificate → wait ready, "renewing:" prefix',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: awaiting }),
    want: { kind: 'wait', ready: true, message: `renewing: ${awaiting.message}` },
  },
  {
    name: 'in flight, pending, expired certificate with matching key → still served, ready',
    obs: observation({ now: NOW + 30 * DAY, record: inFlight(), hasPendingKey: true, request: pending }),
    want: { kind: 'wait', ready: true, message: `renewing: ${pending.message}` },
  },
  {
    name: 'in flight, pending, stale requests → deleteRequests',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: pending, staleRequests: ['web-0-aaaaaaaaaaaa-1', 'web-0-aaaaaaaaaaaa-0'] }),
    want: { kind: 'deleteRequests', names: ['web-0-aaaaaaaaaaaa-1', 'web-0-aaaaaaaaaaaa-0'] },
  },
  {
    name: 'in flight, request missing, stale requests → createRequest first',
    obs: observation({ record: inFlight(), hasPendingKey: true, request: 'missing', staleRequests: ['old-1'] }),
    want: { kind: 'createRequest' },
  },
  {
    name: 'in flight, backoff not elapsed is not consulted: the request in flight is followed',
    obs: observation({ record: inFlight({ failure: { reason: 'denied', message: 'no', at: iso(NOW), count: 1, retryAt: iso(NOW + DAY) } }), hasPendingKey: true, request: 'missing' }),
    want: { kind: 'createRequest' },
  },

  // ---- nothing in flight
  { name: 'no request, stale requests → deleteRequests', obs: observation({ staleRequests: ['old-1'] }), want: { kind: 'deleteRequests', names: ['old-1'] } },
  { name: 'no request, stale requests, no certificate → deleteRequests before a new key', obs: fresh({ staleRequests: ['old-1'] }), want: { kind: 'deleteRequests', names: ['old-1'] } },
  { name: 'no certificate, no pending key → generateKey', obs: fresh(), want: { kind: 'generateKey' } },
  { name: 'no certificate, pending key → createRequest', obs: fresh({ hasPendingKey: true }), want: { kind: 'createRequest' } },
  { name: 'no certificate, even with disableAutoRenew → generateKey', obs: fresh({ disableAutoRenew: true }), want: { kind: 'generateKey' } },
  {
    name: 'failure backoff not elapsed → wait, requeue at retryAt',
    obs: fresh({ record: record({ issued: undefined, failure: { reason: 'denied', message: 'request denied: no', at: iso(NOW - 10 * SECOND), count: 1, retryAt: iso(NOW + 90 * SECOND + 500) } }) }),
    want: { kind: 'wait', ready: false, message: 'request denied: no (retrying in 91s)', requeueAfterMs: 90 * SECOND + 500 },
  },
  {
    name: 'failure backoff not elapsed during a due renewal → wait ready, requeue at retryAt',
    obs: observation({ now: NOW + 15 * DAY, record: record({ failure: { reason: 'failed', message: 'request failed: x', at: iso(NOW + 15 * DAY - 1000), count: 2, retryAt: iso(NOW + 15 * DAY + 2000) } }) }),
    want: { kind: 'wait', ready: true, message: 'request failed: x (retrying in 2s)', requeueAfterMs: 2000 },
  },
  {
    name: 'failure backoff elapsed (now = retryAt) → proceeds to generateKey',
    obs: fresh({ record: record({ issued: undefined, failure: { reason: 'denied', message: 'no', at: iso(NOW - DAY), count: 1, retryAt: iso(NOW) } }) }),
    want: { kind: 'generateKey' },
  },
  {
    name: 'failure backoff elapsed, pending key kept → createRequest',
    obs: fresh({ hasPendingKey: true, record: record({ issued: undefined, failure: { reason: 'denied', message: 'no', at: iso(NOW - DAY), count: 1, retryAt: iso(NOW - 1) } }) }),
    want: { kind: 'createRequest' },
  },
  {
    name: 'a failure is not consulted while the certificate is not due',
    obs: observation({ record: record({ failure: { reason: 'denied', message: 'no', at: iso(NOW), count: 1, retryAt: iso(NOW + DAY) } }) }),
    want: { kind: 'wait', ready: true, message: 'ready', requeueAfterMs: 10 * DAY },
  },
  { name: 'renewal due (now = renewAt) → generateKey', obs: observation({ now: NOW + 10 * DAY }), want: { kind: 'generateKey' } },
  { name: 'renewal due (now > renewAt), pending key → createRequest', obs: observation({ now: NOW + 11 * DAY, hasPendingKey: true }), want: { kind: 'createRequest' } },
  {
    name: 'expired certificate without a record of issuance is due → generateKey',
    obs: observation({ now: NOW + 20 * DAY, record: record({ issued: undefined }) }),
    want: { kind: 'generateKey' },
  },
  {
    name: 'expired certificate with disableAutoRenew → no new request, stays ready, no requeue',
    obs: observation({ now: NOW + 25 * DAY, disableAutoRenew: true }),
    want: { kind: 'wait', ready: true, message: 'ready' },
  },
  {
    name: 'not due → wait ready, requeue at renewAt',
    obs: observation({ now: NOW + 3 * DAY + 1234 }),
    want: { kind: 'wait', ready: true, message: 'ready', requeueAfterMs: 7 * DAY - 1234 },
  },
  { name: 'one millisecond before renewAt → requeue after 1 ms', obs: observation({ now: NOW + 10 * DAY - 1 }), want: { kind: 'wait', ready: true, message: 'ready', requeueAfterMs: 1 } },
  { name: 'disableAutoRenew, not due → wait ready without requeue', obs: observation({ disableAutoRenew: true }), want: { kind: 'wait', ready: true, message: 'ready' } },
  { name: 'disableAutoRenew, renewAt passed → wait ready without requeue', obs: observation({ disableAutoRenew: true, now: NOW + 15 * DAY }), want: { kind: 'wait', ready: true, message: 'ready' } },
]

t.test('nextStep table', async (t) => {
  for (const c of cases) t.strictSame(nextStep(c.obs), c.want, c.name)
})

t.test('acceptCertificate carries no caPem key at all without a CA', async (t) => {
  const step = nextStep(observation({ record: inFlight(), hasPendingKey: true, request: { phase: 'issued', terminal: true, message: 'issued', certificatePem: CERT } }))
  t.notOk('caPem' in step)
})

t.test('nextStep does not modify the observation', async (t) => {
  const obs = observation({ record: inFlight(), hasPendingKey: true, request: pending, staleRequests: ['a', 'b'] })
  const before = structuredClone(obs)
  nextStep(obs)
  t.strictSame(obs, before)
})

// A certificate that stays ready (auto-renew on) must be woken for its
// renewal: the planner's requeue is the only timer. After a crash between
// accept()'s rm(pendingKey) and store.save (reconciler.ts), the request is
// abandoned and a first issuance leaves current files but no record.issued.
t.test('auto-renew on, certificate served but no record.issued → a requeue no later than notAfter', async (t) => {
  const step = nextStep(observation({ record: record({ issued: undefined }) }))
  t.equal(step.kind, 'wait')
  const after = step.kind === 'wait' ? step.requeueAfterMs : undefined
  t.ok(after !== undefined && after <= 20 * DAY, `requeueAfterMs ${after} is set and at most notAfter - now`)
})

// The record schema takes any string for renewAt; Date.parse gives NaN for a
// hand-edited or otherwise corrupt one, and NaN is not "never negative".
t.test('a malformed record.issued.renewAt gives no NaN requeue', async (t) => {
  const r = record()
  const step = nextStep(observation({ record: { ...r, issued: { ...r.issued!, renewAt: 'not a date' } } }))
  t.equal(step.kind, 'wait')
  const after = step.kind === 'wait' ? step.requeueAfterMs : undefined
  t.ok(after === undefined || Number.isFinite(after), `requeueAfterMs ${after} is finite or absent`)
})

// ---- properties -------------------------------------------------------

const instant = fc.integer({ min: NOW - 400 * DAY, max: NOW + 400 * DAY })
const isoInstant = instant.map(iso)
const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined })
const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/)

const requestStateArb: fc.Arbitrary<RequestState> = fc.oneof(
  fc.record({ phase: fc.constant('issued' as const), terminal: fc.constant(true), message: fc.constant('issued'), certificatePem: fc.string(), caPem: optional(fc.string()) }).map(({ caPem, ...s }) => (caPem === undefined ? s : { ...s, caPem })),
  fc.record({ phase: fc.constantFrom('denied' as const, 'failed' as const, 'invalid' as const), terminal: fc.constant(true), message: fc.string() }),
  fc.record({ phase: fc.constantFrom('pending' as const, 'awaiting-approval' as const), terminal: fc.constant(false), message: fc.string() }),
)

const recordArb: fc.Arbitrary<VolumeRecord> = fc
  .record({
    generation: fc.nat({ max: 1000 }),
    request: optional(fc.record({ name, generation: fc.nat({ max: 1000 }), renewal: fc.boolean() })),
    issued: optional(fc.record({ requestName: name, notBefore: isoInstant, notAfter: isoInstant, renewAt: isoInstant, serial: fc.constant('01'), issuedAt: isoInstant })),
    failure: optional(fc.record({ reason: fc.constantFrom('denied', 'failed', 'invalid', 'key-mismatch'), message: fc.string(), at: isoInstant, count: fc.integer({ min: 1, max: 20 }), retryAt: isoInstant, requestName: optional(name) })),
  })
  .map(({ request, issued, failure, ...r }) => {
    const { issued: _i, ...base } = record(r)
    return { ...base, ...(request ? { request } : {}), ...(issued ? { issued } : {}), ...(failure ? { failure } : {}) }
  })

// Weighted so that the later branches (renewal, requeue) come up often:
// each early exit (unpublished, pod gone, invalid spec) takes a tenth.
const mostly = (value: boolean): fc.Arbitrary<boolean> => fc.oneof({ weight: 9, arbitrary: fc.constant(value) }, { weight: 1, arbitrary: fc.constant(!value) })
const rarely = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb })

const observationArb: fc.Arbitrary<Observation> = fc
  .record({
    now: instant,
    record: recordArb,
    published: mostly(true),
    invalidSpec: rarely(fc.string()),
    disableAutoRenew: fc.boolean(),
    hasPendingKey: fc.boolean(),
    current: optional(fc.record({ notBefore: instant, notAfter: instant, keyMatches: mostly(true) })),
    request: optional(fc.oneof(fc.constant('missing' as const), requestStateArb)),
    staleRequests: fc.oneof({ weight: 3, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.array(name, { minLength: 1, maxLength: 3 }) }),
    publishedFresh: mostly(true),
    mounted: mostly(true),
    targetParentExists: mostly(true),
  })
  .map(({ published, record, invalidSpec, current, request, ...o }) => ({
    ...o,
    record: { ...record, desired: published ? 'published' as const : 'unpublished' as const },
    ...(invalidSpec !== undefined ? { invalidSpec } : {}),
    ...(current ? { current } : {}),
    ...(request !== undefined ? { request } : {}),
  }))

const runs = { numRuns: 5000 }
const KINDS = new Set(['teardown', 'generateKey', 'createRequest', 'abandonRequest', 'acceptCertificate', 'recordFailure', 'deleteRequests', 'render', 'mount', 'wait'])

t.test('property: nextStep never throws and always names a known step', async (t) => {
  const seen = new Set<string>()
  fc.assert(
    fc.property(observationArb, (o) => {
      const step = nextStep(o)
      seen.add(step.kind)
      return KINDS.has(step.kind)
    }),
    runs,
  )
  t.strictSame([...seen].sort(), [...KINDS].sort(), 'the generator reaches every kind of step')
})

t.test('property: an unpublished record always yields teardown', async (t) => {
  fc.assert(
    fc.property(observationArb, (o) => {
      const obs = { ...o, record: { ...o.record, desired: 'unpublished' as const } }
      const step = nextStep(obs)
      return step.kind === 'teardown' && step.reason === 'unpublished'
    }),
    runs,
  )
  t.pass()
})

t.test('property: wait with ready=true only when the current certificate matches its key', async (t) => {
  let readyWaits = 0
  fc.assert(
    fc.property(observationArb, (o) => {
      const step = nextStep(o)
      if (step.kind !== 'wait' || !step.ready) return true
      readyWaits++
      return o.current !== undefined && o.current.keyMatches
    }),
    runs,
  )
  t.ok(readyWaits > 0, `ready waits were generated (${readyWaits})`)
})

t.test('property: requeueAfterMs is never negative', async (t) => {
  let requeues = 0
  fc.assert(
    fc.property(observationArb, (o) => {
      const step = nextStep(o)
      if (step.kind !== 'wait' || step.requeueAfterMs === undefined) return true
      requeues++
      return Number.isFinite(step.requeueAfterMs) && step.requeueAfterMs >= 0
    }),
    runs,
  )
  t.ok(requeues > 0, `requeues were generated (${requeues})`)
})

t.test('property: effects only when their preconditions hold', async (t) => {
  fc.assert(
    fc.property(observationArb, (o) => {
      const step = nextStep(o)
      const live = o.record.desired === 'published' && o.targetParentExists && !o.invalidSpec
      switch (step.kind) {
        case 'teardown':
          return !live
        case 'createRequest':
          return live && o.hasPendingKey
        case 'generateKey':
          return live && !o.hasPendingKey && !o.record.request
        case 'acceptCertificate':
        case 'recordFailure':
        case 'abandonRequest':
        case 'stepOver':
          return live && o.record.request !== undefined
        case 'render':
        case 'mount':
          return live && o.current?.keyMatches === true
        case 'deleteRequests':
          return live && step.names.length > 0 && step.names.every((n) => o.staleRequests.includes(n))
        case 'wait':
          return true
      }
    }),
    runs,
  )
  t.pass()
})
