// The install manifests: the kustomize base and the Helm chart must install
// the same driver, with least-privilege RBAC, kubelet paths that follow
// kubeletRootDir, a values schema that rejects mistakes, and driver flags the
// driver itself accepts. Rendered with the real kubectl (its built-in
// kustomize) and helm from test/tools; no cluster is needed.
//
// YAML is turned into JSON by kubectl itself (`label --local`, which never
// contacts a server), so no YAML library is needed.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseFlags } from '../../src/cli/flags.js'
import { parseVolumeAttributes } from '../../src/volume/spec.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const chart = join(root, 'config', 'helm', 'cert-manager-csi-driver')

// A fresh machine builds the tools first (minutes); cached runs take seconds.
t.setTimeout(45 * 60_000)

// Rendered Kubernetes objects: read field by field, so loosely typed.
// Parsed YAML of every shape: the tests walk it by key.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>

function run(cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    cwd: root,
    input,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    // kubectl must never reach for a user's cluster here.
    env: { ...process.env, KUBECONFIG: join(tmpdir(), 'no-such-kubeconfig') },
  })
  if (r.error) throw r.error
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function must(cmd: string, args: string[], input?: string): string {
  const r = run(cmd, args, input)
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

function toolsBin(): string {
  if (process.env.CSI_TOOLS_BIN) return process.env.CSI_TOOLS_BIN
  const out = must('bash', [join(root, 'test', 'tools', 'build.sh')])
  return out.trim().split('\n').at(-1) ?? ''
}

const bin = toolsBin()
const kubectl = join(bin, 'kubectl')
const helmBin = join(bin, 'helm')

// helm built from source (without release ldflags) assumes Kubernetes v1.20
// for `helm template`, which the chart's kubeVersion rejects: render for the
// Kubernetes version the tools module pins.
const kubeVersion = /k8s\.io\/kubernetes v(\d+\.\d+\.\d+)/.exec(readFileSync(join(root, 'test', 'tools', 'go.mod'), 'utf8'))?.[1] ?? '1.36.0'

/** Every object in a YAML stream, as plain JSON. */
function toObjects(yaml: string): Obj[] {
  // Removing a label nobody has is a no-op that makes kubectl print each object.
  const out = must(kubectl, ['label', '--local', '-f', '-', '-o', 'jsonpath={@}{"\\n"}', 'manifests.test/none-'], yaml)
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const o = JSON.parse(l) as Obj
      if (o.metadata?.labels && Object.keys(o.metadata.labels).length === 0) delete o.metadata.labels
      return o
    })
}

const kustomize = (dir: string): Obj[] => toObjects(must(kubectl, ['kustomize', join(root, dir)]))
const helmArgs = (extra: string[]): string[] => ['template', 'csi', chart, '--namespace', 'cert-manager', '--kube-version', kubeVersion, ...extra]
const helm = (...extra: string[]): Obj[] => toObjects(must(helmBin, helmArgs(extra)))

