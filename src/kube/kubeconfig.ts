// Where the apiserver is and who the driver is to it: the in-cluster service
// account, or one context of a kubeconfig file. Our own loader rather than
// client-node's KubeConfig, whose module alone pulls in every generated API
// and auth plugin (about 75 MiB of a node agent's memory, issue 14 P5).
//
// Supported: server, certificate-authority(-data), insecure-skip-tls-verify,
// tls-server-name; client-certificate(-data) + client-key(-data), token,
// tokenFile, username/password. Refused with a clear error: exec and
// auth-provider plugins, proxy-url (a node agent talks to its apiserver
// directly).
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'
import * as v from 'valibot'

/** Everything needed to open a connection and authenticate each request. */
export interface ClusterAccess {
  /** https://host:port (or http:// for a test server), without a trailing slash. */
  server: string
  ca?: Buffer
  insecureSkipTlsVerify?: boolean
  tlsServerName?: string
  clientCert?: Buffer
  clientKey?: Buffer
  /** A fixed bearer token. */
  token?: string
  /** A file holding the bearer token, re-read as it rotates (bound service account tokens do). */
  tokenFile?: string
  basic?: { username: string; password: string }
}

export class KubeconfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'KubeconfigError'
  }
}

const str = v.optional(v.string())
const listOf = <T extends v.GenericSchema>(item: T) => v.optional(v.array(item), [])

const kubeconfigSchema = v.object({
  clusters: listOf(v.object({ name: v.string(), cluster: v.object({
    server: v.string(),
    'certificate-authority': str,
    'certificate-authority-data': str,
    'insecure-skip-tls-verify': v.optional(v.boolean()),
    'tls-server-name': str,
    'proxy-url': str,
  }) })),
  users: listOf(v.object({ name: v.string(), user: v.nullish(v.object({
    'client-certificate': str,
    'client-certificate-data': str,
    'client-key': str,
    'client-key-data': str,
    token: str,
    tokenFile: str,
    username: str,
    password: str,
    exec: v.optional(v.unknown()),
    'auth-provider': v.optional(v.unknown()),
  })) })),
  contexts: listOf(v.object({ name: v.string(), context: v.object({ cluster: v.string(), user: str }) })),
  'current-context': str,
})

type Kubeconfig = v.InferOutput<typeof kubeconfigSchema>

/** Reads a file named in a kubeconfig (relative paths are relative to the kubeconfig). */
export type ReadFile = (path: string) => Buffer

/**
 * The current context of a parsed kubeconfig document (YAML already turned
 * into a value), with every file it names read. Pure but for `read`.
 */
