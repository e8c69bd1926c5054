// The command line, parsed into a Config. Pure: no environment reads, no
// output, no process.exit. --help and --version surface as a thrown FlagExit,
// every mistake as a thrown FlagError with a one-line message.

import { isAbsolute } from 'node:path'
import { Command, CommanderError, Option } from 'commander'
import { FlagError, FlagExit } from '../errors.js'
import { parseBindAddress, type BindAddress } from './bind-address.js'
import { parseDuration } from '../volume/duration.js'
import { parseByteQuantity } from './quantity.js'
import { checkDns1123Subdomain } from '../volume/shapes.js'

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]
export const LOG_FORMATS = ['json', 'text'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]


export interface Config {
  nodeId: string
  /** The endpoint as given, e.g. "unix:///csi/csi.sock". */
  endpoint: string
  /** Absolute path of the unix socket the endpoint names. */
  socketPath: string
  driverName: string
  dataRoot: string
  /** Size limit of the private tmpfs the driver mounts on the data root. */
  dataRootSizeBytes: number
  /** Undefined: use the in-cluster service account. */
  kubeconfig?: string
  logLevel: LogLevel
  logFormat: LogFormat
  /** How long NodePublishVolume waits for issuance before answering with the reason. */
  publishTimeoutMs: number
  maxConcurrentIssuances: number
  /** Every volume is re-checked this often, so deleted or altered files heal. */
  resyncPeriodMs: number
  /** First wait after a denied or failed request; doubles per failure up to an hour. */
  failureBackoffMs: number
  /** Deadline of every Kubernetes API call (a watch: of opening it). */
  kubeApiTimeoutMs: number
  /** Client-side limit of every Kubernetes API call and watch connect: sustained rate and burst. */
  kubeApiQps: number
  kubeApiBurst: number
  /** The CertificateRequest cache re-lists (LIST + diff) this often as a safety net. */
  cacheRelistPeriodMs: number
  /** Null: metrics disabled. */
  metricsBindAddress: BindAddress | null
  /**
   * The CSI socket as the kubelet sees it. When set, the driver registers
   * itself with the kubelet (what node-driver-registrar does otherwise).
   */
  kubeletRegistrationPath?: string
  /** The kubelet's plugin watcher directory, where the registration socket goes. */
  pluginRegistrationDir: string
  /** The kubelet's --root-dir: every target path lies in its pods/ folder. */
  kubeletRootDir: string
  /** Annotation prefixes a volume may pass on to its CertificateRequest; '*' for any. */
  annotationPrefixes: readonly string[] | '*'
  /** Create each volume's CertificateRequests with the pod's own service account token (from the kubelet). */
  useTokenRequest: boolean
  /** The audience of that token: the CSIDriver's tokenRequests entry; '' is the apiserver's own. */
  tokenRequestAudience: string
}

export const DEFAULTS = {
  endpoint: 'unix:///csi/csi.sock',
  driverName: 'csi.cert-manager.io',
  dataRoot: '/tmp/cert-manager-csi',
  dataRootSize: '256Mi',
  logLevel: 'info',
  logFormat: 'json',
  publishTimeout: '60s',
  maxConcurrentIssuances: '8',
  resyncPeriod: '2m',
  failureBackoff: '30s',
  kubeApiTimeout: '30s',
  kubeApiQps: '20',
  kubeApiBurst: '50',
  cacheRelistPeriod: '5m',
  metricsBindAddress: ':9402',
  pluginRegistrationDir: '/var/lib/kubelet/plugins_registry',
  kubeletRootDir: '/var/lib/kubelet',
  annotationPrefixes: '',
  tokenRequestAudience: '',
} as const

/** The kubelet gives up on a CSI call after 2 minutes; we must answer before. */
const KUBELET_CSI_TIMEOUT_MS = 120_000

// sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107

// What csi-sanity and the kubelet's plugin registration accept.
const DRIVER_NAME = /^[a-zA-Z][A-Za-z0-9.\-_]{0,61}[a-zA-Z]$/

