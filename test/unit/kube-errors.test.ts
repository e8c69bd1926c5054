// What an API failure reads like in a volume's status, and so in the pod's
// events through the kubelet: a reason, never the client's dump of headers.
import t from 'tap'
import { ApiException } from '@kubernetes/client-node'
import { apiMessage, apiStatus } from '../../src/kube/errors.js'

t.test('a JSON Status body gives its message', async t => {
  const err = new ApiException(403, 'Unknown API Status Code!', JSON.stringify({ kind: 'Status', message: 'certificaterequests is forbidden: User "x" cannot create' }), { 'audit-id': 'a' })
  t.equal(apiStatus(err), 403)
  t.equal(apiMessage(err), 'certificaterequests is forbidden: User "x" cannot create')
})

t.test('a bare 404 page (the CRD is gone) names the likely cause, without headers', async t => {
  const err = new ApiException(404, 'Unknown API Status Code!', '404 page not found\n', { 'audit-id': 'f3c5', 'cache-control': 'no-cache' })
  const msg = apiMessage(err)
  t.equal(msg, "the Kubernetes API answered 404: 404 page not found (the API does not serve CertificateRequests: are cert-manager's CRDs installed?)")
  t.notMatch(msg, /Headers|Unknown API Status Code|audit-id/)
})

t.test('other text bodies are cut short; plain errors keep their message', async t => {
  t.equal(apiMessage(new ApiException(503, 'x', 'x'.repeat(500), {})), `the Kubernetes API answered 503: ${'x'.repeat(200)}`)
  t.equal(apiMessage(new Error('connect ECONNREFUSED 127.0.0.1:6443')), 'connect ECONNREFUSED 127.0.0.1:6443')
})
