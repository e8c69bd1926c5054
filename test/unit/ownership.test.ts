// Which CertificateRequests are a volume's (src/kube/ownership.ts): every
// field a copier could get wrong, one at a time.
import t from 'tap'
import { belongsToVolume, csrDigest, notOurRequest } from '../../src/kube/ownership.js'
import type { CertificateRequest } from '../../src/kube/certificate-request.js'

const owner = { volumeId: 'csi-1', namespace: 'ns', podUid: 'pod-uid' }
const ours = (): CertificateRequest => ({
  metadata: {
    name: 'app-abc-1', namespace: 'ns', uid: 'cr-uid',
    annotations: { 'csi.cert-manager.io/volume-id': 'csi-1' },
    ownerReferences: [{ kind: 'Pod', name: 'app', uid: 'pod-uid' }],
  },
  spec: { issuerRef: { name: 'ca' }, request: 'Q1NS' },
})

t.test('belongsToVolume: namespace, annotation and the pod owner reference, all three', async t => {
  t.ok(belongsToVolume(ours(), owner))
  const cases: Array<[string, (c: CertificateRequest) => void]> = [
    ['another namespace', c => void (c.metadata.namespace = 'attacker')],
    ['another volume', c => void (c.metadata.annotations!['csi.cert-manager.io/volume-id'] = 'csi-2')],
    ['no annotation', c => void delete c.metadata.annotations],
    ['no owner', c => void delete c.metadata.ownerReferences],
    ['another pod', c => void (c.metadata.ownerReferences![0]!.uid = 'x')],
    ['the uid on a non-Pod owner', c => void (c.metadata.ownerReferences![0]!.kind = 'ConfigMap')],
  ]
  for (const [name, patch] of cases) {
    const c = ours()
    patch(c)
    t.notOk(belongsToVolume(c, owner), name)
  }
})

t.test('notOurRequest: name, uid and CSR bytes as recorded', async t => {
  const created = { name: 'app-abc-1', uid: 'cr-uid', csrSha256: csrDigest('Q1NS') }
  t.equal(notOurRequest(ours(), owner, created), undefined)
  t.equal(notOurRequest(ours(), owner, { name: 'app-abc-1' }), undefined, 'a record from before the digest: ownership alone')
  t.match(notOurRequest(ours(), owner, { ...created, name: 'other' }), /named app-abc-1, not other/)
  t.match(notOurRequest(ours(), owner, { ...created, uid: 'elsewhere' }), /uid cr-uid is not the one created \(elsewhere\)/)
  t.match(notOurRequest(ours(), owner, { ...created, csrSha256: csrDigest('b3RoZXI=') }), /spec.request is not the CSR the driver sent/)
  const copied = ours()
  copied.metadata.namespace = 'attacker'
  t.match(notOurRequest(copied, owner, created), /not owned by pod pod-uid in namespace ns/)
  const noRequest = ours()
  delete (noRequest.spec as { request?: string }).request
  t.match(notOurRequest(noRequest, owner, { name: 'app-abc-1', csrSha256: created.csrSha256 }), /spec.request/)
})
