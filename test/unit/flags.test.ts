import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseFlags, type Config } from '../../src/cli/flags.js'
import { FlagError, FlagExit } from '../../src/errors.js'
import { catchErr } from '../helpers/catch.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const base = ['--node-id', 'node-1']

t.test('defaults', async (t) => {
  const c = parseFlags(base)
  t.same(c, {
    nodeId: 'node-1',
    endpoint: 'unix:///csi/csi.sock',
    socketPath: '/csi/csi.sock',
    driverName: 'csi.cert-manager.io',
    dataRoot: '/tmp/cert-manager-csi',
    dataRootSizeBytes: 256 * 2 ** 20,
    logLevel: 'info',
    logFormat: 'json',
    publishTimeoutMs: 60_000,
    maxConcurrentIssuances: 8,
    resyncPeriodMs: 120_000,
    failureBackoffMs: 30_000,
    kubeApiTimeoutMs: 30_000,
    kubeApiQps: 20,
    kubeApiBurst: 50,
    cacheRelistPeriodMs: 300_000,
    metricsBindAddress: { host: '', port: 9402 },
    pluginRegistrationDir: '/var/lib/kubelet/plugins_registry',
    kubeletRootDir: '/var/lib/kubelet',
    annotationPrefixes: [],
    useTokenRequest: false,
    tokenRequestAudience: '',
  } satisfies Config)
  t.notOk('kubeconfig' in c, 'no kubeconfig: in-cluster')
  t.notOk('kubeletRegistrationPath' in c, 'no self-registration: node-driver-registrar does it')
})