const id = (o: Obj): string => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`
function find(objs: Obj[], kind: string, name?: string): Obj {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata?.name === name))
  if (!o) throw new Error(`no ${kind}${name ? ` ${name}` : ''} in ${objs.map(id).join(', ')}`)
  return o
}
const podSpec = (objs: Obj[]): Obj => find(objs, 'DaemonSet').spec.template.spec
const container = (objs: Obj[], name: string): Obj => {
  const c = (podSpec(objs).containers as Obj[]).find((x) => x.name === name)
  if (!c) throw new Error(`no container ${name}`)
  return c
}

/** Every string in a JSON value with `from` replaced by `to`. */
function replaceDeep(v: unknown, from: string, to: string): unknown {
  if (typeof v === 'string') return v.split(from).join(to)
  if (Array.isArray(v)) return v.map((x) => replaceDeep(x, from, to))
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replaceDeep(x, from, to)]))
  return v
}

const DRIVER = 'cert-manager-csi-driver'
const IMAGE = 'ghcr.io/cert-manager-csi-driver/cert-manager-csi-driver:v0.1.0'

/** The API calls the driver makes, and not one more. */
const LEAST_PRIVILEGE = [
  { apiGroups: ['cert-manager.io'], resources: ['certificaterequests'], verbs: ['create', 'get', 'list', 'watch', 'delete'] },
  // Only what the code calls: no pods (the kubelet's volume context says all
  // the driver needs of its pod), no core events, no patch.
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
]
const normRules = (rules: Obj[]): string[] =>
  rules
    .flatMap((r) =>
      (r.apiGroups as string[]).flatMap((g) =>
        (r.resources as string[]).flatMap((res) => (r.verbs as string[]).map((v) => `${g}/${res}:${v}`)),
      ),
    )
    .sort()

const base = kustomize('config/base')
const chartDefault = helm()
const renders: Array<[string, Obj[]]> = [
  ['kustomize base', base],
  ['helm chart', chartDefault],
]

t.test('the same objects from kustomize and helm', async (t) => {
  const expected = [
    'ClusterRole//cert-manager-csi-driver',
    'ClusterRoleBinding//cert-manager-csi-driver',
    'CSIDriver//csi.cert-manager.io',
    'DaemonSet/cert-manager/cert-manager-csi-driver',
    'ServiceAccount/cert-manager/cert-manager-csi-driver',
  ].sort()
  t.same(base.map(id).sort(), expected, 'kustomize base')
  t.same(chartDefault.map(id).sort(), expected, 'helm chart')
  t.notOk(base.some((o) => o.kind === 'Namespace'), "no Namespace object: cert-manager's own install creates it")
})

t.test('CSIDriver', async (t) => {
  const want = {
    attachRequired: false,
    podInfoOnMount: true,
    volumeLifecycleModes: ['Ephemeral'],
    fsGroupPolicy: 'File',
    requiresRepublish: false,
    storageCapacity: false,
  }
  for (const [name, objs] of renders) t.same(find(objs, 'CSIDriver').spec, want, name)
  t.same(find(chartDefault, 'CSIDriver').spec, find(base, 'CSIDriver').spec, 'equal specs')
})

t.test('requests made as the pod: the kustomize overlay and the chart value agree', async (t) => {
  const overlay = kustomize('config/token-request')
  const chart = helm('--set', 'tokenRequest.enabled=true')
  for (const [name, objs] of [['config/token-request', overlay], ['helm tokenRequest.enabled', chart]] as Array<[string, Obj[]]>) {
    const spec = find(objs, 'CSIDriver').spec as Obj
    t.same(spec.tokenRequests, [{ audience: '' }], `${name}: the kubelet is asked for the pod's token, apiserver audience`)
    t.equal(spec.requiresRepublish, true, `${name}: and for a fresh one at every republish`)
    const cfg = parseFlags((container(objs, DRIVER).args as string[]).map((a) => a.replace('$(NODE_ID)', 'n')))
    t.equal(cfg.useTokenRequest, true, `${name}: the driver uses it`)
    t.equal(cfg.tokenRequestAudience, '', `${name}: for the same audience`)
  }
  t.same(find(chart, 'CSIDriver').spec, find(overlay, 'CSIDriver').spec, 'equal CSIDriver specs')
  const sorted = (objs: Obj[]) => [...(container(objs, DRIVER).args as string[])].sort()
  t.same(sorted(chart), sorted(overlay), 'the same driver arguments')
  const aud = helm('--set', 'tokenRequest.enabled=true', '--set', 'tokenRequest.audience=cert-manager')
  t.same((find(aud, 'CSIDriver').spec as Obj).tokenRequests, [{ audience: 'cert-manager' }])
  t.equal(parseFlags((container(aud, DRIVER).args as string[]).map((a) => a.replace('$(NODE_ID)', 'n'))).tokenRequestAudience, 'cert-manager')
  t.notOk('tokenRequests' in (find(chartDefault, 'CSIDriver').spec as Obj), 'off by default')
})

