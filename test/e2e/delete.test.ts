// Deleting a pod: the kubelet calls NodeUnpublishVolume, the driver unmounts
// the volume, destroys key and certificate and deletes its CertificateRequest.
// No garbage collector runs here (no controller-manager), so a request that
// goes is one the driver deleted.
import { readdirSync } from 'node:fs'
import t from 'tap'
import { createPod, deletePod, env, eventually, examplePod, exists, fsTypeOf, hostVolume, isMountPoint, requestsFor, requestsOwnedBy, runId, waitRunning } from './lib.js'

t.test('deleting a pod unmounts its volume, removes the files and the CertificateRequest', async t => {
  const e = env()
  const name = `delete-me-${runId()}`
  t.teardown(() => deletePod(e, name))
  await createPod(e, examplePod(e.node, name))
  const { pod } = await waitRunning(e, name)
  const v = hostVolume(e.node, pod)

  t.ok(isMountPoint(v.targetPath), `mounted at the kubelet's target path ${v.targetPath}`)
  t.ok(exists(v.dataDir), 'the driver has a directory for the volume on its data root')
  t.equal(fsTypeOf(v.dataDir), 'tmpfs', 'which is on tmpfs: key material never touches a disk')
  t.ok(readdirSync(v.targetPath).includes('key.pem'), 'key.pem visible through the mount')
  const before = await requestsFor(e, v.volumeId)
  t.equal(before.length, 1, 'one CertificateRequest for the volume')
  t.same(before[0]?.metadata.ownerReferences?.map(o => o.uid), [pod.metadata!.uid], 'owned by the pod')

  await deletePod(e, name)
  t.notOk(isMountPoint(v.targetPath), 'unmounted')
  t.notOk(exists(v.targetPath), 'target path gone (the kubelet removes it after unpublish)')
  t.notOk(exists(v.dataDir), 'key and certificate destroyed on the data root')
  await eventually('CertificateRequest deleted', 10_000, async () => (await requestsFor(e, v.volumeId)).length === 0)
  t.same(await requestsOwnedBy(e, pod.metadata!.uid!), [], 'no CertificateRequest left for the pod')
})
