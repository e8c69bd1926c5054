// The product description's example: the Deployment's five pods (as plain
// Pods bound to the node), each with its own key and a certificate for
// my-service.sandbox.svc.cluster.local from Issuer sandbox/ca-issuer, read
// from inside each running container.
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { certMatchesKey, createPod, deletePod, env, examplePod, median, readTls, report, runId, waitRunning } from './lib.js'

const DNS_NAME = 'my-service.sandbox.svc.cluster.local'

t.test('five pods of the example each get their own key and certificate', async t => {
  const e = env()
  const names = Array.from({ length: 5 }, (_, i) => `my-csi-app-${runId()}-${i}`)
  t.teardown(() => Promise.all(names.map(n => deletePod(e, n))))

  // Created together, as a Deployment's ReplicaSet would.
  const created = await Promise.all(names.map(n => createPod(e, examplePod(e.node, n))))
  const running = await Promise.all(names.map(n => waitRunning(e, n)))
  const ms = running.map((r, i) => r.runningAt - created[i]!.createdAt)
  t.comment(`creation to Running per pod (ms): ${ms.join(', ')}; median ${median(ms)}`)
  report(`example: pod creation to Running with a certificate, 5 pods created together: median ${median(ms)} ms (each: ${ms.join(', ')} ms)`)

  const issuerCa = readFileSync(e.node.cluster.issuerCaFile, 'utf8')
  const keys = new Set<string>()
  for (const n of names) {
    const tls = await readTls(e, n)
    t.match(tls.key, /^-----BEGIN RSA PRIVATE KEY-----/, `${n}: key.pem is a PKCS#1 RSA key`)
    const cert = new X509Certificate(tls.crt)
    t.ok(certMatchesKey(tls.crt, tls.key), `${n}: crt.pem matches key.pem`)
    t.match(cert.subjectAltName ?? '', new RegExp(`DNS:${DNS_NAME.replace(/\./g, '\\.')}`), `${n}: carries ${DNS_NAME}`)
    t.ok(cert.verify(new X509Certificate(issuerCa).publicKey), `${n}: signed by the CA behind ca-issuer`)
    t.equal(new X509Certificate(tls.ca).fingerprint256, new X509Certificate(issuerCa).fingerprint256, `${n}: ca.pem is the issuer's CA`)
    keys.add(tls.key)
  }
  t.equal(keys.size, 5, 'five distinct keys')

  // Read-only inside the container.
  const write = await e.kubectl(['exec', '-n', 'sandbox', names[0]!, '--', 'sh', '-c', '{ echo x > /tls/key.pem; } 2>&1; echo rc=$?; touch /tls/new 2>&1; echo rc=$?'])
  t.match(write, /key\.pem: Read-only file system\s+rc=1/, 'key.pem cannot be overwritten in the pod')
  t.match(write, /new.*Read-only file system\s+rc=1/, 'nothing can be added to the volume in the pod')
})
