// A short-lived ECDSA certificate (duration 1m, renew-before 45s) is renewed
// in place and the running container reads the new one, with a key that
// matches it.
import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { SHORT, certMatchesKey, createPod, deletePod, env, eventually, examplePod, hostVolume, readTls, requestsFor, runId, serialOf, waitRunning } from './lib.js'

t.test('a 1m certificate is renewed and the container sees the new file', async t => {
  const e = env()
  const name = `renew-${runId()}`
  t.teardown(() => deletePod(e, name))
  await createPod(e, examplePod(e.node, name, { attributes: SHORT }))
  const { pod } = await waitRunning(e, name)

  const first = await readTls(e, name)
  const cert1 = new X509Certificate(first.crt)
  t.equal(cert1.publicKey.asymmetricKeyType, 'ec', 'ECDSA key')
  const lifetime = Date.parse(cert1.validTo) - Date.parse(cert1.validFrom)
  t.ok(lifetime <= 61_000, `about a minute of lifetime (${lifetime / 1000}s)`)
  t.ok(certMatchesKey(first.crt, first.key), 'first certificate matches its key')

  // Renewal is due 45s before expiry, about 15s after issuance (jitter aside).
  const started = Date.now()
  const second = await eventually('a renewed certificate inside the container', 75_000, async () => {
    const now = await readTls(e, name)
    return serialOf(now.crt) !== serialOf(first.crt) && now
  }, 1_000)
  t.comment(`renewed ${((Date.now() - started) / 1000).toFixed(1)}s after the first read`)
  t.ok(certMatchesKey(second.crt, second.key), 'the new certificate matches the key read with it')
  t.not(second.key, first.key, 'a new key (reuse-private-key is off)')
  t.ok(Date.parse(new X509Certificate(second.crt).validTo) > Date.parse(cert1.validTo), 'later expiry')

  const v = hostVolume(e.node, pod)
  await eventually('one CertificateRequest for the volume after renewal', 15_000, async () => (await requestsFor(e, v.volumeId)).length === 1)
  t.pass('the superseded CertificateRequest is deleted')
})