function buildProgram(version: string): Command {
  return new Command('cert-manager-csi-driver')
    .description('CSI node driver that gives every Pod its own private key and certificate, signed through cert-manager.')
    .version(version, '--version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .allowExcessArguments(false)
    .requiredOption('--node-id <name>', 'name of the node this driver runs on (spec.nodeName through the downward API)')
    .option('--endpoint <url>', 'unix socket to serve CSI on: unix:///abs/path or unix:/abs/path', DEFAULTS.endpoint)
    .option('--driver-name <name>', 'CSI driver name; must match the CSIDriver object', DEFAULTS.driverName)
    .option('--data-root <dir>', 'absolute directory holding one directory per volume (the driver mounts tmpfs here unless it is on tmpfs already)', DEFAULTS.dataRoot)
    .option('--data-root-size <bytes>', 'size limit of the tmpfs the driver mounts on the data root (64Mi, 1Gi, or bytes)', DEFAULTS.dataRootSize)
    .option('--kubeconfig <file>', 'kubeconfig file; default: the in-cluster service account')
    .addOption(new Option('--log-level <level>', 'least severe level logged').choices(LOG_LEVELS).default(DEFAULTS.logLevel))
    .addOption(new Option('--log-format <format>', 'log line format').choices(LOG_FORMATS).default(DEFAULTS.logFormat))
    .option(
      '--publish-timeout <duration>',
      'how long NodePublishVolume waits for a certificate (Go duration like 90s or 1m30s, or seconds); must be under 2m',
      DEFAULTS.publishTimeout,
    )
    .option('--max-concurrent-issuances <n>', 'issuances in flight at once on this node', DEFAULTS.maxConcurrentIssuances)
    .option('--resync-period <duration>', 're-check every volume this often (heals deleted or altered files)', DEFAULTS.resyncPeriod)
    .option('--failure-backoff <duration>', 'first wait after a denied or failed request; doubles up to 1h', DEFAULTS.failureBackoff)
    .option('--kube-api-timeout <duration>', 'deadline of each Kubernetes API call (for a watch: of opening it)', DEFAULTS.kubeApiTimeout)
    .option('--use-token-request', "create each volume's CertificateRequests with the pod's own service account token, which the kubelet passes (CSIDriver tokenRequests, requiresRepublish: true)", false)
    .option('--token-request-audience <audience>', 'audience of that token, as in the CSIDriver\'s tokenRequests; "" (default) is the apiserver\'s own', DEFAULTS.tokenRequestAudience)
    .option('--kube-api-qps <n>', 'Kubernetes API requests per second this driver makes at most, sustained (calls and watch connects)', DEFAULTS.kubeApiQps)
    .option('--kube-api-burst <n>', 'Kubernetes API requests allowed at once above --kube-api-qps after a quiet spell', DEFAULTS.kubeApiBurst)
    .option('--cache-relist-period <duration>', 'the CertificateRequest cache re-lists from the API this often (a safety net under the watch)', DEFAULTS.cacheRelistPeriod)
    .option('--metrics-bind-address <addr>', 'host:port for Prometheus metrics; 0 disables', DEFAULTS.metricsBindAddress)
    .option(
      '--kubelet-registration-path <path>',
      "register with the kubelet directly (instead of node-driver-registrar): the CSI socket's path as the kubelet sees it",
    )
    .option(
      '--plugin-registration-dir <dir>',
      "the kubelet's plugin registration directory (used with --kubelet-registration-path)",
      DEFAULTS.pluginRegistrationDir,
    )
    .option('--kubelet-root-dir <dir>', "the kubelet's --root-dir: target paths outside its pods/<uid>/volumes/kubernetes.io~csi/<name>/mount are refused", DEFAULTS.kubeletRootDir)
    .option(
      '--annotation-prefixes <list>',
      'comma-separated annotation prefixes (example.com,team.example.org) a volume attribute may pass on to its CertificateRequest; "*" for any; default none',
      DEFAULTS.annotationPrefixes,
    )
}

/**
 * Parses the arguments after the program name (process.argv.slice(2)).
 * `version` is what --version prints; main reads it from package.json.
 */
export function parseFlags(argv: readonly string[], version = '0.0.0-dev'): Config {
  let out = ''
  const program = buildProgram(version)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        out += s
      },
      writeErr: (s) => {
        out += s
      },
      outputError: () => {},
    })

  try {
    program.parse([...argv], { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) throw new FlagExit(out)
      throw new FlagError(oneLine(err.message.replace(/^error: /, '')))
    }
    throw err
  }

  const o = program.opts<Record<string, string | undefined>>()
  const str = (k: string): string => o[k] ?? ''

  const nodeId = str('nodeId').trim()
  if (nodeId === '') throw new FlagError('--node-id must not be empty')

  const driverName = str('driverName')
  if (!DRIVER_NAME.test(driverName)) {
    throw new FlagError(
      `--driver-name "${driverName}" is not a valid CSI driver name: at most 63 characters, letters, digits, '-', '.' and '_', starting and ending with a letter`,
    )
  }

  const dataRoot = str('dataRoot')
  if (!isAbsolute(dataRoot)) throw new FlagError(`--data-root "${dataRoot}" must be an absolute path`)

  const sizeGiven = str('dataRootSize')
  const dataRootSizeBytes = parseByteQuantity(sizeGiven)
  if (dataRootSizeBytes === undefined || dataRootSizeBytes < MIN_DATA_ROOT_BYTES) {
    throw new FlagError(`--data-root-size "${sizeGiven}" must be a byte quantity of at least 1Mi, like 64Mi or 1Gi`)
  }

  const kubeconfig = o.kubeconfig
  if (kubeconfig !== undefined && kubeconfig.trim() === '') throw new FlagError('--kubeconfig must not be empty when given')

  const publishTimeoutMs = parsePublishTimeout(str('publishTimeout'))

  const max = str('maxConcurrentIssuances')
  if (!/^\d+$/.test(max) || Number(max) < 1 || !Number.isSafeInteger(Number(max))) {
    throw new FlagError(`--max-concurrent-issuances "${max}" must be a whole number of at least 1`)
  }

  const qps = str('kubeApiQps')
  if (!/^\d+(\.\d+)?$/.test(qps.trim()) || !(Number(qps) > 0)) {
    throw new FlagError(`--kube-api-qps "${qps}" must be a number of requests per second greater than 0 (like 20 or 0.5)`)
  }
  const burst = str('kubeApiBurst')
  if (!/^\d+$/.test(burst) || Number(burst) < 1 || !Number.isSafeInteger(Number(burst))) {
    throw new FlagError(`--kube-api-burst "${burst}" must be a whole number of at least 1`)
  }

  const kubeletRegistrationPath = o.kubeletRegistrationPath
  if (kubeletRegistrationPath !== undefined) checkSocketPath('--kubelet-registration-path', kubeletRegistrationPath)
  const pluginRegistrationDir = str('pluginRegistrationDir')
  if (!isAbsolute(pluginRegistrationDir)) throw new FlagError(`--plugin-registration-dir "${pluginRegistrationDir}" must be an absolute path`)
  // The registration socket is <dir>/<driver name>-reg.sock.
  checkSocketPath('--plugin-registration-dir', `${pluginRegistrationDir.replace(/\/+$/, '')}/${driverName}-reg.sock`)

  const kubeletRootDir = str('kubeletRootDir')
  if (!isAbsolute(kubeletRootDir)) throw new FlagError(`--kubelet-root-dir "${kubeletRootDir}" must be an absolute path`)

  const endpoint = str('endpoint')
  return {
    nodeId,
    endpoint,
    socketPath: parseEndpoint(endpoint),
    driverName,
    dataRoot,
    dataRootSizeBytes,
    ...(kubeconfig !== undefined ? { kubeconfig } : {}),
    logLevel: str('logLevel') as LogLevel,
    logFormat: str('logFormat') as LogFormat,
    publishTimeoutMs,
    maxConcurrentIssuances: Number(max),
    resyncPeriodMs: parsePositiveDuration('--resync-period', str('resyncPeriod')),
    failureBackoffMs: parsePositiveDuration('--failure-backoff', str('failureBackoff')),
    kubeApiTimeoutMs: parsePositiveDuration('--kube-api-timeout', str('kubeApiTimeout')),
    kubeApiQps: Number(qps),
    kubeApiBurst: Number(burst),
    cacheRelistPeriodMs: parsePositiveDuration('--cache-relist-period', str('cacheRelistPeriod')),
    metricsBindAddress: parseBindAddress(str('metricsBindAddress')),
    ...(kubeletRegistrationPath !== undefined ? { kubeletRegistrationPath } : {}),
    pluginRegistrationDir,
    kubeletRootDir: kubeletRootDir.replace(/(.)\/+$/, '$1'),
    annotationPrefixes: parseAnnotationPrefixes(str('annotationPrefixes')),
    useTokenRequest: (o.useTokenRequest as unknown) === true,
    tokenRequestAudience: str('tokenRequestAudience'),
  }
}