t.test('RBAC: least privilege, bound to the driver', async (t) => {
  for (const [name, objs] of renders) {
    const role = find(objs, 'ClusterRole')
    t.same(normRules(role.rules), normRules(LEAST_PRIVILEGE), `${name}: exactly the least-privilege rules`)
    t.notMatch(JSON.stringify(role.rules), /"\*"/, `${name}: no wildcards`)
    t.notOk((role.rules as Obj[]).some((r) => r.resourceNames || r.nonResourceURLs), `${name}: nothing else`)
    const binding = find(objs, 'ClusterRoleBinding')
    t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name }, `${name}: binds the role`)
    const sa = find(objs, 'ServiceAccount')
    t.same(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }], `${name}: to the driver's account`)
    t.equal(podSpec(objs).serviceAccountName, sa.metadata.name, `${name}: which the DaemonSet runs as`)
    t.notOk(objs.some((o) => o.kind === 'Role' || o.kind === 'RoleBinding'), `${name}: no other roles`)
  }
  t.same(find(chartDefault, 'ClusterRole').rules, find(base, 'ClusterRole').rules, 'equal rules, in the same order')
})

t.test('DaemonSet: the same pod from kustomize and helm', async (t) => {
  const b = podSpec(base)
  const h = podSpec(chartDefault)
  t.same(h.containers.map((c: Obj) => c.name), b.containers.map((c: Obj) => c.name), 'containers')
  for (const c of b.containers as Obj[]) {
    const hc = container(chartDefault, c.name)
    for (const field of ['image', 'imagePullPolicy', 'args', 'env', 'volumeMounts', 'securityContext', 'ports', 'livenessProbe', 'readinessProbe', 'resources']) {
      t.same(hc[field], c[field], `${c.name}: ${field}`)
    }
  }
  t.same(h.volumes, b.volumes, 'hostPath volumes')
  for (const field of ['serviceAccountName', 'priorityClassName', 'hostNetwork', 'nodeSelector', 'tolerations']) {
    t.same(h[field], b[field], field)
  }
  t.same(h, b, 'the whole pod spec')
  const ds = (objs: Obj[]): Obj => find(objs, 'DaemonSet').spec
  t.same(ds(chartDefault).updateStrategy, ds(base).updateStrategy, 'update strategy')
  // The driver locks its data root: a surge pod beside the old one could only crash-loop.
  t.same(ds(base).updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } }, 'no surge: one driver per node at a time')
})