t.test('each flag', async (t) => {
  const cases: Array<{ name: string; args: string[]; want: Partial<Config> }> = [
    { name: 'node id with =', args: ['--node-id=worker-7'], want: { nodeId: 'worker-7' } },
    { name: 'endpoint unix:///', args: [...base, '--endpoint', 'unix:///var/lib/kubelet/plugins/x/csi.sock'], want: { socketPath: '/var/lib/kubelet/plugins/x/csi.sock' } },
    { name: 'endpoint unix:/', args: [...base, '--endpoint', 'unix:/run/csi.sock'], want: { endpoint: 'unix:/run/csi.sock', socketPath: '/run/csi.sock' } },
    { name: 'driver name', args: [...base, '--driver-name', 'csi.example.org'], want: { driverName: 'csi.example.org' } },
    { name: 'data root size Mi', args: [...base, '--data-root-size', '64Mi'], want: { dataRootSizeBytes: 64 * 2 ** 20 } },
    { name: 'data root size bytes', args: [...base, '--data-root-size', '2000000'], want: { dataRootSizeBytes: 2_000_000 } },
    { name: 'data root', args: [...base, '--data-root', '/var/run/cm-csi'], want: { dataRoot: '/var/run/cm-csi' } },
    { name: 'kubelet root dir, trailing slash dropped', args: [...base, '--kubelet-root-dir', '/data/kubelet/'], want: { kubeletRootDir: '/data/kubelet' } },
    { name: 'annotation prefixes', args: [...base, '--annotation-prefixes', 'example.com, team.example.org'], want: { annotationPrefixes: ['example.com', 'team.example.org'] } },
    { name: 'annotation prefixes: any', args: [...base, '--annotation-prefixes', '*'], want: { annotationPrefixes: '*' } },
    { name: 'kubeconfig', args: [...base, '--kubeconfig', '/etc/kube/config'], want: { kubeconfig: '/etc/kube/config' } },
    { name: 'log level', args: [...base, '--log-level', 'debug'], want: { logLevel: 'debug' } },
    { name: 'log format', args: [...base, '--log-format', 'text'], want: { logFormat: 'text' } },
    { name: 'timeout Go duration', args: [...base, '--publish-timeout', '1m30s'], want: { publishTimeoutMs: 90_000 } },
    { name: 'timeout ms', args: [...base, '--publish-timeout', '2500ms'], want: { publishTimeoutMs: 2_500 } },
    { name: 'timeout seconds', args: [...base, '--publish-timeout', '45'], want: { publishTimeoutMs: 45_000 } },
    { name: 'timeout just under 2m', args: [...base, '--publish-timeout', '119.5s'], want: { publishTimeoutMs: 119_500 } },
    { name: 'max issuances', args: [...base, '--max-concurrent-issuances', '32'], want: { maxConcurrentIssuances: 32 } },
    { name: 'resync period', args: [...base, '--resync-period', '30s'], want: { resyncPeriodMs: 30_000 } },
    { name: 'failure backoff', args: [...base, '--failure-backoff', '1m'], want: { failureBackoffMs: 60_000 } },
    { name: 'kube api timeout', args: [...base, '--kube-api-timeout', '1m30s'], want: { kubeApiTimeoutMs: 90_000 } },
    { name: 'token requests', args: [...base, '--use-token-request'], want: { useTokenRequest: true, tokenRequestAudience: '' } },
    { name: 'token requests with an audience', args: [...base, '--use-token-request', '--token-request-audience', 'cert-manager'], want: { useTokenRequest: true, tokenRequestAudience: 'cert-manager' } },
    { name: 'kube api qps and burst', args: [...base, '--kube-api-qps', '2.5', '--kube-api-burst', '5'], want: { kubeApiQps: 2.5, kubeApiBurst: 5 } },
    { name: 'kube api timeout seconds', args: [...base, '--kube-api-timeout', '5'], want: { kubeApiTimeoutMs: 5_000 } },
    { name: 'cache relist period', args: [...base, '--cache-relist-period', '20s'], want: { cacheRelistPeriodMs: 20_000 } },
    { name: 'metrics host:port', args: [...base, '--metrics-bind-address', '127.0.0.1:8080'], want: { metricsBindAddress: { host: '127.0.0.1', port: 8080 } } },
    { name: 'metrics ipv6', args: [...base, '--metrics-bind-address', '[::1]:9402'], want: { metricsBindAddress: { host: '::1', port: 9402 } } },
    { name: 'metrics disabled', args: [...base, '--metrics-bind-address', '0'], want: { metricsBindAddress: null } },
    {
      name: 'kubelet registration path',
      args: [...base, '--kubelet-registration-path', '/var/lib/kubelet/plugins/csi.cert-manager.io/csi.sock'],
      want: { kubeletRegistrationPath: '/var/lib/kubelet/plugins/csi.cert-manager.io/csi.sock', pluginRegistrationDir: '/var/lib/kubelet/plugins_registry' },
    },
    {
      name: 'plugin registration dir',
      args: [...base, '--kubelet-registration-path=/k/plugins/x/csi.sock', '--plugin-registration-dir', '/k/plugins_registry'],
      want: { kubeletRegistrationPath: '/k/plugins/x/csi.sock', pluginRegistrationDir: '/k/plugins_registry' },
    },
  ]
  for (const c of cases) {
    t.match(parseFlags(c.args), c.want, c.name)
  }
})

