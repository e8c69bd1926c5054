// The install manifests against a real kube-apiserver (with cert-manager's
// CRDs): every object of the kustomize base, the example and the Helm chart
// passes server-side validation (schemas, unknown fields, immutable fields,
// admission), the CSIDriver object really installs and is listed by
// `kubectl get csidrivers`, and the ClusterRole grants the driver's service
// account exactly what it needs.
import t, { type Test } from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { controlPlane } from '../fixtures/control-plane.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const chart = join(root, 'config', 'helm', 'cert-manager-csi-driver')
const DRIVER_NAME = 'csi.cert-manager.io'
const SA = 'system:serviceaccount:cert-manager:cert-manager-csi-driver'

// A fresh machine builds the tools first (minutes); cached runs take seconds.
t.setTimeout(45 * 60_000)

const cp = await controlPlane(t)

// helm is not among the control plane's own binaries: take the tools folder
// (which also holds kubectl) from build.sh, or from CSI_TOOLS_BIN.
function toolsBin(): string {
  if (process.env.CSI_TOOLS_BIN) return process.env.CSI_TOOLS_BIN
  const r = spawnSync('bash', [join(root, 'test', 'tools', 'build.sh')], { encoding: 'utf8', maxBuffer: 64 << 20 })
  if (r.status !== 0) throw new Error(`test/tools/build.sh failed: ${r.stderr}`)
  return r.stdout.trim().split('\n').at(-1) ?? ''
}
const bin = toolsBin()
const kubeVersion = /k8s\.io\/kubernetes v(\d+\.\d+\.\d+)/.exec(readFileSync(join(root, 'test', 'tools', 'go.mod'), 'utf8'))?.[1] ?? '1.36.0'

interface Result {
  code: number
  stdout: string
  stderr: string
}

function exec(cmd: string, args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { cwd: root, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, stdout, stderr })
    })
    child.stdin?.end(input ?? '')
  })
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await exec(cmd, args, input)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return r.stdout
}

const kubectl = (args: string[], input?: string): Promise<Result> => exec(join(bin, 'kubectl'), ['--kubeconfig', cp.kubeconfig, ...args], input)
const mustKubectl = (args: string[], input?: string): Promise<string> => must(join(bin, 'kubectl'), ['--kubeconfig', cp.kubeconfig, ...args], input)
const kustomize = (dir: string): Promise<string> => must(join(bin, 'kubectl'), ['kustomize', join(root, dir)])
const helm = (...extra: string[]): Promise<string> =>
  must(join(bin, 'helm'), ['template', 'csi', chart, '--namespace', 'cert-manager', '--kube-version', kubeVersion, ...extra])

/** "kind/name" of every document in a YAML stream, read by kubectl without a server. */
async function names(yaml: string): Promise<string[]> {
  const out = await must(join(bin, 'kubectl'), ['label', '--local', '-f', '-', '-o', 'name', 'manifests.test/none-'], yaml)
  return out.split('\n').filter(Boolean).sort()
}

/** Server-side dry run: the API server validates and admits, and stores nothing. */
async function dryRun(t: Test, what: string, yaml: string): Promise<void> {
  const want = await names(yaml)
  t.ok(want.length > 0, `${what}: has objects`)
  const r = await kubectl(['apply', '--dry-run=server', '--validate=strict', '-o', 'name', '-f', '-'], yaml)
  t.equal(r.code, 0, `${what}: accepted by the API server`, { stderr: r.stderr })
  t.same(r.stdout.split('\n').filter(Boolean).sort(), want, `${what}: every object`)
}

t.test('server-side dry run of every object', async (t) => {
  await dryRun(t, 'kustomize base', await kustomize('config/base'))
  await dryRun(t, 'example', await kustomize('config/example'))
  await dryRun(t, 'helm chart', await helm())
  await dryRun(t, 'kustomize token-request overlay', await kustomize('config/token-request'))
  await dryRun(t, 'helm chart, token requests', await helm('--set', 'tokenRequest.enabled=true'))
  await dryRun(t, 'helm chart, k0s kubelet, metrics off', await helm('--set', 'kubeletRootDir=/var/lib/k0s/kubelet', '--set', 'metrics.enabled=false'))
})

t.test('the API server refuses a broken manifest (the dry run is not a no-op)', async (t) => {
  const yaml = (await kustomize('config/base')).replace('mountPropagation: Bidirectional', 'mountPropagation: Sideways')
  const r = await kubectl(['apply', '--dry-run=server', '-f', '-'], yaml)
  t.not(r.code, 0)
  t.match(r.stderr, /mountPropagation/)
})

