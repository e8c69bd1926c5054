// --use-token-request under the real kubelet: the CSIDriver asks for the
// pod's service account token (tokenRequests, requiresRepublish), the kubelet
// passes it in NodePublishVolume, and the driver creates the request with it,
// so the apiserver authorises each pod's own service account: one allowed to
// create CertificateRequests gets its certificate, one that is not gets a
// FailedMount naming it. The driver and the CSIDriver go back as they were.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { certMatchesKey, createPod, deletePod, env, eventually, examplePod, readTls, requestsOwnedBy, runId, waitRunning } from './lib.js'
import { killDriver, startDriver } from './node.js'

const NS = 'sandbox'

t.test('requests made as the pod: the kubelet\'s token, the apiserver\'s verdict per service account', async t => {
  const e = env()
  const id = runId()
  const allowed = `tok-allowed-${id}`
  const denied = `tok-denied-${id}`
  const role = `csi-requester-${id}`
  const original = [...e.node.driverCommand]
  const baseCsiDriver = readFileSync(join(import.meta.dirname, '../../config/base/csidriver.yaml'), 'utf8')

  const setCsiDriver = async (yaml: string): Promise<void> => {
    // Delete and create: older apiservers refuse changes to tokenRequests in place.
    await e.kubectl(['delete', 'csidriver', 'csi.cert-manager.io', '--ignore-not-found'])
    await e.kubectl(['create', '-f', '-'], yaml)
  }
  const restartDriver = async (command: string[]): Promise<void> => {
    await killDriver(e.node)
    e.node.driverCommand = command
    await startDriver(e.node)
  }
  t.teardown(async () => {
    await Promise.all([allowed, denied].map(n => deletePod(e, `${n}-pod`)))
    await restartDriver(original)
    await setCsiDriver(baseCsiDriver)
    await e.kubectl(['delete', '-n', NS, `serviceaccount/${allowed}`, `serviceaccount/${denied}`, `role/${role}`, `rolebinding/${role}`, '--ignore-not-found'])
  })

  await e.kubectl(['create', '-n', NS, 'serviceaccount', allowed])
  await e.kubectl(['create', '-n', NS, 'serviceaccount', denied])
  await e.kubectl(['create', '-n', NS, 'role', role, '--verb=create', '--resource=certificaterequests.cert-manager.io'])
  await e.kubectl(['create', '-n', NS, 'rolebinding', role, `--role=${role}`, `--serviceaccount=${NS}:${allowed}`])
  await setCsiDriver(baseCsiDriver
    .replace(/^ {2}requiresRepublish: false$/m, '  requiresRepublish: true\n  tokenRequests:\n    - audience: ""'))
  const spec = JSON.parse(await e.kubectl(['get', 'csidriver', 'csi.cert-manager.io', '-o', 'jsonpath={.spec}'])) as { tokenRequests?: unknown; requiresRepublish?: boolean }
  t.same(spec.tokenRequests, [{ audience: '' }], 'the CSIDriver asks for the pod\'s token')
  t.equal(spec.requiresRepublish, true)
  await restartDriver([...original, '--use-token-request'])

  const podAs = (serviceAccount: string) => {
    const pod = examplePod(e.node, `${serviceAccount}-pod`)
    pod.spec!.serviceAccountName = serviceAccount
    return pod
  }
  const { pod: good } = await createPod(e, podAs(allowed))
  const { pod: bad } = await createPod(e, podAs(denied))

  await waitRunning(e, `${allowed}-pod`)
  const tls = await readTls(e, `${allowed}-pod`)
  t.ok(certMatchesKey(tls.crt, tls.key), 'the allowed service account\'s pod runs with a matching key and certificate')
  t.equal((await requestsOwnedBy(e, good.metadata!.uid!)).length, 1, 'its one CertificateRequest')

  const events = await eventually('a FailedMount event naming the denied service account', 90_000, async () => {
    const out = await e.kubectl(['events', '-n', NS, '--for', `pod/${denied}-pod`])
    return out.includes(`system:serviceaccount:${NS}:${denied}`) && out
  }, 1_000)
  t.match(events, /FailedMount/, 'the denied pod does not start')
  t.match(events, /cannot create resource "certificaterequests"/, 'the apiserver refused the pod\'s own identity, not the driver\'s')
  t.same(await requestsOwnedBy(e, bad.metadata!.uid!), [], 'no CertificateRequest for it')

  const log = readFileSync(join(e.node.logs, 'driver.log'), 'utf8')
  t.notMatch(log, /eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\./, 'no token in the driver\'s log')
})