export function accessFromKubeconfig(doc: unknown, baseDir: string, read: ReadFile, context?: string): ClusterAccess {
  const parsed = v.safeParse(kubeconfigSchema, doc)
  if (!parsed.success) {
    const issue = parsed.issues[0]
    throw new KubeconfigError(`not a kubeconfig: ${v.getDotPath(issue) ?? '(top)'}: ${issue.message}`)
  }
  const cfg: Kubeconfig = parsed.output
  const contextName = context ?? cfg['current-context']
  if (!contextName) throw new KubeconfigError('the kubeconfig has no current-context')
  const ctx = cfg.contexts.find(c => c.name === contextName)?.context
  if (!ctx) throw new KubeconfigError(`the kubeconfig has no context named ${JSON.stringify(contextName)}`)
  const cluster = cfg.clusters.find(c => c.name === ctx.cluster)?.cluster
  if (!cluster) throw new KubeconfigError(`context ${JSON.stringify(contextName)} names cluster ${JSON.stringify(ctx.cluster)}, which the kubeconfig does not have`)
  const user = ctx.user === undefined ? undefined : cfg.users.find(u => u.name === ctx.user)
  if (ctx.user !== undefined && !user) throw new KubeconfigError(`context ${JSON.stringify(contextName)} names user ${JSON.stringify(ctx.user)}, which the kubeconfig does not have`)

  if (cluster['proxy-url']) throw new KubeconfigError(`cluster ${JSON.stringify(ctx.cluster)} sets proxy-url, which this driver does not support: a node agent talks to its apiserver directly`)
  let server: URL
  try {
    server = new URL(cluster.server)
  } catch (err) {
    throw new KubeconfigError(`cluster ${JSON.stringify(ctx.cluster)} has server ${JSON.stringify(cluster.server)}, which is not a URL`, { cause: err })
  }
  if (server.protocol !== 'https:' && server.protocol !== 'http:') throw new KubeconfigError(`cluster ${JSON.stringify(ctx.cluster)}: server must be https:// (or http://), not ${server.protocol}`)

  const file = (what: string, path: string): Buffer => {
    const full = isAbsolute(path) ? path : join(baseDir, path)
    try {
      return read(full)
    } catch (err) {
      throw new KubeconfigError(`cannot read the ${what} ${full} named in the kubeconfig: ${(err as Error).message}`, { cause: err })
    }
  }
  const data = (what: string, inline: string | undefined, path: string | undefined): Buffer | undefined =>
    inline !== undefined ? Buffer.from(inline, 'base64') : path !== undefined ? file(what, path) : undefined

  const access: ClusterAccess = { server: server.href.replace(/\/+$/, '') }
  const ca = data('certificate authority', cluster['certificate-authority-data'], cluster['certificate-authority'])
  if (ca) access.ca = ca
  if (cluster['insecure-skip-tls-verify']) access.insecureSkipTlsVerify = true
  if (cluster['tls-server-name']) access.tlsServerName = cluster['tls-server-name']

  const u = user?.user
  if (u) {
    if (u.exec !== undefined || u['auth-provider'] !== undefined) {
      throw new KubeconfigError(`user ${JSON.stringify(ctx.user)} uses an ${u.exec !== undefined ? 'exec' : 'auth-provider'} plugin, which this driver does not support: give it a token, a tokenFile or a client certificate`)
    }
    const cert = data('client certificate', u['client-certificate-data'], u['client-certificate'])
    const key = data('client key', u['client-key-data'], u['client-key'])
    if ((cert === undefined) !== (key === undefined)) throw new KubeconfigError(`user ${JSON.stringify(ctx.user)} has a client ${cert ? 'certificate without a key' : 'key without a certificate'}`)
    if (cert && key) Object.assign(access, { clientCert: cert, clientKey: key })
    if (u.token) access.token = u.token
    else if (u.tokenFile) access.tokenFile = isAbsolute(u.tokenFile) ? u.tokenFile : join(baseDir, u.tokenFile)
    if (u.username !== undefined && u.password !== undefined) access.basic = { username: u.username, password: u.password }
  }
  return access
}

/** Loads the current context of a kubeconfig file (YAML or JSON). */
export async function readKubeconfig(path: string): Promise<ClusterAccess> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new KubeconfigError(`cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err })
  }
  // js-yaml only when a kubeconfig is given: in a cluster it is never loaded.
  const yaml = await import('js-yaml')
  let doc: unknown
  try {
    doc = yaml.load(text)
  } catch (err) {
    throw new KubeconfigError(`kubeconfig ${path} is not YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err })
  }
  try {
    return accessFromKubeconfig(doc, dirname(path), p => readFileSync(p))
  } catch (err) {
    if (err instanceof KubeconfigError) err.message = `kubeconfig ${path}: ${err.message}`
    throw err
  }
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

/** The in-cluster service account, as every client library finds it. */
export function inClusterAccess(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR, read: ReadFile = p => readFileSync(p)): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST
  const port = env.KUBERNETES_SERVICE_PORT
  if (!host || !port) throw new KubeconfigError('not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset): give --kubeconfig')
  const ca = join(dir, 'ca.crt')
  let caPem: Buffer
  try {
    caPem = read(ca)
  } catch (err) {
    throw new KubeconfigError(`cannot read the service account's CA ${ca}: ${(err as Error).message}`, { cause: err })
  }
  // An IPv6 service host needs brackets in a URL.
  const hostPart = host.includes(':') ? `[${host}]` : host
  return { server: `https://${hostPart}:${port}`, ca: caPem, tokenFile: join(dir, 'token') }
}

/** The kubeconfig file when one is given, else the in-cluster service account. */
export function loadClusterAccess(kubeconfig: string | undefined): Promise<ClusterAccess> {
  return kubeconfig ? readKubeconfig(kubeconfig) : Promise.resolve(inClusterAccess())
}
