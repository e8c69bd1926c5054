// DriverMetrics, read back the way Prometheus reads it: through the text
// exposition, by metric name and labels.

import t from 'tap'
import { register as globalRegistry } from 'prom-client'
import { DriverMetrics, FAILURE_REASONS, ISSUANCE_DURATION_BUCKETS, failureReason } from '../../src/metrics/metrics.js'

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

function parse(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`unparsable line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!
    out.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return out
}

/** Every sample of `name` whose labels include `labels`. */
function samples(text: string, name: string, labels: Record<string, string> = {}): Sample[] {
  return parse(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

/** The one sample of `name` with exactly these labels, or undefined. */
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const hit = parse(text).filter(
    (s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )
  if (hit.length > 1) throw new Error(`${hit.length} samples for ${name} ${JSON.stringify(labels)}`)
  return hit[0]?.value
}

const P = 'certmanager_csi_'
const EXPIRY = `${P}certificate_expiration_timestamp_seconds`
const RENEWAL = `${P}certificate_renewal_timestamp_seconds`
const pod = (name: string) => ({ namespace: 'team-a', name })

t.test('a fresh registry: every bounded series at zero, no time gauges', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  const text = await m.metricsText()
  for (const kind of ['issue', 'renew']) {
    t.equal(value(text, `${P}issuances_total`, { kind }), 0, `issuances ${kind}`)
    t.equal(value(text, `${P}issuance_duration_seconds_count`, { kind }), 0, `duration count ${kind}`)
    for (const reason of FAILURE_REASONS) t.equal(value(text, `${P}issuance_failures_total`, { kind, reason }), 0, `failures ${kind}/${reason}`)
  }
  t.equal(value(text, `${P}managed_volumes`), 0)
  t.equal(value(text, `${P}ready_volumes`), 0)
  t.equal(value(text, `${P}reconcile_errors_total`), 0)
  // Absent, not 0: `expiry - time() < 7d` must not fire on a node without certificates.
  t.same(samples(text, EXPIRY), [])
  t.same(samples(text, RENEWAL), [])
  t.same(samples(text, `${P}workqueue_depth`), [], 'no depth until a source is set')
  t.match(text, `# TYPE ${EXPIRY} gauge`)
  t.match(text, `# TYPE ${P}issuance_duration_seconds histogram`)
})

t.test('issued() counts by kind and times into the histogram', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  m.issued('issue', 0.3)
  m.issued('issue', 7)
  m.issued('renew', 0.04)
  const text = await m.metricsText()
  t.equal(value(text, `${P}issuances_total`, { kind: 'issue' }), 2)
  t.equal(value(text, `${P}issuances_total`, { kind: 'renew' }), 1)
  const h = `${P}issuance_duration_seconds`
  t.equal(value(text, `${h}_count`, { kind: 'issue' }), 2)
  t.equal(value(text, `${h}_sum`, { kind: 'issue' }), 7.3)
  t.equal(value(text, `${h}_bucket`, { kind: 'issue', le: '0.25' }), 0)
  t.equal(value(text, `${h}_bucket`, { kind: 'issue', le: '0.5' }), 1)
  t.equal(value(text, `${h}_bucket`, { kind: 'issue', le: '10' }), 2)
  t.equal(value(text, `${h}_bucket`, { kind: 'renew', le: '0.05' }), 1)
  t.equal(value(text, `${h}_bucket`, { kind: 'renew', le: '+Inf' }), 1)
  const les = samples(text, `${h}_bucket`, { kind: 'issue' }).map((s) => s.labels.le)
  t.same(les, [...ISSUANCE_DURATION_BUCKETS.map(String), '+Inf'])
  t.equal(ISSUANCE_DURATION_BUCKETS[0], 0.05)
  t.equal(ISSUANCE_DURATION_BUCKETS.at(-1), 120)
})

t.test('issued() without a usable duration counts but does not time', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  m.issued('renew')
  m.issued('renew', NaN)
  m.issued('renew', -1)
  m.issued('renew', 0)
  const text = await m.metricsText()
  t.equal(value(text, `${P}issuances_total`, { kind: 'renew' }), 4)
  t.equal(value(text, `${P}issuance_duration_seconds_count`, { kind: 'renew' }), 1, 'only the 0 s observation')
})

