// npm run demo: the driver's main job on an embedded default. Brings up a
// local control plane with cert-manager, runs the driver as a node would,
// publishes the product example's five volumes acting as the kubelet, shows
// what each pod got, shows `kubectl events` for one CertificateRequest, and
// stops everything.
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import { up, down, kubectl } from '../test/cluster/control-plane.js'
import { NodeHarness } from '../test/helpers/node-harness.js'

const say = (line: string): void => console.log(line)
const cleanups: (() => unknown)[] = []

async function main(): Promise<void> {
  say('== 1/4 building the local control plane: kube-apiserver, etcd, kubectl, cert-manager (cached after the first run; the first build says how long it takes)')
  const dir = mkdtempSync(join(tmpdir(), 'csi-demo-cluster-'))
  cleanups.push(() => down(dir))
  const state = await up({ dir, controlPlaneToolsOnly: true, log: line => say(`   ${line}`) })
  const kc = new KubeConfig()
  kc.loadFromFile(state.kubeconfig)
  say(`   control plane ready in ${((state.timings.totalMs ?? 0) / 1000).toFixed(1)}s; Issuer ${state.issuer.namespace}/${state.issuer.name} is Ready`)

  say('\n== 2/4 starting the driver (csi.cert-manager.io) as a node plugin')
  const node = new NodeHarness({ ...state, kc }, { teardown: fn => cleanups.push(fn) })
  await node.start()
  say(`   node ${node.nodeId}, socket ${node.socketPath}, data root ${node.dataRoot} (tmpfs)`)

  say('\n== 3/4 five pods of Deployment my-csi-app in namespace sandbox, each with the example volume:')
  const attributes = {
    'csi.cert-manager.io/issuer-name': 'ca-issuer',
    'csi.cert-manager.io/dns-names': 'my-service.sandbox.svc.cluster.local',
  }
  for (const [k, v] of Object.entries(attributes)) say(`     ${k}: ${v}`)
  const suffix = Date.now().toString(36).slice(-5)
  const volumes = await Promise.all(Array.from({ length: 5 }, (_, i) => node.newVolume('sandbox', `my-csi-app-${suffix}-${i}`)))
  const started = Date.now()
  await Promise.all(volumes.map(v => node.publish(v, attributes)))
  say(`   all five NodePublishVolume calls answered OK in ${Date.now() - started} ms\n`)
  for (const v of volumes) {
    const cert = new X509Certificate(node.read(v, 'crt.pem'))
    const record = JSON.parse(readFileSync(join(node.dataRoot, 'volumes', v.volumeId, 'record.json'), 'utf8')) as { issued?: { renewAt: string; requestName: string } }
    say(`   pod ${v.pod.namespace}/${v.pod.name}`)
    say(`     files:        ${readdirSync(v.targetPath).filter(f => !f.startsWith('.')).join(', ')}  (at ${v.targetPath})`)
    say(`     subject:      ${cert.subject?.replace(/\n/g, ', ') || '(empty: the names are in the SANs)'}`)
    say(`     SANs:         ${cert.subjectAltName}`)
    say(`     issuer:       ${cert.issuer?.replace(/\n/g, ', ')}`)
    say(`     not after:    ${new Date(cert.validTo).toISOString()}`)
    say(`     next renewal: ${record.issued?.renewAt ?? '?'}`)
    say(`     request:      CertificateRequest ${v.pod.namespace}/${record.issued?.requestName ?? '?'}`)
  }

  const first = JSON.parse(readFileSync(join(node.dataRoot, 'volumes', volumes[0]!.volumeId, 'record.json'), 'utf8')) as { issued: { requestName: string } }
  say(`\n== 4/4 kubectl events -n sandbox --for certificaterequest/${first.issued.requestName}`)
  // Events are written asynchronously: give the last one a moment to land.
  await new Promise(r => setTimeout(r, 1000))
  say((await kubectl(state, ['events', '-n', 'sandbox', '--for', `certificaterequest/${first.issued.requestName}`])).replace(/^/gm, '   '))
}

main().then(
  async () => {
    for (const fn of cleanups.reverse()) await fn()
    say('stopped the driver and the control plane; removed their files')
  },
  async (err: unknown) => {
    console.error('demo failed:', err instanceof Error ? err.message : err)
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined)
    process.exit(1)
  },
)