t.test('errors', async (t) => {
  const cases: Array<{ name: string; args: string[]; msg: RegExp }> = [
    { name: 'node id missing', args: [], msg: /required option '--node-id <name>' not specified/ },
    { name: 'node id empty', args: ['--node-id', ' '], msg: /--node-id must not be empty/ },
    { name: 'node id without value', args: ['--node-id'], msg: /option '--node-id <name>' argument missing/ },
    { name: 'unknown flag', args: [...base, '--nodeid', 'x'], msg: /unknown option '--nodeid'/ },
    { name: 'positional argument', args: [...base, 'extra'], msg: /too many arguments/ },
    { name: 'tcp endpoint', args: [...base, '--endpoint', 'tcp://127.0.0.1:10000'], msg: /--endpoint "tcp:\/\/127\.0\.0\.1:10000" is not supported.*unix:\/\/\/absolute/ },
    { name: 'bare path endpoint', args: [...base, '--endpoint', '/csi/csi.sock'], msg: /is not supported/ },
    { name: 'relative unix endpoint', args: [...base, '--endpoint', 'unix://csi/csi.sock'], msg: /must name an absolute socket path/ },
    { name: 'relative unix: endpoint', args: [...base, '--endpoint', 'unix:csi.sock'], msg: /must name an absolute socket path/ },
    { name: 'directory endpoint', args: [...base, '--endpoint', 'unix:///csi/'], msg: /names a directory/ },
    { name: 'socket path too long', args: [...base, '--endpoint', `unix:///${'a'.repeat(120)}`], msg: /at most 107/ },
    { name: 'bad driver name', args: [...base, '--driver-name', 'cert manager'], msg: /not a valid CSI driver name/ },
    { name: 'data root size without unit letter case', args: [...base, '--data-root-size', '64mi'], msg: /--data-root-size "64mi" must be a byte quantity/ },
    { name: 'data root size too small', args: [...base, '--data-root-size', '4Ki'], msg: /at least 1Mi/ },
    { name: 'relative data root', args: [...base, '--data-root', 'data'], msg: /--data-root "data" must be an absolute path/ },
    { name: 'relative kubelet root', args: [...base, '--kubelet-root-dir', 'kubelet'], msg: /--kubelet-root-dir "kubelet" must be an absolute path/ },
    { name: 'annotation prefix not a DNS name', args: [...base, '--annotation-prefixes', 'example.com,Bad_Prefix'], msg: /--annotation-prefixes: "Bad_Prefix" is not a DNS-1123 subdomain/ },
    { name: 'empty annotation prefix', args: [...base, '--annotation-prefixes', 'example.com,'], msg: /--annotation-prefixes: "" is empty/ },
    { name: 'empty kubeconfig', args: [...base, '--kubeconfig', ''], msg: /--kubeconfig must not be empty/ },
    { name: 'relative registration path', args: [...base, '--kubelet-registration-path', 'csi.sock'], msg: /--kubelet-registration-path "csi.sock" must be an absolute path/ },
    { name: 'registration path too long', args: [...base, '--kubelet-registration-path', `/${'a'.repeat(120)}`], msg: /--kubelet-registration-path: socket path .* at most 107/ },
    { name: 'registration path without value', args: [...base, '--kubelet-registration-path'], msg: /option '--kubelet-registration-path <path>' argument missing/ },
    { name: 'relative registration dir', args: [...base, '--plugin-registration-dir', 'registry'], msg: /--plugin-registration-dir "registry" must be an absolute path/ },
    { name: 'registration dir too long', args: [...base, '--plugin-registration-dir', `/${'d'.repeat(90)}`], msg: /--plugin-registration-dir: socket path .*-reg\.sock is \d+ bytes long/ },
    { name: 'bad log level', args: [...base, '--log-level', 'verbose'], msg: /Allowed choices are trace, debug, info, warn, error/ },
    { name: 'bad log format', args: [...base, '--log-format', 'yaml'], msg: /Allowed choices are json, text/ },
    { name: 'timeout not a duration', args: [...base, '--publish-timeout', 'soon'], msg: /--publish-timeout "soon" is not a duration/ },
    { name: 'timeout without unit', args: [...base, '--publish-timeout', '1m30'], msg: /is not a duration/ },
    { name: 'timeout zero', args: [...base, '--publish-timeout', '0s'], msg: /must be greater than zero/ },
    { name: 'timeout 2m', args: [...base, '--publish-timeout', '2m'], msg: /must be under 2m/ },
    { name: 'timeout 120 seconds', args: [...base, '--publish-timeout', '120'], msg: /must be under 2m/ },
    { name: 'max issuances zero', args: [...base, '--max-concurrent-issuances', '0'], msg: /at least 1/ },
    { name: 'resync period zero', args: [...base, '--resync-period', '0s'], msg: /--resync-period "0s" is not a positive duration/ },
    { name: 'failure backoff garbage', args: [...base, '--failure-backoff', 'soon'], msg: /--failure-backoff "soon" is not a positive duration/ },
    { name: 'kube api qps zero', args: [...base, '--kube-api-qps', '0'], msg: /--kube-api-qps "0" must be a number of requests per second greater than 0/ },
    { name: 'kube api qps garbage', args: [...base, '--kube-api-qps', 'fast'], msg: /--kube-api-qps "fast"/ },
    { name: 'kube api burst zero', args: [...base, '--kube-api-burst', '0'], msg: /--kube-api-burst "0" must be a whole number of at least 1/ },
    { name: 'kube api burst fraction', args: [...base, '--kube-api-burst', '1.5'], msg: /--kube-api-burst "1.5"/ },
    { name: 'kube api timeout zero', args: [...base, '--kube-api-timeout', '0s'], msg: /--kube-api-timeout "0s" is not a positive duration/ },
    { name: 'kube api timeout garbage', args: [...base, '--kube-api-timeout', 'forever'], msg: /--kube-api-timeout "forever" is not a positive duration/ },
    { name: 'cache relist period zero', args: [...base, '--cache-relist-period', '0'], msg: /--cache-relist-period "0" is not a positive duration/ },
    { name: 'cache relist period without unit', args: [...base, '--cache-relist-period', '5m3'], msg: /--cache-relist-period "5m3" is not a positive duration/ },
    { name: 'max issuances fraction', args: [...base, '--max-concurrent-issuances', '2.5'], msg: /whole number/ },
    { name: 'metrics no port', args: [...base, '--metrics-bind-address', 'localhost'], msg: /--metrics-bind-address: bind address "localhost": missing port/ },
    { name: 'metrics port too big', args: [...base, '--metrics-bind-address', ':70000'], msg: /port "70000" must be a number from 0 to 65535/ },
  ]
  for (const c of cases) {
    const err = catchErr(() => parseFlags(c.args))
    t.type(err, FlagError, `${c.name}: FlagError`)
    t.match((err as Error).message, c.msg, c.name)
    t.notMatch((err as Error).message, /\n/, `${c.name}: one line`)
    t.notMatch((err as Error).message, /^error:/, `${c.name}: no doubled "error:" prefix`)
  }
})