t.test('DaemonSet: what a CSI node plugin needs', async (t) => {
  for (const [name, objs] of renders) {
    const ds = find(objs, 'DaemonSet')
    const spec = podSpec(objs)
    const vol = (n: string): Obj => (spec.volumes as Obj[]).find((v) => v.name === n) ?? {}
    const mount = (c: Obj, n: string): Obj => (c.volumeMounts as Obj[]).find((m) => m.name === n) ?? {}
    const driver = container(objs, DRIVER)
    const registrar = container(objs, 'node-driver-registrar')
    const probe = container(objs, 'livenessprobe')

    const sel = ds.spec.selector.matchLabels as Record<string, string>
    for (const [k, v] of Object.entries(sel)) t.equal(ds.spec.template.metadata.labels[k], v, `${name}: selector ${k} matches the pod`)

    t.equal(driver.image, IMAGE, `${name}: driver image`)
    t.match(registrar.image, /^registry\.k8s\.io\/sig-storage\/csi-node-driver-registrar:v2\.\d+\.\d+$/, `${name}: registrar v2`)
    t.match(probe.image, /^registry\.k8s\.io\/sig-storage\/livenessprobe:v2\.\d+\.\d+$/, `${name}: livenessprobe v2`)

    t.equal(driver.securityContext.privileged, true, `${name}: the driver is privileged (it mounts)`)
    t.equal(spec.hostNetwork, false, `${name}: no host network`)
    t.equal(spec.priorityClassName, 'system-node-critical', `${name}: node-critical priority`)
    t.same(spec.nodeSelector, { 'kubernetes.io/os': 'linux' }, `${name}: Linux nodes`)
    t.same(spec.tolerations, [{ operator: 'Exists' }], `${name}: every taint tolerated`)
    for (const c of spec.containers as Obj[]) {
      t.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${name}: ${c.name} requests cpu and memory`)
      if (c.name !== DRIVER) {
        t.equal(c.securityContext?.privileged ?? false, false, `${name}: ${c.name} is not privileged`)
        t.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}: ${c.name} cannot escalate`)
      }
    }
    t.equal(driver.env?.length, 1, `${name}: one env var`)
    t.equal(driver.env?.[0]?.name, 'NODE_ID', `${name}: NODE_ID`)
    t.equal(driver.env?.[0]?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName', `${name}: from the downward API`)

    // Kubelet paths: host and container agree.
    t.same(vol('pods-mount-dir').hostPath, { path: '/var/lib/kubelet/pods', type: 'Directory' }, `${name}: pods dir`)
    t.same(mount(driver, 'pods-mount-dir'), { name: 'pods-mount-dir', mountPath: '/var/lib/kubelet/pods', mountPropagation: 'Bidirectional' }, `${name}: pods dir at the same path, Bidirectional`)
    t.same(vol('data-root').hostPath, { path: '/tmp/cert-manager-csi', type: 'DirectoryOrCreate' }, `${name}: data root`)
    t.same(mount(driver, 'data-root'), { name: 'data-root', mountPath: '/tmp/cert-manager-csi', mountPropagation: 'Bidirectional' }, `${name}: data root, Bidirectional`)
    t.same(vol('plugin-dir').hostPath, { path: '/var/lib/kubelet/plugins/csi.cert-manager.io', type: 'DirectoryOrCreate' }, `${name}: plugin dir`)
    t.same(vol('registration-dir').hostPath, { path: '/var/lib/kubelet/plugins_registry', type: 'Directory' }, `${name}: registration dir`)
    for (const c of [driver, registrar, probe]) t.equal(mount(c, 'plugin-dir').mountPath, '/plugin', `${name}: ${c.name} sees the socket dir at /plugin`)
    t.equal(mount(registrar, 'registration-dir').mountPath, '/registration', `${name}: registrar registration dir`)
    for (const c of [registrar, probe]) {
      t.notOk((c.volumeMounts as Obj[]).some((m) => m.mountPropagation), `${name}: ${c.name} needs no mount propagation`)
    }

    // Sidecars talk to the driver's socket; the kubelet finds it on the host.
    t.ok(registrar.args.includes('--csi-address=/plugin/csi.sock'), `${name}: registrar --csi-address`)
    t.ok(registrar.args.includes(`--kubelet-registration-path=${vol('plugin-dir').hostPath.path}/csi.sock`), `${name}: registration path is the socket on the host`)
    t.ok(probe.args.includes('--csi-address=/plugin/csi.sock'), `${name}: livenessprobe --csi-address`)

    // The driver's liveness probe targets the livenessprobe sidecar's port.
    const healthz = (driver.ports as Obj[]).find((p) => p.name === driver.livenessProbe.httpGet.port)
    t.equal(driver.livenessProbe.httpGet.path, '/healthz', `${name}: liveness on /healthz`)
    t.ok(probe.args.includes(`--health-port=${healthz?.containerPort}`), `${name}: liveness port ${healthz?.containerPort} is the sidecar's`)
    const metrics = (driver.ports as Obj[]).find((p) => p.name === 'metrics')
    t.equal(metrics?.containerPort, 9402, `${name}: metrics port`)
    t.same(driver.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' }, `${name}: readiness on /readyz`)

    // CSIDriver name = plugin directory = registration.
    t.equal(vol('plugin-dir').hostPath.path.split('/').at(-1), find(objs, 'CSIDriver').metadata.name, `${name}: plugin dir named after the driver`)
  }
})

t.test("the driver's own flag parser accepts the DaemonSet's arguments", async (t) => {
  for (const [name, objs] of renders) {
    const driver = container(objs, DRIVER)
    const spec = podSpec(objs)
    const args = (driver.args as string[]).map((a) => a.replace('$(NODE_ID)', 'node-1'))
    const cfg = parseFlags(args)
    t.equal(cfg.nodeId, 'node-1', `${name}: --node-id from $(NODE_ID)`)
    t.equal(cfg.socketPath, '/plugin/csi.sock', `${name}: socket in the plugin dir`)
    const mountOf = (vol: string): string => (driver.volumeMounts as Obj[]).find((m) => m.name === vol)?.mountPath
    t.equal(dirname(cfg.socketPath), mountOf('plugin-dir'), `${name}: socket dir is mounted`)
    t.equal(cfg.dataRoot, mountOf('data-root'), `${name}: --data-root is the Bidirectional mount`)
    t.equal(cfg.dataRoot, (spec.volumes as Obj[]).find((v) => v.name === 'data-root')?.hostPath.path, `${name}: and the same host path`)
    t.equal(cfg.driverName, find(objs, 'CSIDriver').metadata.name, `${name}: driver name matches the CSIDriver`)
    t.equal(cfg.metricsBindAddress?.port, (driver.ports as Obj[]).find((p) => p.name === 'metrics')?.containerPort, `${name}: metrics port`)
    t.equal(cfg.kubeconfig, undefined, `${name}: in-cluster credentials`)
    t.equal(cfg.logFormat, 'json', `${name}: json logs`)
  }
})