/** "" → none, "*" → any, else DNS-1123 subdomains (the part of an annotation key before "/"). */
function parseAnnotationPrefixes(value: string): readonly string[] | '*' {
  const s = value.trim()
  if (s === '*') return '*'
  if (s === '') return []
  const items = s.split(',').map(x => x.trim())
  for (const item of items) {
    const problem = item === '' ? 'is empty' : checkDns1123Subdomain(item)
    if (problem) {
      throw new FlagError(`--annotation-prefixes: ${JSON.stringify(item)} ${problem}; give prefixes like example.com,team.example.org, or "*" for any`)
    }
  }
  return items
}

// Big enough for a record and a few certificates; smaller is surely a typo.
const MIN_DATA_ROOT_BYTES = 2 ** 20

function checkSocketPath(flag: string, path: string): void {
  if (!isAbsolute(path)) throw new FlagError(`${flag} "${path}" must be an absolute path`)
  const bytes = Buffer.byteLength(path)
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new FlagError(`${flag}: socket path ${path} is ${bytes} bytes long; unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}`)
  }
}

/** "unix:///abs/path" or "unix:/abs/path" → "/abs/path". */
export function parseEndpoint(endpoint: string): string {
  const usage = 'use unix:///absolute/path/to/csi.sock'
  let path: string
  if (endpoint.startsWith('unix:///')) path = endpoint.slice('unix://'.length)
  else if (endpoint.startsWith('unix:/') && !endpoint.startsWith('unix://')) path = endpoint.slice('unix:'.length)
  else if (endpoint.startsWith('unix:')) {
    throw new FlagError(`--endpoint "${endpoint}" must name an absolute socket path: ${usage}`)
  } else {
    throw new FlagError(`--endpoint "${endpoint}" is not supported: the kubelet talks to CSI drivers over a unix socket; ${usage}`)
  }
  const bytes = Buffer.byteLength(path)
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new FlagError(`--endpoint socket path is ${bytes} bytes long; unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}`)
  }
  if (path.endsWith('/')) throw new FlagError(`--endpoint "${endpoint}" names a directory, not a socket file`)
  return path
}

function parsePositiveDuration(flag: string, value: string): number {
  const ms = parseTimeout(value)
  if (ms === undefined || ms <= 0) {
    throw new FlagError(`${flag} "${value}" is not a positive duration: use a Go duration like 30s or 2m, or a number of seconds`)
  }
  return ms
}

function parsePublishTimeout(value: string): number {
  const ms = parseTimeout(value)
  if (ms === undefined) {
    throw new FlagError(`--publish-timeout "${value}" is not a duration: use a Go duration like 60s or 1m30s, or a number of seconds`)
  }
  if (ms <= 0) throw new FlagError(`--publish-timeout "${value}" must be greater than zero`)
  if (ms >= KUBELET_CSI_TIMEOUT_MS) {
    throw new FlagError(
      `--publish-timeout "${value}" must be under 2m: the kubelet abandons a CSI call after 2 minutes and we must answer with the reason first`,
    )
  }
  return ms
}

/** A Go duration ("90s", "1m30s") or a bare number of seconds, in milliseconds. */
export function parseTimeout(value: string): number | undefined {
  const s = value.trim()
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000)
  const d = parseDuration(s)
  return d.ok ? Math.round(d.ms) : undefined
}

function oneLine(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ')
}
