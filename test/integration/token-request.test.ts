// --use-token-request on the real control plane: the CertificateRequest is
// created with the pod's own service account token, as the kubelet passes it
// (CSIDriver tokenRequests), so the apiserver authorises each workload on its
// own: a service account allowed to create requests gets its certificate, one
// that is not gets the apiserver's refusal naming it. The token never reaches
// the driver's log or its data root.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness, type Volume } from '../helpers/node-harness.js'
import { TOKENS_KEY } from '../../src/kube/pod-tokens.js'

const cp = await controlPlane(t)
const ns = cp.issuer.namespace
const core = cp.kc.makeApiClient(CoreV1Api)
const rbac = cp.kc.makeApiClient(RbacAuthorizationV1Api)
const id = randomBytes(3).toString('hex')
const allowed = `allowed-${id}`
const denied = `denied-${id}`

for (const name of [allowed, denied]) await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name } } })
await rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: `csi-requester-${id}` }, rules: [{ apiGroups: ['cert-manager.io'], resources: ['certificaterequests'], verbs: ['create'] }] } })
await rbac.createNamespacedRoleBinding({
  namespace: ns,
  body: { metadata: { name: `csi-requester-${id}` }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `csi-requester-${id}` }, subjects: [{ kind: 'ServiceAccount', name: allowed, namespace: ns }] },
})
t.teardown(async () => {
  for (const name of [allowed, denied]) await core.deleteNamespacedServiceAccount({ namespace: ns, name }).catch(() => {})
  await rbac.deleteNamespacedRole({ namespace: ns, name: `csi-requester-${id}` }).catch(() => {})
  await rbac.deleteNamespacedRoleBinding({ namespace: ns, name: `csi-requester-${id}` }).catch(() => {})
})

/** What the kubelet puts in volume_context for tokenRequests: [{audience: ""}]: a bound token from the TokenRequest API. */
async function kubeletTokens(serviceAccount: string): Promise<{ token: string; context: Record<string, string> }> {
  const tr = await core.createNamespacedServiceAccountToken({ namespace: ns, name: serviceAccount, body: { spec: { audiences: [], expirationSeconds: 3600 } } })
  const token = tr.status!.token
  const expirationTimestamp = new Date(tr.status!.expirationTimestamp).toISOString()
  return { token, context: { [TOKENS_KEY]: JSON.stringify({ '': { token, expirationTimestamp } }) } }
}

const node = new NodeHarness(cp, t, ['--use-token-request', '--publish-timeout', '8s'])
await node.start()
const attributes = { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'pod-identity.example.com', 'csi.cert-manager.io/key-algorithm': 'ECDSA' }
const volumeOf = async (serviceAccount: string): Promise<Volume> => {
  const v = await node.newVolume()
  return { ...v, pod: { ...v.pod, serviceAccountName: serviceAccount } }
}
const tokensSeen: string[] = []

t.test('a service account allowed to create requests gets its certificate, made as itself', async t => {
  const v = await volumeOf(allowed)
  const { token, context } = await kubeletTokens(allowed)
  tokensSeen.push(token)
  await node.publish(v, attributes, 30_000, { context })
  t.match(node.read(v, 'crt.pem'), /BEGIN CERTIFICATE/, 'issued')
  t.equal((await node.requestsFor(v)).length, 1, 'one CertificateRequest')
})

t.test('a service account without that right is refused by the apiserver, which names it', async t => {
  const v = await volumeOf(denied)
  const { token, context } = await kubeletTokens(denied)
  tokensSeen.push(token)
  const err = await node.publish(v, attributes, 30_000, { context }).then(() => undefined, (e: unknown) => e as Error)
  t.ok(err, 'the publish fails')
  t.match(err?.message, new RegExp(`system:serviceaccount:${ns}:${denied}`), 'the refusal names the pod\'s service account, not the driver')
  t.match(err?.message, /cannot create resource "certificaterequests"/)
  t.same(await node.requestsFor(v), [], 'no CertificateRequest exists')
})

t.test('a publish without the kubelet\'s token is refused, saying what the CSIDriver needs', async t => {
  const v = await volumeOf(allowed)
  const err = await node.publish(v, attributes, 30_000).then(() => undefined, (e: unknown) => e as Error)
  t.match(err?.message, /FAILED_PRECONDITION|9 /)
  t.match(err?.message, /tokenRequests: \[\{audience: ""\}\] and requiresRepublish: true/)
})

t.test('no token in the driver\'s log or on its data root', async t => {
  t.equal(tokensSeen.length, 2)
  const logs = node.driver!.logs()
  for (const token of tokensSeen) {
    t.notOk(logs.includes(token), 'not in the log')
    t.notOk(logs.includes(token.split('.')[1]!), 'not even its payload')
    // grep exits 1 when nothing matches, 0 with the files that do.
    const grep = spawnSync('grep', ['-rlF', token.split('.')[2]!, node.dataRoot], { encoding: 'utf8' })
    t.equal(grep.status, 1, `not in any file under the data root${grep.stdout ? `: ${grep.stdout}` : ''}`)
  }
})
