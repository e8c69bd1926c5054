// A pod with a bad volume attribute never starts, and the kubelet's
// FailedMount event carries the driver's message naming the attribute.
import t from 'tap'
import { ATTR, createPod, deletePod, env, eventually, examplePod, getPod, requestsOwnedBy, runId } from './lib.js'

t.test('a bad attribute: no start, FailedMount with our message, no CertificateRequest', async t => {
  const e = env()
  const name = `bad-attr-${runId()}`
  t.teardown(() => deletePod(e, name))
  const { pod } = await createPod(e, examplePod(e.node, name, { attributes: { [ATTR('duration')]: 'forever' } }))

  const events = await eventually('a FailedMount event', 90_000, async () => {
    const out = await e.kubectl(['events', '-n', 'sandbox', '--for', `pod/${name}`])
    return /FailedMount/.test(out) && out
  }, 1_000)
  t.comment(events.trim())
  t.match(events, /MountVolume\.SetUp failed for volume "tls"/, 'the kubelet reports the mount failure')
  t.match(events, /InvalidArgument/, 'as InvalidArgument')
  t.match(events, /csi\.cert-manager\.io\/duration/, 'naming the attribute')
  t.match(events, /forever/, 'and the bad value')

  const described = await e.kubectl(['describe', 'pod', '-n', 'sandbox', name])
  t.match(described, /FailedMount/, 'kubectl describe shows it too')

  const now = await getPod(e, name)
  t.equal(now?.status?.phase, 'Pending', 'the pod stays Pending')
  t.notOk(now?.status?.containerStatuses?.some(c => c.state?.running), 'its container never ran')
  t.same(await requestsOwnedBy(e, pod.metadata!.uid!), [], 'no CertificateRequest was made')
})
