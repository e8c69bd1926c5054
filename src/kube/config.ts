// The kubeconfig the driver talks to the API with.
import { KubeConfig, type Cluster } from '@kubernetes/client-node'
import { Agent, type AgentOptions } from 'node:https'
import { createHash } from 'node:crypto'

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
      .update(JSON.stringify([cluster.server, options.ca, options.cert, options.key, options.pfx, options.passphrase, options.rejectUnauthorized, options.servername].map(v => (v === undefined ? null : String(v)))))
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