t.test('--help and --version are FlagExit with the text, never output', async (t) => {
  const help = catchErr(() => parseFlags(['--help']))
  t.type(help, FlagExit)
  t.match((help as FlagExit).output, /--node-id <name>/)
  t.match((help as FlagExit).output, /--publish-timeout <duration>/)
  t.match((help as FlagExit).output, /--kube-api-timeout <duration>/)
  t.match((help as FlagExit).output, /--cache-relist-period <duration>/)
  const version = catchErr(() => parseFlags(['--version'], '1.2.3'))
  t.type(version, FlagExit)
  t.equal((version as FlagExit).output, '1.2.3\n')
})

t.test('main: exit codes and one-line errors', async (t) => {
  const pkgVersion = (JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { version: string }).version
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 })

  const cases: Array<{ name: string; args: string[]; line: RegExp }> = [
    { name: 'missing node id', args: [], line: /^cert-manager-csi-driver: error: required option '--node-id <name>' not specified$/ },
    { name: 'bad endpoint', args: [...base, '--endpoint', 'tcp://0.0.0.0:1'], line: /^cert-manager-csi-driver: error: --endpoint "tcp:\/\/0\.0\.0\.0:1" is not supported/ },
    { name: 'bad timeout', args: [...base, '--publish-timeout', '5m'], line: /^cert-manager-csi-driver: error: --publish-timeout "5m" must be under 2m/ },
  ]
  for (const c of cases) {
    const r = run(...c.args)
    t.equal(r.status, 2, `${c.name}: exit 2`)
    const lines = r.stderr.split('\n').filter((l) => l !== '')
    t.equal(lines.length, 1, `${c.name}: one line on stderr: ${r.stderr}`)
    t.match(lines[0] ?? '', c.line, c.name)
    t.equal(r.stdout, '', `${c.name}: nothing on stdout`)
  }

  const help = run('--help')
  t.equal(help.status, 0, '--help exits 0')
  t.match(help.stdout, /Usage: cert-manager-csi-driver/)
  t.equal(help.stderr, '')

  const version = run('--version')
  t.equal(version.status, 0, '--version exits 0')
  t.equal(version.stdout.trim(), pkgVersion)
})