t.test('kubeletRootDir moves every kubelet path, and only those', async (t) => {
  const k0s = helm('--set', 'kubeletRootDir=/var/lib/k0s/kubelet')
  t.notMatch(JSON.stringify(k0s), /\/var\/lib\/kubelet/, 'no default kubelet path left')
  t.same(k0s, replaceDeep(chartDefault, '/var/lib/kubelet', '/var/lib/k0s/kubelet'), 'the default render with the root replaced')
  const spec = podSpec(k0s)
  const host = (spec.volumes as Obj[]).map((v) => v.hostPath?.path).sort()
  t.same(host, ['/tmp/cert-manager-csi', '/var/lib/k0s/kubelet/plugins/csi.cert-manager.io', '/var/lib/k0s/kubelet/plugins_registry', '/var/lib/k0s/kubelet/pods'])
  t.ok(container(k0s, 'node-driver-registrar').args.includes('--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/csi.cert-manager.io/csi.sock'))
  t.ok((container(k0s, DRIVER).volumeMounts as Obj[]).some((m) => m.mountPath === '/var/lib/k0s/kubelet/pods' && m.mountPropagation === 'Bidirectional'))
})

t.test('helm values', async (t) => {
  t.test('dataRoot moves the flag, the mount and the host path', async (t) => {
    const r = helm('--set', 'dataRoot=/run/cert-manager-csi')
    t.same(r, replaceDeep(chartDefault, '/tmp/cert-manager-csi', '/run/cert-manager-csi'))
    t.equal(parseFlags((container(r, DRIVER).args as string[]).map((a) => a.replace('$(NODE_ID)', 'n'))).dataRoot, '/run/cert-manager-csi')
  })

  t.test('namespace', async (t) => {
    const r = helm('--set', 'namespace=csi-system')
    t.equal(find(r, 'DaemonSet').metadata.namespace, 'csi-system')
    t.equal(find(r, 'ServiceAccount').metadata.namespace, 'csi-system')
    t.equal(find(r, 'ClusterRoleBinding').subjects[0].namespace, 'csi-system')
  })

  t.test('driver flags', async (t) => {
    const r = helm(
      '--set', 'logLevel=debug', '--set', 'logFormat=text', '--set', 'publishTimeout=90s',
      '--set', 'maxConcurrentIssuances=3', '--set', 'metrics.port=9500', '--set', 'extraArgs={--resync-period=10m}',
      '--set-json', 'kubeApi={"qps":2.5,"burst":7}',
    )
    const c = container(r, DRIVER)
    const cfg = parseFlags((c.args as string[]).map((a) => a.replace('$(NODE_ID)', 'n')))
    t.equal(cfg.logLevel, 'debug')
    t.equal(cfg.logFormat, 'text')
    t.equal(cfg.publishTimeoutMs, 90_000)
    t.equal(cfg.maxConcurrentIssuances, 3)
    t.equal(cfg.metricsBindAddress?.port, 9500)
    t.equal(cfg.resyncPeriodMs, 600_000)
    t.equal(cfg.kubeApiQps, 2.5)
    t.equal(cfg.kubeApiBurst, 7)
    t.equal((c.ports as Obj[]).find((p) => p.name === 'metrics')?.containerPort, 9500)
  })

  t.test('metrics disabled: no port, no readiness probe', async (t) => {
    const r = helm('--set', 'metrics.enabled=false')
    const c = container(r, DRIVER)
    t.equal(parseFlags((c.args as string[]).map((a) => a.replace('$(NODE_ID)', 'n'))).metricsBindAddress, null)
    t.notOk((c.ports as Obj[]).some((p) => p.name === 'metrics'))
    t.equal(c.readinessProbe, undefined)
    t.ok(c.livenessProbe, 'liveness still probed through the sidecar')
  })

  t.test('images', async (t) => {
    const digest = 'sha256:' + 'ab'.repeat(32)
    t.equal(container(helm('--set', 'image.tag=v9.9.9'), DRIVER).image, 'ghcr.io/cert-manager-csi-driver/cert-manager-csi-driver:v9.9.9')
    t.equal(container(helm('--set', `image.digest=${digest}`), DRIVER).image, `ghcr.io/cert-manager-csi-driver/cert-manager-csi-driver@${digest}`)
    const r = helm('--set', 'nodeDriverRegistrar.image.repository=example.com/reg', '--set', 'livenessProbe.image.tag=v2.99.0', '--set', 'livenessProbe.port=9999')
    t.equal(container(r, 'node-driver-registrar').image, 'example.com/reg:v2.15.0')
    t.equal(container(r, 'livenessprobe').image, 'registry.k8s.io/sig-storage/livenessprobe:v2.99.0')
    t.ok(container(r, 'livenessprobe').args.includes('--health-port=9999'))
    t.equal((container(r, DRIVER).ports as Obj[]).find((p) => p.name === 'healthz')?.containerPort, 9999)
  })

  t.test('scheduling and resources', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'csi-values-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const file = join(dir, 'values.json')
    writeFileSync(file, JSON.stringify({
      // Helm merges maps into the defaults; null removes a default key.
      nodeSelector: { pool: 'mtls' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mtls', effect: 'NoSchedule' }],
      priorityClassName: '',
      resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: null },
      nodeDriverRegistrar: { resources: { requests: { cpu: '5m', memory: '16Mi' } } },
      podAnnotations: { 'prometheus.io/scrape': 'true' },
      imagePullSecrets: [{ name: 'pull' }],
    }))
    const r = helm('-f', file)
    const spec = podSpec(r)
    t.same(spec.nodeSelector, { 'kubernetes.io/os': 'linux', pool: 'mtls' }, 'added to the default selector')
    t.same(spec.tolerations, [{ key: 'dedicated', operator: 'Equal', value: 'mtls', effect: 'NoSchedule' }])
    t.equal(spec.priorityClassName, undefined, 'empty priorityClassName: none')
    t.same(container(r, DRIVER).resources, { requests: { cpu: '100m', memory: '256Mi' } }, 'limits removed with null')
    t.same(container(r, 'node-driver-registrar').resources, { requests: { cpu: '5m', memory: '16Mi' }, limits: { memory: '64Mi' } }, 'requests replaced, limits kept')
    t.equal(find(r, 'DaemonSet').spec.template.metadata.annotations['prometheus.io/scrape'], 'true')
    t.same(spec.imagePullSecrets, [{ name: 'pull' }])
  })
})