/** Objects this file creates for real are deleted again, unless they existed before. */
async function existed(...ref: string[]): Promise<boolean> {
  return (await kubectl(['get', ...ref, '-o', 'name'])).code === 0
}

t.test('the CSIDriver installs and `kubectl get csidrivers` lists it', async (t) => {
  const before = await existed(`csidriver/${DRIVER_NAME}`)
  if (!before) t.teardown(async () => void (await kubectl(['delete', 'csidriver', DRIVER_NAME, '--ignore-not-found', '--wait=false'])))
  const base = await kustomize('config/base')
  const csiDriverDoc = base.split(/^---$/m).find((d) => /^kind: CSIDriver$/m.test(d))
  t.ok(csiDriverDoc, 'the base holds a CSIDriver')
  t.match(await mustKubectl(['apply', '-f', '-'], csiDriverDoc), /csidriver\.storage\.k8s\.io\/csi\.cert-manager\.io (created|configured|unchanged)/)

  const table = await mustKubectl(['get', 'csidrivers'])
  t.match(table, new RegExp(`^${DRIVER_NAME.replace(/\./g, '\\.')}\\s`, 'm'), 'listed by name')
  const got = JSON.parse(await mustKubectl(['get', 'csidriver', DRIVER_NAME, '-o', 'json'])) as { spec: Record<string, unknown> }
  t.equal(got.spec.attachRequired, false)
  t.equal(got.spec.podInfoOnMount, true)
  t.same(got.spec.volumeLifecycleModes, ['Ephemeral'])
  t.equal(got.spec.fsGroupPolicy, 'File')
  t.equal(got.spec.requiresRepublish, false)

  // Most of a CSIDriver's spec is immutable: the chart's object applying over
  // the base's proves the two agree where it matters.
  const helmDoc = (await helm()).split(/^---$/m).find((d) => /^kind: CSIDriver$/m.test(d))
  const r = await kubectl(['apply', '--dry-run=server', '-f', '-'], helmDoc)
  t.equal(r.code, 0, "the chart's CSIDriver is a valid update of the base's", { stderr: r.stderr })
})

t.test("RBAC: the driver's service account can do what it needs and nothing else", async (t) => {
  const base = await kustomize('config/base')
  const rbac = base
    .split(/^---$/m)
    .filter((d) => /^kind: (ServiceAccount|ClusterRole|ClusterRoleBinding)$/m.test(d))
    .join('\n---\n')
  const refs = ['clusterrole/cert-manager-csi-driver', 'clusterrolebinding/cert-manager-csi-driver', 'serviceaccount/cert-manager-csi-driver']
  const had = await Promise.all(refs.map((r) => existed(r, '-n', 'cert-manager')))
  t.teardown(async () => {
    for (const [i, ref] of refs.entries()) {
      if (!had[i]) await kubectl(['delete', ref, '-n', 'cert-manager', '--ignore-not-found', '--wait=false'])
    }
  })
  await mustKubectl(['apply', '-f', '-'], rbac)

  const can = async (verb: string, resource: string, ns = 'sandbox'): Promise<boolean> => {
    const r = await kubectl(['auth', 'can-i', verb, resource, '-n', ns, '--as', SA])
    return r.stdout.trim() === 'yes'
  }
  for (const verb of ['create', 'get', 'list', 'watch', 'delete']) {
    t.ok(await can(verb, 'certificaterequests.cert-manager.io'), `${verb} certificaterequests`)
  }
  t.ok(await can('create', 'events.events.k8s.io'), 'create events.events.k8s.io')
  const denied: Array<[string, string]> = [
    // Granted once and never called (issue 12): pods get would let the
    // driver read every pod spec in the cluster, keystore passwords included.
    ['get', 'pods'],
    ['create', 'events'],
    ['patch', 'events'],
    ['patch', 'events.events.k8s.io'],
    ['update', 'certificaterequests.cert-manager.io'],
    ['patch', 'certificaterequests.cert-manager.io'],
    ['create', 'certificates.cert-manager.io'],
    ['get', 'secrets'],
    ['list', 'pods'],
    ['delete', 'pods'],
    ['get', 'issuers.cert-manager.io'],
    ['delete', 'events'],
    ['update', 'certificaterequests.cert-manager.io/status'],
  ]
  for (const [verb, res] of denied) t.notOk(await can(verb, res), `not ${verb} ${res}`)
})
