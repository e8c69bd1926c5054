// The kubeconfig the driver talks to the API with, and the deadline every
// API call gets.
import { KubeConfig, Observable, type Cluster, type ConfigurationOptions, type RequestContext, type ResponseContext } from '@kubernetes/client-node'
import { Agent, type AgentOptions } from 'node:https'
import { createHash } from 'node:crypto'
import { UnavailableError } from '../errors.js'
import { formatDuration } from '../volume/duration.js'

export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig()
  if (path) kc.loadFromFile(path)
  else kc.loadFromCluster()
  reuseConnections(kc)
  return kc
}

type CreateAgent = (cluster: Cluster | null, options: AgentOptions) => unknown

/**
 * client-node 1.4 builds a new https.Agent for every request, so every API
 * call pays a TLS handshake (kubernetes-client/javascript#2893). Hand out one
 * keep-alive agent per TLS identity instead; a rotated client certificate or
 * CA is a new identity and gets a new agent. Proxies keep the stock path.
 */
export function reuseConnections(kc: KubeConfig): void {
  const target = kc as unknown as { createAgent: CreateAgent }
  const stock = target.createAgent.bind(kc)
  const agents = new Map<string, Agent>()
  target.createAgent = (cluster, options) => {
    if (!cluster?.server?.startsWith('https:') || cluster.proxyUrl) return stock(cluster, options)
    const identity = createHash('sha256')
      .update(JSON.stringify([cluster.server, options.ca, options.cert, options.key, options.pfx, options.passphrase, options.rejectUnauthorized, options.servername].map(v => (v === undefined ? null : Buffer.isBuffer(v) ? v.toString('base64') : JSON.stringify(v)))))
      .digest('hex')
    let agent = agents.get(identity)
    if (!agent) {
      // Identities only change on rotation: a handful over a process's life.
      if (agents.size >= 4) agents.clear()
      agent = new Agent({ ...options, keepAlive: true })
      agents.set(identity, agent)
    }
    return agent
  }
}

export const DEFAULT_API_TIMEOUT_MS = 30_000

/** An API call that took longer than --kube-api-timeout; retried like any unavailable dependency. */
export class ApiTimeoutError extends UnavailableError {
  constructor(readonly operation: string, readonly timeoutMs: number, options?: { cause?: unknown }) {
    super(`${operation} timed out after ${formatDuration(timeoutMs)}`, options)
  }
}

/**
 * Runs one call of a generated client-node API with a deadline. client-node
 * 1.4 sets no timeout of its own (a blackholed apiserver hangs a call for
 * the OS's ~15 minutes), but every generated method takes per-call options
 * whose middleware sees the RequestContext before it is sent: we set an
 * AbortSignal there, and node-fetch aborts the HTTP request (headers and
 * body alike) when it fires. `signal` adds a caller's own abort (a stop).
 *
 *   await withTimeout('CertificateRequest get', 30_000, options => api.getNamespacedCustomObject(params, options))
 */
export async function withTimeout<T>(
  operation: string,
  timeoutMs: number,
  call: (options: ConfigurationOptions) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = new AbortController()
  const timer = setTimeout(() => deadline.abort(), timeoutMs)
  try {
    return await call(abortOptions(signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal))
  } catch (err) {
    if (deadline.signal.aborted && !signal?.aborted) throw new ApiTimeoutError(operation, timeoutMs, { cause: err })
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** Per-call options that abort the request with `signal`, keeping the API's own middleware. */
export function abortOptions(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [{
      pre: (context: RequestContext) => {
        context.setSignal(signal)
        return new Observable(Promise.resolve(context))
      },
      post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
    }],
    middlewareMergeStrategy: 'append',
  }
}