t.test('failure reasons stay bounded', async (t) => {
  const table: Array<[string, string]> = [
    ['denied', 'denied'],
    ['failed', 'failed'],
    ['invalid', 'invalid'],
    ['key-mismatch', 'key-mismatch'],
    ['api-error', 'api-error'],
    ['other', 'other'],
    [' Denied ', 'denied'],
    ['FAILED', 'failed'],
    ['pending', 'other'],
    ['', 'other'],
    ['issuer "x" not found', 'other'],
    ['constructor', 'other'],
    ['__proto__', 'other'],
  ]
  for (const [input, want] of table) t.equal(failureReason(input), want, JSON.stringify(input))

  const m = new DriverMetrics({ defaultMetrics: false })
  m.failed('issue', 'denied')
  m.failed('issue', 'something new every time 1')
  m.failed('issue', 'something new every time 2')
  m.failed('renew', 'key-mismatch')
  const text = await m.metricsText()
  t.equal(value(text, `${P}issuance_failures_total`, { kind: 'issue', reason: 'denied' }), 1)
  t.equal(value(text, `${P}issuance_failures_total`, { kind: 'issue', reason: 'other' }), 2)
  t.equal(value(text, `${P}issuance_failures_total`, { kind: 'renew', reason: 'key-mismatch' }), 1)
  t.equal(samples(text, `${P}issuance_failures_total`).length, 2 * FAILURE_REASONS.length, 'no new series')
})

t.test('reconcile errors and queue depth', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  m.reconcileError()
  m.reconcileError()
  let depth = 3
  m.setQueueDepth(() => depth)
  let text = await m.metricsText()
  t.equal(value(text, `${P}reconcile_errors_total`), 2)
  t.equal(value(text, `${P}workqueue_depth`), 3)
  depth = 0
  text = await m.metricsText()
  t.equal(value(text, `${P}workqueue_depth`), 0, 'read at scrape time')
})

t.test('volume counts follow volumeState and volumeForgotten', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  m.volumeState('v1', { ready: false })
  m.volumeState('v2', { ready: true, notAfter: 2_000_000 })
  m.volumeState('v3', { ready: true, notAfter: 3_000_000 })
  let text = await m.metricsText()
  t.equal(value(text, `${P}managed_volumes`), 3)
  t.equal(value(text, `${P}ready_volumes`), 2)
  m.volumeState('v1', { ready: true })
  m.volumeState('v2', { ready: false })
  m.volumeForgotten('v3')
  m.volumeForgotten('never-seen')
  text = await m.metricsText()
  t.equal(value(text, `${P}managed_volumes`), 2)
  t.equal(value(text, `${P}ready_volumes`), 1)
})

t.test('default: one unlabelled series with the earliest expiry and renewal', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  m.volumeState('v1', { ready: true, notAfter: 5_000_000, renewAt: 4_000_000, pod: pod('a') })
  m.volumeState('v2', { ready: true, notAfter: 3_000_500, renewAt: 4_500_000, pod: pod('b') })
  m.volumeState('v3', { ready: false, pod: pod('c') }) // no certificate yet: does not count
  let text = await m.metricsText()
  t.same(samples(text, EXPIRY), [{ name: EXPIRY, labels: {}, value: 3000.5 }], 'seconds, not milliseconds')
  t.same(samples(text, RENEWAL), [{ name: RENEWAL, labels: {}, value: 4000 }], 'earliest of each, from different volumes')

  // The earliest goes away: the next one takes over.
  m.volumeForgotten('v2')
  text = await m.metricsText()
  t.equal(value(text, EXPIRY), 5000)
  t.equal(value(text, RENEWAL), 4000)

  // A renewal moves the times forward: replaced, not kept as a minimum.
  m.volumeState('v1', { ready: true, notAfter: 9_000_000, renewAt: 8_000_000, pod: pod('a') })
  text = await m.metricsText()
  t.equal(value(text, EXPIRY), 9000)
  t.equal(value(text, RENEWAL), 8000)

  // Renewal disabled: an expiry but no renewal time.
  m.volumeState('v1', { ready: true, notAfter: 9_000_000, pod: pod('a') })
  text = await m.metricsText()
  t.equal(value(text, EXPIRY), 9000)
  t.same(samples(text, RENEWAL), [])

  m.volumeForgotten('v1')
  m.volumeForgotten('v3')
  text = await m.metricsText()
  t.same(samples(text, EXPIRY), [], 'gone again with the last certificate')
  t.notMatch(text, /volume_id=/, 'no per-volume labels by default')
})

