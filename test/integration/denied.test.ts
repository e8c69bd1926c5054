// A request denied by policy (here the test plays approver-policy on a
// control plane without cert-manager's auto-approver): terminal, reported
// as Events, backed off, never a storm.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { CustomObjectsApi, EventsV1Api } from '@kubernetes/client-node'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness } from '../helpers/node-harness.js'

const cp = await controlPlane(t, { controllers: ['issuers', 'clusterissuers', 'certificaterequests-issuer-ca'] })
const node = new NodeHarness(cp, t, ['--publish-timeout', '3s', '--failure-backoff', '4s'])
await node.start()
const custom = cp.kc.makeApiClient(CustomObjectsApi)
const A = (name: string): string => `csi.cert-manager.io/${name}`
const crApi = { group: 'cert-manager.io', version: 'v1', plural: 'certificaterequests' }

async function deny(namespace: string, name: string): Promise<void> {
  const cr = (await custom.getNamespacedCustomObject({ ...crApi, namespace, name })) as { status?: { conditions?: object[] } }
  cr.status = { ...cr.status, conditions: [...(cr.status?.conditions ?? []), { type: 'Denied', status: 'True', reason: 'PolicyDenied', message: 'no policy allows this request', lastTransitionTime: new Date().toISOString() }] }
  await custom.replaceNamespacedCustomObjectStatus({ ...crApi, namespace, name, body: cr })
}

t.test('waiting for approval is what the error says', async t => {
  const v = await node.newVolume()
  await t.rejects(node.publish(v, { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'a.example.com', [A('key-algorithm')]: 'ECDSA' }), { code: 4, details: /waiting for approval/ })
  await node.unpublish(v)
})

t.test('a denied request fails publish with the reason, then backs off', async t => {
  const v = await node.newVolume()
  const attrs = { [A('issuer-name')]: 'ca-issuer', [A('dns-names')]: 'denied.example.com', [A('key-algorithm')]: 'ECDSA' }
  await t.rejects(node.publish(v, attrs), { code: 4 })
  const [first] = await node.requestsFor(v)
  t.ok(first, 'one request was made')
  await deny(v.pod.namespace, first!)
  await sleep(500)
  await t.rejects(node.publish(v, attrs), { code: 9, details: /request denied \(PolicyDenied\): no policy allows this request/ }, 'FAILED_PRECONDITION with the reason')
  // Hammering publish while backing off makes no new request.
  for (let i = 0; i < 5; i++) await node.publish(v, attrs).catch(() => undefined)
  t.equal((await node.requestsFor(v)).length, 1, 'no new request during the backoff')
  // After the (4s) backoff exactly one new request is made, which the test then approves.
  let names: string[] = []
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    names = await node.requestsFor(v)
    if (names.length >= 2) break
    await sleep(250)
  }
  t.equal(names.length, 2, 'one retry after the backoff (the denied one is kept for inspection)')
  const events = await cp.kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: v.pod.namespace, fieldSelector: `regarding.name=${v.pod.name}` })
  t.ok(events.items.some(e => e.reason === 'IssuanceFailed' && /denied/.test(e.note ?? '')), 'IssuanceFailed event on the pod')
  const crEvents = await cp.kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: v.pod.namespace, fieldSelector: `regarding.name=${first}` })
  t.ok(crEvents.items.some(e => e.reason === 'IssuanceFailed'), 'IssuanceFailed event on the CertificateRequest')
  await node.unpublish(v)
  t.same(await node.requestsAfterUnpublish(v), [], 'unpublish deletes every request of the volume')
})
