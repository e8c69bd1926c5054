// NodeUnpublishVolume finishes on the node, whatever the API does: with the
// apiserver blackholed (SIGSTOP) the unpublish still answers OK at once,
// the mount, files and record are gone, and the volume's CertificateRequest
// is deleted once the apiserver is back. Before, unpublish listed and
// deleted the requests first, and a pod stayed Terminating for the outage.
// A private control plane: stopping the shared one would stall every other file.
import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness } from '../helpers/node-harness.js'

const cp = await controlPlane(t, { controllers: ['issuers', 'clusterissuers', 'certificaterequests-approver', 'certificaterequests-issuer-ca'] })
const node = new NodeHarness(cp, t, ['--kube-api-timeout', '5s'])
await node.start()
const apiserver = cp.processes.find(p => p.name === 'kube-apiserver')!
t.teardown(() => { try { process.kill(apiserver.pid, 'SIGCONT') } catch { /* gone */ } })

t.test('unpublish during a blackholed apiserver answers OK and leaves nothing on the node', async t => {
  const v = await node.newVolume()
  await node.publish(v, { 'csi.cert-manager.io/issuer-name': cp.issuer.name, 'csi.cert-manager.io/dns-names': 'offline.example', 'csi.cert-manager.io/key-algorithm': 'ECDSA' })
  t.equal((await node.requestsFor(v)).length, 1)
  process.kill(apiserver.pid, 'SIGSTOP')
  const started = Date.now()
  try {
    await node.unpublish(v, 20_000)
  } finally {
    t.comment(`unpublish answered in ${Date.now() - started} ms with the apiserver stopped`)
  }
  t.ok(Date.now() - started < 10_000, 'answered without waiting for the API')
  t.notOk(node.isMounted(v.targetPath), 'unmounted')
  t.notOk(existsSync(join(node.dataRoot, 'volumes', v.volumeId)), 'record, keys and files gone')
  t.ok(existsSync(join(node.dataRoot, 'tombstones')), 'a tombstone keeps the requests to delete')
  process.kill(apiserver.pid, 'SIGCONT')
  t.same(await node.requestsAfterUnpublish(v, 60_000), [], 'the request is deleted once the apiserver is back')
  t.equal(node.driver!.proc.exitCode, null, 'the driver never exited')
})
