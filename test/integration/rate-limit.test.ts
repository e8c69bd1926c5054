// --kube-api-qps and --kube-api-burst on the real control plane: a driver
// held to 2 requests a second still publishes every volume, its calls wait
// for their turn (counted in /metrics), and a driver on the defaults never
// waits for the same work.
import t from 'tap'
import { controlPlane } from '../fixtures/control-plane.js'
import { NodeHarness } from '../helpers/node-harness.js'

const cp = await controlPlane(t)
const attributes = (i: number) => ({
  'csi.cert-manager.io/issuer-name': 'ca-issuer',
  'csi.cert-manager.io/dns-names': `limited-${i}.example.com`,
  'csi.cert-manager.io/key-algorithm': 'ECDSA',
})

async function throttled(node: NodeHarness): Promise<{ requests: number; seconds: number }> {
  const port = /"address":\{"host":"127\.0\.0\.1","port":(\d+)\}/.exec(node.driver!.logs())?.[1]
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN)
  return { requests: value('certmanager_csi_api_throttled_requests_total'), seconds: value('certmanager_csi_api_throttled_seconds_total') }
}

async function publishSix(node: NodeHarness): Promise<number> {
  const volumes = await Promise.all(Array.from({ length: 6 }, () => node.newVolume()))
  const start = Date.now()
  await Promise.all(volumes.map((v, i) => node.publish(v, attributes(i))))
  for (const v of volumes) t.match(node.read(v, 'crt.pem'), /BEGIN CERTIFICATE/, `${v.pod.name} has its certificate`)
  return Date.now() - start
}

t.test('held to 2 requests a second: every volume published, the calls took turns', async t => {
  const node = new NodeHarness(cp, t, ['--kube-api-qps', '2', '--kube-api-burst', '2'])
  await node.start()
  const ms = await publishSix(node)
  const { requests, seconds } = await throttled(node)
  t.comment(`6 publishes at 2 qps: ${ms} ms, ${requests} calls waited ${seconds.toFixed(2)} s in all`)
  // Six CertificateRequest creates alone are four past the burst of two.
  t.ok(requests >= 4, `calls waited for the limit (${requests})`)
  t.ok(seconds > 1, `for more than a second in all (${seconds.toFixed(2)} s)`)
  t.ok(ms >= 1500, `six creates at 2/s after a burst of 2 take at least 1.5 s (${ms} ms)`)
})

t.test('on the defaults the same work never waits', async t => {
  const node = new NodeHarness(cp, t)
  await node.start()
  await publishSix(node)
  t.same(await throttled(node), { requests: 0, seconds: 0 })
})