t.test('helm lint --strict', async (t) => {
  const r = run(helmBin, ['lint', chart, '--strict', '--kube-version', kubeVersion])
  t.equal(r.status, 0, 'no lint errors or warnings', { stdout: r.stdout, stderr: r.stderr })
  t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/)
})

t.test('values.schema.json rejects what the driver would not run with', async (t) => {
  const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as Obj
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#', 'JSON schema draft-07')
  // Every object with named properties is closed, so a misspelt key anywhere fails.
  const open: string[] = []
  const walk = (s: unknown, path: string): void => {
    if (!s || typeof s !== 'object') return
    const o = s as Obj
    if (o.properties && o.additionalProperties !== false) open.push(path)
    for (const [k, v] of Object.entries(o)) walk(v, `${path}/${k}`)
  }
  walk(schema, '')
  t.same(open, [], 'every object schema with properties sets additionalProperties: false')

  const dir = mkdtempSync(join(tmpdir(), 'csi-values-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bad: Array<[string, Obj, RegExp]> = [
    ['unknown top-level key', { kubeletRoot: '/var/lib/k0s/kubelet' }, /kubeletRoot/],
    ['unknown nested key', { metrics: { enable: false } }, /enable/],
    ['log level', { logLevel: 'verbose' }, /logLevel/],
    ['log format', { logFormat: 'xml' }, /logFormat/],
    ['relative kubeletRootDir', { kubeletRootDir: 'var/lib/kubelet' }, /kubeletRootDir/],
    ['trailing slash', { kubeletRootDir: '/var/lib/kubelet/' }, /kubeletRootDir/],
    ['relative dataRoot', { dataRoot: 'certs' }, /dataRoot/],
    ['port out of range', { metrics: { port: 70000 } }, /port/],
    ['port as a string', { livenessProbe: { port: '9808' } }, /port/],
    ['zero issuances', { maxConcurrentIssuances: 0 }, /maxConcurrentIssuances/],
    ['fractional issuances', { maxConcurrentIssuances: 1.5 }, /maxConcurrentIssuances/],
    ['not a duration', { publishTimeout: 'a minute' }, /publishTimeout/],
    ['zero qps', { kubeApi: { qps: 0, burst: 50 } }, /qps/],
    ['fractional burst', { kubeApi: { qps: 20, burst: 2.5 } }, /burst/],
    ['pull policy', { image: { pullPolicy: 'Sometimes' } }, /pullPolicy/],
    ['bad digest', { image: { digest: 'sha256:1234' } }, /digest/],
    ['toleration operator', { tolerations: [{ operator: 'Maybe' }] }, /operator/],
    ['resource quantity', { resources: { requests: { memory: 'lots' } } }, /memory/],
    ['nodeSelector value', { nodeSelector: { zone: 1 } }, /zone/],
    ['metrics.enabled type', { metrics: { enabled: 'yes' } }, /enabled/],
    ['namespace', { namespace: 'Not_A_Namespace' }, /namespace/],
  ]
  for (const [name, values, where] of bad) {
    const file = join(dir, `${name.replace(/\W+/g, '-')}.json`)
    writeFileSync(file, JSON.stringify(values))
    const r = run(helmBin, helmArgs(['-f', file]))
    t.not(r.status, 0, `${name}: rejected`)
    t.match(r.stderr, /schema/, `${name}: by the schema`)
    t.match(r.stderr, where, `${name}: naming the value`)
  }
})

t.test('example: the product description Deployment and a CA Issuer', async (t) => {
  const objs = kustomize('config/example')
  t.same(objs.map(id).sort(), [
    'Certificate/sandbox/sandbox-ca',
    'Deployment/sandbox/my-csi-app',
    'Issuer/sandbox/ca-issuer',
    'Issuer/sandbox/selfsigned',
    'Namespace//sandbox',
  ])
  const dep = find(objs, 'Deployment', 'my-csi-app')
  t.equal(dep.spec.replicas, 5)
  const pod = dep.spec.template.spec
  t.match(pod.containers[0].image, /^busybox(:|$)/)
  t.same(pod.containers[0].command, ['sleep', '1000000'])
  t.same(pod.containers[0].volumeMounts, [{ name: 'tls', mountPath: '/tls' }])
  const tls = (pod.volumes as Obj[]).find((v) => v.name === 'tls')
  t.same(tls?.csi, {
    driver: 'csi.cert-manager.io',
    readOnly: true,
    volumeAttributes: {
      'csi.cert-manager.io/issuer-name': 'ca-issuer',
      'csi.cert-manager.io/dns-names': 'my-service.sandbox.svc.cluster.local',
    },
  })
  const parsed = parseVolumeAttributes(tls?.csi.volumeAttributes ?? {}, { name: 'my-csi-app-0', namespace: 'sandbox', uid: 'u', serviceAccountName: 'default' })
  t.ok(parsed.ok, "the driver's attribute parser accepts the example's volume")

  const issuer = find(objs, 'Issuer', 'ca-issuer')
  const cert = find(objs, 'Certificate', 'sandbox-ca')
  t.equal(issuer.spec.ca.secretName, cert.spec.secretName, 'the CA Issuer uses the CA Certificate\'s Secret')
  t.equal(cert.spec.isCA, true)
  t.equal(cert.spec.issuerRef.name, find(objs, 'Issuer', 'selfsigned').metadata.name, 'the CA is bootstrapped by the self-signed Issuer')
  t.ok(find(objs, 'Issuer', 'selfsigned').spec.selfSigned, 'selfSigned')
})
