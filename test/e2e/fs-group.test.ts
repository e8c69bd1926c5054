// A non-root pod reads its key through the pod's own securityContext.fsGroup,
// with no fs-group attribute: the CSIDriver says fsGroupPolicy File, the
// driver advertises VOLUME_MOUNT_GROUP, and the real kubelet passes the group
// in NodePublishVolume instead of chown-ing the volume itself.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { ATTR, certMatchesKey, createPod, deletePod, env, examplePod, exec, runId, waitRunning } from './lib.js'

const nonRoot = (pod: V1Pod, fsGroup?: number): V1Pod => {
  pod.spec!.securityContext = { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, ...(fsGroup === undefined ? {} : { fsGroup }) }
  return pod
}

t.test('the pod\'s fsGroup: a non-root container reads its key without an attribute', async t => {
  const e = env()
  const withGroup = `fsgroup-${runId()}`
  const without = `nofsgroup-${runId()}`
  const attribute = `fsattr-${runId()}`
  t.teardown(() => Promise.all([withGroup, without, attribute].map(n => deletePod(e, n))))
  await Promise.all([
    createPod(e, nonRoot(examplePod(e.node, withGroup), 2000)),
    createPod(e, nonRoot(examplePod(e.node, without))),
    createPod(e, nonRoot(examplePod(e.node, attribute, { attributes: { [ATTR('fs-group')]: '3000' } }), 2000)),
  ])
  await Promise.all([withGroup, without, attribute].map(n => waitRunning(e, n)))

  const seen = await exec(e, withGroup, ['sh', '-c', 'id -u; stat -L -c "%g %a" /tls/key.pem /tls/crt.pem /tls/ca.pem'])
  t.same(seen.trim().split('\n'), ['1000', '2000 440', '2000 440', '2000 440'], 'uid 1000; the files are 0440 with the pod\'s fsGroup')
  const tls = await exec(e, withGroup, ['sh', '-c', 'cat /tls/key.pem; echo ===; cat /tls/crt.pem'])
  const [key = '', crt = ''] = tls.split('===\n')
  t.ok(certMatchesKey(crt.trim(), key.trim()), 'and it reads a key that matches its certificate')

  // The same pod without fsGroup: root-only files, which uid 1000 cannot read.
  const denied = await exec(e, without, ['sh', '-c', 'stat -L -c "%g %a" /tls/key.pem; cat /tls/key.pem >/dev/null 2>&1; echo rc=$?'])
  t.match(denied, /^0 400\nrc=1/, 'without an fsGroup: 0400 root, unreadable to uid 1000')

  const chosen = await exec(e, attribute, ['stat', '-L', '-c', '%g %a', '/tls/key.pem'])
  t.equal(chosen.trim(), '3000 440', 'the fs-group attribute wins over the pod\'s fsGroup')
})