t.test('perVolumeLabels: one series per volume, removed when forgotten', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false, perVolumeLabels: true })
  m.volumeState('v1', { ready: true, notAfter: 5_000_000, renewAt: 4_000_000, pod: pod('a') })
  m.volumeState('v2', { ready: true, notAfter: 3_000_000, renewAt: 2_000_000, pod: pod('b') })
  m.volumeState('v3', { ready: false, notAfter: 7_000_000 }) // pod not known yet
  m.volumeState('v4', { ready: false }) // no certificate yet
  let text = await m.metricsText()
  t.equal(value(text, EXPIRY, { volume_id: 'v1', pod_namespace: 'team-a', pod_name: 'a' }), 5000)
  t.equal(value(text, EXPIRY, { volume_id: 'v2', pod_namespace: 'team-a', pod_name: 'b' }), 3000)
  t.equal(value(text, EXPIRY, { volume_id: 'v3', pod_namespace: '', pod_name: '' }), 7000)
  t.equal(value(text, RENEWAL, { volume_id: 'v1', pod_namespace: 'team-a', pod_name: 'a' }), 4000)
  t.equal(value(text, RENEWAL, { volume_id: 'v2', pod_namespace: 'team-a', pod_name: 'b' }), 2000)
  t.equal(samples(text, EXPIRY).length, 3)
  t.equal(samples(text, RENEWAL).length, 2)
  t.equal(value(text, EXPIRY), undefined, 'no unlabelled aggregate mixed into the labelled family')

  m.volumeForgotten('v2')
  m.volumeState('v3', { ready: true, notAfter: 7_000_000, pod: pod('c') })
  text = await m.metricsText()
  t.same(samples(text, EXPIRY, { volume_id: 'v2' }), [], 'forgotten volume: series removed')
  t.same(samples(text, RENEWAL, { volume_id: 'v2' }), [])
  t.same(samples(text, EXPIRY, { volume_id: 'v3' }).map((s) => s.labels), [{ volume_id: 'v3', pod_namespace: 'team-a', pod_name: 'c' }], 'relabelled, not duplicated')
  t.equal(value(text, `${P}managed_volumes`), 3)

  for (const v of ['v1', 'v3', 'v4']) m.volumeForgotten(v)
  text = await m.metricsText()
  t.same(samples(text, EXPIRY), [])
  t.same(samples(text, RENEWAL), [])
})

t.test('default process metrics carry the prefix; the global registry is untouched', async (t) => {
  const before = (await globalRegistry.getMetricsAsJSON()).length
  const a = new DriverMetrics()
  const b = new DriverMetrics() // a second instance must not clash with the first
  a.issued('issue', 1)
  const text = await a.metricsText()
  t.ok(value(text, `${P}process_cpu_seconds_total`)! >= 0)
  t.match(text, `${P}nodejs_heap_size_total_bytes`)
  t.notMatch(text, /^process_cpu/m, 'nothing unprefixed')
  t.equal(value(await b.metricsText(), `${P}issuances_total`, { kind: 'issue' }), 0, 'separate registries')
  t.equal((await globalRegistry.getMetricsAsJSON()).length, before)
  t.match(a.registry.contentType, /^text\/plain; version=0\.0\.4/)
  t.notOk(new DriverMetrics({ defaultMetrics: false }).registry.getSingleMetric(`${P}process_cpu_seconds_total`))
})

t.test('per-volume updates stay cheap at 1000 volumes', async (t) => {
  const m = new DriverMetrics({ defaultMetrics: false })
  for (let i = 0; i < 1000; i++) m.volumeState(`v${i}`, { ready: i % 2 === 0, notAfter: 1_000_000 + i * 1000, renewAt: 500_000 + i * 1000 })
  const text = await m.metricsText()
  t.equal(value(text, `${P}managed_volumes`), 1000)
  t.equal(value(text, `${P}ready_volumes`), 500)
  t.equal(value(text, EXPIRY), 1000)
  t.equal(value(text, RENEWAL), 500)
})
